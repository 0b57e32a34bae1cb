// Basic usage: answer the client at once, send the welcome e-mail after the response.
//
// Run: node --import tsx examples/basic.ts
import Fastify from 'fastify'
import { setTimeout as sleep } from 'node:timers/promises'
import sendAndContinue from 'fastify-send-and-continue'

// stands in for a real mailer: slow, and it honours the signal so a timeout really stops it
async function sendMail (to: string, signal: AbortSignal): Promise<void> {
  await sleep(200, undefined, { signal })
  console.log(`e-mail sent to ${to}`)
}

async function main (): Promise<void> {
  const app = Fastify({ logger: true })
  // awaited: the plugin's options are checked here, and routes declared after it can use it
  await app.register(sendAndContinue, { timeout: 5000 })

  app.post<{ Body: { email: string } }>('/signup', async (request, reply) => {
    const { email } = request.body
    return reply.code(201).sendAndContinue({ ok: true }, async function sendWelcomeEmail ({ signal }) {
      await sendMail(email, signal)
    })
  })

  const url = await app.listen({ port: 0, host: '127.0.0.1' })
  const response = await fetch(`${url}/signup`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email: 'ada@example.com' })
  })
  console.log(`client got ${response.status} ${await response.text()}: the e-mail is still on its way`)
  await app.close() // waits for the deferred work (drainTimeout, 10 s by default)
  console.log('closed')
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
})
