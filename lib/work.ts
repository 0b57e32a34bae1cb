import { AsyncResource } from 'node:async_hooks'
import type { FastifyBaseLogger, FastifyReply } from 'fastify'
import type { RouteSettings } from './options'
import type { Scheduler } from './scheduler'
import { isLevelEnabled, logResponse, round } from './log'
import { Task } from './task'
import type { ConnectionStatus, DeferredTask, RequestSnapshot, TaskContext, TaskOutcome } from './types'

/**
 * The deferred work of one request. It outlives the request and reply, so it copies what it
 * needs from them (logger, snapshot, route) and holds neither.
 */
export class Work {
  readonly scheduler: Scheduler
  readonly log: FastifyBaseLogger
  readonly request: RequestSnapshot
  readonly route: string
  readonly settings: RouteSettings
  /** How the response closed; `null` until it did, when the tasks are dispatched. */
  connection: ConnectionStatus | null = null
  statusCode = 0

  // Tasks keep the async context of the request that registered them (AsyncLocalStorage).
  #asyncResource = new AsyncResource('fastify-send-and-continue')
  // allocated on first use: the bookkeeping of a pending task should stay small
  #waiting: Task[] | null = null
  #always: Task[] | null = null
  #outcomes: TaskOutcome[] | null = null
  #unsettled = 0
  #alwaysStarted = false

  constructor (scheduler: Scheduler, log: FastifyBaseLogger, request: RequestSnapshot, route: string, settings: RouteSettings) {
    this.scheduler = scheduler
    this.log = log
    this.request = request
    this.route = route
    this.settings = settings
  }

  get taskCount (): number {
    return (this.#waiting?.length ?? 0) + (this.#always?.length ?? 0)
  }

  get outcomes (): readonly TaskOutcome[] {
    return this.#outcomes ?? []
  }

  run (fn: DeferredTask, ctx: TaskContext): unknown {
    return this.#asyncResource.runInAsyncScope(fn, null, ctx)
  }

  add (fn: DeferredTask, name: string, timeoutMs: number, always: boolean): void {
    const task = new Task(this, fn, name, timeoutMs, always)
    if (this.scheduler.closing) {
      this.scheduler.drop(task, 'closing')
      return
    }
    this.scheduler.pending++
    if (this.connection === null) {
      if (always) (this.#always ??= []).push(task)
      else (this.#waiting ??= []).push(task)
    } else if (always) {
      // registered after the response closed
      (this.#always ??= []).push(task)
      if (this.#alwaysStarted || this.#unsettled === 0) this.#startAlways()
    } else {
      this.#unsettled++
      this.#dispatch(task)
    }
  }

  /** The response closed: log how, then hand every task over. Runs once per request. */
  close (reply: FastifyReply, connection: ConnectionStatus): void {
    this.connection = connection
    this.statusCode = reply.raw.statusCode
    if (isLevelEnabled(this.log, 'info')) this.#logClose(reply, connection)

    const tasks = this.#waiting
    this.#waiting = null
    if (tasks !== null) {
      this.#unsettled = tasks.length
      for (const task of tasks) this.#dispatch(task)
    }
    if (this.#unsettled === 0 && this.#always !== null) this.#startAlways()
  }

  #logClose (reply: FastifyReply, connection: ConnectionStatus): void {
    logResponse(this.log, {
      connection,
      method: this.request.method,
      route: this.route,
      statusCode: this.statusCode,
      responseTime: round(reply.elapsedTime),
      tasks: this.taskCount
    })
  }

  taskSettled (task: Task, error: unknown): void {
    if (task.always) return
    ;(this.#outcomes ??= []).push(error === undefined
      ? { name: task.name, outcome: task.outcome! }
      : { name: task.name, outcome: task.outcome!, error })
    if (!task.dispatched) return
    this.#unsettled--
    if (this.#unsettled === 0 && this.#always !== null) this.#startAlways()
  }

  #dispatch (task: Task): void {
    task.dispatched = true
    this.scheduler.pending--
    if (this.connection === 'aborted' && this.settings.onClientAbort === 'skip' && !task.always) {
      task.settle('skipped')
    } else {
      this.scheduler.submit(task)
    }
  }

  #startAlways (): void {
    this.#alwaysStarted = true
    const tasks = this.#always as Task[]
    this.#always = null
    for (const task of tasks) this.#dispatch(task)
  }
}
