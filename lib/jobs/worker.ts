import { performance } from 'node:perf_hooks'
import type { Job } from 'bullmq'
import type { RedisOptions } from 'ioredis'
import type { FastifyBaseLogger } from 'fastify'
import { describe, FST_SAC_INVALID_OPTION, FST_SAC_UNKNOWN_OPTION, FST_SAC_UNKNOWN_TASK } from '../errors'
import { isLevelEnabled, logShutdown, logTask, round, TASK_LEVELS } from '../log'
import type { TaskLine } from '../log'
import { backoffDelay } from '../backoff'
import { MAX_TIMEOUT } from '../limits'
import { runTraced, traceEnded, traceJobRegistered, traceReturned, traceStarted } from '../tracing'
import type { TracedTask } from '../tracing'
import { zeroOutcomes } from '../types'
import type { Outcome, TaskContext } from '../types'
import { checkName } from './options'
import { checkConnection, checkRedis } from '../engines/bullmq/redis'
import { stalledFailureListener } from '../engines/bullmq/stalled'
import { taskMap } from './tasks'
import { DEFAULT_QUEUE_NAME } from './types'
import type { Backoff, DurableTask, DurableTaskContext, JobPayload } from './types'

export interface WorkerOptions {
  /** A `redis://` URL or ioredis options. */
  connection: string | RedisOptions
  /** The durable tasks this worker runs (the module the web app gives its `queue`). */
  tasks: DurableTask<any>[]
  /** @default 'fastify-send-and-continue' */
  name?: string
  /** BullMQ's key prefix. @default 'bull' */
  prefix?: string
  /** Jobs that run at once in this worker. @default 10 */
  concurrency?: number
  /** A pino logger. @default pino() to standard output */
  logger?: FastifyBaseLogger
  /**
   * How long `close()` waits for running jobs before aborting their signal and returning them to
   * the queue, in milliseconds.
   * @default 10000
   */
  drainTimeout?: number
  /**
   * How long a job stays locked to this worker without a renewal, in milliseconds. After a crash
   * (`kill -9`) its jobs run again once the lock expired and a stalled-job check ran: between
   * `lockDuration` and `lockDuration + stalledInterval`. A job whose workers die during it twice
   * is not run again: the worker that takes it next fails it (logged `failed`, reason `stalled`).
   * @default 30000
   */
  lockDuration?: number
  /** Milliseconds between BullMQ's stalled-job checks. @default 30000 */
  stalledInterval?: number
}

/** `worker.stats()`: jobs of this worker since it started. */
export interface WorkerStats extends Record<Outcome, number> {
  running: number
  /** Failed attempts that will be retried. */
  retrying: number
}

export interface DurableWorker {
  /** The queue this worker takes jobs from. */
  readonly queue: string
  /**
   * Stops taking jobs, waits up to `drainTimeout` for running ones, then aborts their `signal`
   * and returns them to the queue (they run again in the next worker, as the same attempt).
   */
  close (): Promise<void>
  stats (): WorkerStats
}

const WHERE = 'createWorker()'
const KNOWN = ['connection', 'tasks', 'name', 'prefix', 'concurrency', 'logger', 'drainTimeout', 'lockDuration', 'stalledInterval']
const STARTUP_TIMEOUT = 5000

interface Run {
  readonly controller: AbortController
  /** Resolves the attempt's race with the reason it ended early (timeout or shutdown). */
  interrupt: (reason: 'timeout' | 'shutdown') => void
}

type Settled = { kind: 'completed' } | { kind: 'failed', err: unknown } | { kind: 'timeout' } | { kind: 'shutdown' }

/** The outcome of one attempt's span: a shutdown gives up on the attempt, as a cancel does. */
function attemptOutcome (settled: Settled): Outcome {
  return settled.kind === 'shutdown' ? 'cancelled' : settled.kind
}

function isThenable (value: unknown): boolean {
  return typeof (value as { then?: unknown } | null | undefined)?.then === 'function'
}

function checkMs (option: string, value: unknown, fallback: number, min: number): number {
  if (value === undefined) return fallback
  if (typeof value === 'number' && Number.isInteger(value) && value >= min && value <= MAX_TIMEOUT) return value
  throw new FST_SAC_INVALID_OPTION(WHERE, option, `a whole number of milliseconds from ${min} to ${MAX_TIMEOUT}`, describe(value))
}

/**
 * Starts a worker that runs the durable jobs of a queue: same time limits, signals and log lines
 * as in-process tasks, plus retries. Resolves once Redis answered and the worker takes jobs.
 * @example
 * const worker = await createWorker({ connection: 'redis://127.0.0.1:6379', tasks: [sendWelcome] })
 * process.once('SIGTERM', () => worker.close())
 */
export async function createWorker (options: WorkerOptions): Promise<DurableWorker> {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new FST_SAC_INVALID_OPTION(WHERE, 'the options', 'an object', describe(options))
  }
  for (const key of Object.keys(options)) {
    if (!KNOWN.includes(key)) throw new FST_SAC_UNKNOWN_OPTION(WHERE, describe(key), KNOWN.join(', '))
  }
  const connection = checkConnection(WHERE, options.connection)
  const tasks = taskMap(WHERE, options.tasks)
  const queue = options.name === undefined ? DEFAULT_QUEUE_NAME : checkName(WHERE, 'name', options.name)
  const prefix = options.prefix === undefined ? undefined : checkName(WHERE, 'prefix', options.prefix)
  const { concurrency = 10 } = options
  if (typeof concurrency !== 'number' || !Number.isInteger(concurrency) || concurrency < 1) {
    throw new FST_SAC_INVALID_OPTION(WHERE, 'concurrency', 'a whole number of at least 1', describe(concurrency))
  }
  const drainTimeout = checkMs('drainTimeout', options.drainTimeout, 10_000, 0)
  const lockDuration = checkMs('lockDuration', options.lockDuration, 30_000, 1)
  const stalledInterval = checkMs('stalledInterval', options.stalledInterval, 30_000, 1)
  // BullMQ, ioredis and pino load with the first worker: the web process may never need them
  const { UnrecoverableError, WaitingError, Worker } = require('bullmq') as typeof import('bullmq')
  const { createClient } = require('../engines/bullmq/client') as typeof import('../engines/bullmq/client')
  const pino = require('pino') as typeof import('pino')
  const logger: FastifyBaseLogger = options.logger ?? pino()

  // a worker's commands wait for Redis to come back rather than fail (BullMQ requires it)
  const client = createClient(connection, { maxRetriesPerRequest: null })
  client.on('error', noop)
  try {
    await checkRedis(WHERE, client, STARTUP_TIMEOUT)
  } catch (err) {
    client.disconnect()
    throw err
  }

  const counts = zeroOutcomes()
  let retrying = 0
  const runs = new Set<Run>()
  const known = [...tasks.keys()].join(', ')

  async function processJob (job: Job<JobPayload>, token?: string): Promise<void> {
    const payload = job.data
    const attempt = job.attemptsMade + 1
    const log = logger.child({ reqId: payload.request.id })
    const startedAt = performance.now()
    const queuedMs = Math.max(0, Date.now() - payload.enqueuedAt - job.delay)
    function line (outcome: TaskLine['outcome'], timeoutMs?: number): TaskLine {
      const result: TaskLine = {
        task: job.name,
        outcome,
        connection: payload.connection,
        method: payload.request.method,
        route: payload.route,
        statusCode: payload.statusCode,
        durationMs: round(performance.now() - startedAt),
        queuedMs,
        jobId: job.id as string,
        attempt,
        queue
      }
      if (timeoutMs !== undefined) result.timeoutMs = timeoutMs
      return result
    }
    function final (outcome: Outcome, err?: unknown, timeoutMs?: number): void {
      counts[outcome]++
      if (isLevelEnabled(log, TASK_LEVELS[outcome])) logTask(log, line(outcome, timeoutMs), err)
    }

    const task = tasks.get(job.name)
    if (task === undefined) {
      const err = new FST_SAC_UNKNOWN_TASK(`worker of queue ${queue}`, known, describe(job.name))
      final('failed', err)
      // no attempt of this worker can run it: do not retry here
      throw new UnrecoverableError(err.message)
    }

    const settled = await runAttempt(task, job, attempt, log, payload, queuedMs)
    if (settled.kind === 'completed') {
      final('completed')
      return
    }
    if (settled.kind === 'shutdown') {
      // back to waiting now, not after the lock expires: the next worker runs it at once
      counts.cancelled++
      if (isLevelEnabled(log, 'warn')) {
        const shutdownLine = line('retrying')
        shutdownLine.reason = 'worker-closing'
        shutdownLine.delayMs = 0
        logTask(log, shutdownLine)
      }
      await job.moveToWait(token)
      throw new WaitingError()
    }
    // BullMQ keeps the message of what it is thrown: a non-Error is wrapped so the logged err has one
    const err = settled.kind === 'timeout'
      ? new DOMException(`durable task "${task.name}" timed out after ${task.timeout} ms`, 'TimeoutError')
      : settled.err instanceof Error ? settled.err : new Error(describe(settled.err))
    // BullMQ's retry decision, made after this line: it retries while attemptsMade < attempts
    if (attempt < (job.opts.attempts as number)) {
      retrying++
      if (isLevelEnabled(log, TASK_LEVELS.retrying)) {
        const retryLine = line('retrying', settled.kind === 'timeout' ? task.timeout : undefined)
        retryLine.delayMs = backoffDelay(job.opts.backoff as Backoff | undefined, attempt)
        logTask(log, retryLine, err)
      }
    } else if (settled.kind === 'timeout') {
      final('timeout', undefined, task.timeout)
    } else {
      final('failed', err)
    }
    throw err
  }

  // One attempt: the handler's settlement, its time limit or the shutdown, whichever comes first.
  function runAttempt (task: DurableTask, job: Job<JobPayload>, attempt: number, log: FastifyBaseLogger, payload: JobPayload, queuedMs: number): Promise<Settled> {
    const controller = new AbortController()
    // each attempt gets its own span, child of the context the job carries from its request
    const traced: TracedTask = {
      name: task.name,
      timeoutMs: task.timeout,
      work: { route: payload.route, request: payload.request, connection: payload.connection, statusCode: payload.statusCode },
      trace: traceJobRegistered(payload.trace),
      jobId: job.id as string,
      attempt
    }
    const startedAt = performance.now()
    const queuedAt = startedAt - queuedMs
    return new Promise<Settled>((resolve) => {
      let timer: NodeJS.Timeout | undefined
      const run: Run = {
        controller,
        interrupt (reason) {
          finish(reason === 'timeout' ? { kind: 'timeout' } : { kind: 'shutdown' })
          controller.abort(reason === 'timeout'
            ? new DOMException(`durable task "${task.name}" timed out after ${task.timeout} ms`, 'TimeoutError')
            : new DOMException(`durable task "${task.name}" aborted: the worker is closing`, 'AbortError'))
        }
      }
      let done = false
      function finish (settled: Settled): void {
        if (done) return
        done = true
        clearTimeout(timer)
        runs.delete(run)
        traceEnded(traced, attemptOutcome(settled), settled.kind === 'failed' ? settled.err : undefined, undefined, queuedAt, startedAt)
        resolve(settled)
      }
      runs.add(run)
      if (task.timeout > 0) timer = setTimeout(() => { run.interrupt('timeout') }, task.timeout)
      const ctx: DurableTaskContext = {
        signal: controller.signal,
        log,
        request: payload.request,
        name: task.name,
        jobId: job.id as string,
        attempt,
        connection: payload.connection,
        statusCode: payload.statusCode
      }
      function runHandler (context: TaskContext): unknown {
        return task.handler(payload.data, context as unknown as DurableTaskContext)
      }
      const trace = traceStarted(traced, queuedAt, startedAt)
      // a handler that throws synchronously fails its attempt like one that rejects
      new Promise((resolve) => {
        if (trace === null) return resolve(task.handler(payload.data, ctx))
        const result = runTraced.call(trace, runHandler, ctx as unknown as TaskContext)
        if (isThenable(result)) traceReturned(trace)
        resolve(result)
      })
        .then(() => { finish({ kind: 'completed' }) }, (err: unknown) => { finish({ kind: 'failed', err }) })
    })
  }

  const worker = new Worker<JobPayload, void>(queue, processJob, {
    connection: client,
    concurrency,
    lockDuration,
    stalledInterval,
    ...(prefix === undefined ? {} : { prefix })
  })
  worker.on('error', (err) => { logger.error({ err }, 'durable worker error') })
  worker.on('failed', stalledFailureListener(logger, queue, counts))
  await worker.waitUntilReady()

  let closing: Promise<void> | null = null
  async function close (): Promise<void> {
    const startedAt = performance.now()
    const stopped = worker.close()
    let drained = true
    if (runs.size > 0) {
      drained = await new Promise<boolean>((resolve) => {
        const timer = setTimeout(resolve, drainTimeout, false)
        stopped.then(() => {
          clearTimeout(timer)
          resolve(true)
        }, noop)
      })
      if (!drained) for (const run of [...runs]) run.interrupt('shutdown')
    }
    await stopped
    logShutdown(logger, { drained, durationMs: Math.round(performance.now() - startedAt), drainTimeout, ...counts })
    client.disconnect()
  }

  return {
    queue,
    close () {
      closing ??= close()
      return closing
    },
    stats () {
      return { ...counts, running: runs.size, retrying }
    }
  }
}

function noop (): void {}
