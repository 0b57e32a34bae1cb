import Table from 'cli-table3'
import { basename } from 'node:path'
import { OUTCOMES } from './types'
import type { FinalRef, OutcomeCounts, Report, RequestRef } from './types'

/** Rows of the "slowest tasks" table. */
export const SLOWEST_SHOWN = 10
/** Rows of the "failures" table, the most frequent messages; `--json` and `--html` have them all. */
export const FAILURES_SHOWN = 20
/** Longest failure message shown in the terminal, wrapped in its column; `--json` has them whole. */
export const MESSAGE_WIDTH = 200
/** Widest line the text report writes: a terminal, a CI log, a code review comment. */
export const TEXT_WIDTH = 100

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

/** A step of time, e.g. `100 ms`, `30 s`, `5 min`, `2 h`, `1 d`. */
export function formatStep (ms: number): string {
  if (ms < 1000) return `${ms} ms`
  if (ms < 60_000) return `${ms / 1000} s`
  if (ms < 3_600_000) return `${ms / 60_000} min`
  if (ms < 86_400_000) return `${ms / 3_600_000} h`
  return `${ms / 86_400_000} d`
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

/**
 * A request as the text report names it: its id alone when the logs come from one process, else
 * with the file and process id, since Fastify's ids restart at `req-1` in every process.
 */
export function formatRequest (ref: RequestRef, qualify: boolean): string {
  const id = ref.reqId ?? '-'
  const where = qualify ? formatSource(ref) : ''
  return where === '' ? id : `${id} (${where})`
}

/** The file and process a line came from, e.g. `web.log pid 4242`. */
export function formatSource (ref: Pick<RequestRef, 'file' | 'pid'>): string {
  return [ref.file === null ? null : basename(ref.file), ref.pid === null ? null : `pid ${ref.pid}`]
    .filter((part) => part !== null).join(' ')
}

// no colours and no rules between rows: as readable in a CI log or a file as on a terminal
const compact = { mid: '', 'left-mid': '', 'mid-mid': '', 'right-mid': '' }
const MIN_COLUMN = 8

/**
 * A table no wider than TEXT_WIDTH: the `flexible` columns (names, messages) give up width,
 * widest first, and wrap; numbers keep theirs.
 */
export function table (head: string[], align: Array<'left' | 'right'>, rows: string[][], flexible: number[]): string {
  const widths = head.map((title, i) => Math.max(...[title, ...rows.map((row) => row[i])].flatMap((cell) => cell.split('\n').map((part) => part.length))) + 2)
  const budget = TEXT_WIDTH - (head.length + 1)
  let total = widths.reduce((sum, width) => sum + width, 0)
  while (total > budget) {
    const widest = flexible.reduce((best, i) => widths[i] > widths[best] ? i : best, flexible[0])
    if (widths[widest] <= MIN_COLUMN) break
    widths[widest]--
    total--
  }
  const rendered = new Table({ head, colAligns: align, colWidths: widths, chars: compact, style: { head: [], border: [] } })
  rendered.push(...rows.map((row) => row.map((cell, i) => wrap(cell, widths[i] - 2))))
  return rendered.toString()
}

/** Breaks `text` into lines of at most `width` characters, at spaces where it can, inside words where it must. */
export function wrap (text: string, width: number): string {
  return text.split('\n').map((paragraph) => {
    const lines: string[] = []
    let line = ''
    for (let word of paragraph.split(' ')) {
      if (line !== '' && line.length + 1 + word.length <= width) {
        line += ` ${word}`
        continue
      }
      if (line !== '') lines.push(line)
      while (word.length > width) {
        lines.push(word.slice(0, width))
        word = word.slice(width)
      }
      line = word
    }
    lines.push(line)
    return lines.join('\n')
  }).join('\n')
}

/** What became of the tasks the close lines announced. */
function unaccountedSummary (report: Report): string {
  return lostSummary(report) + uncheckedSummary(report)
}

function lostSummary (report: Report): string {
  const total = report.totals.unaccounted as number
  if (total === 0) return 'Unaccounted tasks: 0 (every task announced when its response closed logged its final line).'
  const { afterShutdown, withoutShutdown } = report.unaccounted
  const parts = [
    withoutShutdown > 0 ? `${formatCount(withoutShutdown)} in a process that never logged a shutdown afterwards (it crashed or was killed, or the log ends while they still ran)` : '',
    afterShutdown > 0 ? `${formatCount(afterShutdown)} in a process that logged a shutdown afterwards (lost by the plugin: a bug worth reporting)` : ''
  ]
  return `Unaccounted tasks: ${formatCount(total)}, announced when their response closed and never logged a final line: ${parts.filter((part) => part !== '').join('; ')}.`
}

/** Instances whose finished responses left no close line to check. */
export function uncheckedSummary (report: Report): string {
  const { unchecked } = report.unaccounted
  if (unchecked.length === 0) return ''
  const levels = unchecked.map(({ responseLogLevel, instances }) => `${formatCount(instances)} at '${responseLogLevel}'`).join(', ')
  return ` Finished responses not checked: plugin instances with responseLogLevel below 'info' logged no close line for them (${levels}), so tasks lost there cannot be found; aborted responses were checked.`
}

/** The terminal view of a report. */
export function renderText (report: Report): string {
  const out: string[] = []
  const { totals, lines } = report
  const skipped = `${formatCount(lines.skipped)} skipped (not JSON or not about deferred work)`
  const filtered = lines.filtered > 0 ? `, ${formatCount(lines.filtered)} left out by the filters` : ''
  out.push(`Read ${formatCount(lines.total)} lines: ${formatCount(lines.used)} used, ${skipped}${filtered}.`)

  if (lines.used === 0) {
    out.push(lines.filtered > 0
      ? 'No deferred-work line matches the filters.'
      : 'No deferred-work lines found. The report reads the NDJSON that pino writes (not pino-pretty output).')
    return out.join('\n') + '\n'
  }
  const qualify = report.sources.files.length > 1 || report.sources.processes > 1
  const processes = report.sources.processes > 1 ? ` ${formatCount(report.sources.processes)} processes.` : ''
  out.push(`From ${formatTime(report.period.from)} to ${formatTime(report.period.to)}.${processes}`, '')
  out.push(`${formatCount(totals.tasks)} tasks: ${outcomeList(totals.outcomes, ', ') || 'none'}.`)
  if (totals.responses === null) {
    out.push('Responses and refused requests not counted: --task keeps task lines only (those lines name no task).')
  } else {
    const rate = formatRate(totals.responses === 0 ? null : (totals.abortedResponses as number) / totals.responses)
    out.push(`${formatCount(totals.responses)} responses carried deferred work, ${formatCount(totals.abortedResponses as number)} aborted by the client` +
      ` (${rate}). Tasks run after an abort: ${formatCount(totals.aborted)}.`)
    if ((totals.refused as number) > 0) out.push(`${formatCount(totals.refused as number)} requests refused with a 503 (rejectWhenSaturated).`)
    out.push(wrap(unaccountedSummary(report), TEXT_WIDTH))
  }
  const { jobs } = report
  if (jobs.enqueued + jobs.finished + jobs.retries > 0) {
    const duplicates = jobs.duplicates > 0 ? `, ${formatCount(jobs.duplicates)} final lines superseded (each job counted once, by its latest final line)` : ''
    out.push(`Durable jobs: ${formatCount(jobs.enqueued)} enqueued, ${formatCount(jobs.finished)} finished, ${formatCount(jobs.pending)} not finished yet, ` +
      `${formatCount(jobs.retries)} retried attempts${duplicates}.`)
  }

  const lost = report.unaccounted.samples
  if (lost.length > 0) {
    const rows = lost.map((sample) => [
      formatRequest(sample, qualify), sample.route, `${formatCount(sample.tasks)} of ${formatCount(sample.announced)}`,
      [formatSource(sample) || '-', sample.instance === null ? '' : `instance ${sample.instance}`].filter((part) => part !== '').join('\n'),
      sample.shutdown ? 'yes: a bug, please report it' : 'no: crashed, killed, or still running'
    ])
    const shown = lost.length < (totals.unaccounted as number) ? ` (the first ${lost.length} requests shown)` : ''
    out.push('', `Unaccounted tasks: announced when the response closed, no final line${shown}`,
      table(['Request', 'Route', 'Tasks lost', 'Process', 'Shutdown logged after'], ['left', 'left', 'right', 'left', 'left'], rows, [0, 1, 3, 4]))
  }

  if (report.routes.length > 0) {
    const rows = report.routes.map((route) => [
      route.route, formatCount(route.responses), formatCount(route.aborted), formatRate(route.abortedRate), formatCount(route.refused), formatCount(route.unaccounted)
    ])
    out.push('', 'Responses with deferred work, per route',
      table(['Route', 'Responses', 'Aborted', 'Aborted rate', 'Refused', 'Unaccounted'], ['left', 'right', 'right', 'right', 'right', 'right'], rows, [0]))
  }

  if (report.groups.length > 0) {
    const rows = report.groups.map((group) => {
      const durable = [group.enqueued > 0 ? `(${formatCount(group.enqueued)} enqueued)` : '', group.retries > 0 ? `(${formatCount(group.retries)} retried)` : '']
      return [
        group.route, group.task, formatCount(group.tasks), [outcomeList(group.outcomes, '\n'), ...durable].filter((part) => part !== '').join('\n'),
        formatMs(group.durationMs.p50), formatMs(group.durationMs.p95), formatMs(group.durationMs.max), formatMs(group.queuedMs.p95)
      ]
    })
    out.push('', 'Tasks, per route (durations of the tasks that ran; queued: time waiting for a slot)',
      table(['Route', 'Task', 'Tasks', 'Outcomes', 'p50', 'p95', 'Max', 'Queued p95'],
        ['left', 'left', 'right', 'left', 'right', 'right', 'right', 'right'], rows, [0, 1]))

    const slowest = report.slowest.slice(0, SLOWEST_SHOWN)
    if (slowest.length > 0) {
      const slowRows = slowest.map((task) => [formatMs(task.durationMs), task.outcome, task.route, task.task, formatRequest(task, qualify)])
      out.push('', 'Slowest tasks', table(['Duration', 'Outcome', 'Route', 'Task', 'Request'], ['right', 'left', 'left', 'left', 'left'], slowRows, [2, 3, 4]))
    }

    const failures = report.groups.flatMap((group) => group.failures.map((failure) => ({ ...failure, route: group.route, task: group.task })))
      .sort((a, b) => b.count - a.count)
    if (failures.length > 0) {
      const failureRows = failures.slice(0, FAILURES_SHOWN).map((failure) => [
        `${failure.route}\n${failure.task}`, failure.outcome, formatCount(failure.count), truncate(failure.message, MESSAGE_WIDTH),
        failure.samples.map((sample) => formatRequest(sample, qualify)).join('\n') || '-'
      ])
      const more = failures.length > FAILURES_SHOWN ? ` (the ${FAILURES_SHOWN} most frequent of ${formatCount(failures.length)} messages; --json or --html for all)` : ''
      out.push('', `Failures, by message${more}`,
        table(['Route, task', 'Outcome', 'Count', 'Message', 'Sample requests'], ['left', 'left', 'right', 'left', 'left'], failureRows, [0, 3, 4]))
    }
  }

  if (jobs.pendingSample.length > 0) {
    const rows = jobs.pendingSample.map((job) => [job.queue ?? '-', job.jobId, `${job.route}\n${job.task}`, formatRequest(job, qualify)])
    const shown = jobs.pendingSample.length < jobs.pending ? ` (the first ${jobs.pendingSample.length} shown)` : ''
    out.push('', `Durable jobs enqueued and not finished in these logs: ${formatCount(jobs.pending)}${shown}`,
      table(['Queue', 'Job id', 'Route, task', 'Request'], ['left', 'left', 'left', 'left'], rows, [0, 1, 2, 3]))
  }

  if (jobs.supersededSample.length > 0) {
    const line = (final: FinalRef): string => `${final.outcome}, attempt ${final.attempt}\n${formatTime(final.time)}${qualify ? ` ${formatSource(final)}` : ''}`
    const rows = jobs.supersededSample.map((job) => [
      job.jobId, `${job.route}\n${job.task}`, line(job.counted), job.superseded.map(line).join('\n')
    ])
    out.push('', 'Durable jobs counted by their latest final line (highest attempt, then latest time)',
      table(['Job id', 'Route, task', 'Counted', 'Superseded'], ['left', 'left', 'left', 'left'], rows, [0, 1, 2, 3]))
  }

  const { shutdowns } = report
  if (shutdowns.count > 0) {
    const rows = shutdowns.recent.map((shutdown) => [
      qualify ? `${formatTime(shutdown.time)}\n${formatSource(shutdown)}` : formatTime(shutdown.time),
      shutdown.drained ? 'yes' : 'no: cancelled the rest',
      formatMs(shutdown.durationMs), formatMs(shutdown.drainTimeout), outcomeList(shutdown.outcomes, '\n') || 'none'
    ])
    const undrained = shutdowns.undrained > 0 ? `, ${formatCount(shutdowns.undrained)} ran out of drain time` : ''
    const shown = shutdowns.recent.length < shutdowns.count ? ` (the last ${shutdowns.recent.length} shown)` : ''
    out.push('', `Shutdowns: ${formatCount(shutdowns.count)}${undrained}${shown}`,
      table(['Time', 'Drained', 'Took', 'Drain timeout', 'Counts at shutdown'], ['left', 'left', 'right', 'right', 'left'], rows, [0, 4]))
  }
  return out.join('\n') + '\n'
}
