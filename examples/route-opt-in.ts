// Route-level opt-in: with `global: false`, only routes that set `config.sendAndContinue` may
// defer work; elsewhere `reply.defer()` throws FST_SAC_NOT_ENABLED, a mistake caught in development.
//
// Run: node --import tsx examples/route-opt-in.ts
import Fastify from 'fastify'
import sendAndContinue, { isSendAndContinueError } from 'fastify-send-and-continue'

async function main (): Promise<void> {
  const app = Fastify()
  // awaited: a bad option or route config is refused here, at startup, not on every request
  await app.register(sendAndContinue, { global: false })

  // `true` takes the plugin's settings...
  app.post('/reports', { config: { sendAndContinue: true } }, (request, reply) => {
    return reply.code(202).sendAndContinue({ queued: true }, function buildReport () {
      console.log('report built')
    })
  })

  // ...an object overrides some of them for this route
  app.post('/invoices', { config: { sendAndContinue: { timeout: 2000, onClientAbort: 'skip' } } }, (request, reply) => {
    return reply.sendAndContinue({ sent: true }, function emailInvoice () {
      console.log('invoice e-mailed')
    })
  })

  // no opt-in here
  app.get('/health', (request, reply) => {
    reply.defer(() => console.log('never runs'))
    return 'ok'
  })

  app.setErrorHandler((error, request, reply) => {
    if (isSendAndContinueError(error)) console.log(`${request.url}: ${error.code}: ${error.message}`)
    return reply.send(error)
  })

  for (const [method, url] of [['POST', '/reports'], ['POST', '/invoices'], ['GET', '/health']] as const) {
    const response = await app.inject({ method, url })
    console.log(`${method} ${url} -> ${response.statusCode}`)
  }
  await app.sendAndContinue.drain()
  await app.close()
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
})
