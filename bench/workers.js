'use strict'

// The two workers of the throughput comparison, for bench/engines-worker.js (timed by the engines
// phase) and bench/probes/worker-alone.js (counted under callgrind): `createWorker()` with a no-op
// task, and a hand-written BullMQ `Worker` logging one line per job. `onJob(data)` runs in each
// job: nothing, or a count.

const { performance } = require('node:perf_hooks')
const Redis = require('ioredis')
const { Worker } = require('bullmq')
const { createWorker, defineTask } = require('..')

/** The queue each kind of worker reads (the phase preloads its jobs there). */
const QUEUES = { plugin: 'fastify-send-and-continue', handwritten: 'bench-handwritten' }

function noop () {}

async function startWorker ({ kind, concurrency, socketPath, logger, onJob = noop }) {
  if (kind === 'plugin') {
    const task = defineTask('bench-job', onJob)
    return createWorker({ engine: 'bullmq', connection: { path: socketPath }, tasks: [task], concurrency, logger })
  }
  const connection = new Redis({ path: socketPath, maxRetriesPerRequest: null })
  const worker = new Worker(QUEUES.handwritten, async function processJob (job) {
    const started = performance.now()
    onJob(job.data)
    logger.info({ task: job.name, jobId: job.id, attempt: job.attemptsMade + 1, durationMs: performance.now() - started }, 'job completed')
  }, { connection, concurrency })
  await worker.waitUntilReady()
  return { close: async () => { await worker.close(); connection.disconnect() } }
}

module.exports = { startWorker, QUEUES }
