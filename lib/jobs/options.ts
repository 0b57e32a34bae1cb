import { describe, FST_SAC_CLUSTER_PREFIX, FST_SAC_ENGINE_OPTION, FST_SAC_INVALID_OPTION, FST_SAC_UNKNOWN_OPTION } from '../errors'
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

/** A node of a Redis Cluster to connect to first; ioredis finds the others from it. */
export interface RedisClusterNode {
  host: string
  port: number
}

/**
 * A Redis Cluster: the nodes to start from, and ioredis's cluster options beside them (`natMap`,
 * `scaleReads`, `slotsRefreshTimeout`, ...), passed to ioredis as given. What each node's connection
 * takes (`username`, `password`, `tls`) goes under `redisOptions`.
 * @example
 * { cluster: [{ host: '10.0.0.1', port: 6379 }, { host: '10.0.0.2', port: 6379 }], redisOptions: { password: 'secret' } }
 */
export interface RedisClusterConnection {
  cluster: RedisClusterNode[]
  /** The options of each node's connection (ioredis `redisOptions`). */
  redisOptions?: { username?: string, password?: string, tls?: object, [option: string]: unknown }
  [option: string]: unknown
}

/** A `redis://` (or `rediss://`) URL, ioredis options, or a Redis Cluster (`{ cluster: [{ host, port }, ...] }`). */
export type RedisConnection = string | RedisConnectionOptions | RedisClusterConnection

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
  /** A `redis://` URL, ioredis options, or a Redis Cluster: `{ cluster: [{ host, port }, ...] }`. */
  connection: RedisConnection
  /**
   * BullMQ's key prefix. On a Redis Cluster it must contain a hash tag (`{...}`), so that every key
   * of the queue is in one hash slot.
   * @default 'bull', '{bull}' on a Redis Cluster
   */
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
  if (typeof connection === 'object' && connection !== null && !Array.isArray(connection)) {
    return 'cluster' in connection ? checkCluster(where, connection as Record<string, unknown>) : connection as RedisConnectionOptions
  }
  throw new FST_SAC_INVALID_OPTION(where, 'connection', 'a redis:// URL or an object of ioredis options', describe(connection))
}

// Options of one node's connection: beside `cluster`, ioredis would ignore them without a word
// (a password there is never sent), so they are refused and pointed to `redisOptions`.
const NODE_OPTIONS = ['host', 'port', 'path', 'username', 'password', 'db', 'tls', 'url']

function checkCluster (where: string, connection: Record<string, unknown>): RedisClusterConnection {
  const nodes = connection.cluster
  if (!Array.isArray(nodes) || nodes.length === 0) {
    throw new FST_SAC_INVALID_OPTION(where, 'connection.cluster', 'a non-empty array of nodes { host, port }', describe(nodes))
  }
  // every index, holes included (forEach would skip a sparse array's holes)
  for (let i = 0; i < nodes.length; i++) {
    const node = nodes[i] as Partial<RedisClusterNode> | null | undefined
    const port = node?.port
    if (typeof node?.host !== 'string' || node.host === '' || !Number.isInteger(port) || (port as number) < 1 || (port as number) > 65535) {
      throw new FST_SAC_INVALID_OPTION(where, `connection.cluster[${i}]`, 'a node { host, port } with a non-empty host and a port from 1 to 65535', describe(node))
    }
  }
  const misplaced = NODE_OPTIONS.find((key) => key in connection)
  if (misplaced !== undefined) {
    // the value is not shown: it may be a password
    throw new FST_SAC_INVALID_OPTION(where, 'connection', "the cluster's nodes and ioredis cluster options, with each node's connection options under redisOptions", `${misplaced} beside cluster`)
  }
  return connection as RedisClusterConnection
}

/** Whether `connection` names a Redis Cluster (checked by checkConnection). */
export function isClusterConnection (connection: RedisConnection): connection is RedisClusterConnection {
  return typeof connection === 'object' && 'cluster' in connection
}

/** BullMQ's default prefix on a Redis Cluster: its own default, with a hash tag. */
export const CLUSTER_PREFIX = '{bull}'

/**
 * BullMQ's key prefix (`undefined`: BullMQ's default, `bull`). On a Redis Cluster a queue's keys
 * are used together in scripts and transactions, which Redis allows only within one hash slot:
 * the prefix must carry a hash tag, `{...}` with something inside (Redis hashes only what is
 * between the first `{` and the next `}`), and defaults to `{bull}`.
 */
export function checkPrefix (where: string, prefix: unknown, connection: RedisConnection): string | undefined {
  const cluster = isClusterConnection(connection)
  if (prefix === undefined) return cluster ? CLUSTER_PREFIX : undefined
  const name = checkName(where, 'prefix', prefix)
  const open = name.indexOf('{')
  if (cluster && (open === -1 || name.indexOf('}', open) <= open + 1)) throw new FST_SAC_CLUSTER_PREFIX(where, describe(name))
  return name
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
  const connection = checkConnection(WHERE, given.connection)
  return { engine, ...common, connection, prefix: checkPrefix(WHERE, given.prefix, connection) }
}
