import { test } from 'tap'
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { build, deferred } from './helpers'
import { countBy, failOnCrash } from './reliability-helpers'
import type { DroppedTaskInfo } from '../lib/index'

failOnCrash()

test('queue overflow: every task past running + queued is dropped, logged once and handed to onDropped', async (t) => {
  const concurrency = 3
  const maxQueued = 5
  const requests = 20
  const tasksPerRequest = 2
  const overflow = requests * tasksPerRequest - concurrency - maxQueued
  const dropped: DroppedTaskInfo[] = []
  const { app, logs } = await build(t, { concurrency, maxQueued, onDropped (info) { dropped.push(info) } })
  const gate = deferred()
  const held = () => gate.promise
  app.get('/work/:n', (req, reply) => reply.sendAndContinue('ok', [held, held], { name: 'held' }))

  for (let i = 0; i < requests; i++) {
    const response = await app.inject(`/work/${i}`)
    t.equal(response.statusCode, 200, 'dropping work never changes the response')
  }
  await logs.until(() => logs.closes.length === requests)

  t.match(app.sendAndContinue.stats(), { running: concurrency, queued: maxQueued, dropped: overflow, saturated: true })
  const droppedLines = logs.outcomes.filter((l) => l.deferred?.outcome === 'dropped')
  t.equal(droppedLines.length, overflow, 'one dropped line per task past the bounds')
  t.equal(dropped.length, overflow, 'one onDropped call per dropped task')
  t.same(dropped.map((info) => `${info.reqId} ${info.name}`), droppedLines.map((l) => `${l.reqId} ${l.deferred?.task}`),
    'onDropped is called for exactly the tasks logged as dropped, in the same order')
  t.ok(droppedLines.every((l) => l.level === 50 && l.deferred?.reason === 'queue-full' && l.deferred.queuedMs === 0))
  t.ok(dropped.every((info) => info.reason === 'queue-full' && info.route === '/work/:n' && info.task === held &&
    info.request.id === info.reqId && info.request.url.startsWith('/work/')))
  t.equal(dropped[0].reqId, 'req-5', 'the first request over the bounds is the fifth: 4 × 2 tasks fill 3 + 5 slots')

  gate.resolve()
  await app.sendAndContinue.drain()
  t.match(app.sendAndContinue.stats(), {
    pending: 0, queued: 0, running: 0, completed: concurrency + maxQueued, dropped: overflow, saturated: false
  })
  t.same(countBy(logs.outcomes, (l) => l.deferred?.outcome), new Map([['completed', concurrency + maxQueued], ['dropped', overflow]]))
})

test('maxQueued: 0 runs up to concurrency tasks and drops the rest at once', async (t) => {
  let calls = 0
  const { app, logs } = await build(t, { concurrency: 1, maxQueued: 0, onDropped () { calls++ } })
  const gate = deferred()
  app.get('/', (req, reply) => reply.sendAndContinue('ok', () => gate.promise))
  await app.inject('/')
  await app.inject('/')
  await app.inject('/')
  t.equal(calls, 2)
  t.match(app.sendAndContinue.stats(), { running: 1, queued: 0, dropped: 2, saturated: true })
  gate.resolve()
  await app.sendAndContinue.drain()
  t.match(app.sendAndContinue.stats(), { completed: 1, dropped: 2, saturated: false })
  t.equal(logs.outcomes.length, 3)
})

test('an onDropped that throws is logged and does not break the request or the count', async (t) => {
  const { app, logs } = await build(t, { concurrency: 1, maxQueued: 0, onDropped () { throw new Error('outbox down') } })
  const gate = deferred()
  app.get('/', (req, reply) => reply.sendAndContinue('ok', () => gate.promise))
  await app.inject('/')
  const response = await app.inject('/')
  t.equal(response.statusCode, 200)
  const line = logs.lines.find((l) => l.msg === 'onDropped threw')
  t.match(line, { level: 50, reqId: 'req-2', err: { message: 'outbox down' } })
  gate.resolve()
  await app.sendAndContinue.drain()
  t.match(app.sendAndContinue.stats(), { completed: 1, dropped: 1 })
})

test('rejectWhenSaturated (plugin-wide): 503 with Retry-After before the handler runs, until a slot frees', async (t) => {
  const { app, logs } = await build(t, { concurrency: 1, maxQueued: 1, rejectWhenSaturated: true, retryAfter: 7 })
  const gate = deferred()
  let handled = 0
  app.get('/', (req, reply) => {
    handled++
    return reply.sendAndContinue('ok', () => gate.promise)
  })

  t.equal((await app.inject('/')).statusCode, 200)
  t.equal(app.sendAndContinue.stats().saturated, false, 'one running, the queue still has room')
  t.equal((await app.inject('/')).statusCode, 200)
  t.match(app.sendAndContinue.stats(), { running: 1, queued: 1, saturated: true })

  const rejected = await app.inject('/')
  t.equal(rejected.statusCode, 503)
  t.equal(rejected.headers['retry-after'], '7')
  t.match(rejected.json(), { statusCode: 503, error: 'Service Unavailable', message: 'deferred work is saturated, retry later' })
  t.equal(handled, 2, 'the handler did not run for the rejected request')
  t.equal(app.sendAndContinue.stats().dropped, 0, 'nothing was dropped: the request was refused instead')
  t.equal(logs.closes.length, 2, 'the 503 carries no deferred work')
  t.equal(app.sendAndContinue.stats().rejected, 1, 'the refusal is counted')
  const refusals = logs.lines.filter((l) => l.deferredRefused !== undefined)
  t.equal(refusals.length, 1, 'one line per refused request')
  t.match(refusals[0], { level: 40, msg: 'request refused: deferred work is saturated', deferredRefused: { method: 'GET', route: '/', retryAfter: 7 } })
  t.equal(refusals[0].err, undefined, 'no error, no stack')
  t.notOk(logs.lines.some((l) => l.level >= 50), 'nothing at error level')

  gate.resolve()
  await app.sendAndContinue.drain()
  t.equal((await app.inject('/')).statusCode, 200, 'accepted again once the work drained')
  t.equal(handled, 3)
})

test('rejectWhenSaturated per route: only the routes that ask for it answer 503', async (t) => {
  const dropped: string[] = []
  const { app } = await build(t, { concurrency: 1, maxQueued: 0, onDropped (info) { dropped.push(info.route) } })
  const gate = deferred()
  const handled: string[] = []
  const hold = () => gate.promise
  app.get('/guarded', { config: { sendAndContinue: { rejectWhenSaturated: true, retryAfter: 2 } } }, (req, reply) => {
    handled.push('guarded')
    return reply.sendAndContinue('ok', hold)
  })
  app.get('/open', (req, reply) => {
    handled.push('open')
    return reply.sendAndContinue('ok', hold)
  })

  t.equal((await app.inject('/guarded')).statusCode, 200, 'the first task takes the only slot')
  const rejected = await app.inject('/guarded')
  t.equal(rejected.statusCode, 503)
  t.equal(rejected.headers['retry-after'], '2')
  const open = await app.inject('/open')
  t.equal(open.statusCode, 200, 'a route without the option answers and drops its task')
  t.same(handled, ['guarded', 'open'])
  t.same(dropped, ['/open'])
  gate.resolve()
})

test('rejectWhenSaturated: false on a route overrides the plugin-wide setting', async (t) => {
  const { app } = await build(t, { concurrency: 1, maxQueued: 0, rejectWhenSaturated: true })
  const gate = deferred()
  let handled = 0
  app.get('/hold', (req, reply) => reply.sendAndContinue('ok', () => gate.promise))
  app.get('/health', { config: { sendAndContinue: { rejectWhenSaturated: false } } }, (req, reply) => {
    handled++
    return 'up'
  })
  app.get('/off', { config: { sendAndContinue: false } }, () => 'off')
  await app.inject('/hold')
  const held = await app.inject('/hold')
  t.equal(held.statusCode, 503)
  t.equal(held.headers['retry-after'], '5', 'the default Retry-After')
  t.equal((await app.inject('/health')).statusCode, 200)
  t.equal((await app.inject('/off')).statusCode, 200, 'a route without deferred work is never refused')
  t.equal(handled, 1)
  gate.resolve()
})

test('stats(): oldestRunningMs is the age of the oldest running task', async (t) => {
  const { app } = await build(t, { concurrency: 2 })
  t.equal(app.sendAndContinue.stats().oldestRunningMs, 0, 'nothing runs')
  const gate = deferred()
  const started: number[] = []
  app.get('/', (req, reply) => reply.sendAndContinue('ok', () => {
    started.push(performance.now())
    return gate.promise
  }))
  await app.inject('/')
  await sleep(30)
  await app.inject('/')
  await sleep(20)
  const before = Math.floor(performance.now() - started[0])
  const { oldestRunningMs, running } = app.sendAndContinue.stats()
  const after = Math.ceil(performance.now() - started[0])
  t.equal(running, 2)
  t.ok(oldestRunningMs >= before - 1 && oldestRunningMs <= after + 1,
    `oldestRunningMs ${oldestRunningMs} is the first task's age (${before}..${after}), not the second's`)
  t.ok(oldestRunningMs >= 49)
  gate.resolve()
  await app.sendAndContinue.drain()
  t.equal(app.sendAndContinue.stats().oldestRunningMs, 0)
})

test('queuedMs is real queueing time: a task queued behind a held one waits at least the hold', async (t) => {
  const hold = 60
  const { app, logs } = await build(t, { concurrency: 1 })
  const gate = deferred()
  app.get('/first', (req, reply) => reply.sendAndContinue('ok', () => gate.promise, { name: 'first' }))
  app.get('/second', (req, reply) => reply.sendAndContinue('ok', () => {}, { name: 'second' }))
  await app.inject('/first')
  const queuedFrom = performance.now()
  await app.inject('/second')
  await logs.until(() => logs.closes.length === 2)
  t.match(app.sendAndContinue.stats(), { running: 1, queued: 1 })
  await sleep(hold)
  gate.resolve()
  await app.sendAndContinue.drain()
  const queuedAtMost = performance.now() - queuedFrom
  const [first, second] = logs.outcomes
  t.equal(first.deferred?.task, 'first')
  t.equal(second.deferred?.task, 'second')
  t.ok((first.deferred?.queuedMs as number) < 20, 'the first task started at once')
  t.ok((first.deferred?.durationMs as number) >= hold - 1, 'the first task ran for the hold')
  t.ok((second.deferred?.queuedMs as number) >= hold - 1, `second queuedMs ${second.deferred?.queuedMs} >= hold ${hold}`)
  t.ok((second.deferred?.queuedMs as number) <= queuedAtMost + 1, 'and no more than it was queued for')
  t.ok((second.deferred?.durationMs as number) < 20, 'durationMs does not include the wait')
})
