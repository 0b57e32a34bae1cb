import { performance } from 'node:perf_hooks'
import type { Job } from 'bullmq'
import type { FastifyBaseLogger } from 'fastify'
import { logTask } from '../../log'
import type { TaskLine } from '../../log'
import { traceEnded, traceJobRegistered } from '../../tracing'
import type { TracedTask } from '../../tracing'
import type { Outcome } from '../../types'
import type { JobPayload } from '../../jobs/types'

/** `deferred.reason` of the final line of a job BullMQ failed because its workers died during it. */
export const STALLED_REASON = 'stalled'

/**
 * The listener for a worker's `failed` event that writes the final line of a job our processor
 * never ran to its end. A job whose workers die during it (`kill -9`, OOM) more than
 * `maxStalledCount` times (BullMQ's default, 1) is marked by BullMQ's stalled-job check
 * (`deferredFailure`, "job stalled more than allowable limit") and put back to waiting; the next
 * worker that takes it moves it to failed without calling the processor and emits `failed`, once,
 * there. Every other `failed` comes from an attempt of ours, which wrote its own line.
 *
 * The line comes after BullMQ moved the job to failed (the event is emitted then, not before): a
 * crash between the two loses the line, not the outcome. BullMQ emits inside its own retry loop,
 * so nothing may be thrown from here: it would move the job to failed a second time.
 */
export function stalledFailureListener (logger: FastifyBaseLogger, queue: string, counts: Record<Outcome, number>): (job: Job<JobPayload> | undefined, err: Error) => void {
  return function onFailed (job, err) {
    if (typeof job?.deferredFailure !== 'string') return
    counts.failed++
    try {
      logStalled(logger, queue, job, err)
    } catch (error) {
      logger.error({ err: error }, 'durable worker error')
    }
  }
}

function logStalled (logger: FastifyBaseLogger, queue: string, job: Job<JobPayload>, err: Error): void {
  const payload = job.data
  // moveToFailed() counted the attempt the dead workers were running: the one their lines named
  const attempt = job.attemptsMade
  // from the enqueue to now: nothing ran in this worker, and the runs in the dead ones are unknown
  const queuedMs = Math.max(0, Date.now() - payload.enqueuedAt - job.delay)
  // rare enough that the line is built whatever the level (the logger drops it when below)
  const line: TaskLine = {
    task: job.name,
    outcome: 'failed',
    connection: payload.connection,
    method: payload.request.method,
    route: payload.route,
    statusCode: payload.statusCode,
    durationMs: 0,
    queuedMs,
    reason: STALLED_REASON,
    jobId: job.id as string,
    attempt,
    queue
  }
  logTask(logger.child({ reqId: payload.request.id }), line, err)
  // the spans of the runs in the dead workers died with them: the job's final outcome gets a
  // zero-length span in the request's trace, as a task that never ran does
  const traced: TracedTask = {
    name: job.name,
    timeoutMs: 0,
    work: { route: payload.route, request: payload.request, connection: payload.connection, statusCode: payload.statusCode },
    trace: traceJobRegistered(payload.trace),
    jobId: job.id as string,
    attempt
  }
  traceEnded(traced, 'failed', err, undefined, performance.now() - queuedMs, 0)
}
