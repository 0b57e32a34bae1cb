import { performance } from 'node:perf_hooks'
import type { FastifyBaseLogger } from 'fastify'
import type { Task } from './task'
import { logShutdown } from './log'
import { Timers } from './timers'
import { zeroOutcomes } from './types'
import type { DeferredTask, DropReason, DroppedTaskInfo, Outcome, SendAndContinueStats } from './types'
import type { Work } from './work'

/**
 * Process-wide (per Fastify instance) bounded FIFO for deferred tasks: `concurrency` run at
 * once, `maxQueued` wait, the rest are dropped with a log line. It also keeps the counts,
 * resolves `drain()` and runs the shutdown drain.
 */
export class Scheduler {
  readonly concurrency: number
  readonly maxQueued: number
  readonly running = new Set<Task>()
  readonly timers = new Timers()
  pending = 0
  /** Requests answered 503 by `rejectWhenSaturated`. */
  rejected = 0
  /** Set when `app.close()` starts: tasks registered from then on are dropped. */
  closing = false
  /** Set when the shutdown drain ran out: whatever is left is cancelled. */
  cancelling = false
  readonly counts = zeroOutcomes()

  // FIFO: an array read from #head, compacted as it drains
  #queue: Array<Task | undefined> = []
  #head = 0
  #pumping = false
  #onDropped: ((info: DroppedTaskInfo) => void) | null
  #idleWaiters: Array<() => void> = []

  constructor (concurrency: number, maxQueued: number, onDropped: ((info: DroppedTaskInfo) => void) | null) {
    this.concurrency = concurrency
    this.maxQueued = maxQueued
    this.#onDropped = onDropped
  }

  get queued (): number {
    return this.#queue.length - this.#head
  }

  get saturated (): boolean {
    return this.running.size + this.queued >= this.concurrency + this.maxQueued
  }

  get idle (): boolean {
    return this.pending === 0 && this.queued === 0 && this.running.size === 0
  }

  /** Hands a dispatched task over: run now, queue, drop when full, cancel after the drain ran out. */
  submit (task: Task): void {
    if (this.cancelling) {
      task.settle('cancelled')
    } else if (this.saturated) {
      this.drop(task, 'queue-full')
    } else if (this.running.size < this.concurrency && this.queued === 0 && !this.#pumping) {
      // a free slot and nobody ahead: start it without going through the queue
      const now = performance.now()
      task.queued(now)
      this.running.add(task)
      task.start(now)
    } else {
      task.queued(performance.now())
      this.#queue.push(task)
      this.#pump()
    }
  }

  // Starts queued tasks while slots are free. A task that settles while it starts calls back in
  // here; the loop already running picks up its slot, so the stack stays flat.
  #pump (): void {
    if (this.#pumping) return
    this.#pumping = true
    const queue = this.#queue
    while (this.running.size < this.concurrency && this.#head < queue.length) {
      const task = queue[this.#head] as Task
      queue[this.#head++] = undefined
      this.running.add(task)
      task.start(performance.now())
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
    task.settle('dropped', undefined, reason)
    const onDropped = this.#onDropped
    if (onDropped === null) return
    const work: Work = task.work
    const info: DroppedTaskInfo = {
      name: task.name,
      reason,
      reqId: work.request.id,
      route: work.route,
      request: work.request,
      task: task.fn as DeferredTask
    }
    try {
      onDropped(info)
    } catch (err) {
      work.log.error({ err, deferred: { task: task.name, route: work.route } }, 'onDropped threw')
    }
  }

  /** Called once per task when it settles: counts it and frees its slot if it was running. */
  settled (task: Task): void {
    this.counts[task.outcome as Outcome]++
    if (this.running.delete(task)) this.#pump()
    if (this.#idleWaiters.length > 0 && this.idle) {
      const waiters = this.#idleWaiters
      this.#idleWaiters = []
      for (const resolve of waiters) resolve()
    }
  }

  drain (): Promise<void> {
    if (this.idle) return Promise.resolve()
    return new Promise((resolve) => { this.#idleWaiters.push(resolve) })
  }

  stats (): SendAndContinueStats {
    // a Set iterates in insertion order, so the first running task started first
    const oldest = this.running.values().next().value
    const oldestRunningMs = oldest === undefined ? 0 : Math.round(performance.now() - oldest.startedAt)
    return {
      pending: this.pending,
      queued: this.queued,
      running: this.running.size,
      ...this.counts,
      rejected: this.rejected,
      saturated: this.saturated,
      oldestRunningMs
    }
  }

  /** The shutdown drain: waits up to `drainTimeout`, then cancels what is left. */
  async close (drainTimeout: number, log: FastifyBaseLogger): Promise<void> {
    this.closing = true
    const startedAt = performance.now()
    const drained = this.idle || await new Promise<boolean>((resolve) => {
      const timer = setTimeout(resolve, drainTimeout, false)
      this.#idleWaiters.push(() => {
        clearTimeout(timer)
        resolve(true)
      })
    })
    if (!drained) this.cancelAll()
    logShutdown(log, {
      drained,
      durationMs: Math.round(performance.now() - startedAt),
      drainTimeout,
      ...this.counts
    })
  }

  cancelAll (): void {
    this.cancelling = true
    const queued = this.#queue.slice(this.#head) as Task[]
    this.#queue = []
    this.#head = 0
    for (const task of queued) {
      task.abort(cancelReason(task), 'cancelled')
    }
    for (const task of [...this.running]) {
      task.abort(cancelReason(task), 'cancelled')
    }
  }
}

function cancelReason (task: Task): DOMException {
  return new DOMException(`deferred task "${task.name}" cancelled: the shutdown drain ran out`, 'AbortError')
}
