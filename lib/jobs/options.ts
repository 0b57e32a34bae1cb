import { describe, FST_SAC_ENGINE_OPTION, FST_SAC_INVALID_OPTION, FST_SAC_UNKNOWN_OPTION } from '../errors'
import { MAX_TIMEOUT } from '../limits'
import type { EngineName } from '../engines/types'
import { taskMap } from './tasks'
import { DEFAULT_QUEUE_NAME } from './types'
import type { DurableTask } from './types'

// The `queue` plugin option and `createWorker()`'s options, for every engine: the options every
// engine takes, then each engine's own. An option of another engine is refused naming the engine
// it belongs to, so a configuration moved from one engine to another fails loudly at startup.

export type EnqueueErrorPolicy = 'reject' | 'run-local'

/**
 * ioredis connection options, as far as this package reads them; the rest are passed to ioredis
 * as given. (Declared here so the published types need no ioredis installed.)
 */
export interface RedisConnectionOptions {
  host?: string
  port?: number
  /** A unix socket. */
  path?: string
  username?: string
  password?: string
  db?: number
  tls?: object
  [option: string]: unknown
}

/** A `redis://` (or `rediss://`) URL, or ioredis options. */
export type RedisConnection = string | RedisConnectionOptions

/** Durability of each commit: `'normal'` survives a crash of the process, `'full'` also a power loss. */
export type SqliteSynchronous = 'normal' | 'full'

/** What every engine takes. */
export interface CommonQueueOptions {
  /** Every durable task routes may enqueue (the module the worker loads). */
  tasks: DurableTask<any>[]
  /** The queue's name: `deferred.queue` on every line. @default 'fastify-send-and-continue' */
  name?: string
  /**
   * Milliseconds the response waits for the store to take its jobs (and the startup check waits
   * for the store to answer).
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

/** Jobs in BullMQ on Redis, run by `createWorker()` processes on any machine. */
export interface BullQueueOptions extends CommonQueueOptions {
  /** @default 'bullmq' */
  engine?: 'bullmq'
  /** A `redis://` URL or ioredis options. */
  connection: RedisConnection
  /** BullMQ's key prefix. @default 'bull' */
  prefix?: string
}

/** Jobs in one SQLite file on this machine, run by this process and/or `createWorker()` processes. */
export interface SqliteQueueOptions extends CommonQueueOptions {
  engine: 'sqlite'
  /** The database file (created with its folder when missing), on a local disk. */
  path: string
  /** Whether this process also runs the jobs (else only `createWorker()` processes do). @default true */
  work?: boolean
  /** Jobs this process runs at once. @default 10 */
  concurrency?: number
  /** How long `app.close()` waits for the jobs this process runs before giving them back to the file, in ms. @default 10000 */
  drainTimeout?: number
  /** How long a job stays leased to a process without a renewal; after a crash its jobs run again once it expired, in ms. @default 30000 */
  lockDuration?: number
  /** `'normal'` (crash-safe) or `'full'` (also power-loss-safe, slower commits). @default 'normal' */
  synchronous?: SqliteSynchronous
}

/** Jobs in this process only, with retries, backoff, delay and keys: nothing survives the process. */
export interface MemoryQueueOptions extends CommonQueueOptions {
  engine: 'memory'
}

/** The plugin's `queue` option: where durable jobs go, chosen by `engine`. */
export type QueueOptions = BullQueueOptions | SqliteQueueOptions | MemoryQueueOptions

interface CommonSettings {
  name: string
  tasks: Map<string, DurableTask>
  enqueueTimeout: number
  onEnqueueError: EnqueueErrorPolicy
}

export interface BullSettings extends CommonSettings {
  engine: 'bullmq'
  connection: RedisConnection
  prefix: string | undefined
}

export interface SqliteSettings extends CommonSettings {
  engine: 'sqlite'
  path: string
  work: boolean
  concurrency: number
  drainTimeout: number
  lockDuration: number
  synchronous: SqliteSynchronous
}

export interface MemorySettings extends CommonSettings {
  engine: 'memory'
}

export type QueueSettings = BullSettings | SqliteSettings | MemorySettings

const WHERE = 'fastify-send-and-continue queue'
export const ENGINES: readonly EngineName[] = ['memory', 'sqlite', 'bullmq']

/** Each option an engine of its own has, by engine: `queue` options, then `createWorker()` ones. */
const QUEUE_OPTIONS: Readonly<Record<EngineName, readonly string[]>> = {
  memory: [],
  sqlite: ['path', 'work', 'concurrency', 'drainTimeout', 'lockDuration', 'synchronous'],
  bullmq: ['connection', 'prefix']
}
const COMMON_QUEUE_OPTIONS = ['engine', 'tasks', 'name', 'enqueueTimeout', 'onEnqueueError']

/** A queue name or prefix: non-empty, and no ':' (BullMQ builds its Redis keys with it; the other engines follow). */
export function checkName (where: string, option: string, value: unknown): string {
  if (typeof value === 'string' && value.length > 0 && !value.includes(':')) return value
  throw new FST_SAC_INVALID_OPTION(where, option, "a non-empty string without ':'", describe(value))
}

export function checkEngine (where: string, engine: unknown, allowed: readonly EngineName[] = ENGINES): EngineName {
  if (engine === undefined) return 'bullmq'
  if (allowed.includes(engine as EngineName)) return engine as EngineName
  throw new FST_SAC_INVALID_OPTION(where, 'engine', allowed.map((name) => `'${name}'`).join(', ').replace(/, ([^,]+)$/, ' or $1'), describe(engine))
}

/**
 * Refuses any key that is neither common nor the engine's own: one of another engine names that
 * engine (`FST_SAC_ENGINE_OPTION`), anything else is unknown.
 */
export function checkKeys (where: string, given: Record<string, unknown>, engine: EngineName, common: readonly string[], own: Readonly<Record<EngineName, readonly string[]>>): void {
  const known = [...common, ...own[engine]]
  for (const key of Object.keys(given)) {
    if (known.includes(key)) continue
    const owner = ENGINES.find((other) => own[other].includes(key))
    if (owner !== undefined) throw new FST_SAC_ENGINE_OPTION(where, key, `'${owner}'`, engine)
    throw new FST_SAC_UNKNOWN_OPTION(where, describe(key), known.join(', '))
  }
}

export function checkMs (where: string, option: string, value: unknown, fallback: number, min: number): number {
  if (value === undefined) return fallback
  if (typeof value === 'number' && Number.isInteger(value) && value >= min && value <= MAX_TIMEOUT) return value
  throw new FST_SAC_INVALID_OPTION(where, option, `a whole number of milliseconds from ${min} to ${MAX_TIMEOUT}`, describe(value))
}

export function checkCount (where: string, option: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback
  if (typeof value === 'number' && Number.isInteger(value) && value >= 1) return value
  throw new FST_SAC_INVALID_OPTION(where, option, 'a whole number of at least 1', describe(value))
}

export function checkConnection (where: string, connection: unknown): RedisConnection {
  if (typeof connection === 'string' && /^rediss?:\/\//.test(connection)) return connection
  if (typeof connection === 'object' && connection !== null && !Array.isArray(connection)) return connection as RedisConnectionOptions
  throw new FST_SAC_INVALID_OPTION(where, 'connection', 'a redis:// URL or an object of ioredis options', describe(connection))
}

export function checkPath (where: string, path: unknown): string {
  if (typeof path === 'string' && path.length > 0 && !path.includes('\0')) return path
  throw new FST_SAC_INVALID_OPTION(where, 'path', 'the path of a database file (a non-empty string)', describe(path))
}

export function checkSynchronous (where: string, value: unknown): SqliteSynchronous {
  if (value === undefined) return 'normal'
  if (value === 'normal' || value === 'full') return value
  throw new FST_SAC_INVALID_OPTION(where, 'synchronous', "'normal' or 'full'", describe(value))
}

/** `options` is an object: the plugin's option rules checked that much. */
export function resolveQueueOptions (options: object): QueueSettings {
  const given = options as Record<string, unknown>
  const engine = checkEngine(WHERE, given.engine)
  checkKeys(WHERE, given, engine, COMMON_QUEUE_OPTIONS, QUEUE_OPTIONS)
  const { onEnqueueError = 'reject' } = given
  const enqueueTimeout = checkMs(WHERE, 'enqueueTimeout', given.enqueueTimeout, 2000, 1)
  if (onEnqueueError !== 'reject' && onEnqueueError !== 'run-local') {
    throw new FST_SAC_INVALID_OPTION(WHERE, 'onEnqueueError', "'reject' or 'run-local'", describe(onEnqueueError))
  }
  const common: CommonSettings = {
    name: given.name === undefined ? DEFAULT_QUEUE_NAME : checkName(WHERE, 'name', given.name),
    tasks: taskMap(WHERE, given.tasks),
    enqueueTimeout,
    onEnqueueError
  }
  if (engine === 'memory') return { engine, ...common }
  if (engine === 'sqlite') {
    if (given.work !== undefined && typeof given.work !== 'boolean') {
      throw new FST_SAC_INVALID_OPTION(WHERE, 'work', 'a boolean', describe(given.work))
    }
    return {
      engine,
      ...common,
      path: checkPath(WHERE, given.path),
      work: given.work ?? true,
      concurrency: checkCount(WHERE, 'concurrency', given.concurrency, 10),
      drainTimeout: checkMs(WHERE, 'drainTimeout', given.drainTimeout, 10_000, 0),
      lockDuration: checkMs(WHERE, 'lockDuration', given.lockDuration, 30_000, 1),
      synchronous: checkSynchronous(WHERE, given.synchronous)
    }
  }
  return {
    engine,
    ...common,
    connection: checkConnection(WHERE, given.connection),
    prefix: given.prefix === undefined ? undefined : checkName(WHERE, 'prefix', given.prefix)
  }
}
