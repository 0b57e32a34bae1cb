import { test } from 'tap'
import { AsyncLocalStorage } from 'node:async_hooks'
import { connect } from 'node:net'
import { inspect } from 'node:util'
import { Readable } from 'node:stream'
import Fastify from 'fastify'
import type { FastifyReply } from 'fastify'
import plugin from '../lib/index'
import { build, deferred, listen } from './helpers'
import { abortMidStream, failOnCrash } from './reliability-helpers'
import type { DeferredTask } from '../lib/index'

// One test per way a task could once go unaccounted for: never run and never logged, a drain()
// that never resolved, a shutdown summary that undercounted, or an exception escaping the plugin.

failOnCrash()

test('a pipelined response still queued behind an earlier one when the client hangs up hands its work over', async (t) => {
  const { app, logs } = await build(t)
  const firstHeld = deferred()
  const secondHandled = deferred()
  app.get('/first', async () => {
    await firstHeld.promise
    return 'first'
  })
  app.get('/second', (req, reply) => {
    secondHandled.resolve()
    return reply.sendAndContinue('second', function afterSecond () {})
  })
  const { port } = await listen(app)
  const socket = connect(port, '127.0.0.1')
  await new Promise((resolve) => socket.once('connect', resolve))
  // both requests in one write: the second response must wait behind the first
  socket.write('GET /first HTTP/1.1\r\nHost: x\r\n\r\nGET /second HTTP/1.1\r\nHost: x\r\n\r\n')
  await secondHandled.promise
  socket.destroy()
  await app.sendAndContinue.drain()
  t.match(logs.outcomes, [{ deferred: { task: 'afterSecond', outcome: 'completed', connection: 'aborted', statusCode: 200 } }])
  t.match(logs.closes, [{ reqId: 'req-2', deferred: { connection: 'aborted', tasks: 1 } }])
  firstHeld.resolve()
})

test('a pipelined response queued behind an earlier one and sent in full: its work is handed over once, as finished', async (t) => {
  for (const logger of [true, false]) {
    const { app, logs } = logger ? await build(t) : { app: Fastify(), logs: null }
    if (!logger) {
      await app.register(plugin)
      t.teardown(() => app.close())
    }
    const firstHeld = deferred()
    const secondHandled = deferred()
    const ran: string[] = []
    app.get('/first', async () => {
      await firstHeld.promise
      return 'first'
    })
    app.get('/second', (req, reply) => {
      secondHandled.resolve()
      return reply.sendAndContinue('second', function afterSecond (ctx) { ran.push(ctx.connection) })
    })
    const { port } = await listen(app)
    const socket = connect(port, '127.0.0.1')
    await new Promise((resolve) => socket.once('connect', resolve))
    let received = ''
    const bothAnswered = new Promise<void>((resolve) => {
      socket.on('data', (chunk) => {
        received += chunk.toString('latin1')
        if (received.includes('second')) resolve()
      })
    })
    socket.write('GET /first HTTP/1.1\r\nHost: x\r\n\r\nGET /second HTTP/1.1\r\nHost: x\r\n\r\n')
    await secondHandled.promise
    firstHeld.resolve()
    await bothAnswered
    await app.sendAndContinue.drain()
    // the request closes too once the socket is idle: that must not hand the work over again
    socket.end()
    await new Promise((resolve) => socket.once('close', resolve))
    await app.sendAndContinue.drain()
    t.same(ran, ['finished'], `logger ${logger ? 'on' : 'off'}: ran once, after a finished response`)
    t.match(app.sendAndContinue.stats(), { completed: 1, pending: 0 })
    if (logs !== null) {
      t.match(logs.outcomes, [{ deferred: { task: 'afterSecond', outcome: 'completed', connection: 'finished' } }])
      t.equal(logs.closes.length, 1)
    }
  }
})

// Over a listening server, Fastify waits for in-flight responses before its onClose hooks run;
// without one (inject(), or a server that was never listened), app.close() goes straight on.
test('a hijacked reply that never ends: past drainTimeout its task is cancelled and logged, and counted', async (t) => {
  const { app, logs } = await build(t, { drainTimeout: 10 })
  const handled = deferred()
  app.get('/', (req, reply) => {
    reply.hijack()
    reply.raw.writeHead(200, { 'content-type': 'text/plain' })
    reply.raw.write('partial')
    reply.defer(function afterHijack () { t.fail('must not run: its response never closed') })
    handled.resolve()
  })
  app.inject('/').catch(() => {})
  await handled.promise
  t.equal(app.sendAndContinue.stats().pending, 1)
  await app.close()
  t.match(logs.outcomes, [{ level: 40, deferred: { task: 'afterHijack', outcome: 'cancelled', connection: null, statusCode: 0 } }])
  const summary = logs.lines.find((line) => line.deferredShutdown !== undefined)
  t.match(summary, { deferredShutdown: { drained: false, cancelled: 1 } })
  t.match(app.sendAndContinue.stats(), { pending: 0, cancelled: 1 })
})

test('app.close() right after a client abort: drain() does not see the scheduler idle between two tasks of one response', async (t) => {
  const { app, logs } = await build(t, { concurrency: 1, drainTimeout: 1000 })
  app.get('/', (req, reply) => {
    reply.defer(function first () {})
    reply.defer(function second ({ signal }) {
      return new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }))
    }, { timeout: 20 })
    const body = new Readable({ read () {} })
    body.push('first chunk')
    return reply.send(body)
  })
  const { port } = await listen(app)
  await abortMidStream(port, '/')
  await app.close()
  const summary = logs.lines.findIndex((line) => line.deferredShutdown !== undefined)
  const lines = logs.outcomes.map((line) => [line.deferred?.task, line.deferred?.outcome])
  t.same(lines, [['first', 'completed'], ['second', 'timeout']], 'both tasks ended')
  t.ok(logs.lines.indexOf(logs.outcomes[1]) < summary, 'before the shutdown summary')
  t.match(logs.lines[summary], { deferredShutdown: { drained: true, completed: 1, timeout: 1 } })
})

const revoked = Proxy.revocable({}, {})
revoked.revoke()

const hostile: Record<string, DeferredTask> = {
  thenGetterThrows: () => ({ get then () { throw new Error('then getter threw') } }),
  revokedProxyReturned: () => revoked.proxy,
  thenCallsBoth: () => ({ then (resolve: () => void, reject: (err: unknown) => void) { resolve(); reject(new Error('late')) } }),
  thenThrowsAfterResolving: () => ({ then (resolve: () => void) { resolve(); throw new Error('after resolving') } }),
  rejectsWithRevokedProxy: () => Promise.reject(revoked.proxy),
  // the logger cannot read it (its traps throw) and util.inspect() cannot describe it
  throwsUninspectable: () => {
    throw new Proxy({ [inspect.custom] () { throw new Error('no') } }, { get () { throw new Error('trap') } })
  },
  returnsThenableThatNeverSettles: () => ({ then () {} })
}

const expected: Record<string, string> = {
  thenGetterThrows: 'failed',
  revokedProxyReturned: 'failed',
  thenCallsBoth: 'completed',
  thenThrowsAfterResolving: 'completed',
  rejectsWithRevokedProxy: 'failed',
  throwsUninspectable: 'failed',
  returnsThenableThatNeverSettles: 'timeout'
}

for (const path of ['inject', 'client abort'] as const) {
  test(`hostile return values, rejections and abort listeners end their task and nothing else (${path})`, async (t) => {
    const { app, logs } = await build(t, { timeout: 20 })
    const after = deferred()
    app.get('/', (req, reply) => {
      reply.defer(Object.values(hostile), { name: 'hostile' })
      reply.defer(function runsAfterwards () { after.resolve() })
      if (path === 'inject') return 'ok'
      const body = new Readable({ read () {} })
      body.push('first chunk')
      return reply.send(body)
    })
    if (path === 'inject') {
      await app.inject('/')
    } else {
      await abortMidStream((await listen(app)).port, '/')
    }
    await after.promise
    await app.sendAndContinue.drain()
    const names = Object.keys(hostile)
    const byTask = new Map(logs.outcomes.map((line) => [line.deferred?.task, line]))
    names.forEach((name, i) => {
      t.equal(byTask.get(`hostile[${i}]`)?.deferred?.outcome, expected[name], name)
    })
    t.equal(logs.outcomes.length, names.length + 1, 'exactly one line per task')
    t.match(byTask.get('hostile[0]'), { err: { message: 'then getter threw' } })
    t.match(byTask.get('hostile[4]'), { err: { message: /^the task failed with a value the logger could not write: <Revoked Proxy>/ } })
    t.match(byTask.get('hostile[5]'), { err: { message: /could not write: a value that cannot be inspected$/ } })
    t.match(app.sendAndContinue.stats(), { pending: 0, queued: 0, running: 0, completed: 3, failed: 4, timeout: 1 })
  })
}

test('each task runs in the async context of its own registration, not the request\'s first', async (t) => {
  const { app } = await build(t)
  const als = new AsyncLocalStorage<string>()
  const seen: Record<string, string | undefined> = {}
  const record: (name: string) => DeferredTask = (name) => () => { seen[name] = als.getStore() }
  app.addHook('preHandler', (req, reply, done) => {
    als.run('hook', () => reply.defer(record('fromHook')))
    done()
  })
  app.get('/', (req, reply) => {
    als.run('handler', () => reply.defer(record('fromHandler')))
    return als.run('send', () => reply.sendAndContinue('ok', [record('fromSendA'), record('fromSendB')]))
  })
  await app.inject('/')
  await app.sendAndContinue.drain()
  t.same(seen, { fromHook: 'hook', fromHandler: 'handler', fromSendA: 'send', fromSendB: 'send' })
})

// sendAndContinue() with its task, or without one and the work deferred after it
const sendings = {
  'with a task': (reply: FastifyReply, payload: unknown, name: string) => reply.sendAndContinue(payload, named(name)),
  'without a task, then defer()': (reply: FastifyReply, payload: unknown, name: string) => reply.sendAndContinue(payload).defer(named(name))
}

function named (name: string): DeferredTask {
  return Object.defineProperty(() => {}, 'name', { value: name })
}

for (const [how, send] of Object.entries(sendings)) {
  test(`sendAndContinue() ${how}, twice while an async onSend hook runs: FST_SAC_ALREADY_SENT`, async (t) => {
    const { app, logs } = await build(t)
    const caught: unknown[] = []
    app.addHook('onSend', async (req, reply, payload) => {
      await new Promise((resolve) => setImmediate(resolve))
      return payload
    })
    app.get('/', (req, reply) => {
      send(reply, 'first', 'first')
      try {
        reply.sendAndContinue('second', function second () { t.fail('must not run') })
      } catch (err) {
        caught.push(err)
      }
      return reply
    })
    const res = await app.inject('/')
    await app.sendAndContinue.drain()
    t.equal(res.body, 'first')
    t.match(caught, [{ code: 'FST_SAC_ALREADY_SENT' }])
    t.same(logs.outcomes.map((line) => line.deferred?.task), ['first'])
    t.notOk(logs.lines.some((line) => line.level >= 50), 'Fastify logged no error')
  })

  test(`sendAndContinue() ${how}: after sending failed, the error handler may call it again`, async (t) => {
    const { app, logs } = await build(t)
    app.setErrorHandler((error, req, reply) => {
      return reply.code(500).sendAndContinue({ failed: (error as Error).message }, function reportFailure () {})
    })
    app.get('/', {
      schema: { response: { 200: { type: 'object', properties: { n: { type: 'integer' } }, required: ['n'] } } }
    }, (req, reply) => send(reply, {}, 'afterFirstTry'))
    const res = await app.inject('/')
    await app.sendAndContinue.drain()
    t.equal(res.statusCode, 500)
    t.match(res.json(), { failed: /n/ })
    t.same(logs.outcomes.map((line) => [line.deferred?.task, line.deferred?.statusCode]).sort(),
      [['afterFirstTry', 500], ['reportFailure', 500]])
  })
}

test('a function whose name throws or is not a string runs as an anonymous task', async (t) => {
  const { app, logs } = await build(t)
  const ran: string[] = []
  const throwing = Object.defineProperty(() => { ran.push('throwing') }, 'name', { get () { throw new Error('no name') } })
  const numbered = Object.defineProperty(() => { ran.push('numbered') }, 'name', { value: 42 })
  app.get('/', (req, reply) => reply.sendAndContinue('ok', throwing).defer(numbered))
  await app.inject('/')
  await app.sendAndContinue.drain()
  t.same(ran, ['throwing', 'numbered'])
  t.same(logs.outcomes.map((line) => [line.deferred?.task, line.deferred?.outcome]), [['anonymous', 'completed'], ['anonymous', 'completed']])
})

test('a request id that is not a string is logged and snapshotted as its string', async (t) => {
  const { app, logs } = await build(t, {}, { genReqId: () => 42 as unknown as string })
  let seen: unknown
  app.get('/', (req, reply) => reply.sendAndContinue('ok', function readsId (ctx) { seen = ctx.request.id }))
  await app.inject('/')
  await app.sendAndContinue.drain()
  t.equal(seen, '42')
  t.equal(logs.outcomes[0].reqId, 42, 'the line is written as the request logger writes it')
})

test('work deferred after the response finished, while the app closes: dropped with the real connection and status, one close line', async (t) => {
  const { app, logs } = await build(t)
  const holdDrain = deferred()
  let finished: import('fastify').FastifyReply | undefined
  app.get('/held', (req, reply) => reply.sendAndContinue('ok', function holdsTheDrain () { return holdDrain.promise }))
  app.get('/plain', (req, reply) => {
    finished = reply
    return 'plain'
  })
  await app.inject('/held')
  t.equal((await app.inject('/plain')).statusCode, 200)
  const closing = app.close()
  await new Promise((resolve) => setImmediate(resolve))
  finished?.defer(function tooLate () { t.fail('must not run') })
  holdDrain.resolve()
  await closing
  const dropped = logs.outcomes.find((line) => line.deferred?.task === 'tooLate')
  t.match(dropped, { reqId: 'req-2', deferred: { outcome: 'dropped', reason: 'closing', connection: 'finished', statusCode: 200 } })
  t.same(logs.closes.filter((line) => line.reqId === 'req-2').map((line) => line.deferred?.tasks), [1], 'one close line')
})

test('retryAfter is bounded to what a Retry-After header can say', async (t) => {
  for (const retryAfter of [1e21, 2 ** 31, 0, 1.5]) {
    const app = Fastify()
    await t.rejects(async () => { await app.register(plugin, { retryAfter }) }, {
      code: 'FST_SAC_INVALID_OPTION',
      message: `fastify-send-and-continue: retryAfter should be a whole number of seconds from 1 to 2147483647, instead got ${inspect(retryAfter)}`
    })
  }
})

test('the task context exposes the documented fields and nothing of the plugin\'s bookkeeping', async (t) => {
  const { app } = await build(t)
  const seen = deferred<Record<string, unknown>>()
  app.get('/', (req, reply) => reply.sendAndContinue('ok', (ctx) => {
    const proto = Object.getPrototypeOf(ctx)
    seen.resolve({
      own: Reflect.ownKeys(ctx),
      protoKeys: Object.getOwnPropertyNames(proto).filter((key) => key !== 'constructor').sort(),
      protoSymbols: Object.getOwnPropertySymbols(proto),
      fields: { name: ctx.name, connection: ctx.connection, statusCode: ctx.statusCode, request: ctx.request, outcomes: ctx.outcomes },
      signal: ctx.signal instanceof AbortSignal,
      log: typeof ctx.log.info
    })
  }, { name: 'inspectsCtx' }))
  await app.inject('/')
  const ctx = await seen.promise
  t.same(ctx.own, [], 'no own properties: nothing to walk')
  t.same(ctx.protoKeys, ['attempt', 'connection', 'log', 'name', 'outcomes', 'request', 'signal', 'statusCode'])
  t.same(ctx.protoSymbols, [])
  t.same(ctx.fields, { name: 'inspectsCtx', connection: 'finished', statusCode: 200, request: { id: 'req-1', method: 'GET', url: '/', routeUrl: '/' }, outcomes: undefined })
  t.equal(ctx.signal, true)
  t.equal(ctx.log, 'function')
})

test('an option value that cannot even be described is still refused with a coded error', async (t) => {
  const app = Fastify()
  const timeout = { [inspect.custom] () { throw new Error('no') } }
  await t.rejects(async () => { await app.register(plugin, { timeout } as never) }, {
    code: 'FST_SAC_INVALID_OPTION',
    message: 'fastify-send-and-continue: timeout should be a whole number of milliseconds from 0 to 2147483647, instead got a value that cannot be inspected'
  })
})

test('without a logger nothing is logged and everything is still counted; a logger without isLevelEnabled() gets every line', async (t) => {
  const silent = Fastify()
  t.teardown(() => silent.close())
  await silent.register(plugin)
  silent.get('/', (req, reply) => reply.sendAndContinue('ok', [() => {}, () => { throw new Error('counted') }]))
  await silent.inject('/')
  await silent.sendAndContinue.drain()
  t.match(silent.sendAndContinue.stats(), { completed: 1, failed: 1 })

  // one function for every level, as a small custom logger might have: it must still be written to
  const written: Array<{ deferred?: { outcome?: string } }> = []
  const write = (obj: unknown): void => { if (typeof obj === 'object' && obj !== null) written.push(obj) }
  const custom = { info: write, error: write, warn: write, debug: write, trace: write, fatal: write, child: () => custom, level: 'info' }
  const app = Fastify({ loggerInstance: custom as never })
  t.teardown(() => app.close())
  await app.register(plugin)
  app.get('/', (req, reply) => reply.sendAndContinue('ok', () => {}))
  await app.inject('/')
  await app.sendAndContinue.drain()
  t.same(written.filter((line) => line.deferred?.outcome !== undefined).map((line) => line.deferred?.outcome), ['completed'])
})

test('a second sendAndContinue() in a synchronous handler after the reply went out logs FST_SAC_ALREADY_SENT through the request\'s logger', async (t) => {
  const { app, logs } = await build(t)
  app.get('/twice', (req, reply) => {
    reply.sendAndContinue('first', function first () {})
    // not caught: Fastify's own warning would be all the log says
    reply.sendAndContinue('second', function second () { t.fail('must not run') })
  })
  const res = await app.inject({ url: '/twice', headers: { 'x-request-id': 'twice-1' } })
  await app.sendAndContinue.drain()
  t.equal(res.body, 'first')
  const refused = logs.lines.filter((line) => line.level === 50)
  t.match(refused, [{
    reqId: String,
    msg: 'reply.sendAndContinue() was called on route GET /twice after the reply was sent; use reply.defer() to add work to a sent reply',
    err: { type: 'FastifyError', code: 'FST_SAC_ALREADY_SENT', stack: String }
  }], 'one error line, under err, with the request id')
  t.equal(refused[0].reqId, logs.outcomes[0].reqId, 'the same request as the first task\'s line')
  t.same(logs.outcomes.map((line) => line.deferred?.task), ['first'])
})
