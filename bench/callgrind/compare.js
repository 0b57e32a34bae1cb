'use strict'

// `node bench/callgrind/compare.js <dump> <reference dump> [requests] [count]`: the functions whose
// own instructions differ most between two callgrind dumps (every function, not only the
// top ones the bench keeps), in thousand instructions per request. The dumps of the last run are
// in bench/results/tmp/callgrind/ (`<variant>.<pid>.1-01` is node's main thread); `requests` is
// the measured requests per dump (4000 in a full run, 1000 with --quick).

const path = require('node:path')
const fs = require('node:fs')
const { functions, readPerfMap, total } = require('./annotate')

// the phase keeps V8's perf map of each variant beside its dumps: `<variant>.map`
function mapOf (dump) {
  const file = path.join(path.dirname(dump), `${path.basename(dump).replace(/\.\d+\.\d+-\d+$/, '')}.map`)
  return fs.existsSync(file) ? readPerfMap(file) : null
}

function compare (file, reference, requests, count) {
  const a = functions(file, false, mapOf(file))
  const b = functions(reference, false, mapOf(reference))
  const rows = [...new Set([...a.keys(), ...b.keys()])]
    .map((fn) => ({ fn, kinstr: (a.get(fn) ?? 0) / requests / 1000, reference: (b.get(fn) ?? 0) / requests / 1000 }))
    .map((row) => ({ ...row, delta: row.kinstr - row.reference }))
    .sort((x, y) => Math.abs(y.delta) - Math.abs(x.delta))
    .slice(0, count)
  console.log(`${path.basename(file)}: ${(total(file) / requests / 1000).toFixed(1)} kinstr/request; ${path.basename(reference)}: ${(total(reference) / requests / 1000).toFixed(1)}`)
  console.log('   delta     this reference  function')
  for (const row of rows) {
    console.log(`${row.delta.toFixed(2).padStart(8)} ${row.kinstr.toFixed(2).padStart(8)} ${row.reference.toFixed(2).padStart(8)}  ${row.fn}`)
  }
}

if (process.argv.length < 4) {
  console.error('usage: node bench/callgrind/compare.js <dump> <reference dump> [requests=4000] [count=30]')
  process.exit(1)
}
compare(process.argv[2], process.argv[3], Number(process.argv[4] ?? 4000), Number(process.argv[5] ?? 30))
