// The durable tasks: one module that both the web app and the worker load.
//
// Run: REDIS_URL=redis://127.0.0.1:6379 node --import tsx examples/durable/worker.ts
// (this module runs in the worker, and is enqueued from examples/durable/app.ts)
import { setTimeout as sleep } from 'node:timers/promises'
import { defineTask } from 'fastify-send-and-continue'

// stands in for a mailer; the job id is a good idempotency key for the provider
export const sendWelcome = defineTask<{ email: string }>('sendWelcome', async ({ email }, { signal, log, jobId, attempt }) => {
  await sleep(50, undefined, { signal })
  log.info({ email, jobId, attempt }, 'welcome e-mail sent')
}, { attempts: 3, backoff: { type: 'exponential', delay: 1000 }, timeout: 10_000 })

export default [sendWelcome]
