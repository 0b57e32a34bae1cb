import type { Outcome } from '../types'

// the plugin's own list: the report reads what the plugin writes
export { OUTCOMES } from '../types'

export type ReportOutcome = Outcome

export type OutcomeCounts = Record<ReportOutcome, number>

/** Outcomes of tasks that ran, the ones a duration histogram is coloured by. */
export const RAN_OUTCOMES = ['completed', 'failed', 'timeout', 'cancelled'] as const
export type RanOutcome = typeof RAN_OUTCOMES[number]

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

/** One bar of the duration histogram: tasks that took more than `gt` and at most `le` ms. */
export interface HistogramBucket {
  /** Lower bound in milliseconds (exclusive); `null` for the first bucket, which starts at 0. */
  gt: number | null
  /** Upper bound in milliseconds (inclusive); `null` for the last bucket, which has no bound. */
  le: number | null
  count: number
  /** The same tasks by outcome. */
  outcomes: Record<RanOutcome, number>
}

/**
 * Where a line came from. Fastify's request ids restart at `req-1` in every process: the file,
 * the host and the process id (which pino writes on every line) tell two `req-1` apart.
 */
export interface RequestRef {
  reqId: string | null
  /** The log file as given on the command line, `-` for standard input, `null` when not known. */
  file: string | null
  hostname: string | null
  pid: number | null
  /** ISO 8601, `null` when the line had no time. */
  time: string | null
}

export interface SlowTask extends RequestRef {
  durationMs: number
  outcome: ReportOutcome
}

/** A slow task among all groups. */
export interface SlowTaskOfGroup extends SlowTask {
  route: string
  task: string
}

export interface Failure {
  outcome: 'failed' | 'timeout' | 'cancelled' | 'dropped'
  /** The error's message for `failed`; what happened for the other outcomes. */
  message: string
  count: number
  /** The first few requests, distinct, to find the request's own log lines. */
  samples: RequestRef[]
}

/** The tasks of one name on one route. */
export interface Group {
  route: string
  task: string
  /** Final outcomes counted (a durable job once, however often its final line was logged). */
  tasks: number
  outcomes: OutcomeCounts
  /** Tasks that ran although their response was aborted by the client (not `skipped` or `dropped`: those never ran). */
  aborted: number
  /** Durable jobs: jobs enqueued (`enqueued` lines) and failed attempts that were retried (`retrying` lines). */
  enqueued: number
  retries: number
  /** Over the tasks that ran (`completed`, `failed`, `timeout`, and `cancelled` ones that had started). */
  durationMs: Percentiles
  /** Over the tasks that waited for a slot (all but `skipped` and `dropped`). */
  queuedMs: Percentiles
  /** Duration histogram over the same tasks as `durationMs`, from the first to the last bucket that holds a task. */
  histogram: HistogramBucket[]
  slowest: SlowTask[]
  /** Grouped by outcome and message, most frequent first. */
  failures: Failure[]
}

/** Responses per route, from the lines logged when each response closed, and requests refused there. */
export interface RouteResponses {
  route: string
  responses: number
  aborted: number
  /** `aborted / responses`, `null` without responses. */
  abortedRate: number | null
  /** Requests refused with a 503 by `rejectWhenSaturated` (`deferredRefused` lines). */
  refused: number
  /** In-process tasks announced by this route's close lines and never logged a final line. */
  unaccounted: number
}

/** A request whose close line announced in-process tasks that never logged a final line. */
export interface UnaccountedRef extends RequestRef {
  route: string
  /** Tasks without a final line. */
  tasks: number
  /** Tasks the close line announced. */
  announced: number
  /** The `instance` of the process's `deferredStart` line, `null` in logs without one. */
  instance: string | null
  /**
   * Whether the process logged a shutdown line after the close line: then the plugin lost the
   * tasks (a bug worth reporting); if not, the process crashed or was killed, or the log ends
   * while they still ran.
   */
  shutdown: boolean
}

export interface Shutdown {
  /** ISO 8601, `null` when the line had no time. */
  time: string | null
  drained: boolean
  durationMs: number
  drainTimeout: number
  /** The counts the process logged at shutdown. */
  outcomes: OutcomeCounts
  /** Where the line came from. */
  file: string | null
  hostname: string | null
  pid: number | null
}

/** One bar of the timeline: final outcomes and refused requests logged in `[start, start + bucketMs)`. */
export interface TimelineBucket {
  /** ISO 8601. */
  start: string
  outcomes: OutcomeCounts
  refused: number
}

/** A durable job, by its queue and id. */
export interface JobRef extends RequestRef {
  queue: string | null
  jobId: string
  route: string
  task: string
}

/** A durable job's final line: where it was logged, what it said, and on which attempt (0 when the line has none). */
export interface FinalRef extends RequestRef {
  outcome: ReportOutcome
  attempt: number
}

/** A durable job with more than one final line: the one counted (the latest) and the ones it superseded. */
export interface SupersededJob {
  queue: string | null
  jobId: string
  route: string
  task: string
  counted: FinalRef
  /** In the order they were read, at most five. */
  superseded: FinalRef[]
}

/** What `report --json` prints. */
export interface Report {
  /** The version of the report command that wrote this. */
  version: string
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
  /** The files read, as given (`-` for standard input), and the processes (host and pid) seen in them. */
  sources: {
    files: string[]
    processes: number
    /** `deferredStart` lines: plugin instances that started. */
    starts: number
  }
  filters: { route: string[], task: string[], since: string | null, until: string | null }
  /** Times of the first and last line counted, ISO 8601. */
  period: { from: string | null, to: string | null }
  totals: {
    tasks: number
    outcomes: OutcomeCounts
    /** Tasks that ran although their response was aborted by the client (not `skipped` or `dropped` ones: they never ran). */
    aborted: number
    /**
     * Responses that carried deferred work, from the lines logged when each response closed.
     * `null` when `--task` was given: those lines name no task, so they are not counted.
     */
    responses: number | null
    /** Of those, responses the client aborted (`null` with `--task`). */
    abortedResponses: number | null
    /** Requests refused by `rejectWhenSaturated` (`null` with `--task`: refusals name no task). */
    refused: number | null
    /**
     * In-process tasks announced by a close line (`tasks`) with no final line from the same
     * request in the same process lifetime: lost. `null` with `--task` (a close line names no task).
     */
    unaccounted: number | null
  }
  /** The unaccounted tasks, by whether their process logged a shutdown line afterwards. */
  unaccounted: {
    /** The process shut down after their response closed and never logged them: a bug worth reporting. */
    afterShutdown: number
    /** No shutdown line afterwards: the process crashed or was killed, or the log ends while they still ran. */
    withoutShutdown: number
    /**
     * Plugin instances whose `responseLogLevel` was below `info` (or `'silent'`) and whose logs
     * hold no finished response's close line: their finished responses could not be checked for
     * lost tasks (aborted ones still were), by level.
     */
    unchecked: Array<{ responseLogLevel: string, instances: number }>
    /** The first few requests. */
    samples: UnaccountedRef[]
  }
  routes: RouteResponses[]
  groups: Group[]
  /** The slowest tasks of all groups, slowest first. */
  slowest: SlowTaskOfGroup[]
  /** Final outcomes and refusals over the period, in equal steps. */
  timeline: { bucketMs: number, buckets: TimelineBucket[] }
  /** Durable jobs, each counted once by (queue, jobId). */
  jobs: {
    /** Distinct jobs with an `enqueued` line. */
    enqueued: number
    /** Distinct jobs with a final line, each counted by its latest one (highest attempt, then latest time). */
    finished: number
    /** Enqueued, with no final line in these logs (yet). */
    pending: number
    /** `retrying` lines: failed attempts that were retried. */
    retries: number
    /**
     * Final lines superseded by a later one of the same job and not counted (a job retried by hand,
     * run again after a worker crashed, or run although its enqueue was logged as failed).
     */
    duplicates: number
    /** The first few jobs with superseded final lines. */
    supersededSample: SupersededJob[]
    /** The first few pending jobs. */
    pendingSample: JobRef[]
  }
  shutdowns: {
    count: number
    /** Shutdowns whose drain ran out before the work was done. */
    undrained: number
    /** The most recent ones, oldest first. */
    recent: Shutdown[]
  }
}
