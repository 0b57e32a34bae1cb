import type { RedisOptions } from 'ioredis'
import { describe, FST_SAC_INVALID_OPTION, FST_SAC_UNKNOWN_OPTION } from '../errors'
import { MAX_TIMEOUT } from '../options'
import { checkConnection } from '../engines/bullmq/redis'
import type { RedisConnection } from '../engines/bullmq/redis'
import { taskMap } from './tasks'
import { DEFAULT_QUEUE_NAME } from './types'
import type { DurableTask } from './types'

export type EnqueueErrorPolicy = 'reject' | 'run-local'

/** The plugin's `queue` option: durable jobs go to BullMQ on Redis. */
export interface QueueOptions {
  /** A `redis://` URL or ioredis options. */
  connection: string | RedisOptions
  /** @default 'fastify-send-and-continue' */
  name?: string
  /** BullMQ's key prefix. @default 'bull' */
  prefix?: string
  /** Every durable task routes may enqueue (the module the worker loads). */
  tasks: DurableTask<any>[]
  /**
   * Milliseconds the response waits for Redis to take its jobs (and the startup check waits for
   * Redis to answer).
   * @default 2000
   */
  enqueueTimeout?: number
  /**
   * When the jobs could not be enqueued: `'reject'` answers `503` with `Retry-After`;
   * `'run-local'` sends the normal answer and runs them in this process.
   * @default 'reject'
   */
  onEnqueueError?: EnqueueErrorPolicy
}

export interface QueueSettings {
  connection: RedisConnection
  name: string
  prefix: string | undefined
  tasks: Map<string, DurableTask>
  enqueueTimeout: number
  onEnqueueError: EnqueueErrorPolicy
}

const WHERE = 'fastify-send-and-continue queue'
const KNOWN = ['connection', 'name', 'prefix', 'tasks', 'enqueueTimeout', 'onEnqueueError']

/** A BullMQ queue name or prefix: non-empty, and no ':' (BullMQ builds its Redis keys with it). */
export function checkName (where: string, option: string, value: unknown): string {
  if (typeof value === 'string' && value.length > 0 && !value.includes(':')) return value
  throw new FST_SAC_INVALID_OPTION(where, option, "a non-empty string without ':'", describe(value))
}

/** `options` is an object: the plugin's option rules checked that much. */
export function resolveQueueOptions (options: object): QueueSettings {
  const given = options as Record<string, unknown>
  for (const key of Object.keys(given)) {
    if (!KNOWN.includes(key)) throw new FST_SAC_UNKNOWN_OPTION(WHERE, describe(key), KNOWN.join(', '))
  }
  const { enqueueTimeout = 2000, onEnqueueError = 'reject' } = given
  if (typeof enqueueTimeout !== 'number' || !Number.isInteger(enqueueTimeout) || enqueueTimeout < 1 || enqueueTimeout > MAX_TIMEOUT) {
    throw new FST_SAC_INVALID_OPTION(WHERE, 'enqueueTimeout', `a whole number of milliseconds from 1 to ${MAX_TIMEOUT}`, describe(enqueueTimeout))
  }
  if (onEnqueueError !== 'reject' && onEnqueueError !== 'run-local') {
    throw new FST_SAC_INVALID_OPTION(WHERE, 'onEnqueueError', "'reject' or 'run-local'", describe(onEnqueueError))
  }
  return {
    connection: checkConnection(WHERE, given.connection),
    name: given.name === undefined ? DEFAULT_QUEUE_NAME : checkName(WHERE, 'name', given.name),
    prefix: given.prefix === undefined ? undefined : checkName(WHERE, 'prefix', given.prefix),
    tasks: taskMap(WHERE, given.tasks),
    enqueueTimeout,
    onEnqueueError
  }
}
