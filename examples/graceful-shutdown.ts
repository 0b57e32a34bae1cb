// Graceful shutdown with close-with-grace: on SIGTERM or Ctrl-C the server stops taking
// connections, the deferred work drains (up to `drainTimeout`), then the process exits.
//
// Run: node --import tsx examples/graceful-shutdown.ts
// then: curl -X POST localhost:3000/exports   and press Ctrl-C at once: the export still completes.
// (one process, as in production: wrappers such as npx or tsx's own CLI stand between the signal
// and the app, and tsx's sends a second one when the app is slow to acknowledge the first)
import Fastify from 'fastify'
import closeWithGrace from 'close-with-grace'
import { setTimeout as sleep } from 'node:timers/promises'
import sendAndContinue from 'fastify-send-and-continue'

async function start (): Promise<void> {
  const app = Fastify({ logger: true })

  // drainTimeout stays below close-with-grace's delay, so the plugin cancels what is left (and
  // logs it) before close-with-grace gives up on the whole close
  await app.register(sendAndContinue, { drainTimeout: 8000 })

  app.post('/exports', (request, reply) => {
    return reply.code(202).sendAndContinue({ accepted: true }, async function buildExport ({ signal, log }) {
      await sleep(1000, undefined, { signal })
      log.info('export ready')
    })
  })

  closeWithGrace({ delay: 10_000 }, async ({ signal, err }) => {
    if (err !== undefined) app.log.error({ err }, 'closing after an error')
    else app.log.info(`${signal} received, closing`)
    await app.close()
  })

  await app.listen({ port: Number(process.env.PORT ?? 3000), host: '127.0.0.1' })
}

start().catch((err) => {
  console.error(err)
  process.exit(1)
})
