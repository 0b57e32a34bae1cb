'use strict'

// One worker and nothing else, for bench/probes/worker-instructions.js:
// `node bench/probes/worker-alone.js <plugin|handwritten> <concurrency> <jobs> <redis socket> <log file>`.
// As bench/engines-worker.js, without its Redis polling (which under valgrind costs per second,
// not per job): it counts the jobs it completed itself and exits once `jobs` are done.

const { performance } = require('node:perf_hooks')
const Redis = require('ioredis')
const { Worker } = require('bullmq')
const pino = require('pino')
const { createWorker, defineTask } = require('../..')

const [kind, concurrencyText, jobsText, socketPath, logFile] = process.argv.slice(2)
const concurrency = Number(concurrencyText)
const jobs = Number(jobsText)
let done = 0

function noop () {}

async function start (logger) {
  if (kind === 'plugin') {
    const task = defineTask('bench-job', () => { done++ })
    return createWorker({ engine: 'bullmq', connection: { path: socketPath }, tasks: [task], concurrency, logger })
  }
  const connection = new Redis({ path: socketPath, maxRetriesPerRequest: null })
  const worker = new Worker('bench-handwritten', async function processJob (job) {
    const started = performance.now()
    noop(job.data)
    done++
    logger.info({ task: job.name, jobId: job.id, attempt: job.attemptsMade + 1, durationMs: performance.now() - started }, 'job completed')
  }, { connection, concurrency })
  await worker.waitUntilReady()
  return { close: async () => { await worker.close(); connection.disconnect() } }
}

async function main () {
  const logger = pino({ level: 'info' }, pino.destination({ dest: logFile, sync: false, mkdir: true }))
  const worker = await start(logger)
  await new Promise((resolve) => {
    const timer = setInterval(() => {
      if (done < jobs) return
      clearInterval(timer)
      resolve()
    }, 100)
  })
  await worker.close()
  logger.flush()
  process.exit(0)
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
