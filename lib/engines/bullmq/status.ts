import { Queue } from 'bullmq'
import type { JobType } from 'bullmq'
import { describe, FST_SAC_REDIS_UNREACHABLE } from '../../errors'
import type { RedisConnection } from '../../jobs/options'
import { tally } from '../status'
import type { QueueStatus, StatusState } from '../status'
import { createClient } from './client'
import { waitReady } from './redis'

// The `status` command on a BullMQ queue, through BullMQ's public Queue API and reads only (the
// Queue is told not to write its meta key). Per-task counts come from the job ids, which name
// their task (`<task>~<key>`, lib/jobs/job-id.ts): one id range per page, no job bodies.

export interface BullStatusOptions {
  connection: RedisConnection
  name: string
  prefix: string | undefined
  /** How many failed jobs to list, newest first. */
  failed: number
  /** Milliseconds Redis has to answer the connection. */
  timeout: number
  /** Names the caller in errors. */
  where: string
}

// BullMQ's states, as the status command counts them (this plugin never makes prioritized jobs or flows)
const STATES: ReadonlyArray<readonly [JobType, StatusState]> = [
  ['waiting', 'waiting'], ['prioritized', 'waiting'], ['waiting-children', 'waiting'],
  ['delayed', 'delayed'], ['active', 'active'], ['completed', 'completed'], ['failed', 'failed']
]
const PAGE = 5000

/** The task a job id names; `null` for an id this plugin did not make. */
export function taskOfId (id: string): string | null {
  const separator = id.indexOf('~')
  if (separator <= 0) return null
  try {
    return decodeURIComponent(id.slice(0, separator))
  } catch {
    return null
  }
}

export async function readBullStatus (options: BullStatusOptions): Promise<QueueStatus> {
  const { where, timeout } = options
  // one try: a Redis that refuses the connection is reported at once, not after the timeout
  const client = createClient(options.connection, { maxRetriesPerRequest: 1, enableOfflineQueue: false, retryStrategy: () => null })
  let lastError: Error | undefined
  client.on('error', (err: Error) => { lastError = err })
  const ended = new Promise<never>((resolve, reject) => { client.once('end', () => { reject(lastError) }) })
  ended.catch(noop)
  try {
    try {
      await Promise.race([waitReady(client, timeout), ended])
    } catch (err) {
      throw new FST_SAC_REDIS_UNREACHABLE(where, timeout, describe((err as Error).message))
    }
    const queue = new Queue(options.name, {
      connection: client,
      skipMetasUpdate: true,
      ...(options.prefix === undefined ? {} : { prefix: options.prefix })
    })
    queue.on('error', noop)
    try {
      return await read(queue, options.failed)
    } finally {
      await queue.close()
    }
  } finally {
    client.disconnect()
  }
}

async function read (queue: Queue, failedShown: number): Promise<QueueStatus> {
  const counts = new Map<string, [string, StatusState, number]>()
  for (const [type, state] of STATES) {
    for (let start = 0; ; start += PAGE) {
      const ids = await queue.getRanges([type], start, start + PAGE - 1)
      for (const id of ids) {
        const task = taskOfId(id) ?? await nameOf(queue, id)
        const key = `${state}\n${task}`
        const entry = counts.get(key)
        if (entry === undefined) counts.set(key, [task, state, 1])
        else entry[2]++
      }
      if (ids.length < PAGE) break
    }
  }
  // the wait list's far end is the job the next worker takes: the one waiting longest
  const [oldest] = await queue.getJobs(['waiting'], 0, 0, true)
  const failed = failedShown === 0 ? [] : await queue.getJobs(['failed'], 0, failedShown - 1, false)
  return {
    ...tally(counts.values()),
    oldestWaiting: oldest === undefined ? null : { id: oldest.id as string, task: oldest.name, enqueuedAt: oldest.timestamp },
    failed: failed.map((job) => ({
      id: job.id as string,
      task: job.name,
      error: job.failedReason,
      attempts: job.attemptsMade,
      failedAt: job.finishedOn as number
    }))
  }
}

// a job added by other code than this plugin: the name it was given
async function nameOf (queue: Queue, id: string): Promise<string> {
  const job = await queue.getJob(id)
  /* c8 ignore next */
  return job === undefined ? '(removed)' : job.name // removed between the two reads
}

function noop (): void {}
