import { performance } from 'node:perf_hooks'
import type { FastifyBaseLogger } from 'fastify'
import type fastq from 'fastq'
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

const levels: Record<Outcome, 'info' | 'warn' | 'error'> = {
  completed: 'info',
  failed: 'error',
  timeout: 'warn',
  skipped: 'warn',
  cancelled: 'warn',
  dropped: 'error'
}

const messages: Record<Outcome, string> = {
  completed: 'deferred task completed',
  failed: 'deferred task failed',
  timeout: 'deferred task timed out',
  skipped: 'deferred task skipped: the client aborted',
  cancelled: 'deferred task cancelled: the shutdown drain ran out',
  dropped: 'deferred task dropped'
}

function round (ms: number): number {
  return Math.round(ms * 1000) / 1000
}

function isThenable (value: unknown): value is PromiseLike<unknown> {
  return value !== null &&
    (typeof value === 'object' || typeof value === 'function') &&
    typeof (value as { then?: unknown }).then === 'function'
}

function onTimeout (task: Task): void {
  task.abort(new DOMException(`deferred task "${task.name}" timed out after ${task.timeoutMs} ms`, 'TimeoutError'), 'timeout')
}

/**
 * One deferred task. It is also the `ctx` the task function receives: one object per task,
 * whose private fields hold the plugin's bookkeeping. It references the request's `Work`
 * (logger, snapshot, connection status), never the live request or reply.
 */
export class Task implements TaskContext {
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
  #timer: NodeJS.Timeout | null = null
  #release: fastq.done | null = null
  #starting = false
  #queuedAt = 0
  #startedAt = 0

  constructor (work: Work, fn: DeferredTask, name: string, timeoutMs: number, always: boolean) {
    this.#work = work
    this.#fn = fn
    this.name = name
    this.timeoutMs = timeoutMs
    this.always = always
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

  queued (): void {
    this.#queuedAt = performance.now()
  }

  /** Runs the task; `release` frees its concurrency slot. Called by the scheduler. */
  start (release: fastq.done): void {
    this.#release = release
    this.#startedAt = performance.now()
    if (this.timeoutMs > 0) this.#timer = setTimeout(onTimeout, this.timeoutMs, this)
    const fn = this.#fn as DeferredTask
    this.#starting = true
    let result: unknown
    try {
      result = this.#work.run(fn, this)
    } catch (err) {
      this.settle('failed', err)
      this.#starting = false
      return
    }
    this.#starting = false
    if (isThenable(result)) {
      Promise.resolve(result).then(
        () => this.settle('completed'),
        (err) => this.settle('failed', err)
      )
    } else {
      this.settle('completed')
    }
  }

  /** Aborts the task's signal and ends it as `timeout` or `cancelled`. */
  abort (reason: DOMException, outcome: 'timeout' | 'cancelled'): void {
    if (this.outcome !== null) return
    this.#abortReason = reason
    this.settle(outcome)
    this.#controller?.abort(reason)
  }

  /** Ends the task: exactly one outcome, one log line, one slot released. Later calls are ignored. */
  settle (outcome: Outcome, error?: unknown, reason?: DropReason): void {
    if (this.outcome !== null) return
    this.outcome = outcome
    const now = performance.now()
    const started = this.#startedAt
    const queuedAt = this.#queuedAt
    const work = this.#work
    const deferred: Record<string, unknown> = {
      task: this.name,
      outcome,
      connection: work.connection,
      route: work.route,
      statusCode: work.statusCode,
      durationMs: started === 0 ? 0 : round(now - started),
      queuedMs: queuedAt === 0 ? 0 : round((started === 0 ? now : started) - queuedAt)
    }
    if (outcome === 'timeout') deferred.timeoutMs = this.timeoutMs
    if (reason !== undefined) deferred.reason = reason
    if (outcome === 'failed') {
      work.log.error({ deferred, err: error }, messages.failed)
    } else {
      work.log[levels[outcome]]({ deferred }, reason === undefined ? messages[outcome] : `${messages[outcome]}: ${reason}`)
    }

    if (this.#timer !== null) {
      clearTimeout(this.#timer)
      this.#timer = null
    }
    const release = this.#release
    this.#release = null
    if (outcome !== 'dropped') this.#fn = null
    work.taskSettled(this, error)
    work.scheduler.settled(this, release, this.#starting)
  }
}
