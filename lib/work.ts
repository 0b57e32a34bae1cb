import type { FastifyBaseLogger, FastifyReply } from 'fastify'
import type { RouteSettings } from './options'
import type { Scheduler } from './scheduler'
import { isLevelEnabled, logResponse, round, writeTaskLine } from './log'
import type { Level, ResponseLine, TaskLine } from './log'
import type { RouteMetrics } from './metrics'
import type { IdBinding, PinoSymbols } from './request-log'
import { TaskState } from './task'
import type { Task } from './task'
import type { ConnectionStatus, Outcome, RequestSnapshot, TaskOutcome } from './types'

/** What a route's works share, resolved once per route: its settings, the scheduler and its names. */
export interface RouteWork extends RouteSettings {
  readonly scheduler: Scheduler
  /** The route's logger, parent of its requests' loggers, and pino's symbols when it is pino. */
  readonly parentLog: FastifyBaseLogger
  readonly pino: PinoSymbols | null
  /** The request id binding of the route's default child loggers (lib/request-log.ts). */
  readonly idBinding: IdBinding
  /** The route's URL pattern as logged, `(not found)` for the 404 handler. */
  readonly route: string
  /** The route's URL pattern, `undefined` for the 404 handler (`ctx.request.routeUrl`). */
  readonly routeUrl: string | undefined
  /** How many durable jobs a request registered (lib/jobs/web.ts); `null` without a `queue`. */
  readonly jobsOf: ((reply: FastifyReply) => number) | null
  /** Called once the response closed, after its close line: adds the durable jobs a response never sent (lib/jobs/web.ts). */
  readonly jobsClosed: ((reply: FastifyReply) => void) | null
  /** The route's in-process metrics (lib/metrics.ts); `null` when nothing records them. */
  readonly metrics: RouteMetrics | null
}

/**
 * The deferred work of one request. It outlives the request and reply, so it copies what it
 * needs from them (logger, id, method, url) and holds neither.
 *
 * Its tasks wait until the response closed, are then handed to the scheduler (`always` tasks
 * once the others ended), and report back when they end. Each pending task keeps its work, so
 * the fields are counted: what the route's works share is in `settings`, the request snapshot
 * is made when a task asks for it, and there are no private methods (V8 adds a field for those).
 */
export class Work {
  readonly settings: RouteWork
  readonly id: string
  readonly method: string
  readonly url: string

  // the request's logger; `null` while it is Fastify's default child, not kept (lib/request-log.ts)
  #log: FastifyBaseLogger | null
  #snapshot: RequestSnapshot | null = null
  // Tasks waiting for the response to close; once it closed, the `always` tasks waiting for the
  // others to end: the first one alone, an array from the second on (most requests have one task)
  #held: OneOrMore<Task> | null = null
  // the outcomes of the tasks that ended, for `always` tasks: the first one alone, an array from
  // the second on (most requests have one task: no array for them)
  #outcomes: OneOrMore<Ended> | null = null
  // Until the response closed, the tasks registered on the request, whatever became of them (its
  // close line says how many); from then on, the tasks handed over (not `always`) that have not
  // ended. One field for both, as every pending task keeps its work.
  #count = 0
  // CLOSED once the response closed, with its status code << 4, ABORTED if the client hung up,
  // and ALWAYS_STARTED once the `always` tasks were handed over; SEND_CALLED once
  // sendAndContinue() sent the response (cleared if sending failed): one field, as every
  // pending task keeps its work
  #bits = 0

  constructor (settings: RouteWork, log: FastifyBaseLogger | null, id: string, method: string, url: string) {
    this.settings = settings
    this.#log = log
    this.id = id
    this.method = method
    this.url = url
  }

  get scheduler (): Scheduler { return this.settings.scheduler }

  /** How the response closed; `null` until it did. */
  get connection (): ConnectionStatus | null {
    const bits = this.#bits
    return (bits & CLOSED) === 0 ? null : (bits & ABORTED) === 0 ? 'finished' : 'aborted'
  }

  /** The response's status code; `0` until it closed. */
  get statusCode (): number { return this.#bits >> 4 }

  /** Whether `reply.sendAndContinue()` sent the response (`reply.sent` stays false while async onSend hooks run). */
  get sendCalled (): boolean { return (this.#bits & SEND_CALLED) !== 0 }
  set sendCalled (called: boolean) { this.#bits = called ? this.#bits | SEND_CALLED : this.#bits & ~SEND_CALLED }

  /** The request's logger (`ctx.log`): Fastify's default child is made again on first use. */
  get log (): FastifyBaseLogger {
    const settings = this.settings
    this.#log ??= settings.parentLog.child({ [settings.idBinding.label as string]: this.id }, {})
    return this.#log
  }

  // The plugin's own lines go through the request's logger, or, while that is Fastify's default
  // child not kept, through its parent with the request id under the child's label. (Public
  // getters: private ones would add a field to every work.)
  get lineLog (): FastifyBaseLogger { return this.#log ?? this.settings.parentLog }
  get idLabel (): string | undefined { return this.#log === null ? this.settings.idBinding.label as string : undefined }

  /** Whether a line at `level` would be written, without making a logger for it. */
  logs (level: Level): boolean {
    return isLevelEnabled(this.lineLog, level)
  }

  /** Writes a task line as the request's logger would. */
  writeTask (line: TaskLine, err?: unknown): void {
    writeTaskLine(this.lineLog, line, err, this.idLabel, this.id)
  }

  get route (): string { return this.settings.route }

  /** The request as the tasks see it (`ctx.request`): one frozen object shared by every task of the request. */
  get request (): RequestSnapshot {
    this.#snapshot ??= Object.freeze({ id: this.id, method: this.method, url: this.url, routeUrl: this.settings.routeUrl })
    return this.#snapshot
  }

  /** What `always` tasks see: the outcomes of the request's other tasks so far (a copy). */
  get outcomes (): readonly TaskOutcome[] {
    const outcomes = this.#outcomes
    return Object.freeze(outcomes === null ? [] : asArray(outcomes).map(outcomeOf))
  }

  /** `count` tasks are about to be added: counted for the close line unless the response already closed. */
  registering (count: number): void {
    if ((this.#bits & CLOSED) === 0) this.#count += count
  }

  add (task: Task): void {
    const scheduler = this.settings.scheduler
    if (scheduler.closing) {
      scheduler.drop(task, 'closing')
      return
    }
    scheduler.hold(task)
    const bits = this.#bits
    if ((bits & CLOSED) === 0 || (task.always && (bits & ALWAYS_STARTED) === 0 && this.#count !== 0)) {
      // before the response closed, or an `always` task while others still run
      this.#held = append(this.#held, task)
      return
    }
    // registered after the response closed
    if (!task.always) this.#count++
    submit(this, task)
  }

  /** The response closed: log how, then hand every waiting task over. Runs once per request. */
  responseClosed (connection: ConnectionStatus, reply: FastifyReply): void {
    const statusCode = reply.raw.statusCode
    this.#bits = (statusCode << 4) | CLOSED | (connection === 'aborted' ? ABORTED : 0) | (this.#bits & SEND_CALLED)
    // an abort is the event worth a line, whatever the finished responses' level is
    const level = connection === 'aborted' ? 'info' : this.settings.responseLogLevel
    if (level !== 'silent' && isLevelEnabled(this.lineLog, level)) {
      const line: ResponseLine = {
        connection,
        method: this.method,
        route: this.settings.route,
        statusCode,
        responseTime: round(reply.elapsedTime),
        tasks: this.#count
      }
      // durable jobs are counted apart: the report follows them by jobId, not by this line
      const jobs = this.settings.jobsOf === null ? 0 : this.settings.jobsOf(reply)
      if (jobs !== 0) line.jobs = jobs
      logResponse(this.lineLog, line, this.idLabel, this.id, level)
    }
    const jobsClosed = this.settings.jobsClosed
    if (jobsClosed !== null) jobsClosed(reply)
    const metrics = this.settings.metrics
    if (metrics !== null) metrics.responded(connection) // METRICS: the response closed
    const held = this.#held
    this.#count = 0
    if (held === null) {
      // no task waits: the request's tasks were durable jobs, or dropped while the app closes
    } else if (!Array.isArray(held)) {
      if (!held.always) {
        this.#held = null
        this.#count = 1
        submit(this, held)
      }
    } else {
      let count = 0
      for (let i = 0; i < held.length; i++) if (!held[i].always) count++
      // from here on, #held has only the `always` tasks, which wait for the others
      this.#held = count === 0 ? held : count === held.length ? null : held.filter(isAlways)
      this.#count = count
      if (count !== 0) {
        for (let i = 0; i < held.length; i++) if (!held[i].always) submit(this, held[i])
      }
    }
    if (this.#count === 0 && this.#held !== null) this.startAlways()
  }

  /** The shutdown drain ran out: every task still waiting (for the response, or for the others) is cancelled. */
  cancelWaiting (): void {
    // only works with a task on the scheduler's waiting list are asked, and they hold tasks
    const held = this.#held as OneOrMore<Task>
    this.#held = null
    const scheduler = this.settings.scheduler
    for (const task of asArray(held)) scheduler.cancelHeld(task)
  }

  /** `task` ended as `outcome`; `state` is where it was. */
  taskEnded (task: Task, outcome: Outcome, error: unknown, state: TaskState): void {
    if (task.always) return
    // the task, not its name: most outcomes are never read, and a name costs a lookup
    this.#outcomes = append(this.#outcomes, { task, outcome, error })
    // ended before it was handed over: dropped or cancelled while waiting
    if (state === TaskState.Waiting) return
    this.#count--
    // once handed over, #held only has `always` tasks
    if (this.#count === 0 && this.#held !== null) this.startAlways()
  }

  /** The other tasks ended: the `always` ones run. */
  startAlways (): void {
    this.#bits |= ALWAYS_STARTED
    const held = this.#held as OneOrMore<Task>
    this.#held = null
    for (const task of asArray(held)) submit(this, task)
  }
}

const ABORTED = 1
const ALWAYS_STARTED = 2
const CLOSED = 4
const SEND_CALLED = 8

// Most requests have one task: a list of them is the item alone until a second one comes.
type OneOrMore<T> = T | T[]

function append<T> (list: OneOrMore<T> | null, item: T): OneOrMore<T> {
  if (list === null) return item
  if (!Array.isArray(list)) return [list, item]
  list.push(item)
  return list
}

function asArray<T> (list: OneOrMore<T>): T[] {
  return Array.isArray(list) ? list : [list]
}

/** A task that ended, for `always` tasks (`outcomes`). */
interface Ended {
  readonly task: Task
  readonly outcome: Outcome
  readonly error: unknown
}

function outcomeOf ({ task, outcome, error }: Ended): TaskOutcome {
  return error === undefined ? { name: task.name, outcome } : { name: task.name, outcome, error }
}

function isAlways (task: Task): boolean {
  return task.always
}

// Each task stays counted as pending until the scheduler has it, so drain() cannot see the
// scheduler idle between two tasks of one response.
function submit (work: Work, task: Task): void {
  if (work.connection === 'aborted' && work.settings.onClientAbort === 'skip' && !task.always) {
    work.settings.scheduler.skip(task)
  } else {
    work.settings.scheduler.submit(task)
  }
}
