import type { Outcome } from '../types'

// the plugin's own list: the report reads what the plugin writes
export { OUTCOMES } from '../types'

export type ReportOutcome = Outcome

export type OutcomeCounts = Record<ReportOutcome, number>

/**
 * Percentiles come from an HdrHistogram with 3 significant digits: each is at most 0.1% above
 * the exact nearest-rank value, and never above `max`, which is exact. All `null` when `count` is 0.
 */
export interface Percentiles {
  /** How many values the percentiles are computed over. */
  count: number
  p50: number | null
  p95: number | null
  p99: number | null
  max: number | null
}

/** One bar of the duration histogram: tasks that took at most `le` ms (and more than the previous bar's). */
export interface HistogramBucket {
  /** Upper bound in milliseconds; `null` for the last bucket, which has no bound. */
  le: number | null
  count: number
}

export interface SlowTask {
  reqId: string | null
  durationMs: number
  outcome: ReportOutcome
}

export interface Failure {
  outcome: 'failed' | 'timeout' | 'cancelled' | 'dropped'
  /** The error's message for `failed`; what happened for the other outcomes. */
  message: string
  count: number
  /** The first few request ids, to find the request's own log lines. */
  reqIds: string[]
}

/** The tasks of one name on one route. */
export interface Group {
  route: string
  task: string
  tasks: number
  outcomes: OutcomeCounts
  /** Tasks whose response was aborted by the client. */
  aborted: number
  /** Over the tasks that ran (`completed`, `failed`, `timeout`, and `cancelled` ones that had started). */
  durationMs: Percentiles
  /** Over the tasks that waited for a slot (all but `skipped` and `dropped`). */
  queuedMs: Percentiles
  /** Duration histogram over the same tasks as `durationMs`. */
  histogram: HistogramBucket[]
  slowest: SlowTask[]
  /** Grouped by outcome and message, most frequent first. */
  failures: Failure[]
}

/** Responses that carried deferred work, per route, from the lines logged when each response closed. */
export interface RouteResponses {
  route: string
  responses: number
  aborted: number
  /** `aborted / responses`, `null` without responses. */
  abortedRate: number | null
}

export interface Shutdown {
  /** Epoch milliseconds, `null` when the line had no time. */
  time: number | null
  drained: boolean
  durationMs: number
  drainTimeout: number
  outcomes: OutcomeCounts
}

/** What `report --json` prints. */
export interface Report {
  lines: {
    /** Non-empty lines read. */
    total: number
    /** Lines counted in this report. */
    used: number
    /** Deferred-work lines left out by `--route`, `--task`, `--since` or `--until`. */
    filtered: number
    /** Lines that are not JSON or not about deferred work. */
    skipped: number
  }
  filters: { route: string[], task: string[], since: string | null, until: string | null }
  /** Times of the first and last line counted, ISO 8601. */
  period: { from: string | null, to: string | null }
  totals: {
    tasks: number
    outcomes: OutcomeCounts
    /** Tasks whose response was aborted by the client. */
    aborted: number
    /** Responses that carried deferred work. */
    responses: number
    /** Of those, responses the client aborted. */
    abortedResponses: number
  }
  routes: RouteResponses[]
  groups: Group[]
  shutdowns: {
    count: number
    /** Shutdowns whose drain ran out before the work was done. */
    undrained: number
    /** The most recent ones, oldest first. */
    recent: Shutdown[]
  }
}
