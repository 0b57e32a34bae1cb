'use strict'

// Reading callgrind's output: the total of one thread's dump, and per function its own
// ("self") and inclusive instruction counts through callgrind_annotate.

const fs = require('node:fs')
const { execFileSync } = require('node:child_process')

function total (file) {
  const text = fs.readFileSync(file, 'utf8')
  const match = text.match(/^totals: (\d+)/m) ?? text.match(/^summary: (\d+)/m)
  return match === null ? 0 : Number(match[1])
}

// JIT-compiled JavaScript has no symbol (an address in anonymous memory); its addresses change
// from run to run, so it is one bucket.
const JIT = '(JIT-compiled JavaScript, no symbol)'

function name (where) {
  const fn = where.replace(/ \[[^\]]*\]$/, '')
  if (/^\?\?\?:0x[0-9a-f]+$/.test(fn)) return JIT
  return fn.replace(/^\?\?\?:/, '')
}

/** Map of function to instructions, self or inclusive. */
function functions (file, inclusive = false) {
  const out = execFileSync('callgrind_annotate', [`--inclusive=${inclusive ? 'yes' : 'no'}`, '--threshold=100', file], {
    encoding: 'utf8',
    maxBuffer: 256 * 1024 * 1024
  })
  const costs = new Map()
  for (const line of out.split('\n')) {
    const match = line.match(/^\s*([\d,]+) \(\s*[\d.]+%\)\s+(.+)$/)
    if (match === null || match[2] === 'PROGRAM TOTALS') continue
    const key = name(match[2])
    costs.set(key, (costs.get(key) ?? 0) + Number(match[1].replace(/,/g, '')))
  }
  return costs
}

// Garbage collection on the main thread (`--single-threaded-gc` keeps it all there): the
// collections, and the incremental marking steps V8 takes between them.
const GC_ENTRIES = [
  /^v8::internal::Heap::CollectGarbage\(/,
  /^v8::internal::IncrementalMarking::Step\(/
]

function gc (inclusiveCosts) {
  let sum = 0
  for (const [fn, cost] of inclusiveCosts) {
    // a name ending in '2, '3 is the same function called recursively: already in the outer call
    if (!/'\d+$/.test(fn) && GC_ENTRIES.some((entry) => entry.test(fn))) sum += cost
  }
  return sum
}

module.exports = { total, functions, gc, JIT }
