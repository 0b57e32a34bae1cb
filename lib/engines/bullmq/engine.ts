import { Queue } from 'bullmq'
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
    // Auto-pipelining writes the commands of one tick together: the group commit's adds go to
    // Redis in one write.
    this.#client = createClient(options.connection, { enableOfflineQueue: false, maxRetriesPerRequest: 1, enableAutoPipelining: true })
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
   * one job), written to Redis in one round trip by ioredis's auto-pipelining. Each response still
   * waits for its own jobs only, and its own `timeout`.
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
    // every add is called in this tick: ioredis writes them in one go
    for (const entry of batch) {
      const added = Promise.all(entry.jobs.map((job) => queue.add(job.task, job.payload, {
        jobId: job.jobId,
        attempts: job.attempts,
        ...(job.backoff === undefined ? {} : { backoff: job.backoff }),
        ...(job.delay > 0 ? { delay: job.delay } : {}),
        removeOnComplete: KEEP_COMPLETED,
        removeOnFail: KEEP_FAILED
      })))
      this.#await(added, entry)
    }
  }

  async #await (added: Promise<unknown>, entry: Waiting): Promise<void> {
    const timer = timedOut(entry.timeout)
    // a late answer after the timeout is ignored here: the web process cancels the enqueue's token
    added.catch(noop)
    try {
      await Promise.race([added, timer.promise])
      entry.resolve()
    } catch (err) {
      entry.reject(err)
    } finally {
      timer.cancel()
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
