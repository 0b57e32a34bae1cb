import { Queue } from 'bullmq'
import type { Redis } from 'ioredis'
import { createClient } from './client'
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

export class BullEngine implements Engine {
  readonly name = 'bullmq'
  readonly queue: string
  readonly #client: Redis
  readonly #prefix: string | undefined
  // made once the check passed: BullMQ's own startup would only print a warning on eviction
  #queue: Queue | null = null

  constructor (options: BullEngineOptions) {
    this.queue = options.name
    // Without the offline queue a command fails at once while Redis is down, instead of waiting
    // (unbounded) for a reconnection: the request gets its 503 now.
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

  async enqueue (jobs: readonly JobRecord[], timeout: number): Promise<void> {
    const added = (this.#queue as Queue).addBulk(jobs.map((job) => ({
      name: job.task,
      data: job.payload,
      opts: {
        jobId: job.jobId,
        attempts: job.attempts,
        ...(job.backoff === undefined ? {} : { backoff: job.backoff }),
        ...(job.delay > 0 ? { delay: job.delay } : {}),
        removeOnComplete: KEEP_COMPLETED,
        removeOnFail: KEEP_FAILED
      }
    })))
    const timer = timedOut(timeout)
    // a late answer after the timeout is ignored: the job may exist, which at-least-once allows
    added.catch(noop)
    try {
      await Promise.race([added, timer.promise])
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
