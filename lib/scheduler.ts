import { performance } from 'node:perf_hooks'
import type { FastifyBaseLogger } from 'fastify'
import { logShutdown } from './log'
import type { ShutdownLine } from './log'
import { TaskState } from './task'
import type { Retry, Task } from './task'
import { EntryList, Timers } from './timers'
import { OUTCOMES, zeroOutcomes } from './types'
import type { DropReason, DroppedTaskInfo, Outcome, SendAndContinueStats } from './types'

/**
 * Process-wide (per Fastify instance) bounded FIFO for deferred tasks: `concurrency` run at
 * once, `maxQueued` wait, the rest are dropped with a log line. It owns every count: tasks
 * waiting to be handed over, queued and running tasks, and the outcomes; it can reach each of
 * those tasks, so the shutdown can cancel and log every one.
 */
export class Scheduler {
  readonly concurrency: number
  readonly maxQueued: number
  readonly timers = new Timers()

  readonly #counts = zeroOutcomes()
  #pending = 0
  #rejected = 0
  /** Set when `app.close()` starts: tasks registered from then on are dropped. */
  #closing = false
  // Tasks waiting to be handed over (for their response to close, or for the request's other
  // tasks to end): linked through the same fields as running tasks, in a list never armed, and
  // not among `timers` (they have not started)
  readonly #waiting = new EntryList()
  #running = 0
  // Tasks waiting out a backoff before their next attempt: linked like the waiting ones, in a
  // list never armed (each has its own timer), so the shutdown reaches them
  readonly #backingOff = new EntryList()
  #retrying = 0
  // FIFO: an array read from #head, compacted as it drains
  #queue: Array<Task | undefined> = []
  #head = 0
  #pumping = false
  readonly #onDropped: ((info: DroppedTaskInfo) => void) | null
  #idleWaiters: Array<() => void> = []

  constructor (concurrency: number, maxQueued: number, onDropped: ((info: DroppedTaskInfo) => void) | null) {
    this.concurrency = concurrency
    this.maxQueued = maxQueued
    this.#onDropped = onDropped
  }

  get queued (): number { return this.#queue.length - this.#head }
  get closing (): boolean { return this.#closing }

  get saturated (): boolean {
    return this.#running + this.queued >= this.concurrency + this.maxQueued
  }

  get idle (): boolean {
    return this.#pending === 0 && this.queued === 0 && this.#running === 0 && this.#retrying === 0
  }

  /** A request was answered 503 by `rejectWhenSaturated`. */
  refused (): void {
    this.#rejected++
  }

  /** `task` was registered and waits to be handed over: counted as pending until then. */
  hold (task: Task): void {
    this.#pending++
    this.#waiting.add(task)
  }

  /**
   * Takes a held task its request hands over: run now, queue, or drop when full. (Once the drain
   * ran out nothing is handed over any more: every held task was cancelled, and no work is
   * registered while the app closes.)
   */
  submit (task: Task): void {
    this.#release(task)
    if (this.saturated) {
      this.drop(task, 'queue-full')
    } else if (this.#running < this.concurrency && this.queued === 0 && !this.#pumping) {
      // a free slot and nobody ahead: start it without going through the queue
      const now = performance.now()
      task.handedOver(now)
      this.#start(task, now)
    } else {
      task.handedOver(performance.now())
      this.#queue.push(task)
      this.#pump()
    }
  }

  /** A held task its request hands over as `skipped` (the client aborted). */
  skip (task: Task): void {
    this.#release(task)
    task.end('skipped')
  }

  // a held task is handed over: no longer pending, off the waiting list
  #release (task: Task): void {
    this.#pending--
    this.#waiting.remove(task)
    task.state = TaskState.HandedOver
  }

  /** A held task the shutdown drain gave up on before it was handed over. */
  cancelHeld (task: Task): void {
    this.#pending--
    task.end('cancelled')
  }

  /**
   * A running task's attempt failed and it retries: its slot is freed while it waits out
   * `delayMs`, then it goes back into the queue (see `retry()`).
   */
  backOff (task: Task, delayMs: number): void {
    this.#running--
    this.#retrying++
    this.#backingOff.add(task)
    ;(task.retry as Retry).timer = setTimeout(backoffOver, delayMs, task)
    this.#pump()
  }

  /**
   * `task` waited out its backoff: it keeps the admission it had, so it is queued whatever
   * `maxQueued` says (a retry is never dropped), or starts at once if a slot is free.
   */
  retry (task: Task): void {
    this.#retrying--
    this.#backingOff.remove(task)
    ;(task.retry as Retry).timer = null
    const now = performance.now()
    task.nextAttempt(now)
    if (this.#running < this.concurrency && this.queued === 0 && !this.#pumping) {
      this.#start(task, now)
    } else {
      this.#queue.push(task)
      this.#pump()
    }
  }

  #start (task: Task, now: number): void {
    task.state = TaskState.Running
    this.#running++
    // the task adds itself to the timer list of its time limit: those lists are the running tasks
    task.start(now)
  }

  // Starts queued tasks while slots are free. A task that ends while it starts calls back in
  // here; the loop already running picks up its slot, so the stack stays flat.
  #pump (): void {
    if (this.#pumping) return
    this.#pumping = true
    const queue = this.#queue
    while (this.#running < this.concurrency && this.#head < queue.length) {
      const task = queue[this.#head] as Task
      queue[this.#head++] = undefined
      this.#start(task, performance.now())
    }
    if (this.#head === 0) {
      // nothing was taken: the queue is as it was
    } else if (this.#head === queue.length) {
      queue.length = 0
      this.#head = 0
    } else if (this.#head > 1024 && this.#head * 2 > queue.length) {
      queue.splice(0, this.#head)
      this.#head = 0
    }
    this.#pumping = false
  }

  drop (task: Task, reason: DropReason): void {
    task.end('dropped', undefined, reason)
    const onDropped = this.#onDropped
    if (onDropped === null) return
    const work = task.work
    const info: DroppedTaskInfo = {
      name: task.name,
      reason,
      reqId: work.id,
      route: work.route,
      request: work.request,
      task: task.fn
    }
    try {
      onDropped(info)
    } catch (err) {
      work.log.error({ err, deferred: { task: task.name, route: work.route } }, 'onDropped threw')
    }
  }

  /** Called once per task when it ends (it left its timer list): counts it, and frees its slot if it was running. */
  taskEnded (outcome: Outcome, wasRunning: boolean): void {
    this.#counts[outcome]++
    if (wasRunning) {
      this.#running--
      this.#pump()
    }
    this.#notifyIfIdle()
  }

  #notifyIfIdle (): void {
    if (this.#idleWaiters.length === 0 || !this.idle) return
    const waiters = this.#idleWaiters
    this.#idleWaiters = []
    for (const resolve of waiters) resolve()
  }

  drain (): Promise<void> {
    if (this.idle) return Promise.resolve()
    return new Promise((resolve) => { this.#idleWaiters.push(resolve) })
  }

  stats (): SendAndContinueStats {
    const oldest = this.timers.oldest()
    return {
      pending: this.#pending,
      queued: this.queued,
      running: this.#running,
      retrying: this.#retrying,
      ...this.#counts,
      rejected: this.#rejected,
      saturated: this.saturated,
      oldestRunningMs: oldest === null ? 0 : Math.round(performance.now() - oldest.startedAt)
    }
  }

  /**
   * The shutdown drain of `app.close()`: waits up to `drainTimeout`, then cancels what is left.
   * `jobs`, the app's own durable-job worker, drains at the same time, and its counts join the line.
   */
  async shutdown (drainTimeout: number, log: FastifyBaseLogger, jobs?: { close: () => Promise<{ drained: boolean, mayStillRun: number }>, counts: () => Record<Outcome, number> }): Promise<void> {
    this.#closing = true
    const startedAt = performance.now()
    const jobsClosed = jobs === undefined ? null : jobs.close()
    const tasksDrained = this.idle || await new Promise<boolean>((resolve) => {
      const timer = setTimeout(resolve, drainTimeout, false)
      this.#idleWaiters.push(() => {
        clearTimeout(timer)
        resolve(true)
      })
    })
    if (!tasksDrained) this.#cancelRemaining()
    const closed = jobsClosed === null ? null : await jobsClosed
    const drained = (closed === null || closed.drained) && tasksDrained
    const counts = { ...this.#counts }
    if (jobs !== undefined) {
      const more = jobs.counts()
      for (const outcome of OUTCOMES) counts[outcome] += more[outcome]
    }
    const line: ShutdownLine = {
      drained,
      durationMs: Math.round(performance.now() - startedAt),
      drainTimeout,
      ...counts
    }
    // jobs of enqueues given up on whose cancellation the store never confirmed
    if (closed !== null && closed.mayStillRun > 0) line.mayStillRun = closed.mayStillRun
    logShutdown(log, line)
  }

  // Waiting tasks first, then queued ones, then running ones: once the queue is empty, a
  // running task that ends cannot start another.
  #cancelRemaining (): void {
    // a work cancels all its waiting tasks at once, which leaves the list
    for (let task = this.#waiting.head as Task | null; task !== null; task = this.#waiting.head as Task | null) {
      task.work.cancelWaiting()
    }
    for (let task = this.#backingOff.head as Task | null; task !== null; task = this.#backingOff.head as Task | null) {
      clearTimeout((task.retry as Retry).timer as NodeJS.Timeout)
      this.#retrying--
      // ending it takes it off the list
      task.abort(cancelReason(task), 'cancelled')
    }
    const queued = this.#queue.slice(this.#head) as Task[]
    this.#queue = []
    this.#head = 0
    for (const task of queued) task.abort(cancelReason(task), 'cancelled')
    for (let task = this.timers.oldest() as Task | null; task !== null; task = this.timers.oldest() as Task | null) {
      task.abort(cancelReason(task), 'cancelled')
    }
    this.#notifyIfIdle()
  }
}

function backoffOver (task: Task): void {
  task.work.scheduler.retry(task)
}

function cancelReason (task: Task): DOMException {
  return new DOMException(`deferred task "${task.name}" cancelled: the shutdown drain ran out`, 'AbortError')
}
