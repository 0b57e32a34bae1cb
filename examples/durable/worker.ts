// The worker: runs the durable jobs the web app enqueued; start as many as needed, on any machine.
// Closes gracefully on SIGTERM or Ctrl-C. (With a built tasks module, the CLI does the same:
// npx fastify-send-and-continue worker dist/tasks.js --redis redis://127.0.0.1:6379)
//
// Run: REDIS_URL=redis://127.0.0.1:6379 node --import tsx examples/durable/worker.ts
import { createWorker } from 'fastify-send-and-continue'
import tasks from './tasks.js'

async function main (): Promise<void> {
  const worker = await createWorker({ connection: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', tasks, concurrency: 10 })
  console.log(`worker started on queue ${worker.queue}`)
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => { worker.close().catch((err) => { console.error(err) }) })
  }
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
})
