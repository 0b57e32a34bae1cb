import tap, { test } from 'tap'
import type { Test } from 'tap'
import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough, Readable, Writable } from 'node:stream'
import { gzipSync } from 'node:zlib'
import { COMMANDS, main, parseTime, USAGE } from '../lib/report/cli'
import type { Report } from '../lib/report/types'
import { appLogFacts, syntheticLines, writeAppLog } from './fixtures/report/logs'

const root = join(__dirname, '..')
// several tests spawn the CLI through the TypeScript loader: seconds each on a busy machine
tap.setTimeout(120_000)
const pkgVersion: string = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version

class Sink extends Writable {
  text = ''
  isTTY?: boolean
  constructor (isTTY?: boolean) {
    super()
    this.isTTY = isTTY
  }

  override _write (chunk: Buffer, _encoding: string, done: () => void): void {
    this.text += chunk.toString()
    done()
  }
}

interface Run { code: number, stdout: string, stderr: string }

async function run (argv: string[], options: { stdin?: Readable & { isTTY?: boolean }, tty?: boolean, now?: number } = {}): Promise<Run> {
  const stdout = new Sink()
  const stderr = new Sink(options.tty)
  const stdin = options.stdin ?? Object.assign(Readable.from([]), { isTTY: true })
  const code = await main(argv, { stdin, stdout, stderr, now: options.now === undefined ? undefined : () => options.now as number })
  return { code, stdout: stdout.text, stderr: stderr.text }
}

let appLog: Promise<string> | null = null
/** The log of a real app, written once per file run. */
function sharedAppLog (): Promise<string> {
  appLog ??= (async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sac-cli-'))
    tap.teardown(() => rm(dir, { recursive: true, force: true }))
    const file = join(dir, 'app.log')
    await writeAppLog(file)
    return file
  })()
  return appLog
}

async function tempDir (t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'sac-cli-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  return dir
}

test('the bare command\'s help lists report, worker and status', async (t) => {
  const bare = await run([])
  t.same(bare, { code: 2, stdout: COMMANDS, stderr: '' }, 'no command: every command, and a usage error status')
  t.match(bare.stdout, /\n {2}report \[options\] \[file \.\.\.\] +summarise[^\n]*\n {2}worker <tasks-module> --sqlite <file> [^\n]*\n {2}worker <tasks-module> --redis <url> /)
  t.match(bare.stdout, /\n {2}status --sqlite <file> \| --redis <url> +show a durable queue/)
  t.match(bare.stdout, 'fastify-send-and-continue <command> --help')
})

test('help and usage errors', async (t) => {
  for (const help of ['--help', '-h', 'help']) t.same(await run([help]), { code: 0, stdout: COMMANDS, stderr: '' })
  t.same(await run(['report', '--help']), { code: 0, stdout: USAGE, stderr: '' })

  const unknown = await run(['summarize'])
  t.equal(unknown.code, 2)
  t.match(unknown.stderr, /unknown command 'summarize'\nRun "fastify-send-and-continue report --help"/)

  const badOption = await run(['report', '--colour', 'x.log'])
  t.equal(badOption.code, 2)
  t.match(badOption.stderr, /Unknown option '--colour'[\s\S]*report --help/)
  const missingValue = await run(['report', '--route'])
  t.equal(missingValue.code, 2)
  t.match(missingValue.stderr, /--route/)

  for (const value of ['boom', ',', 'failed,exploded']) {
    const badFailOn = await run(['report', '--fail-on', value, 'x.log'])
    t.equal(badFailOn.code, 2)
    t.match(badFailOn.stderr, `--fail-on should list outcomes among completed, failed, timeout, skipped, cancelled, dropped, instead got '${value}'`)
  }
  const badSince = await run(['report', '--since', 'yesterday-ish', 'x.log'])
  t.equal(badSince.code, 2)
  t.match(badSince.stderr, "--since should be an ISO 8601 date, epoch milliseconds or a duration like 30m, 6h or 2d, instead got 'yesterday-ish'")

  const noInput = await run(['report'])
  t.equal(noInput.code, 2, 'no file and a terminal on stdin: nothing to read')
  t.match(noInput.stderr, /give a log file, or pipe one in/)
})

test('parseTime: durations ago, epoch milliseconds, ISO 8601', async (t) => {
  const now = Date.UTC(2025, 5, 1, 12)
  t.equal(parseTime('--since', '90s', now), now - 90_000)
  t.equal(parseTime('--since', '15m', now), now - 900_000)
  t.equal(parseTime('--since', '1.5h', now), now - 5_400_000)
  t.equal(parseTime('--since', '2d', now), now - 172_800_000)
  t.equal(parseTime('--since', '250ms', now), now - 250)
  t.equal(parseTime('--since', '1735689600000', now), 1735689600000)
  t.equal(parseTime('--until', '2025-01-01T00:00:00Z', now), Date.UTC(2025, 0, 1))
  t.equal(parseTime('--until', '2025-01-01', now), Date.UTC(2025, 0, 1))
  t.throws(() => parseTime('--until', '5 minutes', now), /--until should be/)
})

test('report: the terminal table of a real app log', async (t) => {
  const file = await sharedAppLog()
  const { code, stdout, stderr } = await run(['report', file])
  t.equal(code, 0)
  t.equal(stderr, '', 'no progress line when stderr is not a terminal')
  t.match(stdout, /^Read \d+ lines: 26 used, \d+ skipped/)
  t.match(stdout, '14 tasks: 6 completed, 3 failed, 1 timeout, 1 skipped, 2 cancelled, 1 dropped.')
  t.match(stdout, '10 responses carried deferred work, 1 aborted by the client (10.0%).')
  t.match(stdout, /│ \/orders\s+│ failed\s+│\s+2 │ CRM unavailable: 503\s+│ order-1\s+│\n│ syncCrm\s+│[^\n]*│ order-2\s+│/)
  t.ok(stdout.split('\n').every((line) => line.length <= 100), 'every line fits 100 columns')
  t.match(stdout, /Shutdowns: 1, 1 ran out of drain time/)
})

test('report --json: one JSON object with totals and groups', async (t) => {
  const file = await sharedAppLog()
  const { code, stdout } = await run(['report', '--json', file])
  t.equal(code, 0)
  const report = JSON.parse(stdout) as Report
  t.same(report.totals, { tasks: 14, outcomes: appLogFacts.outcomes, aborted: 0, responses: 10, abortedResponses: 1, refused: 0, unaccounted: 0 })
  const crm = report.groups.find((group) => group.task === 'syncCrm')
  t.match(crm, {
    route: '/orders',
    task: 'syncCrm',
    tasks: 3,
    outcomes: { failed: 3 },
    aborted: 0,
    durationMs: { count: 3 },
    queuedMs: { count: 3 },
    slowest: [{ reqId: String, durationMs: Number, outcome: 'failed' }],
    failures: [{ outcome: 'failed', message: 'CRM unavailable: 503', count: 2, samples: [{ reqId: 'order-1', file }, { reqId: 'order-2', file }] }]
  })
  for (const key of ['p50', 'p95', 'p99', 'max'] as const) t.type(crm?.durationMs[key], 'number')
  t.equal(report.version, pkgVersion)
  t.same(report.sources, { files: [file], processes: 1, starts: 1 })

  // one time format: every time in the JSON is ISO 8601 (or null), no epoch milliseconds anywhere
  const times: unknown[] = []
  const numbers: number[] = []
  JSON.parse(stdout, (key, value) => {
    if (['time', 'from', 'to', 'since', 'until', 'start'].includes(key)) times.push(value)
    if (typeof value === 'number') numbers.push(value)
    return value
  })
  t.ok(times.length > 20, `${times.length} times`)
  t.same(times.filter((time) => time !== null && !(typeof time === 'string' && /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/.test(time))), [], 'all ISO 8601')
  t.same(numbers.filter((n) => n > 1e12), [], 'no epoch milliseconds')
  t.match(report.shutdowns.recent[0], { time: /Z$/, file, pid: Number, hostname: String })
})

test('--version and -v print the package version', async (t) => {
  for (const argv of [['--version'], ['-v'], ['report', '--version']]) {
    t.same(await run(argv), { code: 0, stdout: `${pkgVersion}\n`, stderr: '' }, argv.join(' '))
  }
  t.match(USAGE, '-v, --version')
})

test('--fail-on exits 1 when one of the outcomes appears, 0 otherwise', async (t) => {
  const file = await sharedAppLog()
  const failing = await run(['report', '--json', '--fail-on', 'failed,timeout', file])
  t.equal(failing.code, 1)
  t.equal(failing.stderr, '--fail-on: 3 failed, 1 timeout\n')
  t.ok(JSON.parse(failing.stdout), 'the report is printed all the same')
  const narrowed = await run(['report', '--fail-on', 'failed', '--route', '/signup', file])
  t.equal(narrowed.code, 0, 'filters apply first: no failure on /signup')

  const dir = await tempDir(t)
  const clean = join(dir, 'clean.log')
  await writeFile(clean, [...syntheticLines({ tasks: 5 })].join(''))
  t.equal((await run(['report', '--fail-on', 'timeout, dropped', clean])).code, 0)
})

test('filters from the command line: repeatable --route and --task, --since and --until', async (t) => {
  const dir = await tempDir(t)
  const file = join(dir, 'synthetic.log')
  await writeFile(file, [...syntheticLines({ tasks: 400, start: 10_000 })].join(''))
  const json = async (...args: string[]): Promise<Report> => JSON.parse((await run(['report', '--json', ...args, file], { now: 10_000 + 1200 })).stdout)

  const routes = await json('--route', '/orders', '--route', '/signup')
  t.same(routes.routes.map((route) => route.route), ['/orders', '/signup'])
  const tasks = await json('--task', 'audit')
  t.same([...new Set(tasks.groups.map((group) => group.task))], ['audit'])
  const window = await json('--since', '10300', '--until', new Date(10_599).toISOString())
  t.equal(window.totals.tasks, 100)
  const recent = await json('--since', '300ms')
  t.equal(recent.totals.tasks, 100, 'a duration counts back from now')
})

test('reads gzip files, several files, and standard input', async (t) => {
  const dir = await tempDir(t)
  const plain = [...syntheticLines({ tasks: 30 })].join('')
  await writeFile(join(dir, 'a.log.gz'), gzipSync(plain))
  await writeFile(join(dir, 'b.log'), plain)
  const both = JSON.parse((await run(['report', '--json', join(dir, 'a.log.gz'), join(dir, 'b.log')])).stdout) as Report
  t.equal(both.totals.tasks, 60)

  const piped = await run(['report', '--json'], { stdin: Readable.from([Buffer.from(plain)]) })
  t.equal((JSON.parse(piped.stdout) as Report).totals.tasks, 30, 'no file: standard input')
  const dash = await run(['report', '--json', '-', join(dir, 'b.log')], { stdin: Readable.from([gzipSync(plain)]) })
  t.equal((JSON.parse(dash.stdout) as Report).totals.tasks, 60, '"-" is standard input, gzip or not')
})

test('an unreadable input is exit status 2, before any output', async (t) => {
  const dir = await tempDir(t)
  const missing = await run(['report', join(dir, 'nope.log')])
  t.equal(missing.code, 2)
  t.equal(missing.stdout, '')
  t.match(missing.stderr, /ENOENT[\s\S]*nope\.log/)
  t.notMatch(missing.stderr, /--help/, 'not a usage error')

  await writeFile(join(dir, 'broken.gz'), Buffer.concat([gzipSync('x\n'.repeat(100)).subarray(0, 20), Buffer.from('junk')]))
  const broken = await run(['report', join(dir, 'broken.gz')])
  t.equal(broken.code, 2)
  t.match(broken.stderr, /fastify-send-and-continue: /)
})

test('a log without deferred work says so, with the likely reason', async (t) => {
  const { code, stdout } = await run(['report'], { stdin: Readable.from([Buffer.from('[12:00:00] INFO: pretty printed\n')]) })
  t.equal(code, 0)
  t.match(stdout, 'No deferred-work lines found. The report reads the NDJSON that pino writes (not pino-pretty output).')
})

test('a progress line on stderr when it is a terminal, erased at the end', async (t) => {
  const dir = await tempDir(t)
  const file = join(dir, 'big.log')
  await writeFile(file, [...syntheticLines({ tasks: 3000 })].join(''))
  const fromFile = await run(['report', '--json', file], { tty: true })
  const erase = '\r\x1b[2K'
  t.ok(fromFile.stderr.startsWith(`${erase}reading logs: `))
  t.match(fromFile.stderr, /reading logs: \d+\.\d MB of \d+\.\d MB \(\d+%\), [\d,]+ lines/)
  t.ok(fromFile.stderr.endsWith(erase), 'the line is erased before the report')
  t.ok(JSON.parse(fromFile.stdout), 'stdout holds only the report')

  const piped = await run(['report'], { tty: true, stdin: Readable.from([Buffer.from('x\n')]) })
  t.match(piped.stderr, /reading logs: 0\.0 MB, 0 lines/, 'no total size for standard input')
  const empty = await run(['report'], { tty: true, stdin: Readable.from([]) })
  t.equal(empty.stderr, '', 'nothing read, nothing drawn')
})

test('--html writes the page and still prints the report', async (t) => {
  const file = await sharedAppLog()
  const dir = await tempDir(t)
  const out = join(dir, 'report.html')
  const { code, stdout, stderr } = await run(['report', '--json', '--html', out, file])
  t.equal(code, 0)
  t.equal(stderr, `HTML report written to ${out}\n`)
  const html = await readFile(out, 'utf8')
  t.match(html, /^<!doctype html>/)
  const embedded = /<script type="application\/json" id="report-data">(.*)<\/script>/.exec(html)?.[1] as string
  t.same(JSON.parse(embedded), JSON.parse(stdout), 'the page embeds the same numbers')
})

function spawnCli (args: string[], stdin?: string): Promise<Run> {
  // the test runner's loader runs the TypeScript entry as the bin would run its build
  const child = spawn(process.execPath, [...process.execArgv, join(root, 'lib', 'cli.ts'), ...args], { cwd: root })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk) => { stdout += chunk })
  child.stderr.on('data', (chunk) => { stderr += chunk })
  const input = new PassThrough()
  input.pipe(child.stdin)
  input.end(stdin ?? '')
  return new Promise((resolve) => child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr })))
}

test('the bin end to end: exit status, JSON on stdout, standard input', async (t) => {
  const file = await sharedAppLog()
  const failing = await spawnCli(['report', '--json', '--fail-on', 'failed', file])
  t.equal(failing.code, 1)
  t.equal((JSON.parse(failing.stdout) as Report).totals.tasks, 14)
  const piped = await spawnCli(['report', '--json'], await readFile(file, 'utf8'))
  t.equal(piped.code, 0)
  t.equal((JSON.parse(piped.stdout) as Report).totals.tasks, 14)
  const usage = await spawnCli([])
  t.equal(usage.code, 2)
})

test('a reader that closes the pipe early (report | head) ends the command quietly', async (t) => {
  const dir = await tempDir(t)
  const file = join(dir, 'many-tasks.log')
  // a thousand task names: a report far larger than a pipe's buffer
  const lines = Array.from({ length: 1000 }, (_, i) => JSON.stringify({ reqId: `r${i}`, deferred: { task: `task${i}`, outcome: 'completed', route: '/r', durationMs: 1, queuedMs: 0 } }))
  await writeFile(file, lines.join('\n'))
  const child = spawn(process.execPath, [...process.execArgv, join(root, 'lib', 'cli.ts'), 'report', '--json', file], { cwd: root })
  let stderr = ''
  child.stderr.on('data', (chunk) => { stderr += chunk })
  child.stdout.once('data', () => child.stdout.destroy())
  const code = await new Promise((resolve) => child.on('close', resolve))
  t.equal(code, 0)
  t.notMatch(stderr, /EPIPE|Error/)
})

test('the package exposes the bin, and the build keeps its shebang', async (t) => {
  const pkg = JSON.parse(await readFile(join(root, 'package.json'), 'utf8'))
  t.same(pkg.bin, { 'fastify-send-and-continue': 'dist/cli.js' })
  t.ok(pkg.files.includes('dist'), 'the bin ships with the package')
  const source = await readFile(join(root, 'lib', 'cli.ts'), 'utf8')
  t.ok(source.startsWith('#!/usr/bin/env node\n'))
  const built = await readFile(join(root, 'dist', 'cli.js'), 'utf8').catch(() => '(missing: npm run build; npm test builds first)')
  t.ok(built.startsWith('#!/usr/bin/env node\n'), 'tsc keeps the shebang on the first line of dist/cli.js')
})
