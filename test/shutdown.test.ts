import { test } from 'tap'
import Fastify from 'fastify'
import sendAndContinue from '../lib/index'
import type { DroppedTaskInfo } from '../lib/index'
import { LogCollector, deferred, listen } from './helpers'

async function app (options: Parameters<typeof sendAndContinue>[1] = {}) {
  const logs = new LogCollector()
  const fastify = Fastify({ logger: { level: 'info', stream: logs } })
  await fastify.register(sendAndContinue, options)
  return { app: fastify, logs }
}

test('app.close() waits for running tasks, then logs a drained summary', async (t) => {
  const { app: server, logs } = await app()
  const gate = deferred()
  const started = deferred()
  server.get('/', (req, reply) => reply.sendAndContinue('ok', async function flushAudit () {
    started.resolve()
    await gate.promise
  }))
  const { url } = await listen(server)
  t.equal(await (await fetch(url)).text(), 'ok')
  await started.promise
  let closed = false
  const closing = server.close().then(() => { closed = true })
  await new Promise((resolve) => setTimeout(resolve, 20))
  t.equal(closed, false, 'close is waiting for the task')
  gate.resolve()
  await closing
  t.match(logs.outcomes, [{ deferred: { task: 'flushAudit', outcome: 'completed' } }])
  const summary = logs.lines.at(-1)
  t.match(summary, { level: 30, msg: 'deferred work drained', deferredShutdown: { drained: true, drainTimeout: 10000, completed: 1, cancelled: 0 } })
})

test('past drainTimeout, running and queued tasks are aborted and logged cancelled', async (t) => {
  const { app: server, logs } = await app({ drainTimeout: 30, concurrency: 1, timeout: 0 })
  const reasons: unknown[] = []
  const started = deferred()
  server.get('/', (req, reply) => reply.sendAndContinue('ok', [
    function waitsForSignal ({ signal }) {
      started.resolve()
      return new Promise((resolve) => signal.addEventListener('abort', () => { reasons.push(signal.reason); resolve(undefined) }))
    },
    function neverStarts () { t.fail('a queued task must not start after the drain ran out') }
  ]))
  const { url } = await listen(server)
  await (await fetch(url)).text()
  await started.promise
  const before = Date.now()
  await server.close()
  t.ok(Date.now() - before < 2000, 'close resolved soon after drainTimeout')
  const byTask = Object.fromEntries(logs.outcomes.map((line) => [line.deferred?.task, line]))
  t.equal(logs.outcomes.length, 2)
  t.match(byTask.waitsForSignal, { level: 40, msg: 'deferred task cancelled: the shutdown drain ran out', deferred: { outcome: 'cancelled' } })
  t.match(byTask.neverStarts, { level: 40, deferred: { outcome: 'cancelled', durationMs: 0 } })
  t.ok((byTask.neverStarts.deferred?.queuedMs as number) >= 29, 'it waited in the queue for the whole drain')
  t.equal((reasons[0] as DOMException).name, 'AbortError')
  t.match(logs.lines.at(-1), {
    level: 40,
    msg: 'deferred work cancelled: the shutdown drain ran out',
    deferredShutdown: { drained: false, drainTimeout: 30, cancelled: 2, completed: 0 }
  })
  t.same(server.sendAndContinue.stats(), {
    pending: 0, queued: 0, running: 0, retrying: 0, completed: 0, failed: 0, timeout: 0, skipped: 0, cancelled: 2, dropped: 0, rejected: 0, saturated: false, oldestRunningMs: 0
  })
})

test('with nothing to wait for, close logs the summary at once', async (t) => {
  const { app: server, logs } = await app()
  await server.ready()
  await server.close()
  t.match(logs.lines.at(-1), { msg: 'deferred work drained', deferredShutdown: { drained: true } })
})

test('work registered once close started is dropped, logged and handed to onDropped', async (t) => {
  const dropped: DroppedTaskInfo[] = []
  const { app: server, logs } = await app({ onDropped: (info) => { dropped.push(info) } })
  const gate = deferred()
  let lateReply: import('fastify').FastifyReply | undefined
  server.get('/', (req, reply) => {
    lateReply = reply
    reply.sendAndContinue('ok', function holdsClose () { return gate.promise })
  })
  await server.inject('/')
  const closing = server.close()
  await new Promise((resolve) => setImmediate(resolve))
  const late = function lateWork () { t.fail('must not run') }
  lateReply?.defer(late)
  gate.resolve()
  await closing
  const line = logs.outcomes.find((l) => l.deferred?.task === 'lateWork')
  t.match(line, { level: 50, msg: 'deferred task dropped: closing', deferred: { outcome: 'dropped', reason: 'closing', connection: 'finished' } })
  t.equal(dropped.length, 1)
  t.match(dropped[0], { name: 'lateWork', reason: 'closing', reqId: 'req-1', route: '/', request: { id: 'req-1', method: 'GET', url: '/' } })
  t.equal(dropped[0].task, late)
})

test('a task whose response has not closed when the drain runs out is cancelled and logged then, and never runs', async (t) => {
  const { app: server, logs } = await app({ drainTimeout: 0 })
  let reply: import('fastify').FastifyReply | undefined
  const started = deferred()
  server.get('/', async (req, r) => {
    reply = r
    r.defer(function registeredBeforeClose () { t.fail('must not run') })
    started.resolve()
    return new Promise(() => {}) // the response never finishes on its own
  })
  server.inject('/').catch(() => {})
  await started.promise
  await server.close()
  t.equal(logs.outcomes.length, 1, 'logged by the shutdown, not left pending')
  t.match(logs.outcomes[0], { deferred: { task: 'registeredBeforeClose', outcome: 'cancelled', connection: null, statusCode: 0 } })
  const summary = logs.lines.find((line) => line.deferredShutdown !== undefined)
  t.match(summary, { deferredShutdown: { drained: false, cancelled: 1 } })
  t.match(server.sendAndContinue.stats(), { pending: 0, cancelled: 1 })
  // the response closes only now: one close line, no second outcome
  reply?.raw.destroy()
  await logs.until(() => logs.closes.length === 1)
  t.match(logs.closes[0], { deferred: { connection: 'aborted', tasks: 1 } })
  await server.sendAndContinue.drain()
  t.equal(logs.outcomes.length, 1)
})
