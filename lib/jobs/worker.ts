import type { FastifyBaseLogger } from 'fastify'
import { describe, FST_SAC_INVALID_OPTION } from '../errors'
import { assertDrivers, BULLMQ_DRIVERS } from '../engines/driver'
import type { EngineName } from '../engines/types'
import {
  checkConnection,
  checkCount,
  checkEngine,
  checkKeys,
  checkMs,
  checkName,
  checkPath,
  checkPrefix,
  checkSynchronous
} from './options'
import type { RedisConnection, SqliteSynchronous } from './options'
import type { WorkerStats } from './attempt'
import { taskMap } from './tasks'
import { lookUpMeters } from '../metrics'
import type { EngineMetrics, Meters } from '../metrics'
import { DEFAULT_QUEUE_NAME } from './types'
import type { DurableTask } from './types'

export type { WorkerStats } from './attempt'

/** What every worker takes. */
interface CommonWorkerOptions {
  /** The durable tasks this worker runs (the module the web app gives its `queue`). */
  tasks: DurableTask<any>[]
  /** @default 'fastify-send-and-continue' */
  name?: string
  /** Jobs that run at once in this worker. @default 10 */
  concurrency?: number
  /** A pino logger. @default pino() to standard output */
  logger?: FastifyBaseLogger
  /**
   * How long `close()` waits for running jobs before aborting their signal and returning them to
   * the queue, in milliseconds.
   * @default 10000
   */
  drainTimeout?: number
  /**
   * How long a job stays locked to this worker without a renewal, in milliseconds. After a crash
   * (`kill -9`) its jobs run again once the lock expired (BullMQ: and a stalled-job check ran,
   * between `lockDuration` and `lockDuration + stalledInterval`; SQLite: at once when the dead
   * process was on this machine). A job whose runs are lost this way twice is not run again: the
   * worker that finds it next fails it (logged `failed`, reason `stalled`).
   * @default 30000
   */
  lockDuration?: number
  /**
   * Whether the worker records OpenTelemetry metrics for the jobs it runs (when
   * `@opentelemetry/api` is installed and a meter provider was registered before the worker started).
   * @default true
   */
  metrics?: boolean
}

/** A worker of a BullMQ queue on Redis. */
export interface BullWorkerOptions extends CommonWorkerOptions {
  /** @default 'bullmq' */
  engine?: 'bullmq'
  /** A `redis://` URL, ioredis options, or a Redis Cluster: `{ cluster: [{ host, port }, ...] }`. */
  connection: RedisConnection
  /**
   * BullMQ's key prefix: the web app's. On a Redis Cluster it must contain a hash tag (`{...}`).
   * @default 'bull', '{bull}' on a Redis Cluster
   */
  prefix?: string
  /** Milliseconds between BullMQ's stalled-job checks. @default 30000 */
  stalledInterval?: number
}

/** A worker of a SQLite queue file on this machine. */
export interface SqliteWorkerOptions extends CommonWorkerOptions {
  engine: 'sqlite'
  /** The database file the web app enqueues into. */
  path: string
  /** @default 'normal' */
  synchronous?: SqliteSynchronous
}

export type WorkerOptions = BullWorkerOptions | SqliteWorkerOptions

export interface DurableWorker {
  /** The queue this worker takes jobs from. */
  readonly queue: string
  /**
   * Stops taking jobs, waits up to `drainTimeout` for running ones, then aborts their `signal`
   * and returns them to the queue (they run again in the next worker, as the same attempt).
   */
  close (): Promise<void>
  stats (): WorkerStats
}

export const WHERE = 'createWorker()'
const COMMON = ['engine', 'tasks', 'name', 'concurrency', 'logger', 'drainTimeout', 'lockDuration', 'metrics']
const OWN: Readonly<Record<EngineName, readonly string[]>> = {
  memory: [],
  sqlite: ['path', 'synchronous'],
  bullmq: ['connection', 'prefix', 'stalledInterval']
}

interface CommonWorkerSettings {
  tasks: Map<string, DurableTask>
  queue: string
  concurrency: number
  logger: FastifyBaseLogger
  drainTimeout: number
  lockDuration: number
  /** The engine's metrics; `null` when nothing records them. */
  metrics: EngineMetrics | null
}

export interface BullWorkerSettings extends CommonWorkerSettings {
  connection: RedisConnection
  prefix: string | undefined
  stalledInterval: number
}

export interface SqliteWorkerSettings extends CommonWorkerSettings {
  path: string
  synchronous: SqliteSynchronous
}

/**
 * Starts a worker that runs the durable jobs of a queue: same time limits, signals and log lines
 * as in-process tasks, plus retries. Resolves once the store answered and the worker takes jobs.
 * @example
 * const worker = await createWorker({ engine: 'sqlite', path: 'var/deferred.db', tasks: [sendWelcome] })
 * process.once('SIGTERM', () => worker.close())
 */
export async function createWorker (options: WorkerOptions): Promise<DurableWorker> {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new FST_SAC_INVALID_OPTION(WHERE, 'the options', 'an object', describe(options))
  }
  const given = options as unknown as Record<string, unknown>
  // a memory queue lives in its app: there is nothing for another process to take
  const engine = checkEngine(WHERE, given.engine, ['sqlite', 'bullmq'])
  checkKeys(WHERE, given, engine, COMMON, OWN)
  if (given.metrics !== undefined && typeof given.metrics !== 'boolean') {
    throw new FST_SAC_INVALID_OPTION(WHERE, 'metrics', 'a boolean', describe(given.metrics))
  }
  const logger = checkLogger(given.logger)
  // the provider registered now, for good, as for the plugin
  const meters = given.metrics === false ? null : lookUpMeters()
  const common: Omit<CommonWorkerSettings, 'logger'> = {
    tasks: taskMap(WHERE, given.tasks),
    queue: given.name === undefined ? DEFAULT_QUEUE_NAME : checkName(WHERE, 'name', given.name),
    concurrency: checkCount(WHERE, 'concurrency', given.concurrency, 10),
    drainTimeout: checkMs(WHERE, 'drainTimeout', given.drainTimeout, 10_000, 0),
    lockDuration: checkMs(WHERE, 'lockDuration', given.lockDuration, 30_000, 1),
    metrics: meters === null ? null : meters.engine(engine)
  }
  if (engine === 'sqlite') {
    const settings = {
      ...common,
      path: checkPath(WHERE, given.path),
      synchronous: checkSynchronous(WHERE, given.synchronous)
    }
    const { startSqliteWorker } = require('../engines/sqlite/worker') as typeof import('../engines/sqlite/worker')
    return watched(meters, engine, await startSqliteWorker({ ...settings, logger: loggerOf(logger) }))
  }
  const connection = checkConnection(WHERE, given.connection)
  const settings = {
    ...common,
    connection,
    prefix: checkPrefix(WHERE, given.prefix, connection),
    stalledInterval: checkMs(WHERE, 'stalledInterval', given.stalledInterval, 30_000, 1)
  }
  assertDrivers(WHERE, 'bullmq', BULLMQ_DRIVERS)
  // BullMQ and ioredis load with the first worker: the web process may never need them
  const { startBullWorker } = require('../engines/bullmq/worker') as typeof import('../engines/bullmq/worker')
  return watched(meters, engine, await startBullWorker({ ...settings, logger: loggerOf(logger) }))
}

// METRICS: the worker's running jobs, read when the SDK collects, until it closed
function watched (meters: Meters | null, engine: EngineName, worker: DurableWorker): DurableWorker {
  if (meters === null) return worker
  const unwatch = meters.watch((observe) => { observe(engine, 'running', worker.stats().running) })
  return {
    queue: worker.queue,
    close: () => worker.close().finally(unwatch),
    stats: () => worker.stats()
  }
}

// the logger's methods the worker calls: anything else would fail only once a job ended (an
// unhandled rejection, a close() that never ends), so it is refused at the start
const LOGGER_METHODS = ['info', 'warn', 'error', 'debug', 'child']

function checkLogger (logger: unknown): FastifyBaseLogger | undefined {
  if (logger === undefined) return undefined
  if (typeof logger === 'object' && logger !== null && LOGGER_METHODS.every((method) => typeof (logger as Record<string, unknown>)[method] === 'function')) {
    return logger as FastifyBaseLogger
  }
  throw new FST_SAC_INVALID_OPTION(WHERE, 'logger', 'a pino logger (an object with info, warn, error, debug and child methods)', describe(logger))
}

function loggerOf (logger: FastifyBaseLogger | undefined): FastifyBaseLogger {
  // pino loads with the first worker that needs a logger of its own
  return logger ?? (require('pino') as typeof import('pino'))()
}
