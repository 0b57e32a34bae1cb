import { test } from 'tap'
import Fastify from 'fastify'
import sendAndContinue from '../lib/index'
import { LogCollector, build, deferred } from './helpers'

test('global: false lets only routes that opt in defer work', async (t) => {
  const { app, logs } = await build(t, { global: false })
  app.get('/opted-in', { config: { sendAndContinue: true } }, (req, reply) => reply.sendAndContinue('yes', () => {}))
  app.get('/configured', { config: { sendAndContinue: { timeout: 5 } } }, (req, reply) => reply.sendAndContinue('yes', () => {}))
  app.get('/other', (req, reply) => reply.sendAndContinue('no', () => {}))
  app.get('/other-defer', (req, reply) => { reply.defer(() => {}); return 'no' })
  t.equal((await app.inject('/opted-in')).body, 'yes')
  t.equal((await app.inject('/configured')).body, 'yes')
  for (const url of ['/other', '/other-defer']) {
    const response = await app.inject(url)
    t.equal(response.statusCode, 500)
    t.same(response.json(), {
      statusCode: 500,
      code: 'FST_SAC_NOT_ENABLED',
      error: 'Internal Server Error',
      message: `deferred work is not enabled on route GET ${url}: the plugin is registered with global: false and the route does not set config.sendAndContinue`
    })
  }
  await app.sendAndContinue.drain()
  t.equal(logs.outcomes.length, 2)
})

test('config.sendAndContinue: false turns deferred work off on that route', async (t) => {
  const { app } = await build(t)
  app.get('/off', { config: { sendAndContinue: false } }, (req, reply) => reply.sendAndContinue('x', () => {}))
  app.get('/off-plain', { config: { sendAndContinue: false } }, (req, reply) => reply.sendAndContinue('plain'))
  const response = await app.inject('/off')
  t.equal(response.statusCode, 500)
  t.equal(response.json().code, 'FST_SAC_NOT_ENABLED')
  t.equal(response.json().message, 'deferred work is not enabled on route GET /off: the route sets config.sendAndContinue: false')
  // a plain send still works on that route
  t.equal((await app.inject('/off-plain')).body, 'plain')
})

test('route options override the plugin options for that route', async (t) => {
  const { app, logs } = await build(t, { onClientAbort: 'skip', timeout: 0 })
  app.get('/run-anyway', { config: { sendAndContinue: { onClientAbort: 'run', timeout: 10 } } }, (req, reply) => {
    reply.defer(function runs ({ signal }) {
      return new Promise((resolve) => signal.addEventListener('abort', resolve))
    })
    reply.raw.destroy()
  })
  app.inject('/run-anyway').catch(() => {})
  await logs.untilOutcomes(1)
  t.match(logs.outcomes[0], { deferred: { task: 'runs', outcome: 'timeout', connection: 'aborted', timeoutMs: 10 } })
})

test('routes declared before the plugin loaded still run their work on close', async (t) => {
  const logs = new LogCollector()
  const app = Fastify({ logger: { stream: logs } })
  t.teardown(() => app.close())
  // not awaited: the route below is declared before the plugin's onRoute hook exists
  app.register(sendAndContinue)
  const ran = deferred<string>()
  app.get('/', (req, reply) => reply.sendAndContinue('ok', (ctx) => { ran.resolve(ctx.connection) }))
  await app.ready()
  await app.inject('/')
  t.equal(await ran.promise, 'finished')
})
