import type { FastifyBaseLogger, FastifyReply } from 'fastify'
import type { RouteSettings } from './options'
import type { Scheduler } from './scheduler'
import { isLevelEnabled, logResponse, round } from './log'
import { TaskState } from './task'
import type { Task } from './task'
import type { ConnectionStatus, RequestSnapshot, TaskOutcome } from './types'

/**
 * The deferred work of one request. It outlives the request and reply, so it copies what it
 * needs from them (logger, snapshot, route) and holds neither.
 *
 * Its tasks wait until the response closed, are then handed to the scheduler (`always` tasks
 * once the others ended), and report back when they end.
 */
export class Work {
  readonly scheduler: Scheduler
  readonly log: FastifyBaseLogger
  readonly request: RequestSnapshot
  readonly route: string
  readonly settings: RouteSettings
  /** How the response closed; `null` until it did. */
  connection: ConnectionStatus | null = null
  /** The response's status code; `0` until it closed. */
  statusCode = 0
  /** Tasks registered on the request, whatever became of them; counted by the caller of `add()`. */
  registered = 0
  // the scheduler's list of works with waiting tasks
  heldPrev: Work | null = null
  heldNext: Work | null = null
  held = false

  // allocated on first use: the bookkeeping of a pending task should stay small
  #waiting: Task[] | null = null
  #always: Task[] | null = null
  #outcomes: TaskOutcome[] | null = null
  /** Tasks handed over (not `always`) that have not ended. */
  #unended = 0
  #alwaysStarted = false

  constructor (scheduler: Scheduler, log: FastifyBaseLogger, request: RequestSnapshot, route: string, settings: RouteSettings) {
    this.scheduler = scheduler
    this.log = log
    this.request = request
    this.route = route
    this.settings = settings
  }

  /** What `always` tasks see: the outcomes of the request's other tasks so far (a copy). */
  get outcomes (): readonly TaskOutcome[] {
    return Object.freeze(this.#outcomes === null ? [] : this.#outcomes.slice())
  }

  add (task: Task): void {
    const scheduler = this.scheduler
    if (scheduler.closing) {
      scheduler.drop(task, 'closing')
      return
    }
    scheduler.hold(this)
    if (this.connection === null) {
      if (task.always) (this.#always ??= []).push(task)
      else (this.#waiting ??= []).push(task)
    } else if (!task.always) {
      // registered after the response closed
      this.#unended++
      this.#submit(task)
    } else if (this.#alwaysStarted || this.#unended === 0) {
      this.#submit(task)
    } else {
      (this.#always ??= []).push(task)
    }
    this.#unholdWhenEmpty()
  }

  /** The response closed: log how, then hand every waiting task over. Runs once per request. */
  responseClosed (connection: ConnectionStatus, reply: FastifyReply): void {
    const statusCode = reply.raw.statusCode
    this.connection = connection
    this.statusCode = statusCode
    if (isLevelEnabled(this.log, 'info')) {
      logResponse(this.log, {
        connection,
        method: this.request.method,
        route: this.route,
        statusCode,
        responseTime: round(reply.elapsedTime),
        tasks: this.registered
      })
    }
    const tasks = this.#waiting
    this.#waiting = null
    if (tasks !== null) {
      this.#unended = tasks.length
      for (const task of tasks) this.#submit(task)
    }
    if (this.#unended === 0 && this.#always !== null) this.#startAlways()
    this.#unholdWhenEmpty()
  }

  /** The shutdown drain ran out: every task still waiting (for the response, or for the others) is cancelled. */
  cancelWaiting (): void {
    const tasks = [...this.#waiting ?? [], ...this.#always ?? []]
    this.#waiting = this.#always = null
    this.scheduler.unhold(this)
    for (const task of tasks) this.scheduler.cancelHeld(task)
  }

  taskEnded (task: Task, error: unknown): void {
    if (task.always) return
    ;(this.#outcomes ??= []).push(error === undefined
      ? { name: task.name, outcome: task.outcome as TaskOutcome['outcome'] }
      : { name: task.name, outcome: task.outcome as TaskOutcome['outcome'], error })
    // ended before it was handed over: dropped or cancelled while waiting
    if (task.state === TaskState.Waiting) return
    this.#unended--
    if (this.#unended === 0 && this.#always !== null) this.#startAlways()
  }

  // Each task stays counted as pending until the scheduler has it, so drain() cannot see the
  // scheduler idle between two tasks of one response.
  #submit (task: Task): void {
    if (this.connection === 'aborted' && this.settings.onClientAbort === 'skip' && !task.always) {
      this.scheduler.skip(task)
    } else {
      this.scheduler.submit(task)
    }
  }

  #startAlways (): void {
    this.#alwaysStarted = true
    const tasks = this.#always as Task[]
    this.#always = null
    for (const task of tasks) this.#submit(task)
    this.#unholdWhenEmpty()
  }

  #unholdWhenEmpty (): void {
    if (this.#waiting === null && this.#always === null) this.scheduler.unhold(this)
  }
}
