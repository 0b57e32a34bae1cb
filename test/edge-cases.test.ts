import { test } from 'tap'
import { once } from 'node:events'
import { connect } from 'node:net'
import { connect as http2Connect } from 'node:http2'
import { build, deferred, listen } from './helpers'

// more than the kernel's socket buffers hold on loopback (tcp_rmem max 32 MB + tcp_wmem max 4 MB here)
const big = Buffer.alloc(64 * 1024 * 1024, 'x')

test('HTTP/1.1: a response ended but not flushed when the client left is "aborted"', async (t) => {
  const { app, logs } = await build(t)
  const seen = deferred<string>()
  app.get('/', (req, reply) => reply.sendAndContinue(big, (ctx) => { seen.resolve(ctx.connection) }))
  const { port } = await listen(app)
  // the client stops reading after the first bytes: the kernel buffers fill long before 64 MB,
  // so the server has called end() but cannot flush; then the client leaves
  const socket = connect(port, '127.0.0.1', () => { socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n') })
  socket.on('error', () => {})
  await once(socket, 'data')
  socket.pause()
  await new Promise((resolve) => setTimeout(resolve, 50))
  socket.destroy()
  t.equal(await seen.promise, 'aborted')
  await logs.untilOutcomes(1)
  t.match(logs.closes, [{ deferred: { connection: 'aborted', method: 'GET' } }])
})

test('HTTP/2: a response ended but reset before it was read is "aborted"', async (t) => {
  const { app } = await build(t, {}, { http2: true } as never)
  const seen = deferred<string>()
  app.get('/', (req, reply) => reply.sendAndContinue(big, (ctx) => { seen.resolve(ctx.connection) }))
  const { url } = await listen(app)
  const session = http2Connect(url)
  t.teardown(() => session.close())
  const stream = session.request({ ':path': '/' })
  stream.on('error', () => {})
  stream.once('data', () => { stream.close(0x8) })
  stream.end()
  t.equal(await seen.promise, 'aborted')
})

test('route hooks given as single functions are kept beside the plugin\'s', async (t) => {
  const { app } = await build(t, { rejectWhenSaturated: true })
  const calls: string[] = []
  app.get('/', {
    onRequest: (req, reply, done) => { calls.push('onRequest'); done() },
    onResponse: (req, reply, done) => { calls.push('onResponse'); done() }
  }, (req, reply) => reply.sendAndContinue('ok', () => { calls.push('task') }))
  await app.inject('/')
  await app.sendAndContinue.drain()
  t.same(calls, ['onRequest', 'onResponse', 'task'])
})

test('route hooks given as arrays are kept beside the plugin\'s', async (t) => {
  const { app } = await build(t, { rejectWhenSaturated: true })
  const calls: string[] = []
  app.get('/', {
    onRequest: [(req, reply, done) => { calls.push('onRequest'); done() }],
    onResponse: [(req, reply, done) => { calls.push('onResponse'); done() }]
  }, (req, reply) => reply.sendAndContinue('ok', () => { calls.push('task') }))
  await app.inject('/')
  await app.sendAndContinue.drain()
  t.same(calls, ['onRequest', 'onResponse', 'task'])
})

test('options objects without a prototype are accepted', async (t) => {
  const options = Object.assign(Object.create(null), { timeout: 5 })
  const { app, logs } = await build(t, options)
  app.get('/', (req, reply) => reply.sendAndContinue('ok', () => new Promise(() => {})))
  await app.inject('/')
  await logs.untilOutcomes(1)
  t.match(logs.outcomes[0], { deferred: { outcome: 'timeout', timeoutMs: 5 } })
})

test('a long queue drains in order while its storage is compacted', async (t) => {
  const { app, logs } = await build(t, { concurrency: 1, maxQueued: Infinity })
  const order: number[] = []
  const first = deferred()
  const second = deferred()
  const tasks = Array.from({ length: 3000 }, (_, i) => {
    if (i === 0) return () => { order.push(i); return first.promise }
    if (i === 2001) return () => { order.push(i); return second.promise }
    return () => { order.push(i) }
  })
  app.get('/', (req, reply) => reply.sendAndContinue('ok', tasks, { name: 'job' }))
  await app.inject('/')
  t.equal(app.sendAndContinue.stats().queued, 2999, 'the first holds the only slot')
  first.resolve()
  // 2000 queued tasks ran in one go, the 2001st holds the slot, 998 still wait
  await logs.untilOutcomes(2001)
  t.equal(app.sendAndContinue.stats().queued, 998)
  second.resolve()
  await app.sendAndContinue.drain()
  t.equal(order.length, 3000)
  t.same(order, [...order].sort((a, b) => a - b), 'FIFO throughout')
})
