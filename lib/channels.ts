import diagnostics from 'node:diagnostics_channel'
import type { ConnectionStatus, DropReason, Outcome } from './types'

// The diagnostics channels are a public interface, like the log lines: APM tools subscribe to them
// by name, as they do to Fastify's own. The README's "Tracing" section documents these names and
// the message fields below.

/** Published around every task that runs: start, end, asyncStart, asyncEnd and error. */
export const TASK_CHANNEL = 'fastify-send-and-continue:task'
/**
 * Published once for every task that never ran: skipped, dropped, or cancelled before it started,
 * and a durable job BullMQ failed after its workers died during it (`failed`, with BullMQ's error).
 */
export const OUTCOME_CHANNEL = 'fastify-send-and-continue:task:outcome'

// Held here for the life of the process: Node keeps channels only while something references them.
export const taskChannel = diagnostics.tracingChannel<unknown, TaskMessage>(TASK_CHANNEL)
export const outcomeChannel = diagnostics.channel(OUTCOME_CHANNEL)

/** The message of both channels. The same object travels through one task's events. */
export interface TaskMessage {
  /** The task's name, as logged. */
  name: string
  /** The route as logged (`deferred.route`). */
  route: string
  method: string
  /** The request's id (`reqId` in the logs). */
  requestId: string
  /** How the response closed; `null` when the task ended before it did. */
  connection: ConnectionStatus | null
  /** The response's status code; `0` before the response closed. */
  statusCode: number
  /** Milliseconds between hand-over to the scheduler and start (or end, for a task that never ran). */
  queuedMs: number
  /** Milliseconds the task ran; `0` until it ended, and for a task that never ran. */
  durationMs: number
  /** `null` until the task ended (set before `end` for a synchronous task, before `asyncEnd` otherwise). */
  outcome: Outcome | null
  /** What a `failed` task threw or rejected with (BullMQ's error for a job failed as stalled). */
  error?: unknown
  /** `dropped` tasks on the outcome channel: why. */
  reason?: DropReason
  /** Durable jobs: BullMQ's job id and the attempt (1-based). */
  jobId?: string
  attempt?: number
}
