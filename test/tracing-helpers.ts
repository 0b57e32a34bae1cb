import { context, propagation, trace } from '@opentelemetry/api'
import type { SpanContext } from '@opentelemetry/api'
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks'
import { W3CTraceContextPropagator } from '@opentelemetry/core'
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base'
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base'
import { FastifyOtelInstrumentation } from '@fastify/otel'
import Fastify from 'fastify'
import type { Test } from 'tap'
import { LogCollector } from './helpers'
import type { Built } from './helpers'
import sendAndContinue from '../lib/index'
import type { SendAndContinueOptions } from '../lib/index'

/**
 * What an application does to trace: an SDK tracer provider exporting to memory, the
 * AsyncLocalStorage context manager and W3C propagation, registered globally once per test file.
 */
export const exporter = new InMemorySpanExporter()
export const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] })
trace.setGlobalTracerProvider(provider)
context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable())
propagation.setGlobalPropagator(new W3CTraceContextPropagator())

// Fastify's own instrumentation makes the request span (and a handler span inside it)
const instrumentation = new FastifyOtelInstrumentation()
instrumentation.setTracerProvider(provider)

/** An app with @fastify/otel and the plugin registered; the exporter is emptied first. */
export async function buildTraced (t: Test, options: SendAndContinueOptions = {}, level = 'info'): Promise<Built> {
  exporter.reset()
  const logs = new LogCollector()
  const app = Fastify({ logger: { level, stream: logs } })
  t.teardown(() => app.close())
  // first, as its README asks, so that it sees every route
  await app.register(instrumentation.plugin())
  await app.register(sendAndContinue, options)
  return { app, logs }
}

export function spans (): ReadableSpan[] {
  return exporter.getFinishedSpans()
}

export function spanNamed (name: string): ReadableSpan {
  const found = spans().filter((span) => span.name === name)
  if (found.length !== 1) throw new Error(`expected one span named ${name}, got ${found.length}: ${spans().map((span) => span.name).join(', ')}`)
  return found[0]
}

/** The span context of a finished span's parent, or undefined for a root span. */
export function parentOf (span: ReadableSpan): string | undefined {
  return span.parentSpanContext?.spanId
}

export function ids (spanContext: SpanContext): { traceId: string, spanId: string } {
  return { traceId: spanContext.traceId, spanId: spanContext.spanId }
}
