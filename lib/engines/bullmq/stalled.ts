import type { Job } from 'bullmq'
import type { AttemptRunner } from '../../jobs/attempt'
import type { JobPayload } from '../../jobs/types'
import { leased } from './job'

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
export function stalledFailureListener (runner: AttemptRunner): (job: Job<JobPayload> | undefined, err: Error) => void {
  return function onFailed (job, err) {
    if (typeof job?.deferredFailure !== 'string') return
    // moveToFailed() counted the attempt the dead workers were running: the one their lines named
    runner.stalled({ ...leased(job), attempt: job.attemptsMade }, err)
  }
}
