import { performance } from 'node:perf_hooks'
import { types } from 'node:util'
import type { FastifyBaseLogger } from 'fastify'
import { backoffDelay } from '../backoff'
import { describe, FST_SAC_UNKNOWN_TASK } from '../errors'
import { isLevelEnabled, logGivenUp, logTask, round, TASK_LEVELS, writeTaskLine } from '../log'
import type { TaskLine } from '../log'
import { Timers } from '../timers'
import type { EntryList, TimedEntry } from '../timers'
import { runTraced, traceEnded, traceJobRegistered, traceReturned, traceStarted } from '../tracing'
import type { Destination, TaskTrace, TracedTask } from '../tracing'
import { zeroOutcomes } from '../types'
import type { Outcome, TaskContext } from '../types'
import type { EngineName, LeasedJob } from '../engines/types'
import type { DurableTask, DurableTaskContext, JobPayload } from './types'
import type { EngineMetrics, RouteMetrics } from '../metrics'

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

export class AttemptRunner {
  readonly counts = zeroOutcomes()
  readonly #options: AttemptRunnerOptions
  readonly #known: string
  readonly #shared: Shared
  readonly #metrics: EngineMetrics | null

  constructor (options: AttemptRunnerOptions) {
    this.#options = options
    this.#metrics = options.metrics ?? null
    this.#known = [...options.tasks.keys()].join(', ')
    this.#shared = {
      queue: options.queue,
      logger: options.logger,
      durable: options.durable,
      counts: this.counts,
      runs: new Set(),
      timers: new Timers(),
      destination: { system: options.engine, name: options.queue },
      retrying: 0
    }
  }

  get running (): number { return this.#shared.runs.size }

  // an attempt's span joins the trace its job carries from the request, unless tracing is off
  #traceOf (payload: JobPayload): TaskTrace | null {
    return this.#options.tracing === false ? null : traceJobRegistered(payload.trace)
  }

  stats (): WorkerStats {
    return { ...this.counts, running: this.#shared.runs.size, retrying: this.#shared.retrying }
  }

  /** Ends every running attempt now: the worker's drain ran out. */
  interruptAll (): void {
    for (const run of [...this.#shared.runs]) run.interrupt('shutdown')
  }

  /** Runs one attempt of `job`; resolves with what the engine must do with it. Never rejects. */
  run (job: LeasedJob): Promise<Decision> {
    return new Promise((resolve) => { this.start(job, resolve) })
  }

  /**
   * Runs one attempt of `job` and calls `done` with what the engine must do with it, once: before
   * this returns when the attempt ended at once (the handler returned no promise). Throws nothing.
   */
  start (job: LeasedJob, done: (decision: Decision) => void): void {
    const payload = job.payload
    const queuedMs = Math.max(0, Date.now() - payload.enqueuedAt - job.delay)
    // METRICS: the job's route on this engine; null when nothing records them
    const metrics = this.#metrics === null ? null : this.#metrics.route(payload.request.routeUrl)
    const task = this.#options.tasks.get(job.name)
    if (task === undefined) {
      const { queue, logger } = this.#options
      const err = new FST_SAC_UNKNOWN_TASK(`worker of queue ${queue}`, this.#known, describe(job.name))
      this.counts.failed++
      if (metrics !== null) metrics.ended(job.name, 'failed', -1)
      if (isLevelEnabled(logger, TASK_LEVELS.failed)) writeTaskLine(logger, jobLine(job, 'failed', queue, queuedMs, 0), err, 'reqId', payload.request.id)
      done({ kind: 'failed', outcome: 'failed', err, unrecoverable: true })
      return
    }
    if (metrics !== null) metrics.started(queuedMs)
    new Attempt(this.#shared, task, job, queuedMs, metrics, this.#traceOf(payload), done).start()
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
      // its fields in the order this line has always had them
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
        destination: this.#shared.destination
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
    writeTaskLine(log, jobLine(job, outcome, queue, Math.max(0, Date.now() - payload.enqueuedAt - job.delay), 0))
  }
}

/** What every attempt of one runner shares. */
interface Shared {
  readonly queue: string
  readonly logger: FastifyBaseLogger
  readonly durable: boolean
  readonly counts: Record<Outcome, number>
  readonly runs: Set<Attempt>
  // the attempts' time limits, one Node timer per limit (as in-process tasks have theirs)
  readonly timers: Timers
  // the attempts' spans are CONSUMER spans of this queue
  readonly destination: Destination
  retrying: number
}

type Settled = { readonly kind: 'completed' } | { readonly kind: 'failed', readonly err: unknown } | { readonly kind: 'timeout' } | { readonly kind: 'shutdown' }

const COMPLETED = Object.freeze({ kind: 'completed' } as const)
const TIMEOUT = Object.freeze({ kind: 'timeout' } as const)
const SHUTDOWN = Object.freeze({ kind: 'shutdown' } as const)
const CANCELLED = Object.freeze({ kind: 'cancelled' } as const)

/** The job's line, without the fields only some lines have. */
function jobLine (job: LeasedJob, outcome: TaskLine['outcome'], queue: string, queuedMs: number, durationMs: number): TaskLine {
  const payload = job.payload
  return {
    task: job.name,
    outcome,
    connection: payload.connection,
    method: payload.request.method,
    route: payload.route,
    statusCode: payload.statusCode,
    durationMs,
    queuedMs,
    jobId: job.id,
    attempt: job.attempt,
    queue
  }
}

/**
 * One attempt: the handler's settlement, its time limit or the shutdown, whichever comes first,
 * then the decision. An object of one class that is its own timer entry and traced task, as an
 * in-process task is (lib/task.ts): no closure, and no promise of its own.
 */
class Attempt implements TimedEntry, TracedTask {
  readonly startedAt = performance.now()
  timerPrev: TimedEntry | null = null
  timerNext: TimedEntry | null = null
  timerList: EntryList | null = null
  readonly name: string
  readonly timeoutMs: number
  trace: TaskTrace | null
  readonly jobId: string
  readonly attempt: number
  readonly destination: Destination
  readonly #shared: Shared
  readonly #task: DurableTask
  readonly #job: LeasedJob
  readonly #queuedMs: number
  readonly #metrics: RouteMetrics | null
  readonly #ctx: DurableContext
  #done: ((decision: Decision) => void) | null

  constructor (shared: Shared, task: DurableTask, job: LeasedJob, queuedMs: number, metrics: RouteMetrics | null, trace: TaskTrace | null, done: (decision: Decision) => void) {
    this.name = task.name
    this.timeoutMs = task.timeout
    this.trace = trace
    this.jobId = job.id
    this.attempt = job.attempt
    this.destination = shared.destination
    this.#shared = shared
    this.#task = task
    this.#job = job
    this.#queuedMs = queuedMs
    this.#metrics = metrics
    this.#ctx = new DurableContext(job, task.name, shared.logger)
    this.#done = done
  }

  // what the span and the channel messages read; made only when they are
  get work (): TracedTask['work'] {
    const payload = this.#job.payload
    return { route: payload.route, request: payload.request, connection: payload.connection, statusCode: payload.statusCode }
  }

  start (): void {
    const shared = this.#shared
    shared.runs.add(this)
    shared.timers.add(this, this.timeoutMs)
    const startedAt = this.startedAt
    const trace = traceStarted(this, startedAt - this.#queuedMs, startedAt)
    // Everything the handler controls, its return value included, is read inside the try: a
    // value whose `then` getter throws fails the attempt like a handler that throws.
    try {
      const result: unknown = trace === null
        ? this.#task.handler(this.#job.payload.data, this.#ctx)
        : runTraced.call(trace, this.#runHandler.bind(this), this.#ctx as unknown as TaskContext)
      if (result !== null && (typeof result === 'object' || typeof result === 'function')) {
        const then = (result as { then?: unknown }).then
        if (typeof then === 'function') {
          if (trace !== null) traceReturned(trace)
          then.call(result, this.#completed.bind(this), this.#failed.bind(this))
          return
        }
      }
      this.#end(COMPLETED)
    } catch (err) {
      this.#failed(err)
    }
  }

  #runHandler (ctx: TaskContext): unknown {
    return this.#task.handler(this.#job.payload.data, ctx as unknown as DurableTaskContext)
  }

  #completed (): void { this.#end(COMPLETED) }
  #failed (err: unknown): void { this.#end({ kind: 'failed', err }) }

  onTimeout (): void { this.interrupt('timeout') }

  /** Ends the attempt early: its time limit ran out, or the worker is closing. */
  interrupt (reason: 'timeout' | 'shutdown'): void {
    this.#end(reason === 'timeout' ? TIMEOUT : SHUTDOWN)
    const name = this.name
    const err = reason === 'timeout'
      ? new DOMException(`durable task "${name}" timed out after ${this.timeoutMs} ms`, 'TimeoutError')
      : new DOMException(`durable task "${name}" aborted: the worker is closing`, 'AbortError')
    abortContext(this.#ctx, err)
  }

  #end (settled: Settled): void {
    const done = this.#done
    if (done === null) return
    this.#done = null
    ;(this.timerList as EntryList).remove(this)
    this.#shared.runs.delete(this)
    const outcome: Outcome = settled.kind === 'shutdown' ? 'cancelled' : settled.kind
    traceEnded(this, outcome, settled.kind === 'failed' ? settled.err : undefined, undefined, this.startedAt - this.#queuedMs, this.startedAt)
    done(this.#decide(settled))
  }

  #line (outcome: TaskLine['outcome'], timeoutMs?: number): TaskLine {
    const line = jobLine(this.#job, outcome, this.#shared.queue, this.#queuedMs, round(performance.now() - this.startedAt))
    if (timeoutMs !== undefined) line.timeoutMs = timeoutMs
    return line
  }

  #final (outcome: Outcome, err?: unknown, timeoutMs?: number): void {
    const { counts, logger } = this.#shared
    counts[outcome]++
    if (this.#metrics !== null) this.#metrics.ended(this.name, outcome, performance.now() - this.startedAt)
    if (isLevelEnabled(logger, TASK_LEVELS[outcome])) writeTaskLine(logger, this.#line(outcome, timeoutMs), err, 'reqId', this.#job.payload.request.id)
  }

  // The lines go through the worker's logger with the request id first, as a child bound with it
  // would write them; the child itself is made only for a task that reads ctx.log.
  #decide (settled: Settled): Decision {
    if (settled.kind === 'completed') {
      this.#final('completed')
      return COMPLETED
    }
    const shared = this.#shared
    const { logger } = shared
    const reqId = this.#job.payload.request.id
    if (settled.kind === 'shutdown') {
      if (!shared.durable) {
        this.#final('cancelled')
        return CANCELLED
      }
      shared.counts.cancelled++
      // given back to the queue: it runs again, so it is a retry, not a task that ended
      if (this.#metrics !== null) this.#metrics.retried(this.name, 'cancelled', performance.now() - this.startedAt)
      if (isLevelEnabled(logger, TASK_LEVELS.retrying)) {
        const shutdownLine = this.#line('retrying')
        shutdownLine.reason = 'worker-closing'
        shutdownLine.delayMs = 0
        writeTaskLine(logger, shutdownLine, undefined, 'reqId', reqId)
      }
      return SHUTDOWN
    }
    const timeout = this.timeoutMs
    const err = settled.kind === 'timeout'
      ? new DOMException(`durable task "${this.name}" timed out after ${timeout} ms`, 'TimeoutError')
      : failure(settled.err)
    const job = this.#job
    if (job.attempt < job.attempts) {
      shared.retrying++
      if (this.#metrics !== null) this.#metrics.retried(this.name, settled.kind, performance.now() - this.startedAt)
      const delayMs = backoffDelay(job.backoff, job.attempt)
      if (isLevelEnabled(logger, TASK_LEVELS.retrying)) {
        const retryLine = this.#line('retrying', settled.kind === 'timeout' ? timeout : undefined)
        retryLine.delayMs = delayMs
        writeTaskLine(logger, retryLine, err, 'reqId', reqId)
      }
      return { kind: 'retry', err, delayMs }
    }
    if (settled.kind === 'timeout') {
      this.#final('timeout', undefined, timeout)
      return { kind: 'failed', outcome: 'timeout', err, unrecoverable: false }
    }
    this.#final('failed', err)
    return { kind: 'failed', outcome: 'failed', err, unrecoverable: false }
  }
}

/**
 * What a failed attempt threw, as the engines keep it (SQLite its message, BullMQ the error it is
 * given, which it reads again): the thrown Error itself when its message is a plain string, else
 * an Error describing it. A non-Error, a Proxy (revoked or not: its traps run on every read), or an
 * Error whose message is not a string or comes from a getter would reach them as something else,
 * or throw there, leaving the job's lease unsettled (run again, logged again).
 */
function failure (thrown: unknown): Error {
  try {
    if (!types.isProxy(thrown) && thrown instanceof Error && hasPlainMessage(thrown)) return thrown
  } catch {}
  return new Error(describe(thrown))
}

// the nearest `message` on the prototype chain is a data property holding a string
function hasPlainMessage (err: Error): boolean {
  for (let holder: object | null = err; holder !== null; holder = Object.getPrototypeOf(holder)) {
    const descriptor = Object.getOwnPropertyDescriptor(holder, 'message')
    if (descriptor !== undefined) return typeof descriptor.value === 'string'
  }
  /* c8 ignore next 2 */
  return false // Error.prototype has one: the chain of an Error always ends there
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
    // every line of the job reads it too: a task must not change what they say (as in-process)
    this.request = Object.freeze(payload.request)
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
