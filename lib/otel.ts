import type * as OTel from '@opentelemetry/api'
import { describe } from './errors'
import type { TaskMessage } from './channels'
import type { Outcome } from './types'

// @opentelemetry/api is an optional peer dependency: loaded on first use, never required. Its
// types are imported for this file only; no declaration the package exports mentions them, so
// TypeScript users without it installed see no missing module.

type Api = typeof OTel

/** An OpenTelemetry `Context`, opaque outside this file. */
export type TraceContext = OTel.Context
export type TaskSpan = OTel.Span

const TRACER_NAME = 'fastify-send-and-continue'

// `undefined` until the first load attempt, `null` when the package is not installed
let api: Api | null | undefined
let tracer: OTel.Tracer
// the API's trace and context singletons, read once: the package exports them through getters
let traceApi: OTel.TraceAPI
let contextApi: OTel.ContextAPI
// the provider the API falls back to while no SDK registered one
let noopProvider: unknown

/** Loads `@opentelemetry/api` once; `null` when it is not installed (or cannot load). */
export function loadApi (): Api | null {
  if (api === undefined) {
    try {
      api = require('@opentelemetry/api') as Api
      const { version } = require('../package.json') as { version: string }
      // a ProxyTracer: it follows whatever provider is registered, now or later
      traceApi = api.trace
      contextApi = api.context
      tracer = traceApi.getTracer(TRACER_NAME, version)
      noopProvider = new api.ProxyTracerProvider().getDelegate()
    } catch {
      // not installed, or a broken install: the plugin works the same without spans
      api = null
    }
  }
  return api
}

/**
 * The active context, when a span made from it would be recorded by someone: the API is loaded and
 * an SDK registered a tracer provider. `null` otherwise, so untraced apps allocate nothing per task.
 */
export function activeContext (): TraceContext | null {
  if (loadApi() === null) return null
  const provider = traceApi.getTracerProvider() as { getDelegate?: () => unknown }
  if (provider.getDelegate?.() === noopProvider) return null
  return contextApi.active()
}

function attributesOf (message: TaskMessage, routeUrl: string | undefined): OTel.Attributes {
  const attributes: OTel.Attributes = {
    'http.request.method': message.method,
    'deferred.task': message.name,
    'deferred.request_id': message.requestId,
    'deferred.queued_ms': message.queuedMs
  }
  if (routeUrl !== undefined) attributes['http.route'] = routeUrl
  if (message.statusCode !== 0) attributes['http.response.status_code'] = message.statusCode
  if (message.connection !== null) attributes['deferred.connection'] = message.connection
  if (message.jobId !== undefined) attributes['deferred.job_id'] = message.jobId
  if (message.attempt !== undefined) attributes['deferred.attempt'] = message.attempt
  return attributes
}

/** A durable job's queue, in OpenTelemetry's messaging terms. */
export interface Destination {
  /** `messaging.system`: the engine (`memory`, `sqlite`, `bullmq`). */
  readonly system: string
  /** `messaging.destination.name`: the queue's name. */
  readonly name: string
}

function messagingAttributes (destination: Destination, operation: 'send' | 'process'): OTel.Attributes {
  return {
    'messaging.system': destination.system,
    'messaging.destination.name': destination.name,
    'messaging.operation.type': operation,
    'messaging.operation.name': operation
  }
}

/**
 * Opens the span of a task, child of `parent` (the context active when the task was registered),
 * starting now or at `startTime` (a `performance.now()` value). A durable job's attempt, run from
 * its queue (`destination`), is a CONSUMER span with the messaging attributes.
 */
export function startSpan (parent: TraceContext, message: TaskMessage, routeUrl: string | undefined, startTime?: number, destination?: Destination): TaskSpan {
  const attributes = attributesOf(message, routeUrl)
  let kind: OTel.SpanKind | undefined
  if (destination !== undefined) {
    Object.assign(attributes, messagingAttributes(destination, 'process'))
    attributes['messaging.message.id'] = message.jobId
    kind = (api as Api).SpanKind.CONSUMER
  }
  return tracer.startSpan(`deferred ${message.name}`, { kind, attributes, startTime }, parent)
}

/**
 * Opens the PRODUCER span of an enqueue a response waits for (`send <queue>`, as the messaging
 * conventions name it), child of `parent`: the context active in the response's onSend hook.
 */
export function startSendSpan (parent: TraceContext, destination: Destination, jobIds: readonly string[]): TaskSpan {
  const attributes = messagingAttributes(destination, 'send')
  if (jobIds.length === 1) attributes['messaging.message.id'] = jobIds[0]
  else attributes['messaging.batch.message_count'] = jobIds.length
  return tracer.startSpan(`send ${destination.name}`, { kind: (api as Api).SpanKind.PRODUCER, attributes }, parent)
}

/** Ends an enqueue's span: `ERROR` with the exception when the store did not take the jobs. */
export function endSendSpan (span: TaskSpan, failed: boolean, error?: unknown): void {
  if (failed) span.setStatus({ code: (api as Api).SpanStatusCode.ERROR, message: recordFailure(span, error) })
  span.end()
}

/** Runs `fn(arg)` with `span` active, so the spans its code opens are children of it. */
export function runInSpan<A, R> (parent: TraceContext, span: TaskSpan, fn: (arg: A) => R, arg: A): R {
  return contextApi.with(traceApi.setSpan(parent, span), fn, undefined, arg)
}

/**
 * Ends a task's span with its outcome: `ERROR` status for `failed`, `timeout`, `cancelled` and
 * `dropped` (the exception recorded on `failed`), `UNSET` otherwise. `endTime` as in `startSpan`.
 */
export function endSpan (span: TaskSpan, message: TaskMessage, timeoutMs: number, endTime?: number): void {
  const outcome = message.outcome as Outcome
  span.setAttribute('deferred.outcome', outcome)
  if (outcome !== 'completed' && outcome !== 'skipped') {
    let description: string = outcome
    if (outcome === 'failed') {
      description = `failed: ${recordFailure(span, message.error)}`
    } else {
      span.setAttribute('error.type', outcome)
      if (outcome === 'timeout') {
        description = `timeout after ${timeoutMs} ms`
        span.setAttribute('deferred.timeout_ms', timeoutMs)
      } else if (outcome === 'dropped') {
        description = `dropped: ${message.reason as string}`
        span.setAttribute('deferred.reason', message.reason as string)
      }
    }
    span.setStatus({ code: (api as Api).SpanStatusCode.ERROR, message: description })
  }
  span.end(endTime)
}

/**
 * Records what a failed task threw on its span and returns its message. The SDK reads the error's
 * name, message and stack: a value that fights back (a revoked Proxy, a throwing getter) is
 * recorded as unreadable instead of throwing into the plugin.
 */
function recordFailure (span: TaskSpan, error: unknown): string {
  let text = 'a value that cannot be read'
  try {
    const isError = error instanceof Error
    text = isError ? String(error.message) : describe(error)
    span.setAttribute('error.type', isError ? String(error.name) : '_OTHER')
    span.recordException(isError ? error : text)
  } catch {
    span.setAttribute('error.type', '_OTHER')
    span.recordException(text)
  }
  return text
}

/**
 * The trace context of `context` (or the active one) in a carrier a job payload can hold, through
 * the propagators the application registered (W3C `traceparent` and `tracestate` with the SDK's
 * defaults). `undefined` when there is nothing to carry: no API, no provider, no propagator.
 */
export function injectTraceContext (context: TraceContext | null = activeContext()): Record<string, string> | undefined {
  if (context === null) return undefined
  const carrier: Record<string, string> = {}
  ;(api as Api).propagation.inject(context, carrier)
  return Object.keys(carrier).length === 0 ? undefined : carrier
}

/**
 * The context a job's span should be the child of, read from what `injectTraceContext` wrote.
 * `null` when spans cannot be made (no API, no provider); the root context when the carrier is empty.
 */
export function extractTraceContext (carrier: Record<string, string> | undefined): TraceContext | null {
  if (activeContext() === null) return null
  const otel = api as Api
  return carrier === undefined ? otel.ROOT_CONTEXT : otel.propagation.extract(otel.ROOT_CONTEXT, carrier)
}
