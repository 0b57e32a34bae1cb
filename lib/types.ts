import type { FastifyBaseLogger } from 'fastify'

/** Every outcome, in the order logs and reports list them. */
export const OUTCOMES = ['completed', 'failed', 'timeout', 'skipped', 'cancelled', 'dropped'] as const

/** How a task ended; each task logs exactly one of these. */
export type Outcome = typeof OUTCOMES[number]

/** One counter per outcome, all at 0. */
export function zeroOutcomes (): Record<Outcome, number> {
  return { completed: 0, failed: 0, timeout: 0, skipped: 0, cancelled: 0, dropped: 0 }
}

/**
 * How the response closed: `'finished'` when the whole response reached the socket,
 * `'aborted'` when the client went away first.
 */
export type ConnectionStatus = 'finished' | 'aborted'

/** A small copy of the request, safe to keep after the response (the live request is not). */
export interface RequestSnapshot {
  readonly id: string
  readonly method: string
  readonly url: string
  /** The route pattern, e.g. `/users/:id`; `undefined` for the not-found handler. */
  readonly routeUrl: string | undefined
}

/** The outcome of one of the request's tasks, as `always` tasks see it. */
export interface TaskOutcome {
  readonly name: string
  readonly outcome: Outcome
  /** The error of a `failed` task. */
  readonly error?: unknown
}

/** What a task receives. */
export interface TaskContext {
  /** Aborted when the task times out or the shutdown drain runs out. */
  readonly signal: AbortSignal
  /** The request's child logger: its lines carry the request's `reqId`. */
  readonly log: FastifyBaseLogger
  /** How the response closed. */
  readonly connection: ConnectionStatus
  /** The status code the response was sent with. */
  readonly statusCode: number
  readonly request: RequestSnapshot
  /** The task's name, as logged. */
  readonly name: string
  /** The attempt running, from 1: `1` unless the task was registered with `attempts` and an earlier attempt failed or timed out. */
  readonly attempt: number
  /** For `always` tasks only: the outcomes of the request's other tasks. */
  readonly outcomes?: readonly TaskOutcome[]
}

/** Deferred work: may return a promise, whose settlement ends the task. */
export type DeferredTask = (ctx: TaskContext) => unknown

/** Why a task was dropped. */
export type DropReason = 'queue-full' | 'closing'

/** What `onDropped` receives for a dropped task. */
export interface DroppedTaskInfo {
  readonly name: string
  readonly reason: DropReason
  readonly reqId: string
  /** The route pattern. */
  readonly route: string
  readonly request: RequestSnapshot
  /** The task itself, should the application want to run it elsewhere. */
  readonly task: DeferredTask
}

/** Counts returned by `fastify.sendAndContinue.stats()`. */
export interface SendAndContinueStats {
  /** Tasks registered on requests whose response has not closed yet. */
  pending: number
  queued: number
  running: number
  /** Tasks waiting out their backoff before their next attempt (`attempts`): neither queued nor running. */
  retrying: number
  completed: number
  failed: number
  timeout: number
  skipped: number
  cancelled: number
  dropped: number
  /** Requests answered `503` by `rejectWhenSaturated` (they carried no work). */
  rejected: number
  /** `true` when the next task would be dropped (running and queued tasks fill both bounds). */
  saturated: boolean
  /** Milliseconds since the oldest running task started; `0` when none runs. */
  oldestRunningMs: number
  /** Durable jobs, when the plugin has a `queue`. */
  durable?: DurableStats
}

/** `fastify.sendAndContinue` */
export interface SendAndContinueNamespace {
  /** Resolves once no deferred task is pending, queued or running. */
  drain(): Promise<void>
  stats(): SendAndContinueStats
}

/** `fastify.sendAndContinue.stats().durable`, present when the plugin has a `queue`: counts of jobs. */
export interface DurableStats {
  /** Jobs the store took. */
  enqueued: number
  /** Jobs being added now. */
  enqueueing: number
  /**
   * Jobs the store did not take in time (dropped, or run in this process with `'run-local'`): a
   * subset of the `dropped` count with `'reject'`, so the two are not to be added.
   */
  enqueueFailed: number
}
