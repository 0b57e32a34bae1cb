import { performance } from 'node:perf_hooks'
import { isLevelEnabled, logTask, round, TASK_LEVELS } from './log'
import type { TaskLine } from './log'
import type { FastifyBaseLogger } from 'fastify'
import type {
  ConnectionStatus,
  DeferredTask,
  DropReason,
  Outcome,
  RequestSnapshot,
  TaskContext,
  TaskOutcome
} from './types'
import type { TimedEntry, TimerList } from './timers'
import type { Work } from './work'
import { traceEnded, traceRegistered, traceReturned, traceStarted, runTraced } from './tracing'
import type { TaskTrace } from './tracing'

function isThenable (value: unknown): value is PromiseLike<unknown> {
  return value !== null &&
    (typeof value === 'object' || typeof value === 'function') &&
    typeof (value as { then?: unknown }).then === 'function'
}

// Bound per task rather than closures over start(): smaller, and start()'s scope is not kept alive.
function settleCompleted (this: Task): void {
  this.settle('completed')
}

function settleFailed (this: Task, err: unknown): void {
  this.settle('failed', err)
}

/**
 * One deferred task. It is also the `ctx` the task function receives: one object per task,
 * whose private fields hold the plugin's bookkeeping. It references the request's `Work`
 * (logger, snapshot, connection status), never the live request or reply.
 */
export class Task implements TaskContext, TimedEntry {
  readonly name: string
  readonly always: boolean
  readonly timeoutMs: number
  outcome: Outcome | null = null
  /** Set once the task was handed to the scheduler or skipped. */
  dispatched = false

  #work: Work
  #fn: DeferredTask | null
  #controller: AbortController | null = null
  #abortReason: DOMException | null = null
  #queuedAt = 0
  #startedAt = 0
  // the scheduler's timer list links running tasks with a time limit
  deadline = 0
  timerPrev: TimedEntry | null = null
  timerNext: TimedEntry | null = null
  timerList: TimerList | null = null
  /** Spans and diagnostics channels (lib/tracing.ts); `null` when nothing is traced. */
  trace: TaskTrace | null

  constructor (work: Work, fn: DeferredTask, name: string, timeoutMs: number, always: boolean) {
    this.#work = work
    this.#fn = fn
    this.name = name
    this.timeoutMs = timeoutMs
    this.always = always
    this.trace = traceRegistered(work.settings.tracing) // TRACING: registered
  }

  // The AbortController is made on first use: most tasks never look at their signal.
  get signal (): AbortSignal {
    if (this.#controller === null) {
      this.#controller = new AbortController()
      if (this.#abortReason !== null) this.#controller.abort(this.#abortReason)
    }
    return this.#controller.signal
  }

  get log (): FastifyBaseLogger { return this.#work.log }
  get connection (): ConnectionStatus { return this.#work.connection as ConnectionStatus }
  get statusCode (): number { return this.#work.statusCode }
  get request (): RequestSnapshot { return this.#work.request }
  get outcomes (): readonly TaskOutcome[] | undefined {
    return this.always ? this.#work.outcomes : undefined
  }

  get startedAt (): number { return this.#startedAt }

  /** The request's deferred work this task belongs to. */
  get work (): Work { return this.#work }

  /** The function, for `onDropped`. */
  get fn (): DeferredTask | null { return this.#fn }

  queued (now: number): void {
    this.#queuedAt = now
  }

  /** Runs the task. Called by the scheduler, which has counted it as running. */
  start (now: number): void {
    this.#startedAt = now
    if (this.timeoutMs > 0) this.#work.scheduler.timers.add(this, this.timeoutMs, now)
    const trace = traceStarted(this, this.#queuedAt, now) // TRACING: started
    let result: unknown
    try {
      result = trace === null
        ? this.#work.run(this.#fn as DeferredTask, this)
        : this.#work.run(runTraced.bind(trace, this.#fn as DeferredTask), this) // TRACING: run with the span active
    } catch (err) {
      this.settle('failed', err)
      return
    }
    if (isThenable(result)) {
      if (trace !== null) traceReturned(trace) // TRACING: returned a promise
      Promise.resolve(result).then(settleCompleted.bind(this), settleFailed.bind(this))
    } else {
      this.settle('completed')
    }
  }

  onTimeout (): void {
    this.abort(new DOMException(`deferred task "${this.name}" timed out after ${this.timeoutMs} ms`, 'TimeoutError'), 'timeout')
  }

  /** Aborts the signal of a task that has not settled and ends it as `timeout` or `cancelled`. */
  abort (reason: DOMException, outcome: 'timeout' | 'cancelled'): void {
    this.#abortReason = reason
    this.settle(outcome)
    this.#controller?.abort(reason)
  }

  /** Ends the task: exactly one outcome, one log line, one slot released. Later calls are ignored. */
  settle (outcome: Outcome, error?: unknown, reason?: DropReason): void {
    if (this.outcome !== null) return
    this.outcome = outcome
    const work = this.#work
    if (isLevelEnabled(work.log, TASK_LEVELS[outcome])) {
      const now = performance.now()
      const started = this.#startedAt
      const queuedAt = this.#queuedAt
      const line: TaskLine = {
        task: this.name,
        outcome,
        connection: work.connection,
        method: work.request.method,
        route: work.route,
        statusCode: work.statusCode,
        durationMs: started === 0 ? 0 : round(now - started),
        queuedMs: queuedAt === 0 ? 0 : round((started === 0 ? now : started) - queuedAt)
      }
      if (outcome === 'timeout') line.timeoutMs = this.timeoutMs
      if (reason !== undefined) line.reason = reason
      logTask(work.log, line, outcome === 'failed' ? error : undefined)
    }

    traceEnded(this, outcome, error, reason, this.#queuedAt, this.#startedAt) // TRACING: ended
    if (this.timerList !== null) this.timerList.remove(this)
    if (outcome !== 'dropped') this.#fn = null
    work.taskSettled(this, error)
    work.scheduler.settled(this)
  }
}
