import type { FastifyBaseLogger } from 'fastify'
import type { JobStore, LeasedJob } from '../engines/types'
import type { AttemptRunner, Decision } from './attempt'

// The worker of the engines whose jobs are pulled from a shared store (sqlite): takes due jobs while slots
// are free, runs each through the attempt runner, applies its decision to the store, renews the
// leases of running jobs, and recovers jobs whose process died. The store only stores and leases.

export interface LeaseLoopOptions {
  store: JobStore
  runner: AttemptRunner
  logger: FastifyBaseLogger
  /** This process, as the store names lease holders. */
  owner: string
  /** Whether a lease holder is known dead (the store gives its jobs back at once). */
  isDead: (owner: string) => boolean
  concurrency: number
  lockDuration: number
  /** Milliseconds between looks for jobs another process added, while nothing is due here. */
  pollInterval: number
  /** Milliseconds between looks for jobs whose process died. */
  recoverInterval: number
}

/** The message of the error a job failed for `stalled` carries. */
export const STALLED_MESSAGE = 'job stalled more than allowable limit'

export class LeaseLoop {
  readonly #options: LeaseLoopOptions
  readonly #running = new Set<string>()
  readonly #settled = new Set<Promise<void>>()
  #closing = false
  #looking = false
  #again = false
  #lookTimer: NodeJS.Timeout | null = null
  #renewTimer: NodeJS.Timeout | null = null
  #recoverTimer: NodeJS.Timeout | null = null
  #idleWaiters: Array<() => void> = []

  constructor (options: LeaseLoopOptions) {
    this.#options = options
  }

  get running (): number { return this.#running.size }

  /** Starts taking jobs: jobs of dead processes first. */
  start (): void {
    const { lockDuration, recoverInterval } = this.#options
    this.#renewTimer = setInterval(() => { this.#renew() }, Math.max(1, Math.floor(lockDuration / 2)))
    this.#recoverTimer = setInterval(() => { this.#recover() }, recoverInterval)
    this.#recover()
  }

  /** A job was enqueued by this process: look now rather than at the next poll. */
  wake (): void {
    this.#look()
  }

  /** Resolves once nothing is running here and nothing waits in the store (delayed jobs and backoffs included). */
  whenIdle (): Promise<void> {
    return new Promise((resolve) => {
      this.#idleWaiters.push(resolve)
      this.#checkIdle()
    })
  }

  /**
   * Stops taking jobs and waits up to `drainTimeout` for the running ones; then ends them through
   * the runner (given back to the store, or `cancelled` where nothing survives the process).
   * Resolves with whether they all ended in time.
   */
  async close (drainTimeout: number): Promise<boolean> {
    this.#closing = true
    for (const timer of [this.#lookTimer, this.#renewTimer, this.#recoverTimer]) clearTimeout(timer ?? undefined)
    const all = (): Promise<unknown> => Promise.allSettled([...this.#settled])
    let drained = true
    if (this.#settled.size > 0) {
      drained = await new Promise<boolean>((resolve) => {
        const timer = setTimeout(resolve, drainTimeout, false)
        all().then(() => {
          clearTimeout(timer)
          resolve(true)
        }, noop)
      })
      if (!drained) {
        this.#options.runner.interruptAll()
        await all()
      }
    }
    return drained
  }

  #look (): void {
    if (this.#closing) return
    if (this.#looking) {
      this.#again = true
      return
    }
    this.#looking = true
    if (this.#lookTimer !== null) clearTimeout(this.#lookTimer)
    this.#lookTimer = null
    this.#take().then(noop, (err: unknown) => { this.#options.logger.error({ err }, 'durable worker error') }).finally(() => {
      this.#looking = false
      if (this.#again) {
        this.#again = false
        this.#look()
      } else {
        this.#schedule()
      }
    })
  }

  async #take (): Promise<void> {
    const { store, owner, concurrency, lockDuration } = this.#options
    for (;;) {
      this.#again = false
      const room = concurrency - this.#running.size
      if (room <= 0 || this.#closing) return
      const jobs = await store.take(owner, room, lockDuration)
      for (const job of jobs) this.#run(job)
      // a full take may have left more behind; a short one took all that was due
      if (jobs.length < room && !this.#again) return
    }
  }

  // the next look: when the next job is due here, or at the next poll for jobs of other processes
  #schedule (): void {
    if (this.#closing || this.#running.size >= this.#options.concurrency) return
    const { store, pollInterval } = this.#options
    store.nextDue().then((due) => {
      if (this.#closing || this.#looking) return
      if (this.#lookTimer !== null) clearTimeout(this.#lookTimer)
      this.#lookTimer = null
      this.#lookTimer = setTimeout(() => {
        this.#lookTimer = null
        this.#look()
      }, due === null ? pollInterval : Math.min(due, pollInterval))
      this.#checkIdle(due)
    }, (err: unknown) => { this.#options.logger.error({ err }, 'durable worker error') })
  }

  #run (job: LeasedJob): void {
    this.#running.add(job.id)
    const settled = this.#options.runner.run(job)
      .then((decision) => {
        // the task is over: its slot takes the next job while the store records this one (a
        // store that commits in batches takes and settles in one transaction)
        this.#running.delete(job.id)
        this.#look()
        return this.#apply(job, decision)
      })
      .catch((err: unknown) => { this.#options.logger.error({ err }, 'durable worker error') })
      .finally(() => {
        this.#running.delete(job.id)
        this.#settled.delete(settled)
        if (this.#settled.size === 0) this.#checkIdle()
      })
    this.#settled.add(settled)
  }

  async #apply (job: LeasedJob, decision: Decision): Promise<void> {
    const { store, owner } = this.#options
    switch (decision.kind) {
      case 'completed':
        await store.finish(owner, job.id, 'completed')
        return
      case 'failed':
        await store.finish(owner, job.id, decision.outcome, decision.err.message)
        return
      case 'retry':
        await store.retry(owner, job.id, decision.delayMs)
        return
      case 'shutdown':
        await store.release(owner, job.id)
      // no 'cancelled': a SQLite runner is durable, it gives a job back at shutdown instead
    }
  }

  #renew (): void {
    if (this.#running.size === 0) return
    const { store, owner, lockDuration } = this.#options
    // a lease lost anyway (this process stalled past lockDuration) lets another process run the
    // job again, as at-least-once allows: the run here goes on, and both write their final line
    store.renew(owner, [...this.#running], lockDuration).then(noop, (err: unknown) => { this.#options.logger.error({ err }, 'durable worker error') })
  }

  #recover (): void {
    const { store, isDead, runner, logger } = this.#options
    store.recover(isDead).then((failed) => {
      for (const job of failed) runner.stalled(job, new Error(STALLED_MESSAGE))
      // after close() too: #look() itself takes nothing once closing
      this.#look()
    }, (err: unknown) => { logger.error({ err }, 'durable worker error') })
  }

  #checkIdle (due?: number | null): void {
    // a job whose outcome the store has not recorded yet counts: idle means settled
    if (this.#idleWaiters.length === 0 || this.#settled.size > 0 || this.#looking) return
    if (due === undefined) {
      this.#options.store.nextDue().then((next) => { this.#checkIdle(next) }, noop)
      return
    }
    if (due !== null) return
    const waiters = this.#idleWaiters
    this.#idleWaiters = []
    for (const resolve of waiters) resolve()
  }
}

function noop (): void {}
