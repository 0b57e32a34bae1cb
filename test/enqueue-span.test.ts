import { test } from 'tap'
import type { Test } from 'tap'
import { join } from 'node:path'
import { SpanKind, SpanStatusCode } from '@opentelemetry/api'
import { hrTimeToMicroseconds } from '@opentelemetry/core'
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base'
import { createWorker, defineTask } from '../lib/index'
import type { DurableTask, QueueOptions } from '../lib/index'
import { workerLogger } from './durable-helpers'
import { startRedis } from './redis'
import { peek, tempDir } from './sqlite-helpers'
import { buildTraced, parentOf, spanNamed, spans } from './tracing-helpers'

// The enqueue a response waits for before its headers is a PRODUCER span `send <queue>` in the
// request's trace; each attempt a worker runs is a CONSUMER span with the matching attributes.

const QUEUE = 'fastify-send-and-continue'
const SEND = `send ${QUEUE}`

type Engine = 'memory' | 'sqlite' | 'bullmq'

/** The `queue` option of each engine; memory and sqlite run the jobs in the app. */
async function queueOf (t: Test, engine: Engine, tasks: DurableTask[], extra: Record<string, unknown> = {}): Promise<QueueOptions> {
  if (engine === 'memory') return { engine, tasks, ...extra } as QueueOptions
  if (engine === 'sqlite') return { engine, tasks, path: join(await tempDir(t), 'deferred.db'), ...extra } as QueueOptions
  const redis = await startRedis(t)
  return { engine, tasks, connection: redis.connection, ...extra } as QueueOptions
}

// The SDK places each span on the wall clock with an offset read from Date.now() when the span
// starts, to the millisecond: two spans' times may disagree by up to 1 ms. Orders between spans
// are checked within that.
const CLOCK_SLACK_US = 1000

function micros (span: ReadableSpan, at: 'startTime' | 'endTime'): number {
  return hrTimeToMicroseconds(span[at])
}

function childrenOf (parent: ReadableSpan): ReadableSpan[] {
  return spans().filter((span) => parentOf(span) === parent.spanContext().spanId)
}

for (const engine of ['memory', 'sqlite', 'bullmq'] as const) {
  test(`${engine}: the enqueue is a PRODUCER span inside the request's onSend, the attempt a CONSUMER span`, async (t) => {
    const sendInvoice = defineTask('sendInvoice', () => {})
    const queue = await queueOf(t, engine, [sendInvoice])
    const { app } = await buildTraced(t, { queue })
    let jobId = ''
    app.post('/orders', (request, reply) => {
      const job = sendInvoice.with({ order: 42 })
      jobId = job.jobId
      return reply.code(202).sendAndContinue({ ok: true }, job)
    })
    t.equal((await app.inject({ method: 'POST', url: '/orders' })).statusCode, 202)

    const request = spanNamed('request')
    const send = spanNamed(SEND)
    t.equal(send.kind, SpanKind.PRODUCER)
    t.same(send.attributes, {
      'messaging.system': engine,
      'messaging.destination.name': QUEUE,
      'messaging.operation.type': 'send',
      'messaging.operation.name': 'send',
      'messaging.message.id': jobId
    }, 'one job: its id, no batch count')
    t.same(send.status, { code: SpanStatusCode.UNSET })
    t.equal(send.spanContext().traceId, request.spanContext().traceId, 'in the request\'s trace')
    // the plugin's onSend hook, as @fastify/otel traces it, lasts while the response waits
    const hook = spans().find((span) => span.spanContext().spanId === parentOf(send)) as ReadableSpan
    t.equal(hook.name, 'onSend - enqueueDurableJobs', 'child of the span active in the onSend hook')
    t.equal(parentOf(hook), request.spanContext().spanId)
    t.ok(micros(hook, 'endTime') + CLOCK_SLACK_US >= micros(send, 'endTime'), 'the hook\'s span covers the wait')
    t.ok(micros(request, 'endTime') + CLOCK_SLACK_US >= micros(send, 'endTime'), 'the response waited for the enqueue')

    if (engine === 'bullmq') {
      const { logger, logs } = workerLogger()
      const worker = await createWorker({ connection: (queue as { connection: { path: string } }).connection, tasks: [sendInvoice], logger })
      t.teardown(() => worker.close())
      await logs.untilOutcomes(1)
    } else {
      await app.sendAndContinue.drain()
    }
    const attempt = spanNamed('deferred sendInvoice')
    t.equal(attempt.kind, SpanKind.CONSUMER)
    t.match(attempt.attributes, {
      'messaging.system': engine,
      'messaging.destination.name': QUEUE,
      'messaging.operation.type': 'process',
      'messaging.operation.name': 'process',
      'messaging.message.id': jobId,
      'deferred.job_id': jobId,
      'deferred.attempt': 1,
      'deferred.outcome': 'completed'
    })
    t.equal(attempt.spanContext().traceId, request.spanContext().traceId)
    const handler = spans().find((span) => span.name.startsWith('handler')) as ReadableSpan
    t.equal(parentOf(attempt), handler.spanContext().spanId, 'the attempt keeps its parent: the span active at registration')
  })
}

test('group commit (sqlite): one span per response, each with its own jobs, in its own trace, ending before its response', async (t) => {
  const audit = defineTask('audit', () => {})
  const { app } = await buildTraced(t, { queue: await queueOf(t, 'sqlite', [audit], { work: false }) })
  app.post('/:n', (request, reply) => {
    const n = Number((request.params as { n: string }).n)
    return reply.sendAndContinue('ok', Array.from({ length: n }, (_, i) => audit.with({ n, i })))
  })
  const answers = await Promise.all([1, 2, 3].map((n) => app.inject({ method: 'POST', url: `/${n}` })))
  t.same(answers.map((answer) => answer.statusCode), [200, 200, 200])

  const requests = spans().filter((span) => span.name === 'request')
  const sends = spans().filter((span) => span.name === SEND)
  t.equal(sends.length, 3, 'one span per response')
  for (const request of requests) {
    const n = Number(request.attributes['url.path']?.toString().slice(1))
    const [hook] = childrenOf(request).filter((span) => span.name.startsWith('onSend'))
    const [send] = childrenOf(hook)
    t.equal(send.name, SEND)
    if (n === 1) {
      t.equal(send.attributes['messaging.batch.message_count'], undefined)
      t.type(send.attributes['messaging.message.id'], 'string')
    } else {
      t.equal(send.attributes['messaging.batch.message_count'], n, `${n} jobs in this response's enqueue`)
      t.equal(send.attributes['messaging.message.id'], undefined, 'a batch has no single message id')
    }
    t.ok(micros(request, 'endTime') + CLOCK_SLACK_US >= micros(send, 'endTime'), 'its response waited for it')
  }
})

test('a failed enqueue (sqlite: the file locked past enqueueTimeout): ERROR status, the exception, and the 503', async (t) => {
  const audit = defineTask('audit', () => {})
  const queue = await queueOf(t, 'sqlite', [audit], { work: false, enqueueTimeout: 100 })
  const { app } = await buildTraced(t, { queue })
  app.post('/', (request, reply) => reply.sendAndContinue('ok', audit.with({})))
  await app.ready()
  const other = peek(t, (queue as { path: string }).path)
  other.exec('BEGIN IMMEDIATE')
  t.teardown(() => { if (other.inTransaction) other.exec('ROLLBACK') })
  t.equal((await app.inject({ method: 'POST', url: '/' })).statusCode, 503)
  other.exec('ROLLBACK')

  const send = spanNamed(SEND)
  t.equal(send.status.code, SpanStatusCode.ERROR)
  t.match(send.status.message, 'database is locked')
  t.equal(send.attributes['error.type'], 'SqliteError')
  t.match(send.events, [{ name: 'exception', attributes: { 'exception.message': /database is locked/ } }])
  t.equal(spanNamed('request').attributes['http.response.status_code'], 503)
})

test('a timed-out enqueue (bullmq: Redis frozen): ERROR status after enqueueTimeout', async (t) => {
  const redis = await startRedis(t)
  const audit = defineTask('audit', () => {})
  const { app } = await buildTraced(t, { queue: { connection: redis.connection, tasks: [audit], enqueueTimeout: 200 } })
  app.post('/', (request, reply) => reply.sendAndContinue('ok', audit.with({})))
  await app.ready()
  redis.process.kill('SIGSTOP')
  t.teardown(() => { redis.process.kill('SIGCONT') })
  t.equal((await app.inject({ method: 'POST', url: '/' })).statusCode, 503)
  redis.process.kill('SIGCONT')

  const send = spanNamed(SEND)
  t.same(send.status, { code: SpanStatusCode.ERROR, message: 'Redis did not answer within 200 ms' })
  t.equal(send.attributes['error.type'], 'Error')
  t.ok(hrTimeToMicroseconds(send.duration) >= 190_000, 'the span lasts as long as the response waited')
})

test('no span for an enqueue nothing waits for (a job registered after the headers), nor with tracing: false, where the app\'s own worker makes no attempt span either', async (t) => {
  const audit = defineTask('audit', () => {})
  const late = await buildTraced(t, { queue: await queueOf(t, 'memory', [audit]) })
  late.app.addHook('onResponse', async (request, reply) => { reply.defer(audit.with({ late: true })) })
  late.app.get('/', () => 'ok')
  await late.app.inject('/')
  await late.app.sendAndContinue.drain()
  t.same(spans().filter((span) => span.name === SEND), [], 'registered after the headers: nobody waited')
  t.equal(spanNamed('deferred audit').kind, SpanKind.CONSUMER, 'its attempt still has its span')

  const off = await buildTraced(t, { queue: await queueOf(t, 'memory', [audit]), tracing: false })
  off.app.get('/', (request, reply) => reply.sendAndContinue('ok', audit.with({})))
  await off.app.inject('/')
  await off.app.sendAndContinue.drain()
  t.same(spans().filter((span) => span.name === SEND), [], 'tracing: false')
  t.same(spans().filter((span) => span.name === 'deferred audit'), [], 'tracing: false: nor an attempt span in the app\'s own worker')
})
