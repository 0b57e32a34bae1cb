import { test } from 'tap'
import diagnostics from 'node:diagnostics_channel'
import { SpanStatusCode } from '@opentelemetry/api'
import type { TaskMessage } from '../lib/channels'
import { createWorker, defineTask } from '../lib/index'
import { inspect, workerLogger } from './durable-helpers'
import { startRedis } from './redis'
import type { RedisServer } from './redis'
import { buildTraced, parentOf, spanNamed, spans } from './tracing-helpers'
import type { Built } from './helpers'
import type { DurableTask } from '../lib/index'

/** A traced app (request spans from @fastify/otel) whose POST /orders defers `task` as a durable job. */
async function orders (t: Parameters<typeof buildTraced>[0], redis: RedisServer, task: DurableTask, tracing?: boolean): Promise<Built> {
  const built = await buildTraced(t, { queue: { connection: redis.connection, tasks: [task] }, ...(tracing === undefined ? {} : { tracing }) })
  built.app.post('/orders', (request, reply) => reply.code(202).sendAndContinue({ ok: true }, task.with({ order: 42 }, { key: 'o42' })))
  return built
}

test('the trace context travels with the job: the worker\'s span joins the request\'s trace, child of the span active at registration', async (t) => {
  const redis = await startRedis(t)
  const sendInvoice = defineTask('sendInvoice', () => {})
  const { app } = await orders(t, redis, sendInvoice)
  t.equal((await app.inject({ method: 'POST', url: '/orders' })).statusCode, 202)

  const handler = spans().find((span) => span.name.startsWith('handler'))
  t.ok(handler, 'the instrumentation made a handler span, active when the job was registered')
  const [job] = await inspect(t, redis).getJobs(['waiting'])
  t.same(job.data.trace, { traceparent: `00-${handler?.spanContext().traceId}-${handler?.spanContext().spanId}-01` }, 'Redis holds the W3C trace context')

  const { logger, logs } = workerLogger()
  const worker = await createWorker({ connection: redis.connection, tasks: [sendInvoice], logger })
  t.teardown(() => worker.close())
  await logs.untilOutcomes(1)
  const request = spanNamed('request')
  const attempt = spanNamed('deferred sendInvoice')
  t.equal(attempt.spanContext().traceId, request.spanContext().traceId, 'the worker\'s span is in the request\'s trace')
  t.equal(parentOf(attempt), handler?.spanContext().spanId, 'its parent is the span active at registration')
  t.match(attempt.attributes, {
    'deferred.task': 'sendInvoice',
    'deferred.job_id': job.id,
    'deferred.attempt': 1,
    'deferred.outcome': 'completed',
    'deferred.request_id': 'req-1',
    'http.route': '/orders',
    'http.response.status_code': 202,
    'deferred.queued_ms': Number
  })
  t.equal(attempt.status.code, SpanStatusCode.UNSET)
})

test('each attempt gets its own span in the same trace; the task channel\'s messages carry the job id and attempt', async (t) => {
  const redis = await startRedis(t)
  let tries = 0
  const flaky = defineTask('flaky', async () => {
    await new Promise((resolve) => setImmediate(resolve))
    if (++tries === 1) throw new Error('first try fails')
  }, { attempts: 2 })
  const { app } = await orders(t, redis, flaky)
  await app.inject({ method: 'POST', url: '/orders' })

  const messages: Array<Pick<TaskMessage, 'jobId' | 'attempt' | 'outcome'>> = []
  const channel = diagnostics.tracingChannel<unknown, TaskMessage>('fastify-send-and-continue:task')
  const subscribers = {
    start () {},
    end () {},
    asyncStart () {},
    asyncEnd (message: TaskMessage) { messages.push({ jobId: message.jobId, attempt: message.attempt, outcome: message.outcome }) },
    error () {}
  }
  channel.subscribe(subscribers)
  t.teardown(() => channel.unsubscribe(subscribers))

  const { logger, logs } = workerLogger()
  const worker = await createWorker({ connection: redis.connection, tasks: [flaky], logger })
  t.teardown(() => worker.close())
  await logs.until(() => logs.outcomes.some((line) => line.deferred?.outcome === 'completed'))
  const request = spanNamed('request')
  const handler = spans().find((span) => span.name.startsWith('handler'))
  const attempts = spans().filter((span) => span.name === 'deferred flaky')
  t.same(attempts.map((span) => [span.attributes['deferred.attempt'], span.attributes['deferred.outcome'], span.status.code]),
    [[1, 'failed', SpanStatusCode.ERROR], [2, 'completed', SpanStatusCode.UNSET]])
  t.not(attempts[0].spanContext().spanId, attempts[1].spanContext().spanId)
  for (const span of attempts) {
    t.equal(span.spanContext().traceId, request.spanContext().traceId)
    t.equal(parentOf(span), handler?.spanContext().spanId)
  }
  const jobId = attempts[0].attributes['deferred.job_id']
  t.same(messages, [{ jobId, attempt: 1, outcome: 'failed' }, { jobId, attempt: 2, outcome: 'completed' }])
})

test('with tracing: false no trace context travels: the worker\'s span is a root of its own trace', async (t) => {
  const redis = await startRedis(t)
  const sendInvoice = defineTask('sendInvoice', () => {})
  const { app } = await orders(t, redis, sendInvoice, false)
  await app.inject({ method: 'POST', url: '/orders' })
  const [job] = await inspect(t, redis).getJobs(['waiting'])
  t.equal(job.data.trace, undefined, 'the job carries no trace context')

  const { logger, logs } = workerLogger()
  const worker = await createWorker({ connection: redis.connection, tasks: [sendInvoice], logger })
  t.teardown(() => worker.close())
  await logs.untilOutcomes(1)
  const attempt = spanNamed('deferred sendInvoice')
  t.not(attempt.spanContext().traceId, spanNamed('request').spanContext().traceId)
  t.equal(parentOf(attempt), undefined)
})
