'use strict'

// The metrics rows of the instruction-count phase, 100 pending with the logger off, against `sac`
// (metrics on by default, no meter provider registered): the OpenTelemetry metrics SDK registered
// with an in-memory reader whose export interval is longer than the run (so what is measured is
// the recording per task, not the collection an exporter does every few seconds), and the same SDK
// with `metrics: false`. `available()` says whether the built plugin has metrics; `setup(kind)`
// prepares the process and returns the extra plugin options for that row. The rows are declared in
// BASES (bench/variants.js).

const fs = require('node:fs')
const path = require('node:path')

const dist = path.join(__dirname, '..', 'dist')

function available () {
  return fs.existsSync(path.join(dist, 'metrics.js'))
}

function sdk () {
  const { metrics } = require('@opentelemetry/api')
  const { AggregationTemporality, InMemoryMetricExporter, MeterProvider, PeriodicExportingMetricReader } = require('@opentelemetry/sdk-metrics')
  const reader = new PeriodicExportingMetricReader({
    exporter: new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE),
    exportIntervalMillis: 3_600_000,
    exportTimeoutMillis: 30_000
  })
  metrics.setGlobalMeterProvider(new MeterProvider({ readers: [reader] }))
}

/** `sdk`: the SDK registered before the plugin (it looks the provider up when it registers); `off`: the same with `metrics: false`. */
async function setup (kind) {
  if (!available()) throw new Error(`metrics row '${kind}': the built plugin has no metrics`)
  sdk()
  return kind === 'off' ? { metrics: false } : {}
}

module.exports = { available, setup }
