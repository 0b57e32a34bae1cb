import { test } from 'tap'
import type { Test } from 'tap'
import { once } from 'node:events'
import { request } from 'node:http'
import { Readable } from 'node:stream'
import { build, deferred, listen } from './helpers'
import { defineTask } from '../lib/index'
import type { Built, LogCollector } from './helpers'
import { abortBeforeResponse } from './reliability-helpers'

function reachedHandler (logs: LogCollector): Promise<void> {
  return logs.until((lines) => lines.some((line) => line.msg === 'incoming request'))
}

/** A response that sends one chunk and then waits: the client hangs up in the middle. */
function endless (): Readable {
  return new Readable({
    read () {
      if (this.readableLength === 0 && !(this as { sentFirst?: boolean }).sentFirst) {
        (this as { sentFirst?: boolean }).sentFirst = true
        this.push('first chunk')
      }
    }
  })
}

async function abortMidStream (port: number): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const req = request({ port, host: '127.0.0.1', path: '/' }, (res) => {
      res.once('data', () => {
        req.destroy()
        resolve()
      })
    })
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'ECONNRESET') reject(err)
    })
    req.end()
  })
}

for (const policy of ['run', 'skip'] as const) {
  test(`client aborts mid-stream, policy ${policy}: one close line "aborted", the task ${policy === 'run' ? 'runs once' : 'is skipped'}`, async (t) => {
    const { app, logs }: Built = await build(t, { onClientAbort: policy })
    let runs = 0
    const ran = deferred<string>()
    app.get('/', (req, reply) => reply.type('text/plain').sendAndContinue(endless(), function afterStream (ctx) {
      runs++
      ran.resolve(ctx.connection)
    }))
    const { port } = await listen(app)
    await abortMidStream(port)
    await logs.untilOutcomes(1)
    if (policy === 'run') t.equal(await ran.promise, 'aborted')
    // give a second dispatch (onResponse after close) every chance to show up
    await new Promise((resolve) => setImmediate(resolve))
    t.equal(runs, policy === 'run' ? 1 : 0)
    t.equal(logs.outcomes.length, 1, 'exactly one outcome line')
    t.match(logs.outcomes[0], {
      level: policy === 'run' ? 30 : 40,
      deferred: { task: 'afterStream', outcome: policy === 'run' ? 'completed' : 'skipped', connection: 'aborted' }
    })
    t.equal(logs.closes.length, 1, 'exactly one close line')
    t.match(logs.closes[0], { deferred: { connection: 'aborted', tasks: 1, route: '/' } })
    t.notOk(logs.lines.some((line) => line.msg === 'request completed'), 'Fastify ran no onResponse for the aborted response')
    t.same(app.sendAndContinue.stats(), {
      pending: 0,
      queued: 0,
      running: 0,
      retrying: 0,
      completed: policy === 'run' ? 1 : 0,
      failed: 0,
      timeout: 0,
      skipped: policy === 'run' ? 0 : 1,
      cancelled: 0,
      dropped: 0,
      rejected: 0,
      saturated: false,
      oldestRunningMs: 0
    })
  })
}

async function clientGoneBeforeSend (t: Test, when: 'before' | 'after'): Promise<void> {
  const { app, logs } = await build(t)
  const ran = deferred<string>()
  const serverSawClose = deferred()
  app.get('/', async (req, reply) => {
    if (when === 'before') reply.defer(function registeredEarly (ctx) { ran.resolve(ctx.connection) })
    await once(reply.raw, 'close')
    serverSawClose.resolve()
    if (when === 'after') {
      return reply.sendAndContinue('too late', function registeredLate (ctx) { ran.resolve(ctx.connection) })
    }
    return reply.send('too late')
  })
  const { port } = await listen(app)
  // hang up once the request reached the handler
  await abortBeforeResponse(port, '/', reachedHandler(logs))
  await serverSawClose.promise
  t.equal(await ran.promise, 'aborted')
  await logs.untilOutcomes(1)
  await app.sendAndContinue.drain()
  t.equal(logs.outcomes.length, 1)
  t.equal(logs.closes.length, 1)
  t.match(logs.closes[0], { deferred: { connection: 'aborted' } })
}

test('client gone before the handler sends, work deferred earlier: runs once, "aborted"', (t) => clientGoneBeforeSend(t, 'before'))
test('client gone before the handler sends, sendAndContinue after it left: runs once, "aborted"', (t) => clientGoneBeforeSend(t, 'after'))

test('client gone before the handler sends, policy skip: skipped', async (t) => {
  const { app, logs } = await build(t, { onClientAbort: 'skip' })
  app.get('/', async (req, reply) => {
    await once(reply.raw, 'close')
    return reply.sendAndContinue('late', () => { t.fail('must not run') })
  })
  const { port } = await listen(app)
  await abortBeforeResponse(port, '/', reachedHandler(logs))
  await logs.untilOutcomes(1)
  t.match(logs.outcomes[0], { deferred: { outcome: 'skipped', connection: 'aborted' } })
})

test('client gone before the handler registers a durable job, the reply hijacked: the job is enqueued and runs, after one close line', async (t) => {
  const ran = deferred<string | null>()
  const audit = defineTask('audit', (data: null, ctx) => { ran.resolve(ctx.connection) })
  const { app, logs } = await build(t, { queue: { engine: 'memory', tasks: [audit] } })
  app.get('/', async (req, reply) => {
    await once(reply.raw, 'close')
    // nothing will be sent: onSend never runs, and the response's 'close' is over
    reply.defer(audit.with(null))
    reply.hijack()
  })
  const { port } = await listen(app)
  await abortBeforeResponse(port, '/', reachedHandler(logs))
  t.equal(await ran.promise, 'aborted')
  await app.sendAndContinue.drain()
  t.match(logs.closes, [{ deferred: { connection: 'aborted', tasks: 0, jobs: 1 } }])
  t.match(logs.outcomes.map((line) => line.deferred?.outcome), ['enqueued', 'completed'])
})
