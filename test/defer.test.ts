import { test } from 'tap'
import { build, deferred } from './helpers'

test('defer from hooks and the handler: every task runs after the response', async (t) => {
  const { app, logs } = await build(t)
  const order: string[] = []
  app.addHook('onRequest', async (req, reply) => {
    reply.defer(function fromOnRequest () { order.push('onRequest') })
  })
  app.addHook('preHandler', (req, reply, done) => {
    reply.defer(function fromPreHandler () { order.push('preHandler') })
    done()
  })
  app.get('/', async (req, reply) => {
    reply.defer(function fromHandler () { order.push('handler') })
    order.push('responding')
    return 'ok'
  })
  const response = await app.inject('/')
  t.equal(response.body, 'ok')
  await app.sendAndContinue.drain()
  t.same(order, ['responding', 'onRequest', 'preHandler', 'handler'])
  t.same(logs.closes.map((line) => line.deferred?.tasks), [3])
})

test('defer returns the reply', async (t) => {
  const { app } = await build(t)
  app.get('/', (req, reply) => {
    t.equal(reply.defer(() => {}), reply)
    return reply.defer(() => {}).code(202).send('chained')
  })
  const response = await app.inject('/')
  t.equal(response.statusCode, 202)
  t.equal(response.body, 'chained')
})

test('handler errors: deferred work still runs after the error response', async (t) => {
  const { app, logs } = await build(t)
  const ran = deferred<{ statusCode: number, connection: string }>()
  app.get('/', async (req, reply) => {
    reply.defer((ctx) => { ran.resolve({ statusCode: ctx.statusCode, connection: ctx.connection }) })
    throw new Error('handler broke')
  })
  const response = await app.inject('/')
  t.equal(response.statusCode, 500)
  t.same(await ran.promise, { statusCode: 500, connection: 'finished' })
  await logs.untilOutcomes(1)
  t.equal(logs.outcomes[0].deferred?.statusCode, 500)
})

test('a custom error handler can defer work too', async (t) => {
  const { app, logs } = await build(t)
  // the route below throws an Error; Fastify types what reaches the handler as unknown unless told
  app.setErrorHandler<Error>((err, req, reply) => {
    reply.code(418).sendAndContinue({ handled: err.message }, function reportError () {})
  })
  app.get('/', async () => { throw new Error('teapot') })
  const response = await app.inject('/')
  t.equal(response.statusCode, 418)
  t.same(response.json(), { handled: 'teapot' })
  await logs.untilOutcomes(1)
  t.match(logs.outcomes[0], { deferred: { task: 'reportError', outcome: 'completed', statusCode: 418 } })
})

test('the not-found handler can defer work; its route is logged as "(not found)"', async (t) => {
  const { app, logs } = await build(t)
  app.setNotFoundHandler((req, reply) => {
    reply.code(404).sendAndContinue('nope', function countMiss () {})
  })
  const response = await app.inject('/missing')
  t.equal(response.statusCode, 404)
  await logs.untilOutcomes(1)
  t.match(logs.outcomes[0], { deferred: { task: 'countMiss', route: '(not found)', statusCode: 404 } })
})

test('work deferred after the response closed runs at once, with the known connection status', async (t) => {
  const { app, logs } = await build(t)
  const ran = deferred<string>()
  app.get('/', async (req, reply) => {
    reply.raw.once('close', () => {
      reply.defer((ctx) => { ran.resolve(ctx.connection) }, { name: 'late' })
    })
    return 'ok'
  })
  await app.inject('/')
  t.equal(await ran.promise, 'finished')
  await logs.untilOutcomes(1)
  t.match(logs.outcomes[0], { deferred: { task: 'late', outcome: 'completed' } })
  t.same(logs.closes.map((line) => line.deferred?.tasks), [1])
})

test('an array deferred after the response closed: one close line counting all of it, then each task runs', async (t) => {
  const { app, logs } = await build(t)
  app.get('/', async (req, reply) => {
    reply.raw.once('close', () => {
      reply.defer([function lateA () {}, function lateB () {}])
    })
    return 'ok'
  })
  await app.inject('/')
  await logs.untilOutcomes(2)
  t.same(logs.outcomes.map((line) => [line.deferred?.task, line.deferred?.outcome, line.deferred?.connection]),
    [['lateA', 'completed', 'finished'], ['lateB', 'completed', 'finished']])
  t.same(logs.closes.map((line) => line.deferred?.tasks), [2])
})

test('work added after the tasks were dispatched is dispatched on its own', async (t) => {
  const { app, logs } = await build(t)
  const secondRan = deferred<string>()
  app.get('/', (req, reply) => {
    reply.sendAndContinue('ok', function first () {
      reply.defer(function second (ctx) { secondRan.resolve(ctx.connection) })
    })
  })
  await app.inject('/')
  t.equal(await secondRan.promise, 'finished')
  await app.sendAndContinue.drain()
  t.same(logs.outcomes.map((line) => line.deferred?.task).sort(), ['first', 'second'])
  t.equal(logs.closes.length, 1, 'one close line per response')
})

test('sendAndContinue on a reply that was already sent is refused with a coded error', async (t) => {
  const { app } = await build(t)
  const caught = deferred<{ code: string, message: string }>()
  app.get('/', (req, reply) => {
    reply.send('first')
    try {
      reply.sendAndContinue('second', () => {})
    } catch (err) {
      caught.resolve(err as never)
    }
  })
  const response = await app.inject('/')
  t.equal(response.body, 'first')
  const err = await caught.promise
  t.equal(err.code, 'FST_SAC_ALREADY_SENT')
  t.equal(err.message, 'reply.sendAndContinue() was called on route GET / after the reply was sent; use reply.defer() to add work to a sent reply')
})
