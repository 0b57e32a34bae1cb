'use strict'

// The slot for the tracing rows of the instruction-count phase ("tracing on" with the
// OpenTelemetry SDK and an in-memory exporter; a diagnostics channel without subscribers).
// `available()` says whether the built plugin has tracing; `setup(app, kind)` prepares the app
// and returns the extra plugin options for that row. Variants opt in with `tracing: kind`
// (see BASES in bench/variants.js).

const fs = require('node:fs')
const path = require('node:path')

function available () {
  return fs.existsSync(path.join(__dirname, '..', 'dist', 'tracing.js')) ||
    fs.existsSync(path.join(__dirname, '..', 'dist', 'tracing', 'index.js'))
}

async function setup (app, kind) {
  throw new Error(`tracing row '${kind}': the plugin has no tracing support to measure yet`)
}

module.exports = { available, setup }
