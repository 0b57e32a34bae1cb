import { test } from 'tap'
import type { Test } from 'tap'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { Summary, MAX_EARLY, UNACCOUNTED_SAMPLE } from '../lib/report/summary'
import { renderText } from '../lib/report/text'
import { renderHtml } from '../lib/report/html'
import type { Report } from '../lib/report/types'
import { envWithoutCoverage } from './child-env'

// The close line a response logs before its tasks run is a write-ahead record: a task it announced
// with no final line in the same process lifetime is lost work, and the report says so.

const root = join(__dirname, '..')
const cli = join(root, 'dist', 'cli.js')

type Line = Record<string, any>

async function tempDir (t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'sac-unaccounted-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  return dir
}

async function runCli (args: string[]): Promise<string> {
  const child = spawn(process.execPath, [cli, ...args], { env: envWithoutCoverage(), stdio: ['ignore', 'pipe', 'inherit'] })
  let stdout = ''
  child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString() })
  const [code] = await once(child, 'exit')
  if (code !== 0) throw new Error(`report exited with ${code}`)
  return stdout
}

function summarize (lines: Line[], filters = {}): Report {
  const summary = new Summary(filters)
  for (const line of lines) summary.add(JSON.stringify(line), 'app.log')
  return summary.result()
}

// hand-made lines in the plugin's format, one process unless told
const base = { pid: 1, hostname: 'web' }
const start = (instance: string, extra: Line = {}): Line => ({ level: 30, time: 1, ...base, deferredStart: { instance, concurrency: 100 }, msg: 'deferred work ready', ...extra })
const close = (reqId: string, tasks: number, extra: Line = {}, deferred: Line = {}): Line =>
  ({ level: 30, time: 2, ...base, reqId, deferred: { connection: 'finished', method: 'POST', route: '/import', statusCode: 202, responseTime: 1, tasks, ...deferred }, msg: 'response finished, running deferred work', ...extra })
const final = (reqId: string, outcome = 'completed', extra: Line = {}, deferred: Line = {}): Line =>
  ({ level: 30, time: 3, ...base, reqId, deferred: { task: 'importRows', outcome, connection: 'finished', method: 'POST', route: '/import', statusCode: 202, durationMs: 1, queuedMs: 0, ...deferred }, msg: 'deferred task', ...extra })
const shutdown = (extra: Line = {}): Line => ({ level: 30, time: 4, ...base, deferredShutdown: { drained: true, durationMs: 1, drainTimeout: 10000 }, msg: 'deferred work drained', ...extra })

test('a real app killed with SIGKILL while a task runs: report finds the task unaccounted, its process never logged a shutdown', async (t) => {
  const dir = await tempDir(t)
  const child = spawn(process.execPath, [join(__dirname, 'fixtures', 'report', 'hanging-app.cjs')], { env: envWithoutCoverage(), stdio: ['ignore', 'pipe', 'inherit'] })
  const exited = once(child, 'exit')
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    await exited
  })
  const log: string[] = []
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]()
  const until = async (check: (line: Line) => boolean): Promise<Line> => {
    for (let next = await lines.next(); next.done !== true; next = await lines.next()) {
      log.push(next.value)
      const line = JSON.parse(next.value) as Line
      if (check(line)) return line
    }
    throw new Error('the app ended before the line came')
  }
  const started = await until((line) => line.deferredStart !== undefined)
  t.match(started, { level: 30, msg: 'deferred work ready', pid: child.pid, deferredStart: { instance: /^[0-9a-f-]{36}$/, concurrency: 100, maxQueued: 10000, queue: null } })
  const listening = await until((line) => /^Server listening at /.test(line.msg))
  const response = await fetch(`${(listening.msg as string).replace('Server listening at ', '')}/import`, { method: 'POST' })
  t.equal(response.status, 202)
  t.match(await until((line) => line.deferred?.tasks !== undefined), { reqId: 'req-1', deferred: { tasks: 2 } }, 'the close line announces both tasks')
  t.match(await until((line) => line.deferred?.outcome !== undefined), { reqId: 'req-1', deferred: { task: 'audit', outcome: 'completed' } })
  // importRows still runs: kill -9
  child.kill('SIGKILL')
  await exited
  for await (const rest of { [Symbol.asyncIterator]: () => lines }) log.push(rest)
  const file = join(dir, 'app.log')
  await writeFile(file, log.join('\n') + '\n')

  const report = JSON.parse(await runCli(['report', '--json', file])) as Report
  t.equal(report.totals.unaccounted, 1)
  t.match(report.unaccounted, { afterShutdown: 0, withoutShutdown: 1 })
  t.match(report.unaccounted.samples, [{ reqId: 'req-1', route: '/import', tasks: 1, announced: 2, pid: child.pid, file, instance: started.deferredStart.instance, shutdown: false }])
  t.match(report.routes, [{ route: '/import', responses: 1, unaccounted: 1 }])
  t.equal(report.sources.starts, 1)
  const text = await runCli(['report', file])
  t.match(text.replace(/\n/g, ' '), 'Unaccounted tasks: 1, announced when their response closed and never logged a final line: 1 in a process that never logged a shutdown afterwards')
  t.match(text, /│ req-1\s+│ \/import\s+│\s+1 of 2 │/)
})

test('a process that logged a shutdown after the close line and never logged its task: unaccounted, a bug worth reporting', async (t) => {
  const report = summarize([start('a'), close('req-1', 2), final('req-1'), shutdown()])
  t.equal(report.totals.unaccounted, 1)
  t.match(report.unaccounted, { afterShutdown: 1, withoutShutdown: 0, samples: [{ reqId: 'req-1', tasks: 1, announced: 2, instance: 'a', shutdown: true }] })
  const text = renderText(report)
  t.match(text.replace(/\n/g, ' '), '1 in a process that logged a shutdown afterwards (lost by the plugin: a bug worth reporting)')
  t.match(text, 'yes: a bug, please report it')
  const html = renderHtml(report)
  t.match(html, /<tr data-unaccounted="req-1" data-count="1" data-lost-after-shutdown="true">/)
  t.match(html, 'data-total="unaccounted" data-value="1"')
  t.match(html, '<br>instance a')

  t.equal(summarize([close('req-1', 1), shutdown(), final('req-1')]).totals.unaccounted, 0, 'a final line after the shutdown line still counts: the drain logged it')
})

test('a process lifetime runs from its start line to the next one: containers restart as pid 1 on the same hostname, ids at req-1', async (t) => {
  const lines = [
    start('first'), close('req-1', 1), close('req-2', 1), final('req-2'),
    // killed; the container restarts: pid 1 on the same hostname, ids from req-1 again
    start('second'), close('req-1', 1), final('req-1'), shutdown()
  ]
  const report = summarize(lines)
  t.equal(report.totals.unaccounted, 1, 'the second run\'s req-1 does not account for the first run\'s')
  t.match(report.unaccounted, { afterShutdown: 0, withoutShutdown: 1, samples: [{ reqId: 'req-1', instance: 'first', shutdown: false }] })
  t.equal(report.sources.starts, 2)
  t.equal(report.sources.processes, 1)

  const withoutStarts = summarize(lines.filter((line) => line.deferredStart === undefined))
  t.equal(withoutStarts.totals.unaccounted, 1, 'without start lines, pid and hostname over the whole log: the two req-1 add up')
  t.match(withoutStarts.unaccounted, { afterShutdown: 1, samples: [{ reqId: 'req-1', instance: null, shutdown: true }] },
    'and the second run\'s shutdown line reads as if the first run had shut down: what the start line is there for')

  const twoHosts = summarize([close('req-1', 1, { hostname: 'web-1' }), final('req-1', 'completed', { hostname: 'web-2' })])
  t.equal(twoHosts.totals.unaccounted, 1, 'a final line of another host does not account for it')
})

test('what counts as a final line: every outcome, skipped and dropped too; durable jobs are followed by jobId instead', async (t) => {
  const outcomes = ['completed', 'failed', 'timeout', 'skipped', 'cancelled', 'dropped']
  const report = summarize([close('r', outcomes.length), ...outcomes.map((outcome) => final('r', outcome))])
  t.equal(report.totals.unaccounted, 0)

  const durable = summarize([
    close('r', 0, {}, { jobs: 1 }),
    final('r', 'enqueued', {}, { jobId: 'j', queue: 'q' }),
    close('s', 1),
    final('s', 'completed', {}, { jobId: 'k', queue: 'q' })
  ])
  t.equal(durable.totals.unaccounted, 1, 'a job\'s final line does not account for an in-process task')
  t.equal(durable.totals.responses, 2, 'a close line with jobs is a response like any other')
  t.equal(durable.jobs.pending, 1)
  t.equal(summarize([{ ...close('r', 0), deferred: { connection: 'finished', route: '/import', jobs: 2 } }]).totals.responses, 1, 'a close line with jobs and no tasks')
})

test('final lines read before their close line: a task dropped before its response closed, files of one process read newest first', async (t) => {
  t.equal(summarize([final('r', 'dropped'), close('r', 2), final('r')]).totals.unaccounted, 0)
  t.equal(summarize([final('r'), final('r'), close('r', 1)]).totals.unaccounted, 0, 'more final lines than announced: a task registered after the close line')
  t.equal(summarize([close('r', 1), close('r', 2), final('r'), final('r')]).totals.unaccounted, 1, 'two requests under one id (a client\'s x-request-id): their tasks add up')

  const lines: Line[] = []
  for (let i = 0; i <= MAX_EARLY; i++) lines.push(final(`early-${i}`))
  lines.push(close('early-0', 1), close(`early-${MAX_EARLY}`, 1))
  const report = summarize(lines)
  t.equal(report.totals.unaccounted, 1, `at most ${MAX_EARLY} early final lines are kept per lifetime, the oldest go first`)
  t.match(report.unaccounted.samples, [{ reqId: 'early-0' }])
})

test('filters: lost work is matched over every line and reported for the close lines kept; null with --task', async (t) => {
  const lines = [close('a', 1, { time: 10 }), final('a', 'completed', { time: 50 }), close('b', 1, { time: 20 }), close('c', 1, { time: 60 }, { route: '/other' })]
  const until = summarize(lines, { until: 30 })
  t.equal(until.totals.unaccounted, 1, 'a\'s final line after --until still accounts for it')
  t.match(until.unaccounted.samples, [{ reqId: 'b' }])
  t.equal(summarize(lines, { routes: ['/other'] }).totals.unaccounted, 1)
  t.same(summarize(lines, { routes: ['/other'] }).unaccounted.samples.map((sample) => sample.reqId), ['c'])
  const byTask = summarize(lines, { tasks: ['importRows'] })
  t.equal(byTask.totals.unaccounted, null, 'a close line names no task')
  t.match(byTask.unaccounted, { afterShutdown: 0, withoutShutdown: 0, samples: [] })
  t.notMatch(renderText(byTask), 'Unaccounted')
  t.match(renderHtml(byTask), 'data-total="unaccounted" data-value="null"')

  const many: Line[] = []
  for (let i = 0; i <= UNACCOUNTED_SAMPLE; i++) many.push(close(`r${i}`, 1))
  const capped = summarize(many)
  t.equal(capped.totals.unaccounted, UNACCOUNTED_SAMPLE + 1)
  t.equal(capped.unaccounted.samples.length, UNACCOUNTED_SAMPLE)
  t.match(renderText(capped), `(the first ${UNACCOUNTED_SAMPLE} requests shown)`)
  const none = summarize([close('r', 1), final('r')])
  t.match(renderText(none).replace(/\n/g, ' '), 'Unaccounted tasks: 0 (every task announced when its response closed logged its final line).')
  t.match(summarize([start('x', { pid: 'not a number' })]).sources, { starts: 1 })
  t.match(summarize([{ ...start('x'), deferredStart: { concurrency: 1 } }, close('r', 1)]).unaccounted.samples, [{ instance: null }], 'a start line without an instance')
})

test('the HTML page lists unaccounted tasks of requests without an id, from lines without a process', async (t) => {
  const summary = new Summary()
  summary.add(JSON.stringify({ level: 30, deferred: { connection: 'finished', route: '/import', statusCode: 202, responseTime: 1, tasks: 1 } }))
  const html = renderHtml(summary.result())
  t.match(html, /<tr data-unaccounted="" data-count="1" data-lost-after-shutdown="false">.*<td class="text ids">-<\/td><td class="text">no: crashed, killed, or still running<\/td>/)
})
