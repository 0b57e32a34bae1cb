import { test } from 'tap'
import { Readable } from 'node:stream'
import { request } from 'node:http'
import { build, deferred, listen } from './helpers'

test('answers at once and runs the task after the response', async (t) => {
  const { app, logs } = await build(t)
  const gate = deferred()
  const ran = deferred<{ connection: string, statusCode: number, name: string, reqId: string, routeUrl: string | undefined }>()
  app.get('/users/:id', async (req, reply) => {
    return reply.code(201).header('x-test', 'yes').sendAndContinue({ id: 1 }, async function sendWelcome (ctx) {
      await gate.promise
      ran.resolve({
        connection: ctx.connection,
        statusCode: ctx.statusCode,
        name: ctx.name,
        reqId: ctx.request.id,
        routeUrl: ctx.request.routeUrl
      })
    })
  })
  const { url } = await listen(app)
  const response = await fetch(`${url}/users/7`)
  t.equal(response.status, 201)
  t.equal(response.headers.get('x-test'), 'yes')
  t.equal(response.headers.get('content-length'), '8')
  t.same(await response.json(), { id: 1 })
  t.equal(logs.outcomes.length, 0, 'the task has not ended when the client has the whole answer')
  gate.resolve()
  const seen = await ran.promise
  t.same(seen, { connection: 'finished', statusCode: 201, name: 'sendWelcome', reqId: 'req-1', routeUrl: '/users/:id' })
  await logs.untilOutcomes(1)
  const [line] = logs.outcomes
  t.equal(line.reqId, 'req-1')
  t.equal(line.level, 30)
  t.equal(line.msg, 'deferred task completed')
  t.match(line.deferred, {
    task: 'sendWelcome',
    outcome: 'completed',
    connection: 'finished',
    route: '/users/:id',
    statusCode: 201
  })
  t.type(line.deferred?.durationMs, 'number')
  t.type(line.deferred?.queuedMs, 'number')
  const [close] = logs.closes
  t.match(close, { reqId: 'req-1', level: 30, deferred: { connection: 'finished', route: '/users/:id', statusCode: 201, tasks: 1 } })
  t.type(close.deferred?.responseTime, 'number')
})

test('returns the reply, so handlers can chain and return it', async (t) => {
  const { app } = await build(t)
  let returned: unknown
  app.get('/', (req, reply) => {
    returned = reply.sendAndContinue('ok', () => {})
    t.equal(returned, reply)
  })
  const response = await app.inject('/')
  t.equal(response.body, 'ok')
  t.equal(returned !== undefined, true)
})

test('sends like reply.send: serializers, Buffers and streams', async (t) => {
  const { app, logs } = await build(t)
  app.get('/schema', {
    schema: { response: { 200: { type: 'object', properties: { kept: { type: 'string' } } } } }
  }, (req, reply) => reply.sendAndContinue({ kept: 'yes', secret: 'no' }, () => {}))
  app.get('/buffer', (req, reply) => reply.type('application/octet-stream').sendAndContinue(Buffer.from('bytes'), () => {}))
  app.get('/stream', (req, reply) => reply.type('text/plain').sendAndContinue(Readable.from(['a', 'b', 'c']), () => {}))
  app.get('/nothing', (req, reply) => reply.code(204).sendAndContinue(undefined, () => {}))
  const { url } = await listen(app)

  const schema = await fetch(`${url}/schema`)
  t.same(await schema.json(), { kept: 'yes' })
  const buffer = await fetch(`${url}/buffer`)
  t.equal(buffer.headers.get('content-length'), '5')
  t.equal(Buffer.from(await buffer.arrayBuffer()).toString(), 'bytes')
  const stream = await fetch(`${url}/stream`)
  t.equal(await stream.text(), 'abc')
  t.equal(stream.headers.get('content-length'), null, 'a stream has no length to announce')
  const nothing = await fetch(`${url}/nothing`)
  t.equal(nothing.status, 204)
  await logs.untilOutcomes(4)
  t.same(logs.outcomes.map((line) => line.deferred?.outcome), ['completed', 'completed', 'completed', 'completed'])
})

test('without a task it is reply.send', async (t) => {
  const { app, logs } = await build(t)
  app.get('/', (req, reply) => reply.sendAndContinue('plain'))
  const response = await app.inject('/')
  t.equal(response.body, 'plain')
  await app.sendAndContinue.drain()
  t.equal(logs.closes.length, 0, 'a response without deferred work logs no close line')
})

test('runs an array of tasks, each logged under its own name', async (t) => {
  const { app, logs } = await build(t)
  const order: string[] = []
  app.get('/', (req, reply) => reply.sendAndContinue('ok', [
    function audit () { order.push('audit') },
    async function webhook () { order.push('webhook') },
    () => { order.push('third') }
  ]))
  app.get('/named', (req, reply) => reply.sendAndContinue('ok', [() => {}, () => {}], { name: 'notify' }))
  await app.inject('/')
  await app.inject('/named')
  await app.sendAndContinue.drain()
  t.same(order, ['audit', 'webhook', 'third'])
  t.same(new Set(logs.outcomes.map((line) => line.deferred?.task)), new Set(['audit', 'webhook', 'anonymous[2]', 'notify[0]', 'notify[1]']))
  t.same(logs.closes.map((line) => line.deferred?.tasks), [3, 2])
})

test('a single unnamed arrow is "anonymous"; the name option wins over the function name', async (t) => {
  const { app, logs } = await build(t)
  app.get('/a', (req, reply) => reply.sendAndContinue('ok', () => {}))
  app.get('/b', (req, reply) => reply.sendAndContinue('ok', function fnName () {}, { name: 'given' }))
  await app.inject('/a')
  await app.inject('/b')
  await app.sendAndContinue.drain()
  t.same(logs.outcomes.map((line) => line.deferred?.task).sort(), ['anonymous', 'given'])
})

test('the task context holds a snapshot, not the live request', async (t) => {
  const { app } = await build(t)
  const seen = deferred<Record<string, unknown>>()
  app.post('/items/:id', (req, reply) => reply.sendAndContinue('ok', (ctx) => {
    seen.resolve({ request: ctx.request, outcomes: ctx.outcomes, hasLog: typeof ctx.log.info })
  }))
  await app.inject({ method: 'POST', url: '/items/3?x=1', payload: { a: 1 } })
  const value = await seen.promise
  t.same(value, {
    request: { id: 'req-1', method: 'POST', url: '/items/3?x=1', routeUrl: '/items/:id' },
    outcomes: undefined,
    hasLog: 'function'
  })
})

test('the task logger carries the reqId of its request', async (t) => {
  const { app, logs } = await build(t)
  app.get('/', (req, reply) => reply.sendAndContinue('ok', (ctx) => { ctx.log.info('from the task') }))
  await app.inject('/')
  await app.sendAndContinue.drain()
  const line = logs.lines.find((l) => l.msg === 'from the task')
  t.equal(line?.reqId, 'req-1')
})

test('works over a keep-alive connection, several requests in a row', async (t) => {
  const { app, logs } = await build(t)
  app.get('/', (req, reply) => reply.sendAndContinue('ok', async () => {}))
  const { port } = await listen(app)
  const { Agent } = await import('node:http')
  const agent = new Agent({ keepAlive: true, maxSockets: 1 })
  t.teardown(() => agent.destroy())
  const get = () => new Promise<string>((resolve, reject) => {
    request({ port, host: '127.0.0.1', path: '/', agent }, (res) => {
      let body = ''
      res.on('data', (chunk) => { body += chunk })
      res.on('end', () => resolve(body))
    }).on('error', reject).end()
  })
  t.same([await get(), await get(), await get()], ['ok', 'ok', 'ok'])
  await logs.untilOutcomes(3)
  t.equal(logs.outcomes.length, 3)
  t.equal(logs.closes.length, 3)
})
