import { AsyncResource } from 'node:async_hooks'
import { performance } from 'node:perf_hooks'
import type { FastifyBaseLogger } from 'fastify'
import { backoffDelay } from './backoff'
import type { Backoff } from './backoff'
import { round, TASK_LEVELS } from './log'
import type { TaskLine } from './log'
import type { EntryList, TimedEntry } from './timers'
import type {
  ConnectionStatus,
  DeferredTask,
  DropReason,
  Outcome,
  RequestSnapshot,
  TaskContext,
  TaskOutcome
} from './types'
import type { Work } from './work'
import { runTraced, traceEnded, traceRegistered, traceReturned, traceStarted } from './tracing'
import type { TaskTrace } from './tracing'

/** Where a task is in its life; it only ever moves forward. */
export const TaskState = {
  /** Registered on a response that has not closed yet. */
  Waiting: 0,
  /** Handed over by its request: queued, skipped or dropped, not running yet. */
  HandedOver: 1,
  Running: 2,
  Ended: 3
} as const
// the type of the same name (a value and a type may share one)
// eslint-disable-next-line @typescript-eslint/no-redeclare
export type TaskState = typeof TaskState[keyof typeof TaskState]

// #flags: the TaskState, ALWAYS, and the microseconds of the start time above MICROS_SHIFT
const STATE = 3
const ALWAYS = 4
const MICROS_SHIFT = 3

// Bound per task rather than closures over start(): smaller, and start()'s scope is not kept alive.
function endCompleted (this: Task): void {
  this.end('completed')
}

function endFailed (this: Task, err: unknown): void {
  this.fail(err)
}

/**
 * The plugin's bookkeeping for one deferred task. User code never sees it: the task function
 * receives a `Context`, whose only field is private, so no task can end itself, another task, or
 * walk the scheduler's lists.
 *
 * It is its own `AsyncResource`: made where the task is registered, it captures that async
 * context (AsyncLocalStorage), and the task runs in it. Every pending task keeps one of these, so
 * its fields are counted: no private methods (V8 would add a brand field), one field for the
 * signal's two states, and the queue time kept where V8 stores a 0 without a number box.
 */
export class Task extends AsyncResource implements TimedEntry {
  readonly timeoutMs: number
  readonly work: Work
  // its TaskState, ALWAYS for an `always` task, and the microseconds of its start time: one
  // field, as every pending task keeps one
  #flags: number
  // while it waits, the scheduler's list of waiting tasks; while it runs, its list of running
  // tasks with the same time limit, in start order (lib/timers.ts): the lists are how the
  // shutdown reaches every task
  timerPrev: TimedEntry | null = null
  timerNext: TimedEntry | null = null
  timerList: EntryList | null = null
  /** Spans and diagnostics channels (lib/tracing.ts): set only on a traced task, so others have no field for it. */
  declare trace?: TaskTrace
  /** Attempts and backoff: set only on a task with `attempts > 1` (`retries()`), so others have no field for it. */
  declare retry?: Retry

  // The name given at registration, or the function until its name is first read: reading a
  // function's name costs more than the rest of a registration, and most names are never read
  #name: string | DeferredTask
  // Until the task starts, its function; from then on, the AbortController once the signal was
  // read, or the abort reason if it was aborted before that. (A dropped task keeps its function
  // for `onDropped`.)
  #slot: DeferredTask | AbortController | DOMException | null
  // when the scheduler took the task (performance.now()), then, once it started, how long it
  // waited: usually 0, which a field that starts as `null` holds without a number box
  #queued: number | null = null
  // When it started (performance.now()), to the microsecond: whole milliseconds here, which V8
  // keeps without a number box (for 24 days of uptime), and the microseconds past them in #flags
  #startedMs = 0

  constructor (work: Work, fn: DeferredTask, name: string | undefined, timeoutMs: number, always: boolean) {
    super('fastify-send-and-continue')
    this.work = work
    this.#slot = fn
    this.#name = name ?? fn
    this.timeoutMs = timeoutMs
    this.#flags = (always ? ALWAYS : 0) | TaskState.Waiting
    const trace = traceRegistered(work.settings.tracing) // TRACING: registered
    if (trace !== null) this.trace = trace
  }

  // The AbortController is made on first use: most tasks never look at their signal.
  get signal (): AbortSignal {
    let state = this.#slot
    if (!(state instanceof AbortController)) {
      const controller = new AbortController()
      // only a started task has a ctx to read the signal from: the slot holds no function here
      if (state !== null) controller.abort(state)
      this.#slot = state = controller
    }
    return state.signal
  }

  /** When it started (`performance.now()`, to the microsecond); `0` until it did. */
  get startedAt (): number { return this.#startedMs + (this.#flags >> MICROS_SHIFT) / 1000 }

  /** Whether it runs after the request's other tasks ended (`always: true`). */
  get always (): boolean { return (this.#flags & ALWAYS) !== 0 }

  get state (): TaskState { return (this.#flags & STATE) as TaskState }
  set state (state: TaskState) { this.#flags = (this.#flags & ~STATE) | state }

  /** The name given at registration, else the function's name, else `anonymous`. */
  get name (): string {
    const name = this.#name
    if (typeof name === 'string') return name
    this.#name = nameOf(name)
    return this.#name
  }

  /** The function of a dropped task (it never started: its slot still holds it, or its retry), for `onDropped`. */
  get fn (): DeferredTask { return this.retry === undefined ? this.#slot as DeferredTask : this.retry.fn }

  /** The attempt running, or the last one that ran (from 1), of a task with `attempts > 1`; `undefined` for the others. */
  get attempt (): number | undefined { return this.retry?.attempt }

  /** Gives the task `attempts` runs (more than 1): each run goes through the retry state (see `Retry`). */
  retries (attempts: number, backoff: Backoff | undefined): void {
    const retry = new Retry(this, this.#slot as DeferredTask, attempts, backoff)
    this.retry = retry
    this.#slot = retry.run
  }

  /** The scheduler took the task; `queuedMs` counts from here. */
  handedOver (now: number): void {
    this.#queued = now
  }

  /** Runs the task. Called by the scheduler, which has counted it as running. */
  start (now: number): void {
    const queuedAt = this.#queued as number
    const micros = Math.round(now * 1000)
    const ms = Math.floor(micros / 1000)
    this.#startedMs = ms
    this.#flags = (this.#flags & (STATE | ALWAYS)) | ((micros - ms * 1000) << MICROS_SHIFT)
    this.#queued = now === queuedAt ? 0 : now - queuedAt
    this.work.scheduler.timers.add(this, this.timeoutMs)
    const fn = this.#slot as DeferredTask
    this.#slot = null
    const trace = traceStarted(this, queuedAt, now) // TRACING: started
    const metrics = this.work.settings.metrics
    if (metrics !== null) metrics.started(now - queuedAt) // METRICS: started
    // Everything the task controls, its return value included, is read inside the try: a
    // value whose `then` getter throws is a failed task, not an exception in the plugin.
    try {
      const result: unknown = trace === null
        ? this.runInAsyncScope(fn, null, new Context(this))
        : this.runInAsyncScope(runTraced, trace, fn, new Context(this)) // TRACING: run with the span active
      if (result !== null && (typeof result === 'object' || typeof result === 'function')) {
        const then = (result as { then?: unknown }).then
        if (typeof then === 'function') {
          if (trace !== null) traceReturned(trace) // TRACING: returned a promise
          then.call(result, endCompleted.bind(this), endFailed.bind(this))
          return
        }
      }
      this.end('completed')
    } catch (err) {
      this.fail(err)
    }
  }

  /** The task threw or rejected: retried while attempts remain, else it ends `failed`. */
  fail (err: unknown): void {
    const retry = this.retry
    // no retry for a task without a retry state, on its last attempt, or already ended (end() ignores it)
    if (retry === undefined || retry.attempt === retry.attempts || this.state !== TaskState.Running) {
      this.end('failed', err)
    } else {
      this.retryLater(err, null)
    }
  }

  onTimeout (): void {
    const reason = new DOMException(`deferred task "${this.name}" timed out after ${this.timeoutMs} ms`, 'TimeoutError')
    // only a running task is on a timer list
    const retry = this.retry
    if (retry === undefined || retry.attempt === retry.attempts) this.abort(reason, 'timeout')
    else this.retryLater(undefined, reason)
  }

  /**
   * The running attempt failed (`err`) or timed out (`timedOut`, the abort reason) and attempts
   * remain: logs `retrying`, ends the attempt's span, and hands the task to the scheduler, which
   * frees its slot while it waits out the backoff. The attempt's context keeps its own signal
   * (aborted on a timeout); the next attempt gets a fresh one.
   */
  retryLater (err: unknown, timedOut: DOMException | null): void {
    const retry = this.retry as Retry
    const work = this.work
    const attempt = retry.attempt
    const delayMs = backoffDelay(retry.backoff, attempt)
    ;(this.timerList as EntryList).remove(this)
    const now = performance.now()
    const started = this.startedAt
    if (work.logs(TASK_LEVELS.retrying)) {
      const line: TaskLine = {
        task: this.name,
        outcome: 'retrying',
        connection: work.connection,
        method: work.method,
        route: work.route,
        statusCode: work.statusCode,
        durationMs: round(now - started),
        queuedMs: round(this.#queued as number),
        attempt
      }
      if (timedOut !== null) line.timeoutMs = this.timeoutMs
      line.delayMs = delayMs
      work.writeTask(line, timedOut === null ? err : undefined)
    }
    traceEnded(this, timedOut === null ? 'failed' : 'timeout', err, undefined, 0, started) // TRACING: the attempt ended
    const metrics = work.settings.metrics
    if (metrics !== null) metrics.retried(this.name, timedOut === null ? 'failed' : 'timeout', now - started) // METRICS: the attempt ended
    // the attempt's signal stays with its context; the next attempt starts from its function
    const controller = this.#slot
    attemptEnded(retry.ctx as AttemptContext, controller instanceof AbortController ? controller : timedOut)
    retry.ctx = null
    this.#slot = retry.run
    // until the next attempt starts, it is as a task not started yet: the backoff counts as queue time
    this.#startedMs = 0
    this.#flags &= STATE | ALWAYS
    this.#queued = now
    this.state = TaskState.HandedOver
    work.scheduler.backOff(this, delayMs)
    // last, as abort() does: an abort listener that throws is reported as uncaught
    if (timedOut !== null && controller instanceof AbortController) controller.abort(timedOut)
  }

  /** The backoff is over: the next attempt is handed to the scheduler now. */
  nextAttempt (now: number): void {
    (this.retry as Retry).attempt++
    this.#queued = now
  }

  /** Aborts the signal of a task that has not ended (the callers only hold those) and ends it as `timeout` or `cancelled`. */
  abort (reason: DOMException, outcome: 'timeout' | 'cancelled'): void {
    const controller = this.#slot
    if (!(controller instanceof AbortController)) this.#slot = reason
    this.end(outcome)
    // Node reports an exception thrown by an abort listener as uncaught, outside this call,
    // like one thrown from the task's own timers: the README says so
    if (controller instanceof AbortController) controller.abort(reason)
  }

  /** Ends the task: exactly one outcome, one log line, one slot released. Later calls are ignored. */
  end (outcome: Outcome, error?: unknown, reason?: DropReason): void {
    const state = this.state
    if (state === TaskState.Ended) return
    this.state = TaskState.Ended
    if (this.timerList !== null) this.timerList.remove(this)
    const work = this.work
    const started = this.startedAt
    // before it started, #queued holds the time the scheduler took it (or null)
    const queuedAt = started === 0 ? this.#queued ?? 0 : 0
    if (work.logs(TASK_LEVELS[outcome])) this.writeLine(outcome, error, reason, queuedAt)
    traceEnded(this, outcome, error, reason, queuedAt, started) // TRACING: ended
    const metrics = work.settings.metrics
    if (metrics !== null) metrics.ended(this.name, outcome, started === 0 ? -1 : performance.now() - started) // METRICS: ended
    if (outcome !== 'dropped' && typeof this.#slot === 'function') this.#slot = null
    work.taskEnded(this, outcome, error, state)
    work.scheduler.taskEnded(outcome, state === TaskState.Running)
  }

  writeLine (outcome: Outcome, error: unknown, reason: DropReason | undefined, queuedAt: number): void {
    const work = this.work
    const now = performance.now()
    const started = this.startedAt
    const line: TaskLine = {
      task: this.name,
      outcome,
      connection: work.connection,
      method: work.method,
      route: work.route,
      statusCode: work.statusCode,
      durationMs: started === 0 ? 0 : round(now - started),
      queuedMs: started !== 0 ? round(this.#queued as number) : queuedAt === 0 ? 0 : round(now - queuedAt)
    }
    // only tasks with `attempts > 1` say which attempt ended: the others' lines are as they always were
    if (this.retry !== undefined) line.attempt = this.retry.attempt
    if (outcome === 'timeout') line.timeoutMs = this.timeoutMs
    if (reason !== undefined) line.reason = reason
    work.writeTask(line, outcome === 'failed' ? error : undefined)
  }
}

// A function's own name; a `name` that is not a string, or that throws when read, is no name.
function nameOf (fn: DeferredTask): string {
  let name: unknown
  try {
    name = fn.name
  } catch {
    // a getter that throws: the task is anonymous
  }
  return typeof name === 'string' && name !== '' ? name : 'anonymous'
}

/**
 * What a task function receives: the documented fields as getters over a private reference, so
 * `ctx` gives a task nothing it could use to reach the plugin's bookkeeping. Made when the task
 * starts: a pending task does not pay for it.
 */
class Context implements TaskContext {
  readonly #task: Task

  constructor (task: Task) {
    this.#task = task
  }

  get signal (): AbortSignal { return this.#task.signal }
  get log (): FastifyBaseLogger { return this.#task.work.log }
  get connection (): ConnectionStatus { return this.#task.work.connection as ConnectionStatus }
  get statusCode (): number { return this.#task.work.statusCode }
  get request (): RequestSnapshot { return this.#task.work.request }
  get name (): string { return this.#task.name }
  get attempt (): number { return 1 }
  get outcomes (): readonly TaskOutcome[] | undefined {
    return this.#task.always ? this.#task.work.outcomes : undefined
  }
}

/**
 * The retry state of a task with `attempts > 1` (`Task.retry`). The task's slot holds `run`
 * instead of the function: each attempt gets a context of its own, and the settlement of an
 * attempt the plugin moved on from (timed out) never reaches the task.
 */
export class Retry {
  readonly task: Task
  readonly fn: DeferredTask
  readonly attempts: number
  readonly backoff: Backoff | undefined
  /** The attempt running, or the last one that ran, from 1; counts up when the backoff is over. */
  attempt = 1
  /** The running attempt's context; `null` between attempts. */
  ctx: AttemptContext | null = null
  /** The backoff's timer, while the task waits it out. */
  timer: NodeJS.Timeout | null = null
  readonly run: DeferredTask

  constructor (task: Task, fn: DeferredTask, attempts: number, backoff: Backoff | undefined) {
    this.task = task
    this.fn = fn
    this.attempts = attempts
    this.backoff = backoff
    this.run = runAttempt.bind(this)
  }
}

// Runs one attempt in the task's place; what it returns, Task.start() reads as the task's own.
function runAttempt (this: Retry): unknown {
  const ctx = this.ctx = new AttemptContext(this.task, this.attempt)
  const result: unknown = this.fn(ctx)
  if (result === null || (typeof result !== 'object' && typeof result !== 'function')) return result
  const then = (result as { then?: unknown }).then
  if (typeof then !== 'function') return result
  return new Promise((resolve, reject) => {
    then.call(result, (value: unknown) => {
      if (this.ctx === ctx) resolve(value)
    }, (err: unknown) => {
      if (this.ctx === ctx) reject(err)
    })
  })
}

// Sets an attempt context's signal once the attempt is over: a function of this module, not a
// method, so the task's code, which holds the context, cannot call it.
let attemptEnded: (ctx: AttemptContext, signal: AbortController | DOMException | null) => void

/**
 * The context of one attempt of a task with `attempts > 1`: its own `attempt`, and, once the
 * attempt is over, its own signal (aborted if the attempt timed out), whatever later attempts do.
 */
class AttemptContext extends Context {
  readonly #attempt: number
  // `undefined` while the attempt runs (the task's signal is its signal), then as Task's slot: the
  // controller, or the abort reason, or `null` when the signal was never read nor aborted
  #signal: AbortController | DOMException | null | undefined = undefined

  constructor (task: Task, attempt: number) {
    super(task)
    this.#attempt = attempt
  }

  override get signal (): AbortSignal {
    let state = this.#signal
    if (state === undefined) return super.signal
    if (!(state instanceof AbortController)) {
      const controller = new AbortController()
      if (state !== null) controller.abort(state)
      this.#signal = state = controller
    }
    return state.signal
  }

  override get attempt (): number { return this.#attempt }

  static {
    attemptEnded = (ctx, signal) => { ctx.#signal = signal }
  }
}
