import { test } from 'tap'
import type { Test } from 'tap'
import fc from 'fast-check'
import { createReadStream } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { gzipSync } from 'node:zlib'
import { Distribution, BUCKET_BOUNDS_MS, MIN_BARS } from '../lib/report/distribution'
import { Timeline, MAX_BARS, STEPS_MS } from '../lib/report/timeline'
import { readLines, MAX_LINE_LENGTH } from '../lib/report/read'
import { Summary, MAX_MESSAGES, OTHER_MESSAGES, RECENT_SHUTDOWNS, SAMPLE_REQ_IDS, SLOWEST, SUPERSEDED_PER_JOB, SUPERSEDED_SAMPLE } from '../lib/report/summary'
import { renderHtml } from '../lib/report/html'
import { renderText } from '../lib/report/text'
import type { Report } from '../lib/report/types'
import { appLogFacts, durableFacts, syntheticLines, writeAppLog, writeDurableLogs } from './fixtures/report/logs'

async function tempDir (t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'sac-report-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  return dir
}

function summarize (lines: string[], filters = {}): Report {
  const summary = new Summary(filters)
  for (const line of lines) summary.add(line)
  return summary.result()
}

function task (fields: Record<string, unknown>, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({
    level: 30,
    time: 1000,
    reqId: 'r',
    deferred: { task: 't', outcome: 'completed', connection: 'finished', route: '/r', statusCode: 200, durationMs: 1, queuedMs: 0, ...fields },
    msg: 'deferred task',
    ...extra
  })
}

test('the report of a real app log: every outcome, per route and task, with failures and the shutdown', async (t) => {
  const dir = await tempDir(t)
  const file = join(dir, 'app.log')
  await writeAppLog(file)
  const summary = new Summary()
  await readLines(createReadStream(file), (line) => summary.add(line))
  const report = summary.result()

  t.same(report.totals.outcomes, appLogFacts.outcomes)
  t.equal(report.totals.tasks, 14)
  t.equal(report.totals.responses, appLogFacts.responses)
  t.equal(report.totals.abortedResponses, appLogFacts.abortedResponses)
  t.same(report.routes.map((route) => route.route), appLogFacts.routes)
  t.match(report.routes.find((route) => route.route === '/export'), { responses: 1, aborted: 1, abortedRate: 1 })
  t.match(report.routes.find((route) => route.route === '/signup'), { responses: 4, aborted: 0, abortedRate: 0 })

  const crm = report.groups.find((group) => group.task === 'syncCrm')
  t.same(crm?.failures.map(({ message, samples }) => [message, samples.map((sample) => sample.reqId)]), Object.entries(appLogFacts.failures), 'grouped by message, most frequent first')
  t.match(crm?.failures[0].samples[0], { reqId: 'order-1', file: null, hostname: String, pid: process.pid, time: /^\d{4}-\d\d-\d\dT/ }, 'where the line came from')
  t.equal(crm?.durationMs.count, 3)

  const resize = report.groups.find((group) => group.task === 'resize')
  t.match(resize?.failures, [{ outcome: 'timeout', message: 'timed out after 10 ms', count: 1, samples: [{ reqId: 'thumb-1' }] }])
  t.equal(resize?.failures.length, 1)
  t.equal(resize?.slowest[0].reqId, 'thumb-1')
  t.ok((resize?.durationMs.max ?? 0) >= 10, 'a timed out task ran at least its time limit')

  const exportLink = report.groups.find((group) => group.task === 'emailExportLink')
  t.match(exportLink, { outcomes: { skipped: 1 }, aborted: 0, durationMs: { count: 0, p50: null }, queuedMs: { count: 0 }, slowest: [], failures: [] })

  const welcome = report.groups.find((group) => group.task === 'sendWelcomeEmail')
  t.match(welcome?.failures, [{ outcome: 'cancelled', message: 'the shutdown drain ran out', samples: [{ reqId: 'signup-4' }] }])
  t.equal(welcome?.durationMs.count, 3, 'the task cancelled in the queue never ran: no duration')
  t.equal(welcome?.queuedMs.count, 4, 'but it waited: its queue time counts')
  const rebuild = report.groups.find((group) => group.task === 'rebuildIndex')
  t.equal(rebuild?.durationMs.count, 1, 'a task cancelled while running has a duration')
  const audit = report.groups.find((group) => group.task === 'audit')
  t.match(audit?.failures, [{ outcome: 'dropped', message: 'the queue was full', samples: [{ reqId: 'signup-4' }] }])

  t.match(report.shutdowns, { count: 1, undrained: 1, recent: [{ drained: false, drainTimeout: 30, outcomes: appLogFacts.outcomes }] })
  t.match(report.lines, { used: 14 + 10 + 1 + 1, filtered: 0 }, 'tasks, responses, the shutdown, the start line')
  t.equal(report.totals.unaccounted, 0, 'every task the close lines announced logged its final line, the cancelled ones too')
  t.equal(report.lines.total, report.lines.used + report.lines.skipped, 'the foreign and non-JSON lines are skipped, not fatal')
  t.ok(report.period.from !== null && report.period.from <= (report.period.to as string))
})

test('exact counts and percentiles over lines whose numbers the test knows', async (t) => {
  const lines = [...syntheticLines({ tasks: 1200 })]
  const report = summarize(lines)
  t.equal(report.totals.tasks, 1200)
  t.equal(report.totals.responses, 1200)
  t.equal(report.totals.abortedResponses, 24, 'one in fifty')
  t.equal(report.totals.outcomes.failed, 60, 'one in twenty')
  t.equal(report.groups.length, 12, 'four routes by three tasks')
  t.equal(report.lines.skipped, 1200, 'the "incoming request" lines')

  for (const group of report.groups) {
    const durations = lines
      .map((line) => JSON.parse(line))
      .filter((line) => line.deferred?.task === group.task && line.deferred?.route === group.route)
      .map((line) => line.deferred.durationMs as number)
      .sort((a, b) => a - b)
    t.equal(group.durationMs.max, durations[durations.length - 1])
    t.equal(group.slowest.length, SLOWEST)
    t.same(group.slowest.map((slow) => slow.durationMs), durations.slice(-SLOWEST).reverse())
    t.equal(group.histogram.reduce((sum, bucket) => sum + bucket.count, 0), durations.length)
  }
})

test('percentiles are within 0.1% above the exact nearest-rank value, and max is exact', async (t) => {
  fc.assert(fc.property(
    fc.array(fc.integer({ min: 0, max: 3_600_000_000 }).map((us) => us / 1000), { minLength: 1, maxLength: 300 }),
    (values) => {
      const distribution = new Distribution(false)
      for (const value of values) distribution.record(value)
      const sorted = [...values].sort((a, b) => a - b)
      const stats = distribution.percentiles()
      if (stats.count !== values.length || stats.max !== sorted[sorted.length - 1]) return false
      for (const [key, p] of [['p50', 50], ['p95', 95], ['p99', 99]] as const) {
        const exact = sorted[Math.ceil((p / 100) * sorted.length) - 1]
        const got = stats[key] as number
        if (got < exact || got > exact * 1.001 + 1e-9 || got > (stats.max as number)) return false
      }
      return true
    }
  ), { numRuns: 300 })
  t.same(new Distribution(false).percentiles(), { count: 0, p50: null, p95: null, p99: null, max: null })
  t.same(new Distribution(false).buckets(), [], 'no buckets unless asked for')
})

test('the duration histogram: twenty bars per decade, each task in the bar of its upper bound, by outcome', async (t) => {
  t.equal(BUCKET_BOUNDS_MS[0], 0.1)
  t.equal(BUCKET_BOUNDS_MS[BUCKET_BOUNDS_MS.length - 1], 1_000_000)
  for (let i = 1; i < BUCKET_BOUNDS_MS.length; i++) {
    const ratio = BUCKET_BOUNDS_MS[i] / BUCKET_BOUNDS_MS[i - 1]
    if (ratio < 1.05 || ratio > 1.15) t.fail(`bars ${BUCKET_BOUNDS_MS[i - 1]} and ${BUCKET_BOUNDS_MS[i]} are ${ratio} apart`)
  }
  t.equal(BUCKET_BOUNDS_MS.filter((bound) => bound > 100 && bound <= 1000).length, 20, 'twenty bars per decade')

  // sixty tasks that all end between 200 and 214 ms land in one bar, not spread to "up to 500 ms"
  const tight = new Distribution(true)
  for (let i = 0; i < 60; i++) tight.record(200.5 + i * 0.2, i < 45 ? 'completed' : 'timeout')
  const tightBars = tight.buckets()
  t.same(tightBars.filter((bar) => bar.count > 0), [{ gt: 200, le: 224, count: 60, outcomes: { completed: 45, failed: 0, timeout: 15, cancelled: 0 } }])
  t.equal(tightBars.length, MIN_BARS, 'drawn among a decade of bars')
  t.equal(tightBars[0].gt, 63, 'centred on the values')

  const distribution = new Distribution(true)
  for (const ms of [0, 0.1, 0.1001, 0.112]) distribution.record(ms)
  distribution.record(0.2, 'failed')
  const buckets = distribution.buckets()
  t.same(buckets.slice(0, 7).map((bucket) => [bucket.gt, bucket.le, bucket.count]), [
    [null, 0.1, 2], [0.1, 0.112, 2], [0.112, 0.125, 0], [0.125, 0.14, 0], [0.14, 0.16, 0], [0.16, 0.18, 0], [0.18, 0.2, 1]
  ], 'from the first bar with a task, the empty ones between kept')
  t.equal(buckets.length, MIN_BARS, 'then padded to a decade of bars')
  t.same(buckets[6].outcomes, { completed: 0, failed: 1, timeout: 0, cancelled: 0 })
  const wide = new Distribution(true)
  for (const ms of [1, 10, 100, 1000]) wide.record(ms)
  t.equal(wide.buckets().length, 3 * 20 + 1, 'three decades: no padding needed')

  const slow = new Distribution(true)
  slow.record(1e7, 'cancelled')
  t.same(slow.buckets().pop(), { gt: 1_000_000, le: null, count: 1, outcomes: { completed: 0, failed: 0, timeout: 0, cancelled: 1 } }, 'past the last bound: the open bar')
  t.equal(slow.buckets().length, MIN_BARS)
  t.same(new Distribution(true).buckets(), [], 'no task, no bars')
})

test('the timeline: bars of one step over the period, widened to stay under its bar count, exact counts', async (t) => {
  const timeline = new Timeline()
  t.same(timeline.buckets(), [])
  timeline.add(1_000, 'completed')
  timeline.add(1_050, 'failed')
  timeline.add(1_250, 'refused')
  t.equal(timeline.bucketMs, 100)
  t.same(timeline.buckets().map((bucket) => [bucket.start, bucket.outcomes.completed, bucket.outcomes.failed, bucket.refused]), [
    [new Date(1000).toISOString(), 1, 1, 0], [new Date(1100).toISOString(), 0, 0, 0], [new Date(1200).toISOString(), 0, 0, 1]
  ])
  // a day of lines, out of order as two files are
  const day = new Timeline()
  const start = Date.UTC(2026, 0, 1)
  for (let minute = 0; minute < 24 * 60; minute++) day.add(start + minute * 60_000, 'completed')
  for (let minute = 24 * 60 - 1; minute >= 0; minute -= 2) day.add(start + minute * 60_000 + 1, 'timeout')
  t.equal(day.bucketMs, STEPS_MS.find((step) => 24 * 3_600_000 / step <= MAX_BARS))
  const buckets = day.buckets()
  t.ok(buckets.length <= MAX_BARS)
  t.equal(buckets.reduce((sum, bucket) => sum + bucket.outcomes.completed, 0), 24 * 60, 'widening merged whole bars: nothing lost')
  t.equal(buckets.reduce((sum, bucket) => sum + bucket.outcomes.timeout, 0), 12 * 60)
  t.equal(buckets[0].start, new Date(start).toISOString())
  for (let i = 1; i < STEPS_MS.length; i++) t.equal(STEPS_MS[i] % STEPS_MS[i - 1], 0, `${STEPS_MS[i]} is a multiple of ${STEPS_MS[i - 1]}`)

  const report = summarize([...syntheticLines({ tasks: 300, start: 10_000 })])
  t.equal(report.timeline.bucketMs, 100)
  t.equal(report.timeline.buckets.reduce((sum, bucket) => sum + bucket.outcomes.completed + bucket.outcomes.failed, 0), 300, 'one count per final outcome')
})

test('web and worker logs together: each durable job once by (queue, jobId), retries, duplicates, jobs not finished, refusals', async (t) => {
  const dir = await tempDir(t)
  const files = await writeDurableLogs(dir)
  const summary = new Summary()
  // the workers' logs first: a job's final line may come before its enqueued line
  for (const file of [files.worker2, files.worker1, files.web]) await readLines(createReadStream(file), (line) => summary.add(line, file))
  const report = summary.result()
  t.same(report.jobs, { ...durableFacts.jobs, pendingSample: report.jobs.pendingSample, supersededSample: report.jobs.supersededSample })
  t.match(report.jobs.supersededSample, [{
    jobId: 'sendWelcome-user-3',
    counted: { outcome: 'completed', attempt: 1, pid: 300 },
    superseded: [{ outcome: 'completed', attempt: 1, pid: 200 }]
  }], 'job 3 run again after worker 1 was killed: the later line counts')
  t.match(report.jobs.pendingSample, [{ jobId: durableFacts.pendingJob, queue: 'emails', route: '/signup', task: 'sendWelcome', reqId: 'req-5', file: files.web, hostname: 'web-1', pid: 100 }])
  t.equal(report.jobs.pendingSample.length, 1)
  const welcome = report.groups.find((group) => group.task === 'sendWelcome')
  t.match(welcome, { tasks: 4, outcomes: { completed: 3, failed: 1 }, enqueued: 5, retries: 3 })
  t.same(report.totals.outcomes, { ...durableFacts.outcomes, completed: durableFacts.outcomes.completed + 1 }, 'plus the worker\'s own in-process task')
  t.equal(report.totals.refused, durableFacts.refused)
  t.match(report.routes.find((route) => route.route === '/signup'), { responses: 5, refused: 2 })
  t.equal(report.timeline.buckets.reduce((sum, bucket) => sum + bucket.refused, 0), 2)
  t.same(report.sources, { files: [files.worker2, files.worker1, files.web], processes: 3, starts: 0 })
  t.equal(report.totals.unaccounted, 0, 'the close lines announce the jobs apart (jobs: 1): no in-process task to account for')
  // two req-1 in two processes: the report tells them apart
  const ones = report.slowest.filter((slow) => slow.reqId === 'req-1').map((slow) => [slow.file, slow.hostname, slow.pid])
  t.same(ones.sort(), [[files.worker1, 'worker-1', 200], [files.worker2, 'worker-2', 300]].sort())
  t.match(welcome?.failures, [{ outcome: 'failed', message: 'mailbox full', count: 1, samples: [{ reqId: 'req-4', pid: 300 }] }])

  const again = new Summary()
  for (const file of [files.web, files.worker1, files.worker2, files.worker2]) await readLines(createReadStream(file), (line) => again.add(line, file))
  const twice = again.result()
  t.equal(twice.jobs.finished, 4, 'a log read twice counts each job once all the same')
  t.equal(twice.jobs.enqueued, 5)
  t.same(twice.sources.files, [files.web, files.worker1, files.worker2])
})

test('refused requests and job lines without ids: counted, and filtered like the rest', async (t) => {
  const refused = (route: string, time = 1000): string => JSON.stringify({ level: 40, time, reqId: 'r', deferredRefused: { method: 'POST', route, retryAfter: 1 }, msg: 'request refused' })
  const report = summarize([refused('/a'), refused('/a'), refused('/b'), task({ outcome: 'enqueued' }), task({ outcome: 'retrying', attempt: 1 })])
  t.equal(report.totals.refused, 3)
  t.same(report.routes.map((route) => [route.route, route.refused]), [['/a', 2], ['/b', 1], ['/r', 0]])
  t.match(report.groups[0], { tasks: 0, enqueued: 1, retries: 1 })
  t.same(report.jobs, { enqueued: 0, finished: 0, pending: 0, retries: 1, duplicates: 0, supersededSample: [], pendingSample: [] }, 'without a jobId a job cannot be followed')
  t.equal(summarize([refused('/a')], { routes: ['/b'] }).lines.filtered, 1)
  t.equal(summarize([refused('/a')], { tasks: ['t'] }).lines.filtered, 1, 'a refusal names no task')
  t.equal(summarize([refused('/a', 5)], { since: 10 }).lines.filtered, 1)
  t.equal(summarize([JSON.stringify({ deferredRefused: { method: 'GET' } })]).routes[0].route, '(unknown route)')
})

test('filters: --route, --task, --since and --until', async (t) => {
  const lines = [...syntheticLines({ tasks: 400, start: 10_000 })]
  const byRoute = summarize(lines, { routes: ['/orders'] })
  t.same(byRoute.routes.map((route) => route.route), ['/orders'])
  t.equal(byRoute.totals.tasks, 100)
  t.equal(byRoute.totals.responses, 100)
  t.equal(byRoute.lines.filtered, 600)
  t.same(byRoute.filters, { route: ['/orders'], task: [], since: null, until: null })

  const byTask = summarize(lines, { tasks: ['audit', 'syncCrm'] })
  t.same(new Set(byTask.groups.map((group) => group.task)), new Set(['audit', 'syncCrm']))
  t.equal(byTask.totals.responses, null, 'a response line names no task, so a task filter leaves it out: not counted, and said so')
  t.equal(byTask.totals.refused, null)
  t.same(byTask.routes, [])

  // each synthetic task takes three lines (request, response, task), one millisecond apart
  const window = summarize(lines, { since: 10_000 + 300, until: 10_000 + 599 })
  t.equal(window.totals.tasks, 100)
  t.equal(window.period.from, new Date(10_301).toISOString(), 'the first used line: the response line of task 100')
  t.equal(window.period.to, new Date(10_599).toISOString())
  t.same(window.filters, { route: [], task: [], since: new Date(10_300).toISOString(), until: new Date(10_599).toISOString() })

  const noTime = summarize([task({}, { time: undefined }), task({}, { time: 'not a date' })], { since: 0 })
  t.equal(noTime.lines.filtered, 2, 'with a time filter, a line without a time cannot be placed: left out')
  const isoTime = summarize([task({}, { time: '2025-01-01T00:00:00.000Z' })], { until: Date.UTC(2025, 0, 2) })
  t.equal(isoTime.totals.tasks, 1, 'pino\'s isoTime format works too')
  t.equal(isoTime.period.from, '2025-01-01T00:00:00.000Z')
  const untilOnly = summarize([task({}, { time: 5 }), task({}, { time: 50 })], { until: 10 })
  t.equal(untilOnly.totals.tasks, 1)
  const sinceOnly = summarize([task({}, { time: 5 }), task({}, { time: 50 })], { since: 10 })
  t.equal(sinceOnly.totals.tasks, 1)
})

test('skips foreign and malformed lines without failing', async (t) => {
  const report = summarize([
    '',
    '   ',
    'plain text with "deferred in it',
    '{"deferred": broken json',
    '["deferred"]',
    '"deferred"',
    '{"deferred":{"outcome":"exploded"}}',
    '{"deferred":{"outcome":"completed","tasks":1}, "x": "deferred"}',
    '{"deferred":{"tasks":"three"}}',
    '{"deferredShutdown":{"drained":"yes"}}',
    '{"level":30,"msg":"about something else"}',
    task({})
  ])
  t.same(report.lines, { total: 10, used: 2, filtered: 0, skipped: 8 })
  t.equal(report.totals.tasks, 2, 'a line with an outcome is a task line even if it also has tasks')
})

test('fields of the wrong type fall back instead of failing', async (t) => {
  const report = summarize([
    task({ task: 42, route: null, durationMs: 'slow', queuedMs: -1, connection: 'aborted' }, { reqId: 7 }),
    task({ outcome: 'failed' }, { err: { message: '' }, reqId: undefined }),
    task({ outcome: 'failed' }, { err: 'not an object' }),
    task({ outcome: 'timeout', timeoutMs: undefined }),
    task({ outcome: 'dropped', reason: 'closing', connection: null, durationMs: 0, queuedMs: 0 }),
    task({ outcome: 'dropped', reason: 'mystery', durationMs: 0, queuedMs: 0 }),
    task({ outcome: 'dropped', durationMs: 0, queuedMs: 0 }),
    task({ outcome: 'dropped', reason: 'enqueue-failed', durationMs: 0, queuedMs: 0 }),
    task({ outcome: 'cancelled', durationMs: 0 }),
    JSON.stringify({ deferred: { tasks: 1 } }),
    JSON.stringify({ deferredShutdown: { drained: true, completed: 'many' } })
  ])
  const odd = report.groups.find((group) => group.task === '(unnamed)')
  t.match(odd, { route: '(unknown route)', aborted: 1, durationMs: { count: 0 }, queuedMs: { count: 0 } })
  const normal = report.groups.find((group) => group.task === 't')
  t.same(normal?.failures.map((failure) => [failure.outcome, failure.message, failure.samples.map((sample) => sample.reqId)]), [
    ['failed', '(no error message)', ['r']],
    ['dropped', 'dropped', ['r']],
    ['dropped', 'mystery', ['r']],
    ['dropped', 'Redis did not take the job', ['r']],
    ['dropped', 'registered while the app was closing', ['r']],
    ['cancelled', 'the shutdown drain ran out', ['r']],
    ['timeout', 'timed out', ['r']]
  ])
  t.equal(normal?.failures.find((failure) => failure.outcome === 'failed')?.count, 2)
  t.equal(normal?.durationMs.count, 3, 'the dropped tasks and the task cancelled in the queue never ran')
  t.same(report.routes.find((route) => route.route === '(unknown route)'), { route: '(unknown route)', responses: 1, aborted: 0, abortedRate: 0, refused: 0, unaccounted: 0 })
  t.match(report.shutdowns.recent[0], { time: null, drained: true, durationMs: 0, drainTimeout: 0, outcomes: { completed: 0 } })
  t.same(report.period, { from: new Date(1000).toISOString(), to: new Date(1000).toISOString() })
})

test('memory stays bounded: distinct messages, sample reqIds and shutdowns are capped', async (t) => {
  const lines: string[] = []
  for (let i = 0; i < MAX_MESSAGES + 50; i++) {
    lines.push(task({ outcome: 'failed' }, { err: { message: `user ${i} not found` }, reqId: `r${i}` }))
  }
  for (let i = 0; i < 10; i++) lines.push(task({ outcome: 'failed' }, { err: { message: 'same' }, reqId: i % 2 === 0 ? 'dup' : `r${i}` }))
  for (let i = 0; i < RECENT_SHUTDOWNS + 5; i++) lines.push(JSON.stringify({ time: i, deferredShutdown: { drained: i % 2 === 0 } }))
  const report = summarize(lines)
  const failures = report.groups[0].failures
  t.equal(failures.length, MAX_MESSAGES + 1)
  const other = failures.find((failure) => failure.message === OTHER_MESSAGES)
  t.match(other, { count: 50 + 10 })
  t.same(other?.samples.map((sample) => sample.reqId), [`r${MAX_MESSAGES}`, `r${MAX_MESSAGES + 1}`, `r${MAX_MESSAGES + 2}`])
  t.equal(other?.samples.length, SAMPLE_REQ_IDS)
  t.equal(report.shutdowns.count, RECENT_SHUTDOWNS + 5)
  t.equal(report.shutdowns.undrained, 7)
  t.same(report.shutdowns.recent.map((shutdown) => shutdown.time), Array.from({ length: RECENT_SHUTDOWNS }, (_, i) => new Date(i + 5).toISOString()), 'the most recent, oldest first, in ISO 8601')

  const known = summarize([
    ...Array.from({ length: 5 }, (_, i) => task({ outcome: 'failed' }, { err: { message: 'same' }, reqId: i < 3 ? 'dup' : `r${i}` }))
  ])
  t.same(known.groups[0].failures[0].samples.map((sample) => sample.reqId), ['dup', 'r3', 'r4'], 'distinct requests only')
})

test('slowest tasks: the top ones, slowest first, ties kept in log order', async (t) => {
  const durations = [5, 1, 9, 5, 7, 3, 9, 2, 8, 6]
  const report = summarize(durations.map((durationMs, i) => task({ durationMs }, { reqId: `r${i}` })))
  t.same(report.groups[0].slowest.map((slow) => [slow.durationMs, slow.reqId]), [[9, 'r2'], [9, 'r6'], [8, 'r8'], [7, 'r4'], [6, 'r9']])
})

test('readLines: plain, gzip, gzip in tiny chunks, CRLF, no final newline, empty input', async (t) => {
  const text = 'a\r\nb\n{"deferred":1}\nlast'
  const collect = async (input: Readable): Promise<{ lines: string[], bytes: number }> => {
    const lines: string[] = []
    let bytes = 0
    await readLines(input, (line) => lines.push(line), (n) => { bytes += n })
    return { lines, bytes }
  }
  t.same(await collect(Readable.from([Buffer.from(text)])), { lines: ['a', 'b', '{"deferred":1}', 'last'], bytes: text.length })
  const gzipped = gzipSync(text)
  t.same((await collect(Readable.from([gzipped]))).lines, ['a', 'b', '{"deferred":1}', 'last'])
  t.equal((await collect(Readable.from([gzipped]))).bytes, gzipped.length, 'progress counts the bytes read, compressed')
  const oneByteChunks = [...gzipped].map((byte) => Buffer.from([byte]))
  t.same((await collect(Readable.from(oneByteChunks))).lines, ['a', 'b', '{"deferred":1}', 'last'])
  const twoMembers = Buffer.concat([gzipSync('one\n'), gzipSync('two\n')])
  t.same((await collect(Readable.from([twoMembers]))).lines, ['one', 'two'], 'concatenated gzip files, as logrotate leaves them')
  t.same(await collect(Readable.from([])), { lines: [], bytes: 0 })
  // without this default, readLines still works
  const seen: string[] = []
  await readLines(Readable.from([Buffer.from('x\n')]), (line) => seen.push(line))
  t.same(seen, ['x'])
})

test('readLines: an overlong line is skipped, the next ones are read', async (t) => {
  const long = 'x'.repeat(MAX_LINE_LENGTH + 10)
  const lines: string[] = []
  await readLines(Readable.from([Buffer.from(`first\n${long}`), Buffer.from(`${long}\nafter\n`)]), (line) => lines.push(line))
  t.same(lines, ['first', 'after'])
})

test('readLines: a corrupt gzip stream rejects', async (t) => {
  const broken = Buffer.concat([gzipSync('a\n'.repeat(1000)).subarray(0, 30), Buffer.from('garbage')])
  await t.rejects(readLines(Readable.from([broken]), () => {}), { code: 'Z_DATA_ERROR' })
  const dir = await tempDir(t)
  await writeFile(join(dir, 'broken.gz'), broken)
  await t.rejects(readLines(createReadStream(join(dir, 'broken.gz')), () => {}))
})

test('the last word wins: a job failed, then retried by hand (bull-board) and completed on attempt 4, is counted completed', async (t) => {
  const job = (fields: Record<string, unknown>, time: number, extra: Record<string, unknown> = {}): string =>
    task({ task: 'sendWelcome', jobId: 'welcome-1', queue: 'emails', ...fields }, { time, ...extra })
  const lines = [
    job({ outcome: 'enqueued', connection: null, statusCode: 0 }, 1000, { pid: 1 }),
    // the retry's worker log is read first: the order of the files does not matter
    job({ outcome: 'completed', attempt: 4, durationMs: 40 }, 9000, { pid: 3 }),
    job({ outcome: 'retrying', attempt: 1 }, 2000, { pid: 2 }),
    job({ outcome: 'retrying', attempt: 2 }, 3000, { pid: 2 }),
    job({ outcome: 'failed', attempt: 3, durationMs: 30 }, 4000, { pid: 2, err: { message: 'SMTP 451' } })
  ]
  const report = summarize(lines)
  t.same(report.totals.outcomes, { completed: 1, failed: 0, timeout: 0, skipped: 0, cancelled: 0, dropped: 0 }, 'only the counted line feeds the outcomes')
  t.match(report.jobs, { enqueued: 1, finished: 1, pending: 0, retries: 2, duplicates: 1 })
  t.match(report.groups[0], { tasks: 1, failures: [], durationMs: { count: 1, max: 40 } })
  t.same(report.jobs.supersededSample.map((sample) => [sample.jobId, sample.counted.outcome, sample.counted.attempt, sample.superseded.map((line) => [line.outcome, line.attempt, line.pid])]),
    [['welcome-1', 'completed', 4, [['failed', 3, 2]]]])
  t.equal(report.timeline.buckets.reduce((sum, bucket) => sum + bucket.outcomes.failed, 0), 0, 'the superseded failure is not on the timeline')

  const skewed = summarize([
    job({ outcome: 'failed', attempt: 3 }, 5000, { err: { message: 'SMTP 451' } }),
    job({ outcome: 'completed', attempt: 4 }, 1000)
  ])
  t.equal(skewed.totals.outcomes.completed, 1, 'the higher attempt wins over a later time: clocks of different hosts may disagree, attempts do not')
  t.equal(skewed.totals.outcomes.failed, 0)
})

test('the last word wins: a job logged dropped (enqueue-failed) that reached the queue later and completed is counted completed', async (t) => {
  const job = (fields: Record<string, unknown>, time: number): string =>
    task({ task: 'sendWelcome', jobId: 'welcome-2', queue: 'emails', ...fields }, { time })
  const report = summarize([
    job({ outcome: 'dropped', reason: 'enqueue-failed', connection: null, statusCode: 0 }, 1000),
    job({ outcome: 'completed', attempt: 1 }, 2000)
  ])
  t.match(report.totals.outcomes, { completed: 1, dropped: 0 })
  t.match(report.jobs, { finished: 1, duplicates: 1, supersededSample: [{ counted: { outcome: 'completed', attempt: 1 }, superseded: [{ outcome: 'dropped', attempt: 0 }] }] })
  t.same(report.groups[0].failures, [], 'the superseded drop is not a failure')

  const tie = summarize([job({ outcome: 'completed' }, 1000), job({ outcome: 'failed' }, 1000), job({ outcome: 'failed' }, NaN)])
  t.match(tie.totals.outcomes, { completed: 1, failed: 0 }, 'same attempt, same time: the line read first stays; a line without a time is the earliest')
})

test('the last word wins: bounded samples, jobs without a queue, one report per summary', async (t) => {
  const lines: string[] = []
  for (let j = 0; j <= SUPERSEDED_SAMPLE; j++) {
    for (let attempt = 1; attempt <= SUPERSEDED_PER_JOB + 2; attempt++) lines.push(task({ jobId: `j${j}`, attempt, outcome: 'failed' }, { time: attempt }))
  }
  const summary = new Summary()
  for (const line of lines) summary.add(line)
  const report = summary.result()
  t.equal(report.jobs.duplicates, (SUPERSEDED_SAMPLE + 1) * (SUPERSEDED_PER_JOB + 1))
  t.equal(report.jobs.supersededSample.length, SUPERSEDED_SAMPLE)
  t.equal(report.jobs.supersededSample[0].superseded.length, SUPERSEDED_PER_JOB)
  t.match(report.jobs.supersededSample[0], { queue: null, jobId: 'j0', counted: { attempt: SUPERSEDED_PER_JOB + 2 } })
  t.equal(summary.result(), report, 'the report is made once')
  t.throws(() => summary.add(lines[0]), /after result\(\)/)
})

test('the last word wins, on the HTML page of one process\'s log', async (t) => {
  const report = summarize([task({ jobId: 'j', queue: 'q', attempt: 1, outcome: 'failed' }), task({ jobId: 'j', queue: 'q', attempt: 2 })])
  t.match(renderHtml(report), /<tr data-superseded="j" data-counted="completed">.*<td class="text ids">completed, attempt 2, 1970-01-01 00:00:01Z<\/td><td class="text ids">failed, attempt 1, 1970-01-01 00:00:01Z<\/td>/)
})

test('"Tasks run after an abort" does not count skipped tasks: they never ran', async (t) => {
  const aborted = { connection: 'aborted' }
  const report = summarize([
    task({ ...aborted, outcome: 'skipped', durationMs: 0 }),
    task({ ...aborted, outcome: 'skipped', durationMs: 0 }),
    task({ ...aborted, outcome: 'dropped', reason: 'queue-full', durationMs: 0 }),
    task({ ...aborted, outcome: 'cancelled', durationMs: 0 }),
    task({ ...aborted, outcome: 'cancelled', durationMs: 5 }),
    task({ ...aborted, outcome: 'completed' }),
    task({ outcome: 'completed' }),
    JSON.stringify({ level: 30, time: 1000, reqId: 'r', deferred: { connection: 'aborted', route: '/r', statusCode: 200, responseTime: 1, tasks: 7 } })
  ])
  t.equal(report.totals.aborted, 2, 'the completed task and the one cancelled while running')
  t.equal(report.groups[0].aborted, 2)
  t.match(renderText(report), 'Tasks run after an abort: 2.')
})
