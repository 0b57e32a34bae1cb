import type { FastifyBaseLogger } from 'fastify'
import { describe } from './errors'
import type { ConnectionStatus, Outcome } from './types'

// The log lines are a public interface: the README's "Log format" section and the report read
// this module. These kinds of line, each under its own key:
// - `deferredStart`: one per plugin instance, when it registers (its settings and a random
//   instance id): where a process's lifetime begins, for the report;
// - `deferred` with `outcome`: one per task (its final outcome), plus `enqueued` and `retrying`
//   for durable jobs;
// - `deferred` without `outcome`: one per response that carried deferred work, when it closed;
// - `deferredShutdown`: one per `app.close()` (or worker close);
// - `deferredRefused`: one per request refused by `rejectWhenSaturated`;
// - `deferredFallback`: one per durable job that could not be enqueued and runs in this process
//   instead (`onEnqueueError: 'run-local'`); its task line follows as for any in-process task;
// - `deferredGivenUp`: one per job a worker took but did not run, because the web process had
//   given up on its enqueue (and written its final line): the add reached the store late.

export type Level = 'info' | 'warn' | 'error'

/** The levels `responseLogLevel` takes: pino's, and `'silent'` for none. */
export const RESPONSE_LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const
export type ResponseLogLevel = typeof RESPONSE_LOG_LEVELS[number]

/** What a task line's `deferred.outcome` can say: a final outcome, or a durable job's progress. */
export type LoggedOutcome = Outcome | 'enqueued' | 'retrying'

export const TASK_LEVELS: Readonly<Record<LoggedOutcome, Level>> = {
  completed: 'info',
  failed: 'error',
  timeout: 'warn',
  skipped: 'warn',
  cancelled: 'warn',
  dropped: 'error',
  enqueued: 'info',
  retrying: 'warn'
}

export const TASK_MESSAGES: Readonly<Record<LoggedOutcome, string>> = {
  completed: 'deferred task completed',
  failed: 'deferred task failed',
  timeout: 'deferred task timed out',
  skipped: 'deferred task skipped: the client aborted',
  cancelled: 'deferred task cancelled: the shutdown drain ran out',
  dropped: 'deferred task dropped',
  enqueued: 'deferred job enqueued',
  retrying: 'deferred job attempt failed, retrying'
}

/** The fields under `deferred` on a task line. */
export interface TaskLine {
  task: string
  outcome: LoggedOutcome
  /** How the response closed; `null` for a task dropped or enqueued before it closed. */
  connection: ConnectionStatus | null
  method: string
  route: string
  /** The response's status code; `0` before the response closed. */
  statusCode: number
  durationMs: number
  queuedMs: number
  /** `timeout` lines: the limit that ran out. */
  timeoutMs?: number
  /** `dropped` lines: why. */
  reason?: string
  /** Durable jobs: the BullMQ job id, the attempt (1-based) and the queue name. */
  jobId?: string
  attempt?: number
  queue?: string
  /** `retrying` lines: how long until the next attempt. */
  delayMs?: number
}

/** The fields under `deferred` on the line a response that carried deferred work logs when it closed. */
export interface ResponseLine {
  connection: ConnectionStatus
  method: string
  route: string
  statusCode: number
  responseTime: number
  /** In-process tasks registered on the request when its response closed. */
  tasks: number
  /** Durable jobs registered on the request (present only when not 0): followed by `jobId`, not by this line. */
  jobs?: number
}

/** The fields under `deferredStart`: the settings of one plugin instance, logged when it registers. */
export interface StartLine {
  /** Random, one per plugin instance: tells two runs apart where pid and hostname repeat (containers). */
  instance: string
  concurrency: number
  maxQueued: number
  timeout: number
  drainTimeout: number
  onClientAbort: string
  closeConnection: boolean
  rejectWhenSaturated: boolean
  retryAfter: number
  global: boolean
  tracing: boolean
  /**
   * The level of a finished response's close line. Below `info` (or `'silent'`), those lines may
   * not be written: the report then cannot check finished responses for lost tasks.
   */
  responseLogLevel: string
  /** Whether the plugin records metrics: the `metrics` option is on and a meter provider was registered before it. */
  metrics: boolean
  /** The durable queue's name, `null` without the `queue` option. */
  queue: string | null
}

export const START_MESSAGE = 'deferred work ready'

/** The fields under `deferredShutdown`. */
export interface ShutdownLine extends Record<Outcome, number> {
  drained: boolean
  durationMs: number
  drainTimeout: number
  /**
   * Durable jobs of enqueues this process gave up on (their client got 503, or they ran here)
   * whose cancellation the store never confirmed before the app closed: they may still run in a
   * worker. Present only when not 0.
   */
  mayStillRun?: number
}

/** The fields under `deferredRefused`. */
export interface RefusedLine {
  method: string
  route: string
  retryAfter: number
}

export const RESPONSE_MESSAGES: Readonly<Record<ConnectionStatus, string>> = {
  finished: 'response finished, running deferred work',
  aborted: 'response aborted, running deferred work'
}

/** The close line of a response whose deferred work is only durable jobs. */
export const JOBS_RESPONSE_MESSAGES: Readonly<Record<ConnectionStatus, string>> = {
  finished: 'response finished, deferred jobs handed to the queue',
  aborted: 'response aborted, deferred jobs handed to the queue'
}

export const SHUTDOWN_MESSAGES = {
  drained: 'deferred work drained',
  cancelled: 'deferred work cancelled: the shutdown drain ran out'
} as const

/** The fields under `deferredFallback`. */
export interface FallbackLine {
  task: string
  jobId: string
  queue: string
  method: string
  route: string
}

export const FALLBACK_MESSAGE = 'durable job not enqueued, running it in this process'

/** The fields under `deferredGivenUp`: a job a worker took whose enqueue the web process had given up on. */
export interface GivenUpLine {
  task: string
  jobId: string
  queue: string
  method: string
  route: string
  /** The status code the client got: 503, or the normal one when the job ran in the web process (`'run-local'`). */
  statusCode: number
}

export const GIVEN_UP_MESSAGE = 'durable job not run: the web process gave up on its enqueue'

export const REFUSED_MESSAGE = 'request refused: deferred work is saturated'

// Fastify without a logger uses one whose methods are all the same empty function: nothing it is
// given is written, so nothing is built for it. Any other logger without isLevelEnabled() is asked.
const writesNothing = new WeakMap<object, boolean>()
// the last logger method asked about, and the answer: one app has one such logger
let lastInfo: unknown = null
let lastAnswer = false

/** Whether `log` is Fastify's logger when logging is off (`logger: false`, the default). */
export function isNullLogger (log: FastifyBaseLogger): boolean {
  const info = log.info as object
  if (info === lastInfo) return lastAnswer
  let known = writesNothing.get(info)
  if (known === undefined) {
    known = log.info === log.error && log.info === log.trace && /^function \w*\s*\(\)\s*\{\s*\}$/.test(String(log.info))
    writesNothing.set(info, known)
  }
  lastInfo = info
  lastAnswer = known
  return known
}

/** Whether a line at `level` would be written. */
export function isLevelEnabled (log: FastifyBaseLogger, level: Level | Exclude<ResponseLogLevel, 'silent'>): boolean {
  const check = (log as { isLevelEnabled?: (level: string) => boolean }).isLevelEnabled
  return typeof check === 'function' ? check.call(log, level) : !isNullLogger(log)
}

/** Milliseconds to the microsecond, as logged. */
export function round (ms: number): number {
  return Math.round(ms * 1000) / 1000
}

/**
 * Writes a task line. Callers check `isLevelEnabled(log, TASK_LEVELS[outcome])` before building `line`.
 * With `idLabel`, `log` is the parent of the request's logger and `{ [idLabel]: id }` comes first.
 * `err` is whatever the task threw or rejected with: should the logger fail to serialize it (a
 * revoked Proxy, a throwing getter), the line is written with a description of it instead.
 */
export function logTask (log: FastifyBaseLogger, line: TaskLine, err?: unknown, idLabel?: string, id?: string): void {
  const message = line.reason === undefined ? TASK_MESSAGES[line.outcome] : `${TASK_MESSAGES[line.outcome]}: ${line.reason}`
  const level = TASK_LEVELS[line.outcome]
  const fields = fieldsOf(line, idLabel, id)
  if (err === undefined) {
    log[level](fields, message)
    return
  }
  fields.err = err
  try {
    log[level](fields, message)
  } catch {
    fields.err = new Error(`the task failed with a value the logger could not write: ${describe(err)}`)
    log[level](fields, message)
  }
}

/** The code of the process warning emitted the first time the logger throws while writing a task's line. */
export const LOGGER_FAILED_WARNING = 'FST_SAC_LOGGER_FAILED'
let loggerFailureWarned = false

/**
 * `logTask()` where a throw must not escape: a task's or job's end, whose bookkeeping (counts,
 * slot, drain, the engine's record) follows the line. A logger that throws (a destination that
 * throws on write) loses the line, not the process, not the bookkeeping: the first time, a process
 * warning says so on stderr (Node prints it; `process.on('warning')` sees it).
 */
export function writeTaskLine (log: FastifyBaseLogger, line: TaskLine, err?: unknown, idLabel?: string, id?: string): void {
  try {
    logTask(log, line, err, idLabel, id)
  } catch (error) {
    if (loggerFailureWarned) return
    loggerFailureWarned = true
    process.emitWarning(`the logger threw while writing a task's line (${describe(error)}): lines it cannot write are lost, the tasks and their counts are not`, { code: LOGGER_FAILED_WARNING })
  }
}

/** `idLabel` and `id`: written through the request's parent logger (lib/request-log.ts). */
export function logResponse (log: FastifyBaseLogger, line: ResponseLine, idLabel?: string, id?: string, level: Exclude<ResponseLogLevel, 'silent'> = 'info'): void {
  // a response whose work is only durable jobs runs nothing here
  const messages = line.tasks === 0 && line.jobs !== undefined ? JOBS_RESPONSE_MESSAGES : RESPONSE_MESSAGES
  log[level](fieldsOf(line, idLabel, id), messages[line.connection])
}

// A line's fields under `deferred`; through the parent of the request's logger, the request id first,
// where the request's own logger would have written it.
function fieldsOf (line: TaskLine | ResponseLine, idLabel: string | undefined, id: string | undefined): Record<string, unknown> {
  return idLabel === undefined ? { deferred: line } : { [idLabel]: id, deferred: line }
}

export function logStart (log: FastifyBaseLogger, line: StartLine): void {
  log.info({ deferredStart: line }, START_MESSAGE)
}

export function logShutdown (log: FastifyBaseLogger, line: ShutdownLine): void {
  if (line.drained) log.info({ deferredShutdown: line }, SHUTDOWN_MESSAGES.drained)
  else log.warn({ deferredShutdown: line }, SHUTDOWN_MESSAGES.cancelled)
}

export function logRefused (log: FastifyBaseLogger, line: RefusedLine): void {
  log.warn({ deferredRefused: line }, REFUSED_MESSAGE)
}

export function logFallback (log: FastifyBaseLogger, line: FallbackLine, err: unknown): void {
  log.warn({ deferredFallback: line, err }, FALLBACK_MESSAGE)
}

export function logGivenUp (log: FastifyBaseLogger, line: GivenUpLine): void {
  log.warn({ deferredGivenUp: line }, GIVEN_UP_MESSAGE)
}
