import type { Job } from 'bullmq'
import type { LeasedJob } from '../types'
import type { Backoff, JobPayload } from '../../jobs/types'

/** A BullMQ job as the attempt runner reads it. */
export function leased (job: Job<JobPayload>): LeasedJob {
  return {
    id: job.id as string,
    name: job.name,
    payload: job.data,
    attempt: job.attemptsMade + 1,
    // set on every job the web side adds; a job added without it gets no retry (attempt < undefined is false)
    attempts: job.opts.attempts as number,
    backoff: job.opts.backoff as Backoff | undefined,
    delay: job.delay
  }
}
