import type { Backoff } from '../backoff'
import type { JobPayload } from '../jobs/types'

// The two small interfaces every engine implements. Everything else (options, the attempt's time
// limit and signal, the `retrying` and final lines, spans, counts, the backoff arithmetic) lives
// once above the engines, in lib/jobs: an engine only stores, leases and hands over jobs.

/** The engines, by the name the `queue.engine` option and `deferred.engine` metrics use. */
export type EngineName = 'memory' | 'sqlite' | 'bullmq'

/** One job to add: everything an engine stores, nothing of the request. */
export interface JobRecord {
  /** The task's name. */
  task: string
  /** Unique per job, or `<task>~<key>` for a job with a key: a job whose id is already stored (pending, or finished within the retention) is not added again. */
  jobId: string
  /** Whether `jobId` comes from a key: only then can the same id be enqueued again. */
  keyed: boolean
  payload: JobPayload
  /** Runs before the job is `failed`, the first included. */
  attempts: number
  backoff: Backoff | undefined
  /** Milliseconds before the job may run. */
  delay: number
}

/** What the web process needs from an engine: check, enqueue a batch, close. */
export interface Engine {
  readonly name: EngineName
  /** The queue's name (`deferred.queue`). */
  readonly queue: string
  /** Refuses to start with a coded error: store unreachable within `timeout`, or unsafe settings. */
  check (timeout: number): Promise<void>
  /**
   * Stores the jobs (one round trip or transaction); resolves once they are stored for good,
   * rejects when the store fails or `timeout` ms pass. A job whose id is stored already is
   * ignored, not an error.
   */
  enqueue (jobs: readonly JobRecord[], timeout: number): Promise<void>
  /**
   * Only for an engine that stores in this process's memory: `enqueue()` done at once, so the
   * response it holds goes on in the same turn, with no promise to wait for. Never fails.
   */
  enqueueNow?: (jobs: readonly JobRecord[]) => void
  /**
   * Only for engines whose `enqueue()` may store jobs after it rejected (a timed-out round trip
   * that still reaches the store): makes sure no job of the enqueue `token` runs, whatever order
   * the two reach the store in; `statusCode` is what the client got, for the line of a worker
   * that takes such a job. Rejects when the store did not confirm it within `timeout`.
   */
  cancel?: (token: string, statusCode: number, timeout: number) => Promise<void>
  close (): Promise<void>
}

/** A job an engine leased to one owner: what the attempt runner needs to run it once. */
export interface LeasedJob {
  readonly id: string
  /** The task's name. */
  readonly name: string
  readonly payload: JobPayload
  /** This run's attempt, 1-based: failed attempts so far + 1 (a run lost to a crash or a shutdown does not count). */
  readonly attempt: number
  readonly attempts: number
  readonly backoff: Backoff | undefined
  /** The job's `delay` option, in ms (its first attempt's `queuedMs` does not count it). */
  readonly delay: number
}

/**
 * What a worker needs from an engine whose jobs it pulls (memory, sqlite): take, renew, finish,
 * retry, give back, recover, close. `owner` names the worker process holding a lease
 * (`<hostname>:<pid>:<random>`), so a lease is only ever changed by its holder; a call about a
 * lease the owner lost (it expired and another process took the job) changes nothing and
 * answers `false`. (BullMQ leases with its own Worker; lib/engines/bullmq drives it instead.)
 */
export interface JobStore {
  readonly name: EngineName
  readonly queue: string
  /** Leases up to `max` jobs that are due, oldest first, each locked to `owner` for `lockDuration` ms. */
  take (owner: string, max: number, lockDuration: number): Promise<LeasedJob[]>
  /** Extends `owner`'s leases of `ids` by `lockDuration` ms; answers the ids whose lease was lost. */
  renew (owner: string, ids: readonly string[], lockDuration: number): Promise<string[]>
  /**
   * The attempt ended the job for good: kept for the retention (keys, then pruned). (`'cancelled'`
   * only from an engine that keeps nothing across processes.) `error`: the message of a failed one.
   */
  finish (owner: string, id: string, outcome: 'completed' | 'failed' | 'timeout' | 'cancelled', error?: string): Promise<boolean>
  /** The attempt failed and the job runs again after `delayMs` as the next attempt. */
  retry (owner: string, id: string, delayMs: number): Promise<boolean>
  /** Gives the job back without counting the run (the worker is closing): due at once, same attempt. */
  release (owner: string, id: string): Promise<boolean>
  /**
   * Jobs whose lease expired, or whose owner `isDead` says is gone: back to waiting as the same
   * attempt, or, when their runs were lost this way more than once, failed. Answers the jobs it
   * failed, so the caller writes their final line (`reason: 'stalled'`).
   */
  recover (isDead: (owner: string) => boolean): Promise<LeasedJob[]>
  /** Milliseconds until the next waiting job is due (`0`: one is due now), `null` when none waits. */
  nextDue (): Promise<number | null>
  close (): Promise<void>
}
