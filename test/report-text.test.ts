import { test } from 'tap'
import { Summary, RECENT_SHUTDOWNS } from '../lib/report/summary'
import { formatMs, formatRate, formatTime, MESSAGE_WIDTH, renderText, SLOWEST_SHOWN } from '../lib/report/text'

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
  const long = 'x'.repeat(MESSAGE_WIDTH + 20)
  const text = render([
    task({ durationMs: 1500 }, { reqId: 'slow-1' }),
    task({ durationMs: 250 }),
    task({ outcome: 'failed', durationMs: 12.5 }, { err: { message: long } })
  ])
  t.match(text, 'From ? to ?.', 'no line had a time')
  t.match(text, /│ \/a\s+│\s+0 │\s+0 │\s+- │/, 'no response lines: no aborted rate')
  t.match(text, /│\s+1\.50 s │ completed │ \/a\s+│ mail │ slow-1 │/)
  t.match(text, /│\s+250 ms │ completed │ \/a\s+│ mail │ -\s+│/, 'a line without reqId')
  t.match(text, `${'x'.repeat(MESSAGE_WIDTH - 1)}…`)
  t.notMatch(text, 'x'.repeat(MESSAGE_WIDTH))
  t.match(text, /│ -\s+│\n/, 'no sample reqIds')
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
