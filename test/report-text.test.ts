import { test } from 'tap'
import { Summary, PENDING_SAMPLE, RECENT_SHUTDOWNS } from '../lib/report/summary'
import { formatMs, formatRate, formatRequest, formatStep, formatTime, FAILURES_SHOWN, MESSAGE_WIDTH, renderText, SLOWEST_SHOWN, table, TEXT_WIDTH, wrap } from '../lib/report/text'

function render (lines: object[]): string {
  const summary = new Summary()
  for (const line of lines) summary.add(JSON.stringify(line))
  return renderText(summary.result())
}

function task (deferred: Record<string, unknown>, extra: Record<string, unknown> = {}): object {
  return { level: 30, deferred: { task: 'mail', outcome: 'completed', connection: 'finished', route: '/a', durationMs: 1, queuedMs: 0, ...deferred }, ...extra }
}

test('formats milliseconds, rates and times for reading', async (t) => {
  t.equal(formatMs(null), '-')
  t.equal(formatMs(0.125), '0.13 ms')
  t.equal(formatMs(12.34), '12.3 ms')
  t.equal(formatMs(250.4), '250 ms')
  t.equal(formatMs(1500), '1.50 s')
  t.equal(formatRate(null), '-')
  t.equal(formatRate(0.1234), '12.3%')
  t.equal(formatTime(null), '?')
  t.equal(formatTime('2025-01-01T10:00:00.123Z'), '2025-01-01 10:00:00Z')
})

test('a log with only shutdown lines: no task tables, the shutdowns with the most recent ones', async (t) => {
  const lines = Array.from({ length: RECENT_SHUTDOWNS + 2 }, (_, i) => ({
    time: i === RECENT_SHUTDOWNS + 1 ? undefined : Date.UTC(2025, 0, 1, 0, 0, i),
    deferredShutdown: { drained: true, durationMs: 3, drainTimeout: 10_000 }
  }))
  const text = render(lines)
  t.match(text, '0 tasks: none.')
  t.match(text, '0 responses carried deferred work, 0 aborted by the client (-).')
  t.notMatch(text, 'per route')
  t.notMatch(text, 'Slowest tasks')
  t.match(text, `Shutdowns: ${RECENT_SHUTDOWNS + 2} (the last ${RECENT_SHUTDOWNS} shown)`)
  t.match(text, /│ \?\s+│ yes\s+│\s+3\.00 ms │\s+10\.00 s │ none\s+│/, 'a shutdown line without a time')
})

test('tasks without response lines, lines without times, long messages, missing reqIds', async (t) => {
  // 'z' is in no word the report writes
  const long = 'z'.repeat(MESSAGE_WIDTH + 20)
  const text = render([
    task({ durationMs: 1500 }, { reqId: 'slow-1' }),
    task({ durationMs: 250 }),
    task({ outcome: 'failed', durationMs: 12.5 }, { err: { message: long } })
  ])
  t.match(text, 'From ? to ?.', 'no line had a time')
  t.match(text, /│ \/a\s+│\s+0 │\s+0 │\s+- │/, 'no response lines: no aborted rate')
  t.match(text, /│\s+1\.50 s │ completed │ \/a\s+│ mail │ slow-1\s+│/)
  t.match(text, /│\s+250 ms │ completed │ \/a\s+│ mail │ -\s+│/, 'a line without reqId')
  t.equal(text.match(/z/g)?.length, MESSAGE_WIDTH - 1, 'the message cut at its width, then wrapped in its column')
  t.match(text, /z…/)
  t.match(text, /│ -\s+│\n/, 'no sample requests')
  t.ok(text.split('\n').every((line) => line.length <= TEXT_WIDTH), `no line wider than ${TEXT_WIDTH}`)
})

test('the slowest tasks table merges the groups and keeps the slowest ones', async (t) => {
  const lines = []
  for (let i = 0; i < 30; i++) lines.push(task({ task: `task${i % 3}`, durationMs: i + 1 }, { reqId: `r${i}` }))
  const text = render(lines)
  const section = text.slice(text.indexOf('Slowest tasks'))
  const rows = section.split('\n').filter((row) => /│\s+\d/.test(row))
  t.equal(rows.length, SLOWEST_SHOWN)
  t.match(rows[0], 'r29')
  t.match(rows[SLOWEST_SHOWN - 1], 'r20')
})

test('formats steps of time and requests, qualified when the logs come from several processes', async (t) => {
  t.same([100, 1000, 30_000, 300_000, 7_200_000, 172_800_000].map(formatStep), ['100 ms', '1 s', '30 s', '5 min', '2 h', '2 d'])
  const ref = { reqId: 'req-1', file: '/var/log/web.log', hostname: 'web-1', pid: 42, time: null }
  t.equal(formatRequest(ref, false), 'req-1')
  t.equal(formatRequest(ref, true), 'req-1 (web.log pid 42)')
  t.equal(formatRequest({ ...ref, file: null }, true), 'req-1 (pid 42)')
  t.equal(formatRequest({ ...ref, file: null, pid: null, reqId: null }, true), '-', 'nothing to qualify with')
})

test('every table fits 100 columns, whatever the length of the names', async (t) => {
  const route = '/api/v2/organisations/:organisationId/projects/:projectId/members/:memberId/invitations'
  const lines = []
  for (let i = 0; i < 40; i++) {
    lines.push(task({ route, task: `notifyEveryMemberOfTheProjectAboutTheInvitation${i % 3}`, outcome: i % 4 === 0 ? 'failed' : 'completed', durationMs: 1234.5 + i },
      { reqId: `request-with-a-long-id-${i}`, err: { message: `the upstream notification service answered 503 for member ${i} after 3 retries` }, pid: i % 2, hostname: 'h' }))
    lines.push({ level: 30, deferred: { connection: 'finished', route, statusCode: 200, responseTime: 1, tasks: 1 } })
  }
  lines.push({ time: 1, pid: 1, deferredShutdown: { drained: false, durationMs: 10_000, drainTimeout: 10_000, completed: 123456, failed: 12345, timeout: 1234, skipped: 123, cancelled: 12, dropped: 1 } })
  const text = render(lines)
  const wide = text.split('\n').filter((line) => line.length > TEXT_WIDTH)
  t.same(wide, [], `no line wider than ${TEXT_WIDTH}`)
  t.match(text, /\(pid [01]\)/, 'several processes: requests carry their pid')
  t.match(text, /\d processes\./)
})

test('the failures table keeps the most frequent messages, and says how many there are', async (t) => {
  const lines = []
  for (let i = 0; i < FAILURES_SHOWN + 5; i++) {
    for (let n = 0; n <= i; n++) lines.push(task({ outcome: 'failed' }, { err: { message: `error ${i}` }, reqId: `r${i}-${n}` }))
  }
  const text = render(lines)
  t.match(text, `Failures, by message (the ${FAILURES_SHOWN} most frequent of ${FAILURES_SHOWN + 5} messages; --json or --html for all)`)
  t.match(text, `error ${FAILURES_SHOWN + 4} `)
  t.notMatch(text, /error 4 /, 'the rarest are left out')
})

test('--task: the summary says what it counted', async (t) => {
  const summary = new Summary({ tasks: ['mail'] })
  for (let i = 0; i < 60; i++) {
    summary.add(JSON.stringify(task({}, { reqId: `r${i}` })))
    summary.add(JSON.stringify({ deferred: { connection: 'finished', route: '/a', statusCode: 200, responseTime: 1, tasks: 1 } }))
  }
  const text = renderText(summary.result())
  t.match(text, '60 tasks: 60 completed.')
  t.match(text, 'Responses and refused requests not counted: --task keeps task lines only (those lines name no task).')
  t.notMatch(text, /0 responses/)
  t.match(renderText(new Summary({ tasks: ['none'] }).result()), 'No deferred-work lines found.')
  const none = new Summary({ tasks: ['none'] })
  none.add(JSON.stringify(task({})))
  t.match(renderText(none.result()), 'No deferred-work line matches the filters.')
})

test('durable jobs and refused requests in the text report', async (t) => {
  const text = render([
    task({ outcome: 'enqueued', jobId: 'j1', queue: 'q' }, { reqId: 'a' }),
    task({ outcome: 'enqueued', jobId: 'j2', queue: 'q' }, { reqId: 'b' }),
    task({ outcome: 'retrying', jobId: 'j1', queue: 'q', attempt: 1 }),
    task({ outcome: 'completed', jobId: 'j1', queue: 'q', attempt: 2 }),
    task({ outcome: 'completed', jobId: 'j1', queue: 'q', attempt: 2 }),
    { level: 40, deferredRefused: { method: 'POST', route: '/a', retryAfter: 1 } }
  ])
  t.match(text, 'Durable jobs: 2 enqueued, 1 finished, 1 not finished yet, 1 retried attempts, 1 final lines superseded (each job counted once, by its latest final line).')
  t.match(text, '1 requests refused with a 503 (rejectWhenSaturated).')
  t.match(text, /Durable jobs enqueued and not finished in these logs: 1\n/)
  t.match(text, /│ q\s+│ j2\s+│ \/a\s+│ b\s+│/)
  t.match(text, /\(2 enqueued\)\s+│[\s\S]*\(1 retried\)/)
  t.match(text, /Durable jobs counted by their latest final line \(highest attempt, then latest time\)\n.*\n.*Job id.*Counted.*Superseded.*\n.*│ j1\s+│ \/a\s+│ completed, attempt 2\s+│ completed, attempt 2\s+│/)

  const twoWorkers = render([
    task({ outcome: 'failed', jobId: 'j1', queue: 'q', attempt: 1 }, { pid: 1, time: Date.UTC(2025, 0, 1) }),
    task({ outcome: 'completed', jobId: 'j1', queue: 'q', attempt: 2 }, { pid: 2, time: Date.UTC(2025, 0, 2) })
  ])
  t.match(twoWorkers, /│ completed, attempt 2\s+│ failed, attempt 1\s+│\n.*│ 2025-01-02 00:00:00Z pid 2 │ 2025-01-01 00:00:00Z pid 1\s+│/, 'with several processes, which one logged each line')
})

test('a table whose fixed columns alone are too wide keeps its flexible ones readable', async (t) => {
  const head = Array.from({ length: 12 }, (_, i) => `number ${i}`)
  const text = table(['name', ...head], ['left', ...head.map(() => 'right' as const)], [['a long name that would wrap', ...head.map(() => '1,234,567')]], [0])
  t.match(text, /\n│ a long │/, 'the name column stops shrinking at its minimum')
})

test('edge cases of the text report: jobs without a queue, more pending jobs than listed, drained shutdowns only', async (t) => {
  const lines: object[] = []
  for (let i = 0; i <= PENDING_SAMPLE; i++) lines.push(task({ outcome: 'enqueued', jobId: `j${i}` }, { reqId: `r${i}` }))
  lines.push(task({ outcome: 'enqueued', jobId: 'j0' }, { reqId: 'r0' }))
  lines.push(task({ outcome: 'completed', jobId: 'done', queue: 'q' }))
  const text = render(lines)
  t.match(text, `Durable jobs: ${PENDING_SAMPLE + 1} enqueued, 1 finished, ${PENDING_SAMPLE + 1} not finished yet, 0 retried attempts.`, 'an enqueued line logged twice is one job')
  t.match(text, `not finished in these logs: ${PENDING_SAMPLE + 1} (the first ${PENDING_SAMPLE} shown)`)
  t.match(text, /│ -\s+│ j0\s+│/, 'no queue name')
})

test('wrap: at spaces where it can, inside words where it must', async (t) => {
  t.equal(wrap('CRM unavailable: 503 Service Unavailable', 20), 'CRM unavailable: 503\nService Unavailable')
  t.equal(wrap('abcdefghij klm', 4), 'abcd\nefgh\nij\nklm')
  t.equal(wrap('one\ntwo three', 5), 'one\ntwo\nthree')
  t.equal(wrap('', 5), '')
})
