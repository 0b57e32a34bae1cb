// The worker process of the durable demo (examples/durable/demo.ts): prints one line per job it
// completes, so the demo can count them across a crash.
//
// Run: npm run demo:durable
// (the demo starts it; it is not meant to be run on its own)
import { setTimeout as sleep } from 'node:timers/promises'
import { createWorker, defineTask } from 'fastify-send-and-continue'
import pino from 'pino'

const record = defineTask('record', async (data, { signal, jobId }) => {
  await sleep(20, undefined, { signal })
  console.log(`completed ${jobId}`)
})

async function main (): Promise<void> {
  const logger = pino({ level: 'silent' })
  // short locks: a crashed worker's jobs come back within about a second, not 30-60 s
  const worker = process.env.SQLITE_PATH !== undefined
    ? await createWorker({ engine: 'sqlite', path: process.env.SQLITE_PATH, tasks: [record], logger, lockDuration: 1000 })
    : await createWorker({ connection: process.env.REDIS_URL as string, tasks: [record], logger, lockDuration: 1000, stalledInterval: 500 })
  process.once('SIGTERM', () => { worker.close().catch((err) => { console.error(err) }) })
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
})
