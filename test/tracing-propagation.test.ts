import { test } from 'tap'
import { ROOT_CONTEXT, trace } from '@opentelemetry/api'
import { performance } from 'node:perf_hooks'
import { extractTraceContext, injectTraceContext, runTraced, traceEnded, traceJobRegistered, traceStarted } from '../lib/tracing'
import type { TaskTrace, TracedTask } from '../lib/tracing'
import type { TaskContext } from '../lib/types'
import { exporter, parentOf, spanNamed } from './tracing-helpers'

const user = trace.getTracer('the application')

test('the trace context of the span active at registration travels as W3C traceparent', async (t) => {
  const { carrier, spanContext } = user.startActiveSpan('handler', (span) => {
    const carrier = injectTraceContext()
    span.end()
    return { carrier, spanContext: span.spanContext() }
  })
  t.same(carrier, { traceparent: `00-${spanContext.traceId}-${spanContext.spanId}-01` })
  t.equal(injectTraceContext(), undefined, 'outside any span there is nothing to carry')
  t.equal(extractTraceContext(undefined), ROOT_CONTEXT, 'a job without trace context gets a root span')
})

test('a durable job\'s attempt: its span joins the enqueuing request\'s trace, with the job id and attempt', async (t) => {
  exporter.reset()
  const carrier = user.startActiveSpan('enqueue', (span) => {
    const carrier = injectTraceContext()
    span.end()
    return carrier
  })
  // what the worker does with a job payload: extract, then the same hooks as an in-process task
  const job: TracedTask = {
    name: 'sendInvoice',
    timeoutMs: 0,
    work: { route: '/orders', request: { id: 'req-9', method: 'POST', url: '/orders', routeUrl: '/orders' }, connection: 'finished', statusCode: 202 },
    trace: traceJobRegistered(carrier),
    jobId: 'sendInvoice-42',
    attempt: 2
  }
  const startedAt = performance.now()
  const started = traceStarted(job, startedAt - 5, startedAt) as TaskTrace
  runTraced.call(started, () => user.startActiveSpan('render pdf', (span) => span.end()), {} as TaskContext)
  traceEnded(job, 'completed', undefined, undefined, startedAt - 5, startedAt)

  const enqueue = spanNamed('enqueue')
  const attempt = spanNamed('deferred sendInvoice')
  t.equal(attempt.spanContext().traceId, enqueue.spanContext().traceId)
  t.equal(parentOf(attempt), enqueue.spanContext().spanId)
  t.equal(parentOf(spanNamed('render pdf')), attempt.spanContext().spanId)
  t.match(attempt.attributes, {
    'deferred.job_id': 'sendInvoice-42',
    'deferred.attempt': 2,
    'deferred.queued_ms': 5,
    'deferred.outcome': 'completed',
    'http.route': '/orders'
  })
})
