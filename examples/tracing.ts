// Tracing: each deferred task gets an OpenTelemetry span in the trace of the request that
// deferred it, printed here by the SDK's console exporter.
//
// Run: node --import tsx examples/tracing.ts
import { context, trace } from '@opentelemetry/api'
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks'
import { BasicTracerProvider, ConsoleSpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base'
import { FastifyOtelInstrumentation } from '@fastify/otel'
import Fastify from 'fastify'
import { setTimeout as sleep } from 'node:timers/promises'
import sendAndContinue from 'fastify-send-and-continue'

// What an application's tracing setup does (NodeSDK does the same in one call): a provider with
// an exporter, and the context manager that carries the active span across async calls.
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(new ConsoleSpanExporter())] })
trace.setGlobalTracerProvider(provider)
context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable())

// Fastify's own instrumentation makes the request span
const instrumentation = new FastifyOtelInstrumentation()
instrumentation.setTracerProvider(provider)

const tracer = trace.getTracer('example')
const app = Fastify()

async function main (): Promise<void> {
  await app.register(instrumentation.plugin())
  await app.register(sendAndContinue)

  app.post('/orders', async (request, reply) => {
    return reply.code(202).sendAndContinue({ ok: true }, async function sendReceipt ({ signal }) {
      // a span the task opens (here by hand; an HTTP client or database driver does it too)
      // is a child of the task's span
      await tracer.startActiveSpan('render receipt', async (span) => {
        await sleep(20, undefined, { signal })
        span.end()
      })
    })
  })

  const url = await app.listen({ port: 0, host: '127.0.0.1' })
  const response = await fetch(`${url}/orders`, { method: 'POST' })
  console.log(`client got ${response.status} ${await response.text()}`)
  await app.close() // waits for the deferred work
  await provider.shutdown()
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
})
