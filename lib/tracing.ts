import { performance } from 'node:perf_hooks'
import { outcomeChannel, taskChannel } from './channels'
import type { TaskMessage } from './channels'
import { round } from './log'
import { activeContext, endSpan, extractTraceContext, loadApi, runInSpan, startSendSpan, startSpan } from './otel'
import type { Destination, TaskSpan, TraceContext } from './otel'
import type { ConnectionStatus, DeferredTask, DropReason, Outcome, RequestSnapshot, TaskContext } from './types'

// What the core calls at four points of a task's life (registered, started, returned a promise,
// ended, whether it ran or not), and `runTraced` that runs the task function, to publish the
// diagnostics channels and make the task's span. Without subscribers and without a registered
// tracer provider, each call is a check and no allocation.

export { endSendSpan as traceSendEnded, extractTraceContext, injectTraceContext } from './otel'
export type { Destination, TaskSpan } from './otel'

/** What the hooks read from a task. */
export interface TracedTask {
  readonly name: string
  readonly timeoutMs: number
  readonly work: {
    readonly route: string
    readonly request: RequestSnapshot
    readonly connection: ConnectionStatus | null
    readonly statusCode: number
  }
  /** Set by `traceRegistered()` and `traceStarted()`; absent or `null` when nothing is traced. */
  trace?: TaskTrace | null
  /** A durable job's attempt: BullMQ's job id and the attempt (1-based); the attempt also for a task with `attempts > 1`. */
  readonly jobId?: string
  readonly attempt?: number
  /** A durable job's attempt: the queue it was taken from; its span is then a CONSUMER span. */
  readonly destination?: Destination
}

/** A task's tracing state: its span and channel message. */
export class TaskTrace {
  /** The OpenTelemetry context active at registration; `null` when the task gets no span. */
  readonly parent: TraceContext | null
  span: TaskSpan | null = null
  message: TaskMessage | null = null
  /** Whether the task channel had subscribers when the task started. */
  published = false
  /** Set while the task function runs: an outcome reached then is a synchronous `end`. */
  running = false

  constructor (parent: TraceContext | null) {
    this.parent = parent
  }
}

/** At plugin registration: spans need `@opentelemetry/api`, loaded here if it is installed. */
export function enableTracing (spans: boolean): void {
  if (spans) loadApi()
}

/**
 * A task is registered: remembers the active OpenTelemetry context, so its span is a child of the
 * span active at registration, whatever context the scheduler later starts it in.
 */
export function traceRegistered (spans: boolean): TaskTrace | null {
  if (!spans) return null
  const parent = activeContext()
  return parent === null ? null : new TaskTrace(parent)
}

/**
 * A durable job's attempt starts in a worker: like `traceRegistered()`, with the context the job
 * carries (`JobPayload.trace`, written by `injectTraceContext()` at registration) as the parent.
 */
export function traceJobRegistered (carrier: Record<string, string> | undefined): TaskTrace | null {
  const parent = extractTraceContext(carrier)
  return parent === null ? null : new TaskTrace(parent)
}

function messageOf (task: TracedTask, queuedMs: number): TaskMessage {
  const work = task.work
  const message: TaskMessage = {
    name: task.name,
    route: work.route,
    method: work.request.method,
    requestId: work.request.id,
    connection: work.connection,
    statusCode: work.statusCode,
    queuedMs,
    durationMs: 0,
    outcome: null
  }
  if (task.jobId !== undefined) message.jobId = task.jobId
  // durable jobs, and in-process tasks with `attempts > 1`
  if (task.attempt !== undefined) message.attempt = task.attempt
  return message
}

/**
 * The task starts (times from `performance.now()`; the scheduler set `queuedAt` when it took the
 * task): opens its span. Returns the state `runTraced` needs, or `null` when nothing is traced.
 */
export function traceStarted (task: TracedTask, queuedAt: number, startedAt: number): TaskTrace | null {
  let trace = task.trace ?? null
  const published = taskChannel.hasSubscribers
  if (trace === null) {
    if (!published) return null
    trace = task.trace = new TaskTrace(null)
  }
  trace.published = published
  const message = trace.message = messageOf(task, round(startedAt - queuedAt))
  if (trace.parent !== null) trace.span = startSpan(trace.parent, message, task.work.request.routeUrl, undefined, task.destination)
  return trace
}

function runInTaskSpan (this: TaskTrace, fn: DeferredTask, ctx: TaskContext): unknown {
  return this.span === null ? fn(ctx) : runInSpan(this.parent as TraceContext, this.span, fn, ctx)
}

/**
 * Runs the task function as `this.runInAsyncScope(runTraced, trace, fn, ctx)` does: `start` is
 * published and the stores bound to it entered (APM tools do that), the task's span is active.
 */
export function runTraced (this: TaskTrace, fn: DeferredTask, ctx: TaskContext): unknown {
  this.running = true
  if (!this.published) return runInTaskSpan.call(this, fn, ctx)
  return taskChannel.start.runStores(this.message as TaskMessage, runInTaskSpan, this, fn, ctx)
}

/**
 * The task function returned a promise (called before the plugin waits on it): its synchronous
 * part is over (`end`); `asyncStart` and `asyncEnd` come when it ends.
 */
export function traceReturned (trace: TaskTrace): void {
  trace.running = false
  if (trace.published) taskChannel.end.publish(trace.message as TaskMessage)
}

/**
 * The task ended, `startedAt` 0 when it never ran. A task that ran has its span ended and its
 * `error`, then `end` (synchronous) or `asyncStart` and `asyncEnd` published; for `timeout` and
 * `cancelled` that is when the plugin gives up on it, whatever its code still does.
 * A task that never ran gets a zero-length span and one message on the outcome channel (the only
 * `failed` one: a durable job BullMQ failed after its workers died during it).
 */
export function traceEnded (task: TracedTask, outcome: Outcome, error: unknown, reason: DropReason | undefined, queuedAt: number, startedAt: number): void {
  const trace = task.trace ?? null
  if (startedAt === 0) {
    if (trace !== null || outcomeChannel.hasSubscribers) neverRan(task, trace, outcome, error, reason, queuedAt)
    return
  }
  if (trace === null) return
  const message = trace.message as TaskMessage
  message.outcome = outcome
  message.durationMs = round(performance.now() - startedAt)
  if (outcome === 'failed') message.error = error
  if (trace.span !== null) endSpan(trace.span, message, task.timeoutMs)
  if (trace.published) {
    if (outcome === 'failed') taskChannel.error.publish(message)
    if (trace.running) {
      taskChannel.end.publish(message)
    } else {
      taskChannel.asyncStart.publish(message)
      taskChannel.asyncEnd.publish(message)
    }
  }
  trace.running = false
}

function neverRan (task: TracedTask, trace: TaskTrace | null, outcome: Outcome, error: unknown, reason: DropReason | undefined, queuedAt: number): void {
  const now = performance.now()
  const message = messageOf(task, queuedAt === 0 ? 0 : round(now - queuedAt))
  message.outcome = outcome
  // a durable job BullMQ failed after its workers died during it: the error BullMQ gave
  if (outcome === 'failed') message.error = error
  if (reason !== undefined) message.reason = reason
  // a task that never started has a state only from its registration, which had a span context;
  // one waiting out a backoff may have a state made for the channels alone (no span context)
  if (trace !== null && trace.parent !== null) {
    endSpan(startSpan(trace.parent as TraceContext, message, task.work.request.routeUrl, now, task.destination), message, task.timeoutMs, now)
  }
  if (outcomeChannel.hasSubscribers) outcomeChannel.publish(message)
}

/**
 * A response starts waiting for the enqueue of its durable jobs (in its onSend hook): opens the
 * enqueue's PRODUCER span, child of the active span. `null` when nothing is traced.
 */
export function traceSendStarted (destination: Destination, jobIds: readonly string[]): TaskSpan | null {
  const parent = activeContext()
  return parent === null ? null : startSendSpan(parent, destination, jobIds)
}
