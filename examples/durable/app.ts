// The web app: the welcome e-mail is a durable job, in Redis before the 201 goes out, run by a
// worker process (examples/durable/worker.ts), even if this process dies right after answering.
//
// Run: REDIS_URL=redis://127.0.0.1:6379 node --import tsx examples/durable/app.ts
// (start Redis first: redis-server --save '' --appendonly no --maxmemory-policy noeviction)
import Fastify from 'fastify'
import sendAndContinue from 'fastify-send-and-continue'
import tasks, { sendWelcome } from './tasks.js'

const app = Fastify({ logger: true })

async function main (): Promise<void> {
  // awaited: it checks Redis, and refuses one that does not answer or may evict jobs
  await app.register(sendAndContinue, {
    queue: { connection: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', tasks }
  })
  app.post<{ Body: { email: string } }>('/signup', async (request, reply) => {
    const { email } = request.body
    // the key makes a retried request the same job, not a second e-mail
    return reply.code(201).sendAndContinue({ ok: true }, sendWelcome.with({ email }, { key: email }))
  })

  const url = await app.listen({ port: Number(process.env.PORT ?? 3000), host: '127.0.0.1' })
  const response = await fetch(`${url}/signup`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email: 'ada@example.com' })
  })
  console.log(`client got ${response.status} ${await response.text()}: the job is in Redis, a worker sends the e-mail`)
  await app.close()
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
})
