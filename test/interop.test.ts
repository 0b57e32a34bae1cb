import { test } from 'tap'
import Fastify from 'fastify'
import compress from '@fastify/compress'
import { fastifyRequestContext, requestContext } from '@fastify/request-context'
import { AsyncLocalStorage } from 'node:async_hooks'
import { once } from 'node:events'
import { request as httpRequest } from 'node:http'
import { connect, constants as h2 } from 'node:http2'
import type { ClientHttp2Session, IncomingHttpHeaders } from 'node:http2'
import { Readable } from 'node:stream'
import { gunzipSync } from 'node:zlib'
import sendAndContinue, { isSendAndContinueError } from '../lib/index'
import type { TaskContext } from '../lib/index'
import { build, deferred, listen, LogCollector } from './helpers'
import { abortMidStream, failOnCrash, getBody } from './reliability-helpers'

failOnCrash()

declare module '@fastify/request-context' {
  interface RequestContextData {
    user: string
  }
}

interface Seen { connection: string, statusCode: number }

function seenOf (ctx: TaskContext): Seen {
  return { connection: ctx.connection, statusCode: ctx.statusCode }
}

// Real sockets and one slot: the second task starts from the end of the first, and a response
// closes from its socket's 'close' event; without the request's context carried over, a task
// would see no store or the other request's.
test('tasks keep the async context of their request (AsyncLocalStorage), each its own', async (t) => {
  const { app } = await build(t, { concurrency: 1 })
  const als = new AsyncLocalStorage<{ reqId: string }>()
  app.addHook('onRequest', (req, reply, done) => { als.run({ reqId: String(req.id) }, done) })
  const gate = deferred()
  const seen: Array<{ own: string, before: string | undefined, after: string | undefined }> = []
  app.get('/', (req, reply) => reply.sendAndContinue('ok', async (ctx) => {
    const before = als.getStore()?.reqId
    await gate.promise
    seen.push({ own: ctx.request.id, before, after: als.getStore()?.reqId })
  }))
  const { port } = await listen(app)
  t.same(await Promise.all([getBody(port, '/'), getBody(port, '/')]), ['ok', 'ok'])
  t.equal(als.getStore(), undefined, 'the test itself runs outside any request context')
  gate.resolve()
  await app.sendAndContinue.drain()
  t.equal(seen.length, 2)
  t.same(seen.filter((s) => s.before !== s.own || s.after !== s.own), [],
    'each task sees its own request\'s store, before and after an await')
})

test('@fastify/request-context values are readable in a task', async (t) => {
  const { app } = await build(t, { concurrency: 1 })
  await app.register(fastifyRequestContext)
  const gate = deferred()
  const seen: Array<{ user: string | undefined, expected: string }> = []
  app.get('/:user', (req, reply) => {
    const expected = (req.params as { user: string }).user
    req.requestContext.set('user', expected)
    return reply.sendAndContinue('ok', async () => {
      await gate.promise
      seen.push({ user: requestContext.get('user'), expected })
    })
  })
  const { port } = await listen(app)
  await Promise.all([getBody(port, '/alice'), getBody(port, '/bob')])
  gate.resolve()
  await app.sendAndContinue.drain()
  t.same(seen.map((s) => s.expected).sort(), ['alice', 'bob'])
  t.same(seen.filter((s) => s.user !== s.expected), [], 'each task read its own request\'s value')
  t.equal(requestContext.get('user'), undefined)
})

test('@fastify/compress: the compressed body reaches the client, then the task runs', async (t) => {
  const { app, logs } = await build(t)
  await app.register(compress, { threshold: 0 })
  const seen: Seen[] = []
  const text = 'deferred work '.repeat(200)
  app.get('/json', (req, reply) => reply.sendAndContinue({ text }, (ctx) => { seen.push(seenOf(ctx)) }))
  app.get('/stream', (req, reply) => reply.type('text/plain').sendAndContinue(Readable.from([text, text]), (ctx) => { seen.push(seenOf(ctx)) }))

  const json = await app.inject({ url: '/json', headers: { 'accept-encoding': 'gzip' } })
  t.equal(json.headers['content-encoding'], 'gzip')
  t.same(JSON.parse(gunzipSync(json.rawPayload).toString()), { text })

  const { url } = await listen(app)
  const stream = await fetch(`${url}/stream`, { headers: { 'accept-encoding': 'gzip' } })
  t.equal(stream.headers.get('content-encoding'), 'gzip')
  t.equal(await stream.text(), text + text, 'fetch decompressed the whole stream')

  await logs.untilOutcomes(2)
  t.same(seen, [{ connection: 'finished', statusCode: 200 }, { connection: 'finished', statusCode: 200 }])
  t.ok(logs.outcomes.every((l) => l.deferred?.outcome === 'completed'))
})

test('streams, Buffers, reply.code() and reply.header() set before the call, over real sockets', async (t) => {
  const { app, logs } = await build(t)
  const seen: Seen[] = []
  const task = (ctx: TaskContext) => { seen.push(seenOf(ctx)) }
  app.post('/buffer', (req, reply) => reply.code(201).header('x-kind', 'buffer').type('application/octet-stream')
    .sendAndContinue(Buffer.from([1, 2, 3]), task))
  app.get('/stream', (req, reply) => reply.code(202).header('x-kind', 'stream').type('text/plain')
    .sendAndContinue(Readable.from(['a', 'b']), task))
  const { url } = await listen(app)
  const buffer = await fetch(`${url}/buffer`, { method: 'POST' })
  t.equal(buffer.status, 201)
  t.equal(buffer.headers.get('x-kind'), 'buffer')
  t.same([...new Uint8Array(await buffer.arrayBuffer())], [1, 2, 3])
  const stream = await fetch(`${url}/stream`)
  t.equal(stream.status, 202)
  t.equal(stream.headers.get('x-kind'), 'stream')
  t.equal(await stream.text(), 'ab')
  await logs.untilOutcomes(2)
  t.same(seen.sort((a, b) => a.statusCode - b.statusCode), [
    { connection: 'finished', statusCode: 201 },
    { connection: 'finished', statusCode: 202 }
  ])
})

test('inject(): answers, then runs the task on a finished connection', async (t) => {
  const { app, logs } = await build(t)
  const seen = deferred<Seen>()
  app.get('/', (req, reply) => reply.code(200).sendAndContinue({ ok: true }, (ctx) => { seen.resolve(seenOf(ctx)) }))
  const response = await app.inject('/')
  t.same(response.json(), { ok: true })
  t.same(await seen.promise, { connection: 'finished', statusCode: 200 })
  await logs.untilOutcomes(1)
  t.match(logs.closes, [{ deferred: { connection: 'finished', tasks: 1 } }])
})

async function http2App (t: Parameters<Parameters<typeof test>[0]>[0], options = {}) {
  const logs = new LogCollector()
  const app = Fastify({ http2: true, logger: { level: 'info', stream: logs } })
  t.teardown(() => app.close())
  await app.register(sendAndContinue, options)
  return { app, logs }
}

async function h2get (client: ClientHttp2Session, path: string): Promise<{ headers: IncomingHttpHeaders, body: Buffer }> {
  const req = client.request({ ':path': path })
  const chunks: Buffer[] = []
  req.on('data', (chunk: Buffer) => chunks.push(chunk))
  const [headers] = await once(req, 'response') as [IncomingHttpHeaders]
  await once(req, 'end')
  return { headers, body: Buffer.concat(chunks) }
}

test('HTTP/2: JSON, Buffers and streams, with code() and header(); closeConnection adds no Connection header', async (t) => {
  const { app, logs } = await http2App(t, { closeConnection: true })
  const seen: Seen[] = []
  const task = (ctx: TaskContext) => { seen.push(seenOf(ctx)) }
  app.get('/json', (req, reply) => reply.code(201).header('x-proto', 'h2').sendAndContinue({ h2: true }, task))
  app.get('/buffer', (req, reply) => reply.type('application/octet-stream').sendAndContinue(Buffer.from('bytes'), task))
  app.get('/stream', (req, reply) => reply.type('text/plain').sendAndContinue(Readable.from(['x', 'y']), task))
  const address = await app.listen({ port: 0, host: '127.0.0.1' })
  const client = connect(address)
  t.teardown(() => client.close())

  const json = await h2get(client, '/json')
  t.equal(json.headers[':status'], 201)
  t.equal(json.headers['x-proto'], 'h2')
  t.equal(json.headers.connection, undefined, 'HTTP/2 forbids Connection: closeConnection leaves it out')
  t.same(JSON.parse(json.body.toString()), { h2: true })
  t.equal((await h2get(client, '/buffer')).body.toString(), 'bytes')
  t.equal((await h2get(client, '/stream')).body.toString(), 'xy')

  await logs.untilOutcomes(3)
  t.same(seen.map((s) => s.connection), ['finished', 'finished', 'finished'])
  t.same(seen.map((s) => s.statusCode).sort(), [200, 200, 201])
  t.equal(logs.closes.length, 3)
  t.notOk(logs.lines.some((l) => l.level >= 40), 'no warning (as setting Connection on HTTP/2 would log)')
})

test('HTTP/2: a stream the client cancels mid-response closes as aborted and its task runs once', async (t) => {
  const { app, logs } = await http2App(t)
  const ran: Seen[] = []
  app.get('/', (req, reply) => {
    const body = new Readable({ read () {} })
    body.push('first')
    return reply.sendAndContinue(body, (ctx) => { ran.push(seenOf(ctx)) })
  })
  const address = await app.listen({ port: 0, host: '127.0.0.1' })
  const client = connect(address)
  t.teardown(() => client.close())
  const req = client.request({ ':path': '/' })
  await once(req, 'data')
  req.close(h2.NGHTTP2_CANCEL)
  await logs.untilOutcomes(1)
  t.same(ran, [{ connection: 'aborted', statusCode: 200 }])
  t.match(logs.closes, [{ deferred: { connection: 'aborted', tasks: 1 } }])
  t.equal(logs.closes.length, 1)
})

test('reply.hijack() + reply.defer(): the task runs once the raw response closed', async (t) => {
  const { app, logs } = await build(t)
  const gate = deferred()
  const ran = deferred<Seen>()
  let running = false
  app.get('/', async (req, reply) => {
    reply.hijack()
    reply.defer((ctx) => {
      running = true
      ran.resolve(seenOf(ctx))
    })
    reply.raw.writeHead(200, { 'content-type': 'text/plain' })
    reply.raw.write('part ')
    await gate.promise
    reply.raw.end('end')
  })
  const { port } = await listen(app)
  const body = await new Promise<string>((resolve, reject) => {
    httpRequest({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.once('data', (chunk) => {
        text += chunk
        t.equal(running, false, 'the task waits while the hijacked response is still being written')
        t.equal(logs.closes.length, 0)
        res.on('data', (more) => { text += more })
        gate.resolve()
      })
      res.on('end', () => resolve(text))
    }).on('error', reject).end()
  })
  t.equal(body, 'part end')
  t.same(await ran.promise, { connection: 'finished', statusCode: 200 })
  await logs.untilOutcomes(1)
  t.match(logs.closes, [{ deferred: { connection: 'finished', tasks: 1, statusCode: 200 } }])
})

test('reply.hijack() + reply.defer(): a client hanging up ends the hijacked response as aborted', async (t) => {
  const { app, logs } = await build(t)
  const ran = deferred<Seen>()
  app.get('/', (req, reply) => {
    reply.hijack()
    reply.defer((ctx) => { ran.resolve(seenOf(ctx)) })
    reply.raw.writeHead(200, { 'content-type': 'text/plain' })
    reply.raw.write('never ends')
  })
  const { port } = await listen(app)
  await abortMidStream(port, '/')
  t.same(await ran.promise, { connection: 'aborted', statusCode: 200 })
  await logs.untilOutcomes(1)
  t.equal(logs.closes.length, 1)
})

test('reply.sendAndContinue() on a hijacked reply throws FST_SAC_HIJACKED and registers nothing', async (t) => {
  const { app, logs } = await build(t)
  const thrown = deferred<unknown>()
  let ran = false
  app.get('/', (req, reply) => {
    reply.hijack()
    try {
      reply.sendAndContinue('not sent', () => { ran = true })
    } catch (err) {
      thrown.resolve(err)
    }
    reply.raw.end('raw')
  })
  const { url } = await listen(app)
  const response = await fetch(url)
  t.equal(await response.text(), 'raw')
  const err = await thrown.promise
  t.ok(isSendAndContinueError(err))
  t.match(err, {
    code: 'FST_SAC_HIJACKED',
    statusCode: 500,
    message: /cannot send the hijacked reply of route GET \/; write the response to reply.raw and register the work with reply.defer\(\)/
  })
  await app.sendAndContinue.drain()
  t.equal(ran, false)
  t.same(logs.closes, [])
  t.same(logs.outcomes, [])
  t.match(app.sendAndContinue.stats(), { pending: 0, completed: 0 })
})
