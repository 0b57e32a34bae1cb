import type { FastifyBaseLogger } from 'fastify'
import type { MemoryStore } from '../engines/memory/store'
import type { LeasedJob } from '../engines/types'
import type { AttemptRunner, Decision } from './attempt'

// The memory engine's worker: the lease loop's rules (lib/jobs/lease-loop.ts) without what only a
// shared store needs. One process holds every lease, so nothing is renewed, recovered or polled,
// and the store answers at once: no look at the store, and no attempt, waits on a promise of ours.

// the memory store's only lease holder
const OWNER = 'this-process'

export class MemoryLoop {
  readonly #store: MemoryStore
  readonly #runner: AttemptRunner
  readonly #concurrency: number
  readonly #logger: FastifyBaseLogger
  #running = 0
  #closing = false
  // a fill is under way: an attempt that ended at once asks for another, which that fill makes
  #filling = false
  #again = false
  // a look is queued (one per turn, whatever the number of enqueues)
  #queued = false
  // the look at the next delayed job's due time, and that time
  #timer: NodeJS.Timeout | null = null
  #timerAt = Infinity
  #idleWaiters: Array<() => void> = []
  #stoppedWaiters: Array<() => void> = []
  readonly #look = (): void => {
    this.#queued = false
    this.#fill()
  }

  constructor (store: MemoryStore, runner: AttemptRunner, concurrency: number, logger: FastifyBaseLogger) {
    this.#store = store
    this.#runner = runner
    this.#concurrency = concurrency
    this.#logger = logger
  }

  get running (): number { return this.#running }

  /**
   * Jobs were added: they start once the code that added them is done (a microtask), so a job
   * added in a response's onSend hook starts once that response was handed to the socket (unless
   * a later onSend hook waits on a promise).
   */
  wake (): void {
    if (this.#queued) return
    this.#queued = true
    queueMicrotask(this.#look)
  }

  /** Resolves once no job is left: none running, none waiting (delayed jobs and backoffs included). */
  whenIdle (): Promise<void> {
    return new Promise((resolve) => {
      this.#idleWaiters.push(resolve)
      this.#checkIdle()
    })
  }

  /**
   * Stops taking jobs and ends the running ones now through the runner (`cancelled`: nothing
   * survives the process); resolves once they ended. The drain is the caller's, before this.
   */
  async close (): Promise<void> {
    this.#closing = true
    if (this.#timer !== null) clearTimeout(this.#timer)
    if (this.#running === 0) return
    // waited on before the interruption: the attempts end during it
    const stopped = new Promise<void>((resolve) => { this.#stoppedWaiters.push(resolve) })
    this.#runner.interruptAll()
    await stopped
  }

  // Takes due jobs while slots are free, then sets the look at the next delayed one. A job whose
  // attempt ends at once frees its slot during the fill: the same fill goes on, in a loop rather
  // than a call deeper for each job.
  #fill (): void {
    if (this.#closing) return
    if (this.#filling) {
      this.#again = true
      return
    }
    this.#filling = true
    for (;;) {
      this.#again = false
      const room = this.#concurrency - this.#running
      if (room <= 0) break
      const jobs = this.#store.takeNow(OWNER, room)
      for (let i = 0; i < jobs.length; i++) this.#run(jobs[i])
      if (this.#again) continue
      if (jobs.length < room) this.#schedule()
      break
    }
    this.#filling = false
  }

  #schedule (): void {
    const due = this.#store.dueIn()
    if (due === null) return
    const at = Date.now() + due
    if (this.#timer !== null) {
      if (this.#timerAt <= at) return
      clearTimeout(this.#timer)
    }
    this.#timerAt = at
    this.#timer = setTimeout(() => {
      this.#timer = null
      this.#timerAt = Infinity
      this.#fill()
    }, due)
  }

  #run (job: LeasedJob): void {
    this.#running++
    // what follows the attempt changes this process's memory only: nothing throws there
    try {
      this.#runner.start(job, (decision) => { this.#ended(job, decision) })
    } catch (err) {
      // the attempt could not start (a tracing SDK that throws): logged as the lease loop logs
      // what fails under it, and the fill goes on in the freed slot; the job stays taken until
      // the process ends, as it did under the lease loop
      this.#running--
      this.#again = true
      this.#logger.error({ err }, 'durable worker error')
    }
  }

  #ended (job: LeasedJob, decision: Decision): void {
    this.#running--
    const store = this.#store
    switch (decision.kind) {
      case 'completed':
        store.finishNow(OWNER, job.id, 'completed')
        break
      case 'retry':
        store.retryNow(OWNER, job.id, decision.delayMs)
        break
      case 'failed':
        store.finishNow(OWNER, job.id, decision.outcome)
        break
      // a runner made with `durable: false` ends a job the worker gave up `cancelled`, never `shutdown`
      default:
        store.finishNow(OWNER, job.id, 'cancelled')
    }
    if (this.#closing) {
      if (this.#running === 0) release(this.#stoppedWaiters)
    } else {
      this.#fill()
    }
    this.#checkIdle()
  }

  #checkIdle (): void {
    if (this.#idleWaiters.length > 0 && this.#store.unfinished === 0) {
      const waiters = this.#idleWaiters
      this.#idleWaiters = []
      release(waiters)
    }
  }
}

function release (waiters: Array<() => void>): void {
  for (const resolve of waiters) resolve()
}
