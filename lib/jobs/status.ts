import { parseArgs } from 'node:util'
import type { Writable } from 'node:stream'
import { describe, FST_SAC_ENGINE_OPTION, FST_SAC_INVALID_OPTION, FST_SAC_UNKNOWN_OPTION } from '../errors'
import { STATUS_STATES } from '../engines/status'
import type { QueueStatus, StateCounts } from '../engines/status'
import { VERSION } from '../report/cli'
import { formatCount, formatTime, table } from '../report/text'
import { DEFAULT_QUEUE_NAME } from './types'

export const STATUS_USAGE = `Usage: fastify-send-and-continue status --sqlite <file> [options]
       fastify-send-and-continue status --redis <url> [options]

Shows a durable queue at a glance: its jobs per state and per task, the oldest waiting job and
the newest failed ones. Reads only: nothing in the store changes (a SQLite file is opened
read-only; a BullMQ queue is read through its Queue API, without its meta update).

Options:
  --sqlite <file>      the SQLite engine's database file (one of --sqlite and --redis is required)
  --redis <url>        a redis:// or rediss:// URL, or the path of a unix socket
  --name <queue>       the queue name (default fastify-send-and-continue)
  --prefix <prefix>    Redis: BullMQ's key prefix (default bull)
  --failed <n>         failed jobs to list, newest first (default 10, at most 1000)
  --json               print one JSON object
  -h, --help           show this help

Exit status: 0, 1 when the store cannot be read, 2 on a usage error.
`

const WHERE = 'fastify-send-and-continue status'
const FAILED_DEFAULT = 10
const FAILED_MAX = 1000
// how long Redis has to answer, as for a worker's startup
const REDIS_TIMEOUT = 5000

/** What each option takes, as its error message says it. */
const EXPECTED = {
  sqlite: 'the path of a SQLite database file',
  redis: 'a redis:// or rediss:// URL, or the path of a unix socket',
  name: 'a queue name',
  prefix: "BullMQ's key prefix",
  failed: `a whole number from 0 to ${FAILED_MAX}`,
  json: 'a flag without a value',
  help: 'a flag without a value'
} as const

type OptionName = keyof typeof EXPECTED

const OPTIONS = {
  sqlite: { type: 'string' },
  redis: { type: 'string' },
  name: { type: 'string' },
  prefix: { type: 'string' },
  failed: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' }
} as const satisfies Record<OptionName, { type: 'string' | 'boolean', short?: string }>

export interface StatusIo {
  stdout: Writable
  stderr: Writable
}

export interface Settings {
  store: { engine: 'sqlite', path: string } | { engine: 'bullmq', url: string, prefix: string | undefined }
  queue: string
  failed: number
  json: boolean
}

/** The `--json` object. Times are ISO 8601. */
export interface StatusReport {
  version: string
  engine: 'sqlite' | 'bullmq'
  queue: string
  /** When the store was read. */
  time: string
  states: StateCounts
  tasks: QueueStatus['tasks']
  oldestWaiting: { id: string, task: string, enqueuedAt: string, waitingMs: number } | null
  failed: Array<{ id: string, task: string, error: string | null, attempts: number, failedAt: string }>
}

/**
 * Reads the arguments by hand from parseArgs' tokens, so every mistake gets a coded error naming
 * the option, what it takes and what was given.
 */
export function parseStatusArgs (args: string[]): Settings | 'help' {
  const { tokens } = parseArgs({ args, strict: false, allowPositionals: true, tokens: true, options: OPTIONS })
  const given = new Map<OptionName, string>()
  for (const token of tokens) {
    if (token.kind === 'positional') {
      throw new FST_SAC_INVALID_OPTION(WHERE, 'arguments', 'options only (the store is given by --sqlite or --redis)', describe(token.value))
    }
    if (token.kind === 'option-terminator') continue
    const name = token.name as OptionName
    if (!Object.hasOwn(EXPECTED, name)) {
      throw new FST_SAC_UNKNOWN_OPTION(WHERE, describe(token.rawName), Object.keys(EXPECTED).map((option) => `--${option}`).join(', '))
    }
    const option = `--${name}`
    if (given.has(name)) throw new FST_SAC_INVALID_OPTION(WHERE, option, 'given once', 'it twice')
    const value = token.value
    if (OPTIONS[name].type === 'boolean') {
      if (value !== undefined) throw new FST_SAC_INVALID_OPTION(WHERE, option, EXPECTED[name], describe(value))
      given.set(name, '')
      continue
    }
    // `--sqlite --json`: the value is missing, not '--json' (`--sqlite=-file` for a name like that)
    if (value === undefined || (token.inlineValue === false && value.startsWith('-'))) {
      throw new FST_SAC_INVALID_OPTION(WHERE, option, `followed by ${EXPECTED[name]}`, value === undefined ? 'nothing' : `the option ${describe(value)}`)
    }
    given.set(name, value)
  }
  if (given.has('help')) return 'help'

  const sqlite = given.get('sqlite')
  const redis = given.get('redis')
  if ((sqlite === undefined) === (redis === undefined)) {
    throw new FST_SAC_INVALID_OPTION(WHERE, 'the store', 'given by one of --sqlite <file> and --redis <url>', sqlite === undefined ? 'neither' : 'both')
  }
  for (const name of ['sqlite', 'name', 'prefix'] as const) {
    if (given.get(name) === '') throw new FST_SAC_INVALID_OPTION(WHERE, `--${name}`, EXPECTED[name], "''")
  }
  if (redis !== undefined && !/^rediss?:\/\/|^\//.test(redis)) throw new FST_SAC_INVALID_OPTION(WHERE, '--redis', EXPECTED.redis, describe(redis))
  if (sqlite !== undefined && given.has('prefix')) throw new FST_SAC_ENGINE_OPTION(WHERE, '--prefix', 'bullmq', 'sqlite')
  const failedText = given.get('failed') ?? String(FAILED_DEFAULT)
  const failed = Number(failedText)
  if (!/^\d+$/.test(failedText) || failed > FAILED_MAX) throw new FST_SAC_INVALID_OPTION(WHERE, '--failed', EXPECTED.failed, describe(failedText))
  return {
    store: sqlite !== undefined ? { engine: 'sqlite', path: sqlite } : { engine: 'bullmq', url: redis as string, prefix: given.get('prefix') },
    queue: given.get('name') ?? DEFAULT_QUEUE_NAME,
    failed,
    json: given.has('json')
  }
}

async function read (settings: Settings): Promise<QueueStatus> {
  const { store, queue, failed } = settings
  if (store.engine === 'sqlite') {
    const { readSqliteStatus } = require('../engines/sqlite/status') as typeof import('../engines/sqlite/status')
    return readSqliteStatus({ path: store.path, queue, failed, where: WHERE })
  }
  const { assertDrivers, BULLMQ_DRIVERS } = require('../engines/driver') as typeof import('../engines/driver')
  assertDrivers(WHERE, 'bullmq', BULLMQ_DRIVERS)
  const { readBullStatus } = require('../engines/bullmq/status') as typeof import('../engines/bullmq/status')
  const connection = store.url.startsWith('/') ? { path: store.url } : store.url
  return await readBullStatus({ connection, name: queue, prefix: store.prefix, failed, timeout: REDIS_TIMEOUT, where: WHERE })
}

function toReport (settings: Settings, status: QueueStatus, version: string, now: number): StatusReport {
  const oldest = status.oldestWaiting
  return {
    version,
    engine: settings.store.engine,
    queue: settings.queue,
    time: new Date(now).toISOString(),
    states: status.states,
    tasks: status.tasks,
    oldestWaiting: oldest === null
      ? null
      : { id: oldest.id, task: oldest.task, enqueuedAt: new Date(oldest.enqueuedAt).toISOString(), waitingMs: Math.max(0, now - oldest.enqueuedAt) },
    failed: status.failed.map((job) => ({ ...job, failedAt: new Date(job.failedAt).toISOString() }))
  }
}

/** A wait as a person reads it: `850 ms`, `42 s`, `3 min 12 s`, `5 h 4 min`, `2 d 3 h`. */
export function formatAge (ms: number): string {
  if (ms < 1000) return `${ms} ms`
  const s = Math.floor(ms / 1000)
  if (s < 60) return `${s} s`
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`
  if (s < 86_400) return `${Math.floor(s / 3600)} h ${Math.floor(s % 3600 / 60)} min`
  return `${Math.floor(s / 86_400)} d ${Math.floor(s % 86_400 / 3600)} h`
}

/** The terminal view. */
export function renderStatus (report: StatusReport): string {
  const out: string[] = [`Queue ${report.queue} (${report.engine}), read at ${formatTime(report.time)}`, '']
  const states = STATUS_STATES.map((state) => `${formatCount(report.states[state])} ${state}`).join(', ')
  out.push(`Jobs: ${states}.`)
  if (report.tasks.length > 0) {
    const rows = report.tasks.map((row) => [row.task, ...STATUS_STATES.map((state) => formatCount(row[state]))])
    out.push(table(['task', ...STATUS_STATES], ['left', ...STATUS_STATES.map(() => 'right' as const)], rows, [0]))
  }
  out.push('')
  const oldest = report.oldestWaiting
  out.push(oldest === null
    ? 'Oldest waiting job: none (no job is due).'
    : `Oldest waiting job: ${oldest.id} (${oldest.task}), enqueued ${formatTime(oldest.enqueuedAt)}, ${formatAge(oldest.waitingMs)} ago.`)
  const failed = report.failed
  if (failed.length > 0) {
    out.push('', `Failed jobs, newest first (${formatCount(failed.length)} of ${formatCount(report.states.failed)}):`)
    const rows = failed.map((job) => [formatTime(job.failedAt), job.id, job.task, String(job.attempts), job.error ?? '-'])
    out.push(table(['failed at', 'job', 'task', 'attempts', 'error'], ['left', 'left', 'left', 'right', 'left'], rows, [1, 2, 4]))
  }
  return out.join('\n') + '\n'
}

/** `fastify-send-and-continue status ...`; resolves to the exit status. */
export async function runStatus (args: string[], io: StatusIo): Promise<number> {
  let settings: Settings | 'help'
  try {
    settings = parseStatusArgs(args)
  } catch (err) {
    io.stderr.write(`${(err as Error).message}\nRun "fastify-send-and-continue status --help" for the options.\n`)
    return 2
  }
  if (settings === 'help') {
    io.stdout.write(STATUS_USAGE)
    return 0
  }
  let status: QueueStatus
  try {
    status = await read(settings)
  } catch (err) {
    const { message } = err as Error
    io.stderr.write(`${message.startsWith(WHERE) ? message : `${WHERE}: ${message}`}\n`)
    return 1
  }
  const report = toReport(settings, status, VERSION, Date.now())
  io.stdout.write(settings.json ? JSON.stringify(report, null, 2) + '\n' : renderStatus(report))
  return 0
}
