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
    attempts: job.opts.attempts ?? 1,
    backoff: job.opts.backoff as Backoff | undefined,
    delay: job.delay
  }
}
