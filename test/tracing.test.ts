import { test } from 'tap'
import { SpanKind, SpanStatusCode, trace } from '@opentelemetry/api'
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base'
import { deferred, listen } from './helpers'
import { abortMidStream } from './reliability-helpers'
import { buildTraced, parentOf, spanNamed, spans } from './tracing-helpers'
import { Readable } from 'node:stream'

const user = trace.getTracer('the application')

function hrMs ([seconds, nanos]: [number, number]): number {
  return seconds * 1e3 + nanos / 1e6
}

function status (span: ReadableSpan): { code: SpanStatusCode, message?: string } {
  return { code: span.status.code, message: span.status.message }
}

test('a completed task: one span in the request\'s trace, child of the span active at registration, with the user\'s spans inside it', async (t) => {
  const { app, logs } = await buildTraced(t)
  app.get('/users/:id', (request, reply) => {
    return reply.code(201).sendAndContinue({ ok: true }, async function sendWelcome () {
      await new Promise((resolve) => setImmediate(resolve))
      user.startActiveSpan('smtp send', (span) => span.end())
    })
  })
  const response = await app.inject('/users/7')
  t.equal(response.statusCode, 201)
  await logs.untilOutcomes(1)

  const request = spanNamed('request')
  const handler = spans().find((span) => span.name.startsWith('handler'))
  const task = spanNamed('deferred sendWelcome')
  const smtp = spanNamed('smtp send')
  t.ok(handler, 'the instrumentation made a handler span')
  t.equal(task.spanContext().traceId, request.spanContext().traceId, 'the task is in the request\'s trace')
  t.equal(parentOf(task), handler?.spanContext().spanId, 'its parent is the span active when it was registered')
  t.equal(parentOf(handler as ReadableSpan), request.spanContext().spanId)
  t.equal(smtp.spanContext().traceId, request.spanContext().traceId)
  t.equal(parentOf(smtp), task.spanContext().spanId, 'a span the task opens is the task span\'s child')
  t.ok(hrMs(task.startTime) >= hrMs(request.endTime), 'the task span starts after the request span ended: it measures the task')
  t.equal(task.kind, SpanKind.INTERNAL)
  t.same(task.attributes, {
    'http.route': '/users/:id',
    'http.request.method': 'GET',
    'http.response.status_code': 201,
    'deferred.task': 'sendWelcome',
    'deferred.outcome': 'completed',
    'deferred.connection': 'finished',
    'deferred.request_id': 'req-1',
    'deferred.queued_ms': task.attributes['deferred.queued_ms']
  })
  t.type(task.attributes['deferred.queued_ms'], 'number')
  t.same(status(task), { code: SpanStatusCode.UNSET, message: undefined })
  t.same(task.events, [])
})

test('each task\'s parent is the span active at its own registration', async (t) => {
  const { app, logs } = await buildTraced(t)
  app.get('/', async (request, reply) => {
    user.startActiveSpan('load user', (span) => {
      reply.defer(function insideLoad () {})
      span.end()
    })
    return reply.sendAndContinue('ok', function afterLoad () {})
  })
  await app.inject('/')
  await logs.untilOutcomes(2)
  const handler = spans().find((span) => span.name.startsWith('handler')) as ReadableSpan
  t.equal(parentOf(spanNamed('deferred insideLoad')), spanNamed('load user').spanContext().spanId)
  t.equal(parentOf(spanNamed('deferred afterLoad')), handler.spanContext().spanId)
})

test('a task registered outside any span gets a root span; a task on the not-found handler has no http.route', async (t) => {
  const { app, logs } = await buildTraced(t)
  app.setNotFoundHandler((request, reply) => {
    reply.code(404).sendAndContinue('nothing here', function logMiss () {})
  })
  await app.inject('/missing')
  await logs.untilOutcomes(1)
  const task = spanNamed('deferred logMiss')
  t.notOk('http.route' in task.attributes)
  t.match(task.attributes, { 'http.response.status_code': 404, 'deferred.outcome': 'completed' })
})

test('a failed task: ERROR status naming the outcome, the exception recorded', async (t) => {
  const { app, logs } = await buildTraced(t)
  app.get('/', (request, reply) => {
    reply.defer(function throwsSync () { throw new TypeError('boom') })
    reply.defer(async function rejectsString () { throw 'nope' }) // eslint-disable-line no-throw-literal
    return reply.send('ok')
  })
  await app.inject('/')
  await logs.untilOutcomes(2)

  const sync = spanNamed('deferred throwsSync')
  t.same(status(sync), { code: SpanStatusCode.ERROR, message: 'failed: boom' })
  t.match(sync.attributes, { 'deferred.outcome': 'failed', 'error.type': 'TypeError' })
  t.equal(sync.events.length, 1)
  t.match(sync.events[0], { name: 'exception', attributes: { 'exception.type': 'TypeError', 'exception.message': 'boom' } })

  const rejected = spanNamed('deferred rejectsString')
  t.same(status(rejected), { code: SpanStatusCode.ERROR, message: 'failed: \'nope\'' })
  t.match(rejected.attributes, { 'deferred.outcome': 'failed', 'error.type': '_OTHER' })
  t.match(rejected.events[0], { name: 'exception', attributes: { 'exception.message': '\'nope\'' } })
})

test('a task failing with a value nothing can read still ends its span (no logger to trip on it)', async (t) => {
  const { app } = await buildTraced(t, {}, 'silent')
  const { proxy, revoke } = Proxy.revocable({}, {})
  revoke()
  app.get('/', (request, reply) => reply.sendAndContinue('ok', function throwsRevoked () { throw proxy }))
  await app.inject('/')
  await app.sendAndContinue.drain()
  const span = spanNamed('deferred throwsRevoked')
  t.same(status(span), { code: SpanStatusCode.ERROR, message: 'failed: a value that cannot be read' })
  t.match(span.attributes, { 'error.type': '_OTHER' })
  t.match(span.events[0], { name: 'exception', attributes: { 'exception.message': 'a value that cannot be read' } })
})

test('a timed-out task: its span ends when the plugin gives up, ERROR "timeout"; what it does later stays its child', async (t) => {
  const { app, logs } = await buildTraced(t, { timeout: 20 })
  const release = deferred()
  const done = deferred()
  app.get('/', (request, reply) => reply.sendAndContinue('ok', async function ignoresSignal () {
    await release.promise
    user.startActiveSpan('late work', (span) => span.end())
    done.resolve()
  }))
  await app.inject('/')
  await logs.untilOutcomes(1)
  t.match(logs.outcomes[0], { deferred: { outcome: 'timeout' } })
  const task = spanNamed('deferred ignoresSignal')
  t.same(status(task), { code: SpanStatusCode.ERROR, message: 'timeout after 20 ms' })
  t.match(task.attributes, { 'deferred.outcome': 'timeout', 'deferred.timeout_ms': 20, 'error.type': 'timeout' })
  release.resolve()
  await done.promise
  t.equal(parentOf(spanNamed('late work')), task.spanContext().spanId)
})

test('cancelled by the shutdown drain: the running task\'s span ends at the cancel, the queued one gets a zero-length span', async (t) => {
  const { app, logs } = await buildTraced(t, { concurrency: 1, drainTimeout: 10 })
  const never = deferred()
  t.teardown(() => never.resolve())
  app.get('/', (request, reply) => reply.sendAndContinue('ok', [function running () { return never.promise }, function waitsInQueue () {}]))
  await app.inject('/')
  await app.close()
  t.equal(logs.outcomes.length, 2)
  const running = spanNamed('deferred running')
  t.same(status(running), { code: SpanStatusCode.ERROR, message: 'cancelled' })
  t.match(running.attributes, { 'deferred.outcome': 'cancelled', 'error.type': 'cancelled' })
  const queued = spanNamed('deferred waitsInQueue')
  t.same(status(queued), { code: SpanStatusCode.ERROR, message: 'cancelled' })
  t.same(queued.startTime, queued.endTime, 'a task that never ran has a zero-length span')
  t.equal(parentOf(queued), parentOf(running), 'under the same parent as its sibling')
  t.type(queued.attributes['deferred.queued_ms'], 'number')
})

test('a dropped task: zero-length span, ERROR "dropped: <reason>"', async (t) => {
  const { app, logs } = await buildTraced(t, { concurrency: 1, maxQueued: 0 })
  const hold = deferred()
  app.get('/', (request, reply) => reply.sendAndContinue('ok', [function holdsTheSlot () { return hold.promise }, function overflow () {}]))
  await app.inject('/')
  await logs.until(() => logs.outcomes.some((line) => line.deferred?.outcome === 'dropped'))
  const dropped = spanNamed('deferred overflow')
  t.same(status(dropped), { code: SpanStatusCode.ERROR, message: 'dropped: queue-full' })
  t.match(dropped.attributes, { 'deferred.outcome': 'dropped', 'deferred.reason': 'queue-full', 'error.type': 'dropped', 'deferred.queued_ms': 0 })
  t.same(dropped.startTime, dropped.endTime)
  hold.resolve()
})

test('a task dropped before its response closed has no status code nor connection attribute', async (t) => {
  const { app, logs } = await buildTraced(t)
  const closing = deferred()
  const registered = deferred()
  // the handler waits while the app closes, then registers
  app.get('/', async (request, reply) => {
    await closing.promise
    reply.defer(function tooLate () {})
    registered.resolve()
    return 'ok'
  })
  const response = app.inject('/')
  await logs.until((lines) => lines.some((line) => line.msg === 'incoming request'))
  await app.close()
  closing.resolve()
  await registered.promise
  await response
  const span = spanNamed('deferred tooLate')
  t.match(span.attributes, { 'deferred.outcome': 'dropped', 'deferred.reason': 'closing' })
  t.notOk('http.response.status_code' in span.attributes)
  t.notOk('deferred.connection' in span.attributes)
})

test('a skipped task (the client aborted): zero-length span, status UNSET', async (t) => {
  const { app, logs } = await buildTraced(t, { onClientAbort: 'skip' })
  app.get('/', (request, reply) => reply.type('text/plain').sendAndContinue(new Readable({
    read () { this.push('first chunk') }
  }), function notForAbortedClients () { t.fail('must not run') }))
  const { port } = await listen(app)
  await abortMidStream(port, '/')
  await logs.untilOutcomes(1)
  const span = spanNamed('deferred notForAbortedClients')
  t.same(status(span), { code: SpanStatusCode.UNSET, message: undefined })
  t.match(span.attributes, { 'deferred.outcome': 'skipped', 'deferred.connection': 'aborted' })
  t.notOk('error.type' in span.attributes)
  t.same(span.startTime, span.endTime)
})

test('tracing: false: no task spans; a task still runs in the context of its own registration', async (t) => {
  const { app, logs } = await buildTraced(t, { tracing: false })
  app.get('/', (request, reply) => {
    user.startActiveSpan('load user', (span) => {
      reply.defer(function firstUntraced () { user.startActiveSpan('inside first', (span) => span.end()) })
      span.end()
    })
    return reply.sendAndContinue('ok', function secondUntraced () { user.startActiveSpan('inside second', (span) => span.end()) })
  })
  await app.inject('/')
  await logs.untilOutcomes(2)
  t.same(spans().filter((span) => span.name.startsWith('deferred')), [])
  const handler = spans().find((span) => span.name.startsWith('handler')) as ReadableSpan
  t.equal(parentOf(spanNamed('inside first')), spanNamed('load user').spanContext().spanId)
  t.equal(parentOf(spanNamed('inside second')), handler.spanContext().spanId)
})

test('a task with attempts: one span per attempt under the same parent, each with its attempt and outcome', async (t) => {
  const { app } = await buildTraced(t, { timeout: 20 })
  app.get('/', (request, reply) => reply.sendAndContinue('ok', function flaky ({ attempt, signal }) {
    if (attempt === 1) throw new Error('first')
    // the second attempt times out, the third completes
    if (attempt === 2) return new Promise((resolve, reject) => signal.addEventListener('abort', () => reject(signal.reason)))
  }, { attempts: 3 }))
  await app.inject('/')
  await app.sendAndContinue.drain()
  const attempts = spans().filter((span) => span.name === 'deferred flaky').sort((a, b) => hrMs(a.startTime) - hrMs(b.startTime))
  t.same(attempts.map((span) => [span.attributes['deferred.attempt'], span.attributes['deferred.outcome'], span.status.message]), [
    [1, 'failed', 'failed: first'],
    [2, 'timeout', 'timeout after 20 ms'],
    [3, 'completed', undefined]
  ])
  t.equal(new Set(attempts.map(parentOf)).size, 1, 'every attempt under the span active at registration')
})

test('a task cancelled while it waits out a backoff: its attempt\'s span, then a zero-length cancelled span', async (t) => {
  const { app } = await buildTraced(t, { drainTimeout: 10 })
  app.get('/', (request, reply) => reply.sendAndContinue('ok', async function waits () { throw new Error('down') }, { attempts: 2, backoff: 60_000 }))
  await app.inject('/')
  await new Promise((resolve) => setImmediate(resolve))
  await app.close()
  const [failed, cancelled] = spans().filter((span) => span.name === 'deferred waits').sort((a, b) => hrMs(a.startTime) - hrMs(b.startTime))
  t.match(failed.attributes, { 'deferred.attempt': 1, 'deferred.outcome': 'failed' })
  t.match(cancelled.attributes, { 'deferred.attempt': 1, 'deferred.outcome': 'cancelled' })
  t.same(cancelled.startTime, cancelled.endTime)
  t.equal(parentOf(cancelled), parentOf(failed))
})
