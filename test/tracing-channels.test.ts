import { test } from 'tap'
import type { Test } from 'tap'
import diagnostics from 'node:diagnostics_channel'
import { AsyncLocalStorage } from 'node:async_hooks'
import { Readable } from 'node:stream'
import { build, deferred, listen } from './helpers'
import { abortMidStream } from './reliability-helpers'
import type { TaskMessage } from '../lib/channels'

// Subscribed by name, as an APM tool would. No tracer provider is registered in this file: the
// channels do not need one.
const taskChannel = diagnostics.tracingChannel<unknown, TaskMessage>('fastify-send-and-continue:task')
const OUTCOME_CHANNEL = 'fastify-send-and-continue:task:outcome'

type Event = 'start' | 'end' | 'asyncStart' | 'asyncEnd' | 'error'
interface Seen { event: Event, message: TaskMessage, copy: TaskMessage }

/** Records every event of the task channel, with a copy of the message as it was then. */
function record (t: Test): Seen[] {
  const seen: Seen[] = []
  const on = (event: Event) => (message: TaskMessage) => { seen.push({ event, message, copy: { ...message } }) }
  const subscribers = { start: on('start'), end: on('end'), asyncStart: on('asyncStart'), asyncEnd: on('asyncEnd'), error: on('error') }
  taskChannel.subscribe(subscribers)
  t.teardown(() => taskChannel.unsubscribe(subscribers))
  return seen
}

function recordOutcomes (t: Test): TaskMessage[] {
  const seen: TaskMessage[] = []
  const onMessage = (message: unknown): void => { seen.push(message as TaskMessage) }
  diagnostics.subscribe(OUTCOME_CHANNEL, onMessage)
  t.teardown(() => diagnostics.unsubscribe(OUTCOME_CHANNEL, onMessage))
  return seen
}

function events (seen: Seen[]): string[] {
  return seen.map(({ event, copy }) => `${event}:${copy.name}:${copy.outcome}`)
}

test('an async task: start, end, then asyncStart and asyncEnd with its outcome, one message object throughout', async (t) => {
  const seen = record(t)
  const { app, logs } = await build(t)
  app.get('/items/:id', (request, reply) => reply.code(202).sendAndContinue('ok', async function index () {
    await new Promise((resolve) => setImmediate(resolve))
  }))
  await app.inject({ method: 'GET', url: '/items/1' })
  await logs.untilOutcomes(1)
  t.same(events(seen), ['start:index:null', 'end:index:null', 'asyncStart:index:completed', 'asyncEnd:index:completed'])
  t.ok(seen.every(({ message }) => message === seen[0].message), 'the same message object')
  t.same(seen[0].copy, {
    name: 'index',
    route: '/items/:id',
    method: 'GET',
    requestId: 'req-1',
    connection: 'finished',
    statusCode: 202,
    queuedMs: seen[0].copy.queuedMs,
    durationMs: 0,
    outcome: null
  }, 'queuedMs is set before start')
  t.type(seen[0].copy.queuedMs, 'number')
  t.type(seen[3].copy.durationMs, 'number')
  t.notOk('error' in seen[3].copy)
})

test('a synchronous task: its outcome is set before end', async (t) => {
  const seen = record(t)
  const { app, logs } = await build(t)
  const boom = new Error('boom')
  app.get('/', (request, reply) => {
    reply.defer(function fine () {})
    reply.defer(function throws () { throw boom })
    return reply.send('ok')
  })
  await app.inject('/')
  await logs.untilOutcomes(2)
  t.same(events(seen), ['start:fine:null', 'end:fine:completed', 'start:throws:null', 'error:throws:failed', 'end:throws:failed'])
  t.equal(seen[3].copy.error, boom)
})

test('an async failure: error, asyncStart and asyncEnd carry the rejection', async (t) => {
  const seen = record(t)
  const { app, logs } = await build(t)
  const boom = new Error('boom')
  app.get('/', (request, reply) => reply.sendAndContinue('ok', async function rejects () { throw boom }))
  await app.inject('/')
  await logs.untilOutcomes(1)
  t.same(events(seen), ['start:rejects:null', 'end:rejects:null', 'error:rejects:failed', 'asyncStart:rejects:failed', 'asyncEnd:rejects:failed'])
  t.equal(seen[2].copy.error, boom)
})

test('a thenable that calls back at once: end when it was returned, then asyncStart and asyncEnd', async (t) => {
  const seen = record(t)
  const { app, logs } = await build(t)
  app.get('/', (request, reply) => reply.sendAndContinue('ok', function eager () {
    return { then (resolve: () => void) { resolve() } }
  }))
  await app.inject('/')
  await logs.untilOutcomes(1)
  t.same(events(seen), ['start:eager:null', 'end:eager:null', 'asyncStart:eager:completed', 'asyncEnd:eager:completed'])
})

test('timeout and cancel: asyncEnd comes when the plugin gives up, not when the task\'s promise settles', async (t) => {
  const seen = record(t)
  const { app, logs } = await build(t, { timeout: 20, concurrency: 1, drainTimeout: 10 })
  const release = deferred()
  t.teardown(() => release.resolve())
  let settled = false
  app.get('/', (request, reply) => reply.sendAndContinue('ok', async function slow () {
    await release.promise
    settled = true
  }))
  app.get('/hang', (request, reply) => reply.sendAndContinue('ok', function hangs () { return release.promise }, { timeout: 0 }))
  await app.inject('/')
  await logs.untilOutcomes(1)
  t.same(events(seen), ['start:slow:null', 'end:slow:null', 'asyncStart:slow:timeout', 'asyncEnd:slow:timeout'])
  t.notOk(settled, 'the task itself still runs')
  t.notOk('error' in seen[3].copy, 'a timeout is no error event: the task did not throw')
  seen.length = 0
  await app.inject('/hang')
  await app.close()
  t.same(events(seen).slice(-2), ['asyncStart:hangs:cancelled', 'asyncEnd:hangs:cancelled'])
})

test('tasks that never ran: one message each on the outcome channel, none on the task channel', async (t) => {
  const seen = record(t)
  const outcomes = recordOutcomes(t)
  const { app, logs } = await build(t, { concurrency: 1, maxQueued: 1, drainTimeout: 10, onClientAbort: 'skip' })
  const never = deferred()
  t.teardown(() => never.resolve())
  app.get('/', (request, reply) => reply.sendAndContinue('ok', [
    function holdsTheSlot () { return never.promise },
    function waitsInQueue () {},
    function overflow () {}
  ]))
  app.get('/stream', (request, reply) => reply.type('text/plain').sendAndContinue(new Readable({
    read () { this.push('first chunk') }
  }), function notForAbortedClients () {}))
  await app.inject('/')
  const { port } = await listen(app)
  await abortMidStream(port, '/stream')
  await logs.untilOutcomes(2)
  await app.close()

  t.same(events(seen), ['start:holdsTheSlot:null', 'end:holdsTheSlot:null', 'asyncStart:holdsTheSlot:cancelled', 'asyncEnd:holdsTheSlot:cancelled'])
  t.same(outcomes.map(({ name, outcome, reason }) => ({ name, outcome, reason })), [
    { name: 'overflow', outcome: 'dropped', reason: 'queue-full' },
    { name: 'notForAbortedClients', outcome: 'skipped', reason: undefined },
    { name: 'waitsInQueue', outcome: 'cancelled', reason: undefined }
  ])
  t.same(outcomes[0], {
    name: 'overflow',
    route: '/',
    method: 'GET',
    requestId: 'req-1',
    connection: 'finished',
    statusCode: 200,
    queuedMs: 0,
    durationMs: 0,
    outcome: 'dropped',
    reason: 'queue-full'
  })
  t.match(outcomes[1], { connection: 'aborted', requestId: 'req-2', route: '/stream' })
  t.type(outcomes[2].queuedMs, 'number')
})

test('the task runs inside the stores bound to the start channel, as APM tools bind theirs', async (t) => {
  const store = new AsyncLocalStorage<string>()
  taskChannel.start.bindStore(store, (message) => `apm context of ${message.name}`)
  t.teardown(() => taskChannel.start.unbindStore(store))
  const { app } = await build(t)
  const got = deferred<string | undefined>()
  app.get('/', (request, reply) => reply.sendAndContinue('ok', async function reads () {
    await new Promise((resolve) => setImmediate(resolve))
    got.resolve(store.getStore())
  }))
  await app.inject('/')
  t.equal(await got.promise, 'apm context of reads')
})

test('tracing: false leaves the channels on', async (t) => {
  const seen = record(t)
  const { app, logs } = await build(t, { tracing: false })
  app.get('/', (request, reply) => reply.sendAndContinue('ok', function fine () {}))
  await app.inject('/')
  await logs.untilOutcomes(1)
  t.same(events(seen), ['start:fine:null', 'end:fine:completed'])
})

test('without subscribers nothing is published, and a subscriber that comes later sees the next task', async (t) => {
  const { app, logs } = await build(t)
  app.get('/', (request, reply) => reply.sendAndContinue('ok', function fine () {}))
  await app.inject('/')
  await logs.untilOutcomes(1)
  const seen = record(t)
  await app.inject('/')
  await logs.untilOutcomes(2)
  t.same(events(seen), ['start:fine:null', 'end:fine:completed'])
})
