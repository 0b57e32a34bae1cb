import type { Job } from 'bullmq'
import { UnrecoverableError, WaitingError, Worker } from 'bullmq'
import { AttemptRunner } from '../../jobs/attempt'
import { durableWorker } from '../../jobs/durable-worker'
import type { DurableWorker, BullWorkerSettings } from '../../jobs/worker'
import type { JobPayload } from '../../jobs/types'
import { leased } from './job'
import { createClient } from './client'
import type { RedisClient } from './client'
import { cancelKey } from './engine'
import { checkRedis } from './redis'
import { stalledFailureListener } from './stalled'

const STARTUP_TIMEOUT = 5000
// how often a close that does not end is looked at again (see clusterClosed())
const CLOSE_CHECK = 500

/** BullMQ leases, renews and retries jobs with its own Worker: its processor runs our attempt and applies the decision. */
export async function startBullWorker (settings: BullWorkerSettings): Promise<DurableWorker> {
  const { queue, logger, concurrency, drainTimeout, lockDuration, stalledInterval, prefix } = settings
  // a worker's commands wait for Redis to come back rather than fail (BullMQ requires it)
  const client = createClient(settings.connection, { maxRetriesPerRequest: null })
  client.on('error', noop)
  try {
    await checkRedis('createWorker()', client, STARTUP_TIMEOUT)
  } catch (err) {
    client.disconnect()
    throw err
  }
  const runner = new AttemptRunner({ tasks: settings.tasks, queue, engine: 'bullmq', logger, durable: true, metrics: settings.metrics })
  const marks = new MarkReader(client)

  async function processJob (job: Job<JobPayload>, token?: string): Promise<void> {
    // an enqueue the web process gave up on may still have reached Redis: its mark says so
    const given = job.data.token
    if (given !== undefined && job.attemptsMade === 0) {
      const status = await marks.read(cancelKey(prefix, queue, given))
      if (status !== null) {
        runner.givenUp(leased(job), Number(status))
        return
      }
    }
    const decision = await runner.run(leased(job))
    switch (decision.kind) {
      case 'completed':
        return
      case 'shutdown':
        // back to waiting now, not after the lock expires: the next worker runs it at once
        await job.moveToWait(token)
        throw new WaitingError()
      case 'failed':
        // no attempt of any worker can run it: BullMQ must not retry it
        if (decision.unrecoverable) throw new UnrecoverableError(decision.err.message)
        throw decision.err
      // BullMQ makes the same retry decision after this (attemptsMade < attempts), with the same backoff
      case 'retry':
        throw decision.err
      /* c8 ignore next 2 */
      default:
        throw new Error(`unexpected decision ${decision.kind} for a durable engine`) // a runner made with durable: true never cancels
    }
  }

  const worker = new Worker<JobPayload, void>(queue, processJob, {
    connection: client,
    concurrency,
    lockDuration,
    stalledInterval,
    ...(prefix === undefined ? {} : { prefix })
  })
  worker.on('error', (err) => { logger.error({ err }, 'durable worker error') })
  worker.on('failed', stalledFailureListener(runner))
  await worker.waitUntilReady()

  return durableWorker(queue, runner, logger, drainTimeout, {
    async drain () {
      const stopped = worker.close()
      let drained = true
      if (runner.running > 0) {
        drained = await new Promise<boolean>((resolve) => {
          const timer = setTimeout(resolve, drainTimeout, false)
          stopped.then(() => {
            clearTimeout(timer)
            resolve(true)
          }, noop)
        })
        if (!drained) runner.interruptAll()
      }
      await (client.isCluster ? clusterClosed(worker, stopped) : stopped)
      return drained
    },
    release: () => { client.disconnect() }
  })
}

/**
 * Waits for BullMQ's `worker.close()` on a Redis Cluster. A close that lands just as the worker
 * blocks for its next job can wait forever there (BullMQ 6.7): BullMQ's cluster recovery
 * reconnects the blocking connection that close() has just disconnected, and close() waits for
 * that connection's end. Once the worker stopped running (every job's outcome was written to
 * Redis, so nothing is in flight), disconnecting it again ends the wait.
 */
export async function clusterClosed (worker: Pick<Worker, 'isRunning' | 'disconnect'>, stopped: Promise<void>): Promise<void> {
  while (!await settledWithin(stopped, CLOSE_CHECK)) {
    if (!worker.isRunning()) await worker.disconnect()
  }
}

function settledWithin (promise: Promise<void>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<boolean>((resolve) => { timer = setTimeout(resolve, ms, false) })
  return Promise.race([promise.then(() => true), late]).finally(() => { clearTimeout(timer) })
}

/**
 * Reads cancel marks, each after its job was taken (as a GET right there would), the reads of
 * the jobs taken in one go (BullMQ hands several over in one chunk of replies) in one MGET: one
 * command and one round trip for them instead of one each.
 */
class MarkReader {
  readonly #client: RedisClient
  #keys: string[] = []
  #waiting: Array<(status: Promise<string | null>) => void> = []

  constructor (client: RedisClient) {
    this.#client = client
  }

  read (key: string): Promise<string | null> {
    return new Promise((resolve) => {
      // from a job's microtask: a tick queued now runs once the microtasks of its chunk drained
      if (this.#keys.length === 0) process.nextTick(() => { this.#flush() })
      this.#keys.push(key)
      this.#waiting.push(resolve)
    })
  }

  #flush (): void {
    const waiting = this.#waiting
    const read = this.#client.mget(this.#keys)
    this.#keys = []
    this.#waiting = []
    // each reader gets its own status, or the error of the read
    for (let i = 0; i < waiting.length; i++) waiting[i](read.then((statuses) => statuses[i]))
  }
}

function noop (): void {}
