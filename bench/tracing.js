'use strict'

// The tracing rows of the instruction-count phase: "tracing on" (the OpenTelemetry SDK with an
// in-memory exporter) and `tracing: false`, against `sac` (tracing on, no provider registered,
// the diagnostics channels without subscribers).
// `available()` says whether the built plugin has tracing; `setup(app, kind)` prepares the
// process and returns the extra plugin options for that row. The rows are declared in BASES
// (bench/variants.js) and compared with `sac`.

const fs = require('node:fs')
const path = require('node:path')

const dist = path.join(__dirname, '..', 'dist')

function available () {
  return fs.existsSync(path.join(dist, 'tracing.js')) || fs.existsSync(path.join(dist, 'tracing', 'index.js'))
}

function otel () {
  const { trace, context } = require('@opentelemetry/api')
  const { AsyncLocalStorageContextManager } = require('@opentelemetry/context-async-hooks')
  const { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } = require('@opentelemetry/sdk-trace-base')
  const exporter = new InMemorySpanExporter()
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] })
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable())
  trace.setGlobalTracerProvider(provider)
  // finished spans would pile up over thousands of requests: what the exporter keeps is not the plugin's cost
  setInterval(() => exporter.reset(), 1000).unref()
}

/** `otel`: the SDK registered, each task gets a span (`tracing` is on by default); `off`: `tracing: false`. */
async function setup (app, kind) {
  if (!available()) throw new Error(`tracing row '${kind}': the built plugin has no tracing`)
  if (kind === 'otel') {
    otel()
    return {}
  }
  return { tracing: false }
}

module.exports = { available, setup }
