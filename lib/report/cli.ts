import { createReadStream, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { stat, writeFile } from 'node:fs/promises'
import { parseArgs } from 'node:util'
import type { Readable, Writable } from 'node:stream'
import { renderHtml } from './html'
import { readLines } from './read'
import { Summary } from './summary'
import type { ReportFilters } from './summary'
import { renderText, formatCount } from './text'
import { OUTCOMES } from './types'
import type { ReportOutcome } from './types'

/** What the bare command (and `--help`) prints: every command. */
export const COMMANDS = `Usage: fastify-send-and-continue <command> [options]

Commands:
  report [options] [file ...]               summarise the deferred work in pino logs
  worker <tasks-module> --sqlite <file>     run durable jobs (defineTask) in this process,
  worker <tasks-module> --redis <url>       from a SQLite file or from BullMQ on Redis
  status --sqlite <file> | --redis <url>    show a durable queue: jobs per state and per task,
                                            the oldest waiting job, the newest failed ones

Run "fastify-send-and-continue <command> --help" for a command's options.
`

export const USAGE = `Usage: fastify-send-and-continue report [options] [file ...]

Summarises the deferred work in pino logs (NDJSON, plain or gzip) per route and task:
outcomes, aborted connections, durations, the slowest tasks, the failures, refused requests,
shutdowns and durable jobs. Reads standard input when no file is given, or for "-". Give the
web and the worker logs together: a durable job is counted once, by its latest final line
(the highest attempt, then the latest time).

Options:
  --route <route>      only this route pattern, as logged (repeatable)
  --task <name>        only this task (repeatable)
  --since <time>       only lines from this time: ISO 8601, epoch ms, or a duration ago (30m, 6h, 2d)
  --until <time>       only lines up to this time, same forms
  --json               print the report as one JSON object
  --html <file>        also write a self-contained HTML page with charts to <file>
  --fail-on <list>     exit 1 when any of these outcomes appears (e.g. failed,timeout)
  -v, --version        print the version
  -h, --help           show this help

Exit status: 0, 1 when --fail-on matched, 2 on a usage error or an unreadable input.
`

export interface Io {
  stdin: Readable & { isTTY?: boolean }
  stdout: Writable
  stderr: Writable & { isTTY?: boolean }
  /** The clock for relative --since/--until, epoch ms. */
  now?: () => number
}

class UsageError extends Error {}

/** The package's version; the same relative path from lib/report and from dist/report. */
export const VERSION: string = JSON.parse(readFileSync(join(__dirname, '..', '..', 'package.json'), 'utf8')).version

const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }

/** Parses `--since`/`--until`: a duration ago (`15m`), epoch milliseconds, or an ISO 8601 date. */
export function parseTime (option: string, value: string, now: number): number {
  const ago = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(value)
  if (ago !== null) return now - Number(ago[1]) * units[ago[2]]
  if (/^\d+$/.test(value)) return Number(value)
  const time = Date.parse(value)
  if (Number.isNaN(time)) {
    throw new UsageError(`${option} should be an ISO 8601 date, epoch milliseconds or a duration like 30m, 6h or 2d, instead got '${value}'`)
  }
  return time
}

function parseOutcomes (value: string): ReportOutcome[] {
  const outcomes = value.split(',').map((outcome) => outcome.trim()).filter((outcome) => outcome !== '')
  const unknown = outcomes.filter((outcome) => !(OUTCOMES as readonly string[]).includes(outcome))
  if (outcomes.length === 0 || unknown.length > 0) {
    throw new UsageError(`--fail-on should list outcomes among ${OUTCOMES.join(', ')}, instead got '${value}'`)
  }
  return outcomes as ReportOutcome[]
}

/** Redraws one line on a terminal, at most every 200 ms. */
class Progress {
  #stream: Writable
  #total: number | null
  #bytes = 0
  #lastDraw = 0
  #drawn = false

  constructor (stream: Writable, total: number | null) {
    this.#stream = stream
    this.#total = total
  }

  add (bytes: number, lines: number): void {
    this.#bytes += bytes
    const now = Date.now()
    if (now - this.#lastDraw < 200) return
    this.#lastDraw = now
    const mb = (this.#bytes / 1_048_576).toFixed(1)
    const of = this.#total === null ? '' : ` of ${(this.#total / 1_048_576).toFixed(1)} MB (${Math.floor(this.#bytes / this.#total * 100)}%)`
    this.#stream.write(`\r\x1b[2Kreading logs: ${mb} MB${of}, ${formatCount(lines)} lines`)
    this.#drawn = true
  }

  done (): void {
    if (this.#drawn) this.#stream.write('\r\x1b[2K')
  }
}

async function report (args: string[], io: Io): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      route: { type: 'string', multiple: true },
      task: { type: 'string', multiple: true },
      since: { type: 'string' },
      until: { type: 'string' },
      json: { type: 'boolean' },
      html: { type: 'string' },
      'fail-on': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
      version: { type: 'boolean', short: 'v' }
    }
  })
  if (values.help === true) {
    io.stdout.write(USAGE)
    return 0
  }
  if (values.version === true) {
    io.stdout.write(`${VERSION}\n`)
    return 0
  }
  const now = (io.now ?? Date.now)()
  const filters: ReportFilters = { routes: values.route, tasks: values.task }
  if (values.since !== undefined) filters.since = parseTime('--since', values.since, now)
  if (values.until !== undefined) filters.until = parseTime('--until', values.until, now)
  const failOn = values['fail-on'] === undefined ? [] : parseOutcomes(values['fail-on'])

  const files = positionals.length === 0 ? ['-'] : positionals
  if (files.includes('-') && io.stdin.isTTY === true) {
    throw new UsageError('give a log file, or pipe one in: fastify-send-and-continue report app.log')
  }
  let total: number | null = 0
  for (const file of files) {
    // stat first: a missing file fails before any output, and the sizes give the progress its end
    if (file === '-') total = null
    else {
      const size = (await stat(file)).size
      if (total !== null) total += size
    }
  }

  const summary = new Summary(filters, VERSION)
  let lines = 0
  const progress = io.stderr.isTTY === true ? new Progress(io.stderr, total) : null
  for (const file of files) {
    await readLines(
      file === '-' ? io.stdin : createReadStream(file),
      (line) => { lines++; summary.add(line, file) },
      progress === null ? undefined : (bytes) => progress.add(bytes, lines)
    )
  }
  progress?.done()

  const result = summary.result()
  io.stdout.write(values.json === true ? JSON.stringify(result, null, 2) + '\n' : renderText(result))
  if (values.html !== undefined) {
    await writeFile(values.html, renderHtml(result))
    io.stderr.write(`HTML report written to ${values.html}\n`)
  }
  const seen = failOn.filter((outcome) => result.totals.outcomes[outcome] > 0)
  if (seen.length > 0) {
    io.stderr.write(`--fail-on: ${seen.map((outcome) => `${formatCount(result.totals.outcomes[outcome])} ${outcome}`).join(', ')}\n`)
    return 1
  }
  return 0
}

/** Runs the command line; resolves to the exit status. */
export async function main (argv: string[], io: Io): Promise<number> {
  const [command, ...args] = argv
  try {
    if (command === 'report') return await report(args, io)
    if (command === '--version' || command === '-v') {
      io.stdout.write(`${VERSION}\n`)
      return 0
    }
    if (command === undefined || command === '-h' || command === '--help' || command === 'help') {
      io.stdout.write(COMMANDS)
      return command === undefined ? 2 : 0
    }
    throw new UsageError(`unknown command '${command}'`)
  } catch (err) {
    const error = err as NodeJS.ErrnoException
    // parseArgs' own errors (unknown option, missing value) are usage errors too
    const usage = err instanceof UsageError || error.code?.startsWith('ERR_PARSE_ARGS_') === true
    io.stderr.write(`fastify-send-and-continue: ${error.message}\n${usage ? 'Run "fastify-send-and-continue report --help" for the options.\n' : ''}`)
    return 2
  }
}
