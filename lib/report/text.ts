import Table from 'cli-table3'
import { OUTCOMES } from './types'
import type { OutcomeCounts, Report } from './types'

/** Rows of the merged "slowest tasks" table. */
export const SLOWEST_SHOWN = 10
/** Longest failure message shown in the terminal; `--json` has them whole. */
export const MESSAGE_WIDTH = 100

export function formatCount (n: number): string {
  return n.toLocaleString('en-US')
}

export function formatMs (ms: number | null): string {
  if (ms === null) return '-'
  if (ms >= 1000) return `${(ms / 1000).toFixed(2)} s`
  if (ms >= 100) return `${Math.round(ms)} ms`
  if (ms >= 10) return `${ms.toFixed(1)} ms`
  return `${ms.toFixed(2)} ms`
}

export function formatRate (rate: number | null): string {
  return rate === null ? '-' : `${(rate * 100).toFixed(1)}%`
}

export function formatTime (iso: string | null): string {
  return iso === null ? '?' : iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z')
}

function truncate (text: string, width: number): string {
  return text.length <= width ? text : `${text.slice(0, width - 1)}…`
}

function outcomeList (outcomes: OutcomeCounts, separator: string): string {
  return OUTCOMES.filter((outcome) => outcomes[outcome] > 0)
    .map((outcome) => `${formatCount(outcomes[outcome])} ${outcome}`)
    .join(separator)
}

// no colours and no rules between rows: as readable in a CI log or a file as on a terminal
const compact = { mid: '', 'left-mid': '', 'mid-mid': '', 'right-mid': '' }

function table (head: string[], align: Array<'left' | 'right'>): Table.Table {
  return new Table({ head, colAligns: align, chars: compact, style: { head: [], border: [] } })
}

/** The terminal view of a report. */
export function renderText (report: Report): string {
  const out: string[] = []
  const { totals, lines } = report
  const skipped = `${formatCount(lines.skipped)} skipped (not JSON or not about deferred work)`
  const filtered = lines.filtered > 0 ? `, ${formatCount(lines.filtered)} left out by the filters` : ''
  out.push(`Read ${formatCount(lines.total)} lines: ${formatCount(lines.used)} used, ${skipped}${filtered}.`)

  if (totals.tasks === 0 && totals.responses === 0 && report.shutdowns.count === 0) {
    out.push('No deferred-work lines found. The report reads the NDJSON that pino writes (not pino-pretty output).')
    return out.join('\n') + '\n'
  }
  out.push(`From ${formatTime(report.period.from)} to ${formatTime(report.period.to)}.`, '')
  out.push(`${formatCount(totals.tasks)} tasks: ${outcomeList(totals.outcomes, ', ') || 'none'}.`)
  out.push(`${formatCount(totals.responses)} responses carried deferred work, ${formatCount(totals.abortedResponses)} aborted by the client` +
    ` (${formatRate(totals.responses === 0 ? null : totals.abortedResponses / totals.responses)}). Tasks run after an abort: ${formatCount(totals.aborted)}.`)

  if (report.routes.length > 0) {
    const routes = table(['Route', 'Responses', 'Aborted', 'Aborted rate'], ['left', 'right', 'right', 'right'])
    for (const route of report.routes) {
      routes.push([route.route, formatCount(route.responses), formatCount(route.aborted), formatRate(route.abortedRate)])
    }
    out.push('', 'Responses with deferred work, per route', routes.toString())
  }

  if (report.groups.length > 0) {
    const groups = table(
      ['Route', 'Task', 'Tasks', 'Outcomes', 'Aborted', 'p50', 'p95', 'p99', 'Max', 'Queued p95', 'Queued max'],
      ['left', 'left', 'right', 'left', 'right', 'right', 'right', 'right', 'right', 'right', 'right']
    )
    for (const group of report.groups) {
      const { durationMs: duration, queuedMs: queued } = group
      groups.push([
        group.route, group.task, formatCount(group.tasks), outcomeList(group.outcomes, '\n'), formatCount(group.aborted),
        formatMs(duration.p50), formatMs(duration.p95), formatMs(duration.p99), formatMs(duration.max),
        formatMs(queued.p95), formatMs(queued.max)
      ])
    }
    out.push('', 'Tasks, per route (durations of the tasks that ran; queued: time waiting for a slot)', groups.toString())

    const slowest = report.groups
      .flatMap((group) => group.slowest.map((task) => ({ ...task, route: group.route, task: group.task, reqId: task.reqId })))
      .sort((a, b) => b.durationMs - a.durationMs)
      .slice(0, SLOWEST_SHOWN)
    if (slowest.length > 0) {
      const rows = table(['Duration', 'Outcome', 'Route', 'Task', 'reqId'], ['right', 'left', 'left', 'left', 'left'])
      for (const task of slowest) rows.push([formatMs(task.durationMs), task.outcome, task.route, task.task, task.reqId ?? '-'])
      out.push('', 'Slowest tasks', rows.toString())
    }

    const failures = report.groups.flatMap((group) => group.failures.map((failure) => ({ ...failure, route: group.route, task: group.task })))
    if (failures.length > 0) {
      const rows = table(['Route', 'Task', 'Outcome', 'Count', 'Message', 'Sample reqIds'], ['left', 'left', 'left', 'right', 'left', 'left'])
      for (const failure of failures) {
        rows.push([failure.route, failure.task, failure.outcome, formatCount(failure.count), truncate(failure.message, MESSAGE_WIDTH), failure.reqIds.join(', ') || '-'])
      }
      out.push('', 'Failures, by message', rows.toString())
    }
  }

  const { shutdowns } = report
  if (shutdowns.count > 0) {
    const rows = table(['Time', 'Drained', 'Took', 'Drain timeout', 'Counts at shutdown'], ['left', 'left', 'right', 'right', 'left'])
    for (const shutdown of shutdowns.recent) {
      rows.push([
        formatTime(shutdown.time === null ? null : new Date(shutdown.time).toISOString()),
        shutdown.drained ? 'yes' : 'no: cancelled the rest',
        formatMs(shutdown.durationMs), formatMs(shutdown.drainTimeout), outcomeList(shutdown.outcomes, ', ') || 'none'
      ])
    }
    const undrained = shutdowns.undrained > 0 ? `, ${formatCount(shutdowns.undrained)} ran out of drain time` : ''
    const shown = shutdowns.recent.length < shutdowns.count ? ` (the last ${shutdowns.recent.length} shown)` : ''
    out.push('', `Shutdowns: ${formatCount(shutdowns.count)}${undrained}${shown}`, rows.toString())
  }
  return out.join('\n') + '\n'
}
