import fastq from 'fastq'
import type { queue as FastQueue } from 'fastq'
import { performance } from 'node:perf_hooks'
import type { FastifyBaseLogger } from 'fastify'
import type { Task } from './task'
import type { DeferredTask, DropReason, DroppedTaskInfo, Outcome, SendAndContinueStats } from './types'
import type { Work } from './work'

function startTask (this: Scheduler, task: Task, done: fastq.done): void {
  this.queued--
  this.running.add(task)
  task.start(done)
}

/**
 * Process-wide (per Fastify instance) bounded FIFO for deferred tasks: `concurrency` run at
 * once, `maxQueued` wait, the rest are dropped with a log line. It also keeps the counts,
 * resolves `drain()` and runs the shutdown drain.
 */
export class Scheduler {
  readonly concurrency: number
  readonly maxQueued: number
  readonly running = new Set<Task>()
  queued = 0
  pending = 0
  /** Set when `app.close()` starts: tasks registered from then on are dropped. */
  closing = false
  /** Set when the shutdown drain ran out: whatever is left is cancelled. */
  cancelling = false
  readonly counts: Record<Outcome, number> = {
    completed: 0, failed: 0, timeout: 0, skipped: 0, cancelled: 0, dropped: 0
  }

  #queue: FastQueue<Task>
  #onDropped: ((info: DroppedTaskInfo) => void) | null
  #idleWaiters: Array<() => void> = []

  constructor (concurrency: number, maxQueued: number, onDropped: ((info: DroppedTaskInfo) => void) | null) {
    this.concurrency = concurrency
    this.maxQueued = maxQueued
    this.#onDropped = onDropped
    this.#queue = fastq<Scheduler, Task>(this, startTask, concurrency)
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
    } else {
      this.queued++
      task.queued()
      this.#queue.push(task)
    }
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

  /** Called once per task when it settles; `release` is its slot when it was running. */
  settled (task: Task, release: fastq.done | null, synchronous: boolean): void {
    this.counts[task.outcome as Outcome]++
    if (release !== null) {
      this.running.delete(task)
      // A task that settles while it starts would otherwise start the next queued task from
      // inside this call, and a queue of synchronous tasks would grow the stack without bound.
      if (synchronous) queueMicrotask(() => release(null))
      else release(null)
    }
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
    const summary = {
      drained,
      durationMs: Math.round(performance.now() - startedAt),
      drainTimeout,
      ...this.counts
    }
    const message = drained
      ? 'deferred work drained'
      : 'deferred work cancelled: the shutdown drain ran out'
    log[drained ? 'info' : 'warn']({ deferredShutdown: summary }, message)
  }

  cancelAll (): void {
    this.cancelling = true
    const queued = this.#queue.getQueue()
    this.#queue.kill()
    for (const task of queued) {
      this.queued--
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
