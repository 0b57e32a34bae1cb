import { Queue } from 'bullmq'
import type { JobsOptions } from 'bullmq'
import { Redis } from 'ioredis'
import { createClient } from './client'
import type { RedisClient } from './client'
import { checkRedis } from './redis'
import type { RedisConnection } from '../../jobs/options'
import type { Engine, JobRecord } from '../types'

// How long BullMQ keeps a finished job: while it is kept, a job with the same key is the same
// job (added again, it is not run again); without a bound Redis would grow without end.
export const KEEP_COMPLETED = { age: 3600, count: 10_000 }
export const KEEP_FAILED = { age: 7 * 24 * 3600, count: 100_000 }

// How long a cancelled enqueue's mark is kept: longer than any job waits in a queue that has workers.
const CANCEL_TTL = 30 * 24 * 3600

/**
 * The Redis key marking an enqueue the web process gave up on (its client got 503, or its jobs
 * ran in the web process). Job ids never contain ':', so no BullMQ key of the queue has this form.
 * It starts with the prefix, so on a Redis Cluster it carries the prefix's hash tag: it lives in
 * the queue's slot, and goes to the node (and down the connection) the queue's adds go to.
 */
export function cancelKey (prefix: string | undefined, queue: string, token: string): string {
  return `${prefix ?? 'bull'}:${queue}:sac-cancelled:${token}`
}

export interface BullEngineOptions {
  connection: RedisConnection
  name: string
  prefix: string | undefined
}

function timedOut (timeout: number): { promise: Promise<never>, cancel: () => void } {
  let timer: NodeJS.Timeout | undefined
  const promise = new Promise<never>((resolve, reject) => {
    timer = setTimeout(() => { reject(new Error(`Redis did not answer within ${timeout} ms`)) }, timeout)
  })
  return { promise, cancel: () => { clearTimeout(timer) } }
}

/** The entries of one flush that share a timeout, and their timer. */
interface Expiry {
  timer: NodeJS.Timeout | undefined
  /** Entries not settled yet: the timer stops at 0. */
  open: number
  readonly settles: Array<(err: unknown) => void>
}

interface Waiting {
  readonly jobs: readonly JobRecord[]
  readonly timeout: number
  readonly resolve: () => void
  readonly reject: (err: unknown) => void
}

export class BullEngine implements Engine {
  readonly name = 'bullmq'
  readonly queue: string
  readonly #client: RedisClient
  readonly #prefix: string | undefined
  // made once the check passed: BullMQ's own startup would only print a warning on eviction
  #queue: Queue | null = null
  // the enqueues of this event-loop turn, sent together on setImmediate
  #batch: Waiting[] = []
  #flushing: NodeJS.Immediate | null = null

  constructor (options: BullEngineOptions) {
    this.queue = options.name
    // Without the offline queue a command fails at once while Redis is down, instead of waiting
    // (unbounded) for a reconnection: the request gets its 503 now.
    // No auto-pipelining: ioredis would build a Pipeline per event-loop turn, whose constructor
    // copies every script BullMQ defined on the client (about 60 µs), more than the adds it saves.
    this.#client = createClient(options.connection, { enableOfflineQueue: false, maxRetriesPerRequest: 1 })
    // reconnection errors are reported by enqueue() failures; unhandled they would crash the process
    this.#client.on('error', noop)
    this.#prefix = options.prefix
  }

  async check (timeout: number): Promise<void> {
    await checkRedis('fastify-send-and-continue queue', this.#client, timeout)
    this.#queue = new Queue(this.queue, {
      connection: this.#client,
      ...(this.#prefix === undefined ? {} : { prefix: this.#prefix })
    })
    this.#queue.on('error', noop)
  }

  /**
   * Group commit: the enqueues of every response that reaches its `onSend` in one event-loop turn
   * are sent together on setImmediate, each job a plain `queue.add()` (no transaction around
   * one job, no pipeline object), written to Redis in one write. Each response still waits for
   * its own jobs only, and its own `timeout`.
   */
  enqueue (jobs: readonly JobRecord[], timeout: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#batch.push({ jobs, timeout, resolve, reject })
      this.#flushing ??= setImmediate(() => { this.#flush() })
    })
  }

  #flush (): void {
    const batch = this.#batch
    this.#batch = []
    this.#flushing = null
    const queue = this.#queue as Queue
    // BullMQ writes each add a few microtasks later: the socket holds them until those microtasks
    // drained (a tick queued from a microtask runs then), then writes them in one go (one system
    // call, one read for Redis). On a Redis Cluster the adds go through the connection of the
    // queue's node, one of several: not corked there.
    if (this.#client instanceof Redis) {
      const socket = this.#client.stream
      socket.cork()
      queueMicrotask(() => { process.nextTick(() => { socket.uncork() }) })
    }
    // the entries of one timeout (all of them: the web side gives one) share one timer
    const expiries = new Map<number, Expiry>()
    for (const entry of batch) {
      let expiry = expiries.get(entry.timeout)
      if (expiry === undefined) {
        expiry = { timer: undefined, open: 0, settles: [] }
        expiries.set(entry.timeout, expiry)
      }
      const group = expiry
      group.open++
      let left = entry.jobs.length
      // the first failure or timeout settles the entry; a late answer after it is ignored here
      // (the web process cancels the enqueue's token)
      function settle (err: unknown): void {
        if (left < 0) return
        left = -1
        if (--group.open === 0) clearTimeout(group.timer)
        if (err === null) entry.resolve()
        else entry.reject(err)
      }
      function added (): void {
        if (--left === 0) settle(null)
      }
      group.settles.push(settle)
      for (const job of entry.jobs) {
        const options: JobsOptions = { jobId: job.jobId, attempts: job.attempts, removeOnComplete: KEEP_COMPLETED, removeOnFail: KEEP_FAILED }
        if (job.backoff !== undefined) options.backoff = job.backoff
        if (job.delay > 0) options.delay = job.delay
        queue.add(job.task, job.payload, options).then(added, settle)
      }
    }
    for (const [timeout, group] of expiries) {
      group.timer = setTimeout(() => {
        const err = new Error(`Redis did not answer within ${timeout} ms`)
        for (const settle of group.settles) settle(err)
      }, timeout)
    }
  }

  // The mark goes on the connection the add went on, right behind it: Redis runs a connection's
  // commands in order, so a late add is followed by its mark before any worker can ask for it.
  async cancel (token: string, statusCode: number, timeout: number): Promise<void> {
    const marked = this.#client.set(cancelKey(this.#prefix, this.queue, token), String(statusCode), 'EX', CANCEL_TTL)
    const timer = timedOut(timeout)
    marked.catch(noop)
    try {
      await Promise.race([marked, timer.promise])
    } finally {
      timer.cancel()
    }
  }

  async close (): Promise<void> {
    await this.#queue?.close()
    this.#client.disconnect()
  }
}

function noop (): void {}
