'use strict'

// One worker and nothing else, for bench/probes/worker-instructions.js:
// `node bench/probes/worker-alone.js <plugin|handwritten> <concurrency> <jobs> <redis socket> <log file>`.
// As bench/engines-worker.js, without its Redis polling (which under valgrind costs per second,
// not per job): it counts the jobs it completed itself and exits once `jobs` are done.

const pino = require('pino')
const { startWorker } = require('../workers')

const [kind, concurrencyText, jobsText, socketPath, logFile] = process.argv.slice(2)
const concurrency = Number(concurrencyText)
const jobs = Number(jobsText)
let done = 0

async function main () {
  const logger = pino({ level: 'info' }, pino.destination({ dest: logFile, sync: false, mkdir: true }))
  const worker = await startWorker({ kind, concurrency, socketPath, logger, onJob: () => { done++ } })
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
