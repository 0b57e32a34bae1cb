import type { FastifyBaseLogger } from 'fastify'
import type { ConnectionStatus, RequestSnapshot } from '../types'

// The contract between the web process (which enqueues) and the worker (which runs): both load
// the same module of durable tasks, and a job carries a JobPayload.

/** A value that survives JSON unchanged. */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue }

import type { Backoff } from '../backoff'

export type { Backoff }

export interface DurableTaskOptions {
  /** Runs of the job before it is `failed`, the first included. @default 1 */
  attempts?: number
  /** Delay between attempts in ms, or BullMQ's `{ type, delay }`. @default 0 */
  backoff?: Backoff
  /** Time limit of one attempt in ms; `0` means none. @default 30000 */
  timeout?: number
}

/** What a durable task's handler receives besides its data. */
export interface DurableTaskContext {
  /** Aborted when the attempt times out or the worker's drain runs out. */
  readonly signal: AbortSignal
  /** The worker's logger bound with the original request's `reqId`. */
  readonly log: FastifyBaseLogger
  /** The request snapshot taken when the job was enqueued. */
  readonly request: RequestSnapshot
  readonly name: string
  /** BullMQ's job id: the same on every attempt and re-run, a good idempotency key. */
  readonly jobId: string
  /** 1-based. */
  readonly attempt: number
  /** `null` when the job was enqueued before the response was sent (the usual case). */
  readonly connection: ConnectionStatus | null
  /** The status code the response was sent (or about to be sent) with when the job was enqueued. */
  readonly statusCode: number
}

export type DurableHandler<Data extends JsonValue = JsonValue> = (data: Data, ctx: DurableTaskContext) => unknown

export interface JobOptions {
  /** Makes the job id from the task name and this key: the same key is one job within BullMQ's retention. */
  key?: string
  /** Milliseconds before the job may run. @default 0 */
  delay?: number
}

/** Marks the objects `task.with()` returns, so the plugin tells them from functions. */
export const kDurableJob = Symbol('fastify-send-and-continue.durable-job')

/** What `defineTask()` returns. */
export interface DurableTask<Data extends JsonValue = JsonValue> {
  readonly name: string
  readonly handler: DurableHandler<Data>
  readonly attempts: number
  readonly backoff: Backoff | undefined
  readonly timeout: number
  /** A job description to pass to `reply.defer()` / `reply.sendAndContinue()`. Throws on data that is not JSON-safe. */
  with (data: Data, options?: JobOptions): DurableJob<Data>
}

/** What `task.with()` returns: checked data, a job id and options, nothing sent yet. */
export interface DurableJob<Data extends JsonValue = JsonValue> {
  readonly [kDurableJob]: true
  readonly task: DurableTask<Data>
  readonly data: Data
  /** Safe for BullMQ: no `:`, not all digits. */
  readonly jobId: string
  /** Whether `jobId` comes from the `key` option (otherwise it is unique). */
  readonly keyed: boolean
  readonly delay: number
}

export function isDurableJob (value: unknown): value is DurableJob {
  return typeof value === 'object' && value !== null && (value as { [kDurableJob]?: unknown })[kDurableJob] === true
}

/** A BullMQ job's data, as the web process writes it and the worker reads it. The job's name is the task's name. */
export interface JobPayload {
  data: JsonValue
  /** The request snapshot at enqueue (`routeUrl` is absent for the not-found handler). */
  request: RequestSnapshot
  /** The route as logged (`deferred.route`). */
  route: string
  connection: ConnectionStatus | null
  statusCode: number
  /** Epoch ms of the enqueue: the first attempt's `queuedMs` counts from here (plus any `delay`). */
  enqueuedAt: number
  /**
   * One per enqueue (the jobs of one response share it): when the enqueue failed or timed out and
   * the client was told so, the web process cancels this token in the store, and a worker that
   * takes a job with a cancelled token ends it without running it. Absent on jobs of earlier versions.
   */
  token?: string
  /** W3C trace context (`traceparent`, `tracestate`) of the span active at registration, when tracing is on. */
  trace?: Record<string, string>
}

export const DEFAULT_QUEUE_NAME = 'fastify-send-and-continue'

export type { DurableStats } from '../types'
