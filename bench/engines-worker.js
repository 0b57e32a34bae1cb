'use strict'

// One worker of the engines phase's throughput part, in its own process:
// `node bench/engines-worker.js <plugin|handwritten> <concurrency> <jobs> <redis socket> <log file>`.
// The jobs are already in Redis (the phase preloaded them). It starts the worker, polls Redis
// every 10 ms until no job waits or runs, and answers over IPC with the time, its own CPU and
// redis-server's CPU over that span. Both log at info with pino to a file: `createWorker()` its
// own lines, the hand-written Worker one line per job.

const { performance } = require('node:perf_hooks')
const { setTimeout: sleep } = require('node:timers/promises')
const Redis = require('ioredis')
const { Queue } = require('bullmq')
const pino = require('pino')
const { redisCpuMicros } = require('./phases/enqueue')
const { startWorker, QUEUES } = require('./workers')

const [kind, concurrencyText, jobsText, socketPath, logFile] = process.argv.slice(2)
const concurrency = Number(concurrencyText)
const jobs = Number(jobsText)
const QUEUE = QUEUES[kind]

async function main () {
  const logger = pino({ level: 'info' }, pino.destination({ dest: logFile, sync: false, mkdir: true }))
  const counter = new Redis({ path: socketPath })
  const queue = new Queue(QUEUE, { connection: counter })
  const left = async () => {
    const counts = await queue.getJobCounts('wait', 'active', 'delayed', 'prioritized', 'paused')
    return Object.values(counts).reduce((a, b) => a + b, 0)
  }
  const waiting = await left()
  if (waiting !== jobs) throw new Error(`${waiting} jobs in the queue, ${jobs} expected`)
  const redisBefore = await redisCpuMicros(counter)
  const cpuBefore = process.cpuUsage()
  const startedAt = performance.now()
  const worker = await startWorker({ kind, concurrency, socketPath, logger })
  while (await left() > 0) await sleep(10)
  const elapsedMs = performance.now() - startedAt
  const cpu = process.cpuUsage(cpuBefore)
  const redisCpu = await redisCpuMicros(counter) - redisBefore
  await worker.close()
  await queue.close()
  counter.disconnect()
  logger.flush()
  const result = {
    completed: jobs,
    elapsedMs,
    jobsPerSecond: jobs / (elapsedMs / 1000),
    cpuMicrosPerJob: (cpu.user + cpu.system) / jobs,
    redisCpuMicrosPerJob: redisCpu / jobs
  }
  // run by hand (under `node --cpu-prof`, after bench/profile-worker.js preloaded the jobs): printed
  if (process.send === undefined) return console.log(JSON.stringify(result))
  process.send(result, () => process.exit(0))
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
