import { performance } from 'node:perf_hooks'
import type { FastifyBaseLogger } from 'fastify'
import { backoffDelay } from '../backoff'
import { describe, FST_SAC_UNKNOWN_TASK } from '../errors'
import { isLevelEnabled, logGivenUp, logTask, round, TASK_LEVELS } from '../log'
import type { TaskLine } from '../log'
import { Timers } from '../timers'
import type { EntryList, TimedEntry } from '../timers'
import { runTraced, traceEnded, traceJobRegistered, traceReturned, traceStarted } from '../tracing'
import type { Destination, TracedTask } from '../tracing'
import { zeroOutcomes } from '../types'
import type { Outcome, TaskContext } from '../types'
import type { EngineName, LeasedJob } from '../engines/types'
import type { DurableTask, DurableTaskContext, JobPayload } from './types'
import type { EngineMetrics } from '../metrics'

// One attempt of a durable job, the same on every engine: its time limit and signal, the
// `retrying` and final lines, the span, the counts. Engines only lease jobs and apply the decision
// (lib/engines/*); this is the one place that decides.

/** `deferred.reason` of the final line of a job failed because its runs were lost (crashes) more than once. */
export const STALLED_REASON = 'stalled'

/** What the engine does with the job once the attempt ended. Every line is written already. */
export type Decision =
  /** The job is done. */
  | { readonly kind: 'completed' }
  /** Run it again as the next attempt after `delayMs`. */
  | { readonly kind: 'retry', readonly err: Error, readonly delayMs: number }
  /** The job ended `failed` or `timeout`; `unrecoverable` when no worker could ever run it (unknown task). */
  | { readonly kind: 'failed', readonly outcome: 'failed' | 'timeout', readonly err: Error, readonly unrecoverable: boolean }
  /** The worker is closing: give the job back, due now, as the same attempt (logged `retrying`, reason `worker-closing`). */
  | { readonly kind: 'shutdown' }
  /** The worker is closing and the engine keeps nothing across processes: the job ended `cancelled`. */
  | { readonly kind: 'cancelled' }

interface Run extends TimedEntry {
  /** Ends the attempt early: its time limit ran out, or the worker is closing. */
  interrupt: (reason: 'timeout' | 'shutdown') => void
}

type Settled = { kind: 'completed' } | { kind: 'failed', err: unknown } | { kind: 'timeout' } | { kind: 'shutdown' }

export interface AttemptRunnerOptions {
  tasks: Map<string, DurableTask>
  queue: string
  engine: EngineName
  logger: FastifyBaseLogger
  /**
   * Whether a job given up at shutdown survives the process: then it goes back to its queue
   * (`retrying`, reason `worker-closing`); otherwise (the memory engine) it ends `cancelled`.
   */
  durable: boolean
  /** `false`: no spans (the plugin's `tracing: false` for the app's own worker). Default `true`. */
  tracing?: boolean
  /** The engine's metrics (lib/metrics.ts); `null` or absent when nothing records them. */
  metrics?: EngineMetrics | null
}

/** `worker.stats()`: jobs of this worker since it started. */
export interface WorkerStats extends Record<Outcome, number> {
  running: number
  /** Failed attempts that will be retried. */
  retrying: number
}

function isThenable (value: unknown): boolean {
  return typeof (value as { then?: unknown } | null | undefined)?.then === 'function'
}

export class AttemptRunner {
  readonly counts = zeroOutcomes()
  readonly #runs = new Set<Run>()
  // the attempts' time limits, one Node timer per limit (as in-process tasks have theirs)
  readonly #timers = new Timers()
  readonly #options: AttemptRunnerOptions
  readonly #known: string
  // the attempts' spans are CONSUMER spans of this queue
  readonly #destination: Destination
  readonly #metrics: EngineMetrics | null
  #retrying = 0

  constructor (options: AttemptRunnerOptions) {
    this.#options = options
    this.#metrics = options.metrics ?? null
    this.#known = [...options.tasks.keys()].join(', ')
    this.#destination = { system: options.engine, name: options.queue }
  }

  get running (): number { return this.#runs.size }

  // an attempt's span joins the trace its job carries from the request, unless tracing is off
  #traceOf (payload: JobPayload): TracedTask['trace'] {
    return this.#options.tracing === false ? null : traceJobRegistered(payload.trace)
  }

  stats (): WorkerStats {
    return { ...this.counts, running: this.#runs.size, retrying: this.#retrying }
  }

  /** Ends every running attempt now: the worker's drain ran out. */
  interruptAll (): void {
    for (const run of [...this.#runs]) run.interrupt('shutdown')
  }

  /** Runs one attempt of `job`; resolves with what the engine must do with it. Never rejects. */
  async run (job: LeasedJob): Promise<Decision> {
    const { queue, tasks } = this.#options
    const payload = job.payload
    const attempt = job.attempt
    // The lines go through the worker's logger with the request id first, as a child bound with
    // it would write them; the child itself is made only for a task that reads ctx.log.
    const log = this.#options.logger
    const reqId = payload.request.id
    const startedAt = performance.now()
    const queuedMs = Math.max(0, Date.now() - payload.enqueuedAt - job.delay)
    const counts = this.counts
    // METRICS: the job's route on this engine; null when nothing records them
    const metrics = this.#metrics === null ? null : this.#metrics.route(payload.request.routeUrl)
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
        jobId: job.id,
        attempt,
        queue
      }
      if (timeoutMs !== undefined) result.timeoutMs = timeoutMs
      return result
    }
    function final (outcome: Outcome, err?: unknown, timeoutMs?: number, ran = true): void {
      counts[outcome]++
      if (metrics !== null) metrics.ended(job.name, outcome, ran ? performance.now() - startedAt : -1)
      if (isLevelEnabled(log, TASK_LEVELS[outcome])) logTask(log, line(outcome, timeoutMs), err, 'reqId', reqId)
    }

    const task = tasks.get(job.name)
    if (task === undefined) {
      const err = new FST_SAC_UNKNOWN_TASK(`worker of queue ${queue}`, this.#known, describe(job.name))
      final('failed', err, undefined, false)
      return { kind: 'failed', outcome: 'failed', err, unrecoverable: true }
    }

    if (metrics !== null) metrics.started(queuedMs)
    const settled = await this.#attempt(task, job, log, queuedMs)
    if (settled.kind === 'completed') {
      final('completed')
      return settled
    }
    if (settled.kind === 'shutdown') {
      if (!this.#options.durable) {
        final('cancelled')
        return { kind: 'cancelled' }
      }
      counts.cancelled++
      // given back to the queue: it runs again, so it is a retry, not a task that ended
      if (metrics !== null) metrics.retried(job.name, 'cancelled', performance.now() - startedAt)
      if (isLevelEnabled(log, TASK_LEVELS.retrying)) {
        const shutdownLine = line('retrying')
        shutdownLine.reason = 'worker-closing'
        shutdownLine.delayMs = 0
        logTask(log, shutdownLine, undefined, 'reqId', reqId)
      }
      return settled
    }
    // engines keep the message of what was thrown: a non-Error is wrapped so the logged err has one
    const err = settled.kind === 'timeout'
      ? new DOMException(`durable task "${task.name}" timed out after ${task.timeout} ms`, 'TimeoutError')
      : settled.err instanceof Error ? settled.err : new Error(describe(settled.err))
    if (attempt < job.attempts) {
      this.#retrying++
      if (metrics !== null) metrics.retried(job.name, settled.kind, performance.now() - startedAt)
      const delayMs = backoffDelay(job.backoff, attempt)
      if (isLevelEnabled(log, TASK_LEVELS.retrying)) {
        const retryLine = line('retrying', settled.kind === 'timeout' ? task.timeout : undefined)
        retryLine.delayMs = delayMs
        logTask(log, retryLine, err, 'reqId', reqId)
      }
      return { kind: 'retry', err, delayMs }
    }
    if (settled.kind === 'timeout') {
      final('timeout', undefined, task.timeout)
      return { kind: 'failed', outcome: 'timeout', err, unrecoverable: false }
    }
    final('failed', err)
    return { kind: 'failed', outcome: 'failed', err, unrecoverable: false }
  }

  /**
   * The final line of a job whose runs were lost with their processes more than once (`kill -9`,
   * OOM): `failed`, reason `stalled`, the engine's error under `err`, a zero-length span in the
   * request's trace (the spans of the lost runs died with them). Nothing thrown here escapes.
   */
  stalled (job: LeasedJob, err: Error): void {
    const { queue, logger } = this.#options
    this.counts.failed++
    try {
      const payload = job.payload
      // a final outcome whose runs died with their processes: nothing ran here
      if (this.#metrics !== null) this.#metrics.route(payload.request.routeUrl).ended(job.name, 'failed', -1)
      // from the enqueue to now: nothing ran here, and the lost runs are unknown
      const queuedMs = Math.max(0, Date.now() - payload.enqueuedAt - job.delay)
      const line: TaskLine = {
        task: job.name,
        outcome: 'failed',
        connection: payload.connection,
        method: payload.request.method,
        route: payload.route,
        statusCode: payload.statusCode,
        durationMs: 0,
        queuedMs,
        reason: STALLED_REASON,
        jobId: job.id,
        attempt: job.attempt,
        queue
      }
      logTask(logger.child({ reqId: payload.request.id }), line, err)
      const traced: TracedTask = {
        name: job.name,
        timeoutMs: 0,
        work: { route: payload.route, request: payload.request, connection: payload.connection, statusCode: payload.statusCode },
        trace: this.#traceOf(payload),
        jobId: job.id,
        attempt: job.attempt,
        destination: this.#destination
      }
      traceEnded(traced, 'failed', err, undefined, performance.now() - queuedMs, 0)
    } catch (error) {
      logger.error({ err: error }, 'durable worker error')
    }
  }

  /** A job that never started here and never will: the app closed and its drain ran out (memory engine). */
  cancelled (job: LeasedJob): void {
    this.#notRun(job, 'cancelled')
  }

  /**
   * A job whose enqueue the web process gave up on (its client got `statusCode`: 503, or the
   * normal answer when the job ran there) that reached the store anyway: ended without running.
   * The web process wrote the job's final line already, so this one is not a final line.
   */
  givenUp (job: LeasedJob, statusCode: number): void {
    const payload = job.payload
    logGivenUp(this.#options.logger.child({ reqId: payload.request.id }), {
      task: job.name,
      jobId: job.id,
      queue: this.#options.queue,
      method: payload.request.method,
      route: payload.route,
      statusCode
    })
  }

  #notRun (job: LeasedJob, outcome: 'cancelled'): void {
    const { queue, logger } = this.#options
    this.counts[outcome]++
    const payload = job.payload
    if (this.#metrics !== null) this.#metrics.route(payload.request.routeUrl).ended(job.name, outcome, -1)
    const log = logger.child({ reqId: payload.request.id })
    if (!isLevelEnabled(log, TASK_LEVELS[outcome])) return
    const line: TaskLine = {
      task: job.name,
      outcome,
      connection: payload.connection,
      method: payload.request.method,
      route: payload.route,
      statusCode: payload.statusCode,
      durationMs: 0,
      queuedMs: Math.max(0, Date.now() - payload.enqueuedAt - job.delay),
      jobId: job.id,
      attempt: job.attempt,
      queue
    }
    logTask(log, line)
  }

  // One attempt: the handler's settlement, its time limit or the shutdown, whichever comes first.
  #attempt (task: DurableTask, job: LeasedJob, logger: FastifyBaseLogger, queuedMs: number): Promise<Settled> {
    const payload = job.payload
    const ctx = new DurableContext(job, task.name, logger)
    const runs = this.#runs
    // each attempt gets its own span, child of the context the job carries from its request
    const traced: TracedTask = {
      name: task.name,
      timeoutMs: task.timeout,
      work: { route: payload.route, request: payload.request, connection: payload.connection, statusCode: payload.statusCode },
      trace: this.#traceOf(payload),
      jobId: job.id,
      attempt: job.attempt,
      destination: this.#destination
    }
    const startedAt = performance.now()
    const queuedAt = startedAt - queuedMs
    const timers = this.#timers
    return new Promise<Settled>((resolve) => {
      let done = false
      const run: Run = {
        startedAt,
        timerPrev: null,
        timerNext: null,
        timerList: null,
        onTimeout () { run.interrupt('timeout') },
        interrupt (reason) {
          finish(reason === 'timeout' ? { kind: 'timeout' } : { kind: 'shutdown' })
          const err = reason === 'timeout'
            ? new DOMException(`durable task "${task.name}" timed out after ${task.timeout} ms`, 'TimeoutError')
            : new DOMException(`durable task "${task.name}" aborted: the worker is closing`, 'AbortError')
          abortContext(ctx, err)
        }
      }
      function finish (settled: Settled): void {
        if (done) return
        done = true
        ;(run.timerList as EntryList).remove(run)
        runs.delete(run)
        const outcome: Outcome = settled.kind === 'shutdown' ? 'cancelled' : settled.kind
        traceEnded(traced, outcome, settled.kind === 'failed' ? settled.err : undefined, undefined, queuedAt, startedAt)
        resolve(settled)
      }
      runs.add(run)
      timers.add(run, task.timeout)
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
}

// Aborts a context's signal: a function of this module, not a method, so the task's code, which
// holds the context, cannot call it.
let abortContext: (ctx: DurableContext, reason: DOMException) => void

/**
 * What a durable task's handler receives. A class, as the in-process task's context is
 * (lib/task.ts): every context has the same shape, its getters on the prototype. (An object
 * literal with getters gives each context accessors of its own, which V8 keeps in a hidden class
 * in the old generation: that kept every attempt's objects alive through young-generation
 * collections, and had them promoted.)
 */
class DurableContext implements DurableTaskContext {
  readonly request: DurableTaskContext['request']
  readonly name: string
  readonly jobId: string
  readonly attempt: number
  readonly connection: DurableTaskContext['connection']
  readonly statusCode: number
  readonly #logger: FastifyBaseLogger
  #log: FastifyBaseLogger | null = null
  // The AbortController is made on first use: most tasks never look at their signal (making one
  // costs more than the rest of a no-op attempt). An attempt ended before that keeps its reason.
  #controller: AbortController | null = null
  #abortedWith: DOMException | null = null

  constructor (job: LeasedJob, name: string, logger: FastifyBaseLogger) {
    const payload = job.payload
    this.request = payload.request
    this.name = name
    this.jobId = job.id
    this.attempt = job.attempt
    this.connection = payload.connection
    this.statusCode = payload.statusCode
    this.#logger = logger
  }

  get signal (): AbortSignal {
    if (this.#controller === null) {
      this.#controller = new AbortController()
      if (this.#abortedWith !== null) this.#controller.abort(this.#abortedWith)
    }
    return this.#controller.signal
  }

  get log (): FastifyBaseLogger {
    return (this.#log ??= this.#logger.child({ reqId: this.request.id }))
  }

  static {
    abortContext = (ctx, reason) => {
      if (ctx.#controller !== null) ctx.#controller.abort(reason)
      else ctx.#abortedWith = reason
    }
  }
}
