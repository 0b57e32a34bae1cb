import type { EventEmitter } from 'node:events'
import { resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import type { Writable } from 'node:stream'
import pino from 'pino'
import { describe, FST_SAC_INVALID_OPTION, isSendAndContinueError } from '../errors'
import { METRICS_PATH, serveMetrics } from './prometheus'
import type { MetricsServer } from './prometheus'
import { isDurableTask } from './tasks'
import type { DurableTask } from './types'
import { createWorker } from './worker'
import type { WorkerOptions } from './worker'

export const WORKER_USAGE = `Usage: fastify-send-and-continue worker <tasks-module> --sqlite <file> [options]
       fastify-send-and-continue worker <tasks-module> --redis <url> [options]
       fastify-send-and-continue worker <tasks-module> --redis-cluster <host:port> ... [options]

Runs the durable jobs of a queue: loads <tasks-module> (its default export and its named exports
that defineTask() made), takes jobs from a SQLite file on this machine (--sqlite) or from BullMQ on
Redis (--redis) or on a Redis Cluster (--redis-cluster), logs with pino to standard output, and
closes gracefully on SIGTERM and SIGINT (waits up to --drain-timeout, then returns unfinished jobs
to the queue).

Options:
  --sqlite <file>            the SQLite engine's database file (one of --sqlite, --redis and
                             --redis-cluster is required)
  --redis <url>              a redis:// or rediss:// URL, or the path of a unix socket
  --redis-cluster <node>     a node of a Redis Cluster, host:port; repeat it to give more nodes
  --concurrency <n>          jobs that run at once (default 10)
  --name <queue>             the queue name (default fastify-send-and-continue)
  --drain-timeout <ms>       how long a graceful close waits for running jobs (default 10000)
  --lock-duration <ms>       a job's lock; after a crash its jobs run again once it expired (default 30000)
  --synchronous <mode>       SQLite: normal (crash-safe, default) or full (also power-loss-safe)
  --prefix <prefix>          Redis: BullMQ's key prefix (default bull; on a cluster {bull}, and
                             any prefix needs a hash tag {...})
  --stalled-interval <ms>    Redis: between checks for jobs of crashed workers (default 30000)
  --metrics-port <port>      serve the worker's OpenTelemetry metrics as Prometheus text on
                             http://<host>:<port>/metrics (0: a free port, logged); needs
                             @opentelemetry/api, @opentelemetry/sdk-metrics and
                             @opentelemetry/exporter-prometheus
  -h, --help                 show this help

Exit status: 0 after a graceful close, 1 when the worker could not start, 2 on a usage error.
`

export interface WorkerIo {
  stdout: Writable
  stderr: Writable
  /** Where SIGTERM and SIGINT come from (the process). */
  signals: EventEmitter
}

class UsageError extends Error {}

/** `host:port` (`[::1]:6379` for an IPv6 address) as a cluster node. */
export function clusterNode (value: string): { host: string, port: number } {
  const match = /^(.+):(\d{1,5})$/.exec(value)
  const port = Number(match?.[2])
  if (match === null || port < 1 || port > 65535) throw new UsageError(`--redis-cluster should be host:port, instead got '${value}'`)
  return { host: match[1].replace(/^\[(.*)\]$/, '$1'), port }
}

const WHERE = 'fastify-send-and-continue worker'

function whole (option: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined
  if (!/^\d+$/.test(value)) throw new UsageError(`${option} should be a whole number, instead got '${value}'`)
  return Number(value)
}

// usage errors that are coded, as the plugin's options are (a coded error from the tasks module is not one)
const codedUsage = new WeakSet<Error>()

function port (option: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined
  if (/^\d{1,5}$/.test(value) && Number(value) <= 65535) return Number(value)
  const err = new FST_SAC_INVALID_OPTION(WHERE, option, 'a whole number from 0 to 65535', describe(value))
  codedUsage.add(err)
  throw err
}

/** The durable tasks a module exports: its named exports and its default export (a task, an array or an object of them). */
export function tasksOf (namespace: Record<string, unknown>): DurableTask[] {
  const found = new Set<DurableTask>()
  function add (value: unknown): void {
    if (isDurableTask(value)) found.add(value)
  }
  for (const [name, value] of Object.entries(namespace)) {
    add(value)
    if (name === 'default' && typeof value === 'object' && value !== null) {
      for (const inner of Array.isArray(value) ? value : Object.values(value)) add(inner)
    }
  }
  return [...found]
}

/** `fastify-send-and-continue worker ...`; resolves to the exit status once the worker closed. */
export async function runWorker (args: string[], io: WorkerIo): Promise<number> {
  let options: WorkerOptions
  let metricsPort: number | undefined
  try {
    const { values, positionals } = parseArgs({
      args,
      allowPositionals: true,
      options: {
        redis: { type: 'string' },
        'redis-cluster': { type: 'string', multiple: true },
        sqlite: { type: 'string' },
        synchronous: { type: 'string' },
        concurrency: { type: 'string' },
        name: { type: 'string' },
        prefix: { type: 'string' },
        'drain-timeout': { type: 'string' },
        'lock-duration': { type: 'string' },
        'stalled-interval': { type: 'string' },
        'metrics-port': { type: 'string' },
        help: { type: 'boolean', short: 'h' }
      }
    })
    if (values.help === true) {
      io.stdout.write(WORKER_USAGE)
      return 0
    }
    if (positionals.length !== 1) throw new UsageError(`give one tasks module, instead got ${positionals.length}`)
    const cluster = values['redis-cluster']
    if ([values.sqlite, values.redis, cluster].filter((store) => store !== undefined).length !== 1) {
      throw new UsageError('give one of --sqlite <file>, --redis <url> and --redis-cluster <host:port>')
    }
    const sqliteOnly = values.sqlite === undefined && values.synchronous !== undefined ? '--synchronous' : undefined
    const redisOnly = values.sqlite !== undefined ? ['prefix', 'stalled-interval'].find((name) => values[name as 'prefix'] !== undefined) : undefined
    if (sqliteOnly !== undefined) throw new UsageError(`${sqliteOnly} is an option of --sqlite`)
    if (redisOnly !== undefined) throw new UsageError(`--${redisOnly} is an option of --redis and --redis-cluster`)
    const nodes = cluster?.map(clusterNode)
    const file = resolve(positionals[0])
    const tasks = tasksOf(await import(pathToFileURL(file).href))
    if (tasks.length === 0) throw new UsageError(`${positionals[0]} exports no task made by defineTask()`)
    const drainTimeout = whole('--drain-timeout', values['drain-timeout'])
    const lockDuration = whole('--lock-duration', values['lock-duration'])
    const stalledInterval = whole('--stalled-interval', values['stalled-interval'])
    const concurrency = whole('--concurrency', values.concurrency)
    metricsPort = port('--metrics-port', values['metrics-port'])
    const common = {
      tasks,
      logger: pino({}, io.stdout),
      ...(values.name === undefined ? {} : { name: values.name }),
      ...(concurrency === undefined ? {} : { concurrency }),
      ...(drainTimeout === undefined ? {} : { drainTimeout }),
      ...(lockDuration === undefined ? {} : { lockDuration })
    }
    options = values.sqlite !== undefined
      ? {
          engine: 'sqlite',
          path: values.sqlite,
          ...common,
          ...(values.synchronous === undefined ? {} : { synchronous: values.synchronous as 'normal' })
        }
      : {
          connection: nodes !== undefined
            ? { cluster: nodes }
            : (values.redis as string).startsWith('/') ? { path: values.redis } : values.redis as string,
          ...common,
          ...(values.prefix === undefined ? {} : { prefix: values.prefix }),
          ...(stalledInterval === undefined ? {} : { stalledInterval })
        }
  } catch (err) {
    const error = err as NodeJS.ErrnoException
    const coded = codedUsage.has(error)
    const usage = coded || err instanceof UsageError || error.code?.startsWith('ERR_PARSE_ARGS_') === true
    // a coded usage error's message names where it comes from already
    io.stderr.write(`${coded ? '' : `${WHERE}: `}${error.message}\n${usage ? 'Run "fastify-send-and-continue worker --help" for the options.\n' : ''}`)
    return usage ? 2 : 1
  }

  // registered before the worker starts: it looks the meter provider up then
  let served: MetricsServer | null = null
  if (metricsPort !== undefined) {
    try {
      served = await serveMetrics(WHERE, '--metrics-port', metricsPort)
    } catch (err) {
      const coded = isSendAndContinueError(err)
      io.stderr.write(`${coded ? '' : `${WHERE}: `}${(err as Error).message}\n`)
      return 1
    }
  }

  // listening before the worker starts: it may take (and finish) jobs before createWorker() resolves,
  // and a signal then must still close it gracefully
  let onSignal!: () => void
  const stopped = new Promise<void>((resolve) => { onSignal = () => { resolve() } })
  io.signals.on('SIGTERM', onSignal)
  io.signals.on('SIGINT', onSignal)
  function unlisten (): void {
    io.signals.off('SIGTERM', onSignal)
    io.signals.off('SIGINT', onSignal)
  }
  let worker
  try {
    worker = await createWorker(options)
  } catch (err) {
    unlisten()
    await served?.close()
    io.stderr.write(`fastify-send-and-continue worker: ${(err as Error).message}\n`)
    return 1
  }
  const started: Record<string, unknown> = { queue: worker.queue, engine: options.engine ?? 'bullmq', tasks: options.tasks.map((task) => task.name) }
  if (served !== null) started.metrics = { port: served.port, path: METRICS_PATH }
  options.logger?.info(started, 'durable worker started')
  await stopped
  unlisten()
  await worker.close()
  await served?.close()
  return 0
}
