'use strict'

// Reading callgrind's output: the total of one thread's dump, and per function its own
// ("self") and inclusive instruction counts through callgrind_annotate.

const fs = require('node:fs')
const path = require('node:path')
const { execFileSync } = require('node:child_process')

function total (file) {
  const text = fs.readFileSync(file, 'utf8')
  const match = text.match(/^totals: (\d+)/m) ?? text.match(/^summary: (\d+)/m)
  return match === null ? 0 : Number(match[1])
}

// JIT-compiled JavaScript has no symbol (an address in anonymous memory). With V8's perf map
// (`node --perf-basic-prof` writes /tmp/perf-<pid>.map) an address is named after the function
// V8 compiled there, `JS <tier><name> <file>` (`*` optimized, `^` baseline, `~` interpreted);
// without one, or where the map says nothing, JavaScript is one bucket.
const JIT = '(JIT-compiled JavaScript, no symbol)'
const ROOT = path.join(__dirname, '..', '..') + path.sep

/** The code ranges of a perf map, by start address; a later entry for the same start wins. */
function readPerfMap (file) {
  const entries = []
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    const match = line.match(/^([0-9a-f]+) ([0-9a-f]+) JS:(.+)$/)
    if (match === null) continue
    const start = parseInt(match[1], 16)
    entries.push({ start, end: start + parseInt(match[2], 16), name: `JS ${match[3].split(ROOT).join('')}` })
  }
  return entries.sort((a, b) => a.start - b.start)
}

function jsName (address, map) {
  let low = 0
  let high = map.length - 1
  let found = null
  while (low <= high) {
    const middle = (low + high) >> 1
    if (map[middle].start <= address) {
      found = map[middle]
      low = middle + 1
    } else {
      high = middle - 1
    }
  }
  return found !== null && address < found.end ? found.name : JIT
}

function name (where, map) {
  const fn = where.replace(/ \[[^\]]*\]$/, '')
  // callgrind marks a recursive call of a function with '2, '3...
  const address = fn.match(/^\?\?\?:0x([0-9a-f]+)(?:'\d+)?$/)
  if (address !== null) return map === null ? JIT : jsName(parseInt(address[1], 16), map)
  return fn.replace(/^\?\?\?:/, '')
}

/** Map of function to instructions, self or inclusive; `map` from `readPerfMap` names JavaScript. */
function functions (file, inclusive = false, map = null) {
  const out = execFileSync('callgrind_annotate', [`--inclusive=${inclusive ? 'yes' : 'no'}`, '--threshold=100', file], {
    encoding: 'utf8',
    maxBuffer: 256 * 1024 * 1024
  })
  const costs = new Map()
  for (const line of out.split('\n')) {
    const match = line.match(/^\s*([\d,]+) \(\s*[\d.]+%\)\s+(.+)$/)
    if (match === null || match[2] === 'PROGRAM TOTALS') continue
    const key = name(match[2], map)
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

/** Whether `fn` (a key of `functions`) is JavaScript compiled by V8, named or not. */
function isJit (fn) {
  return fn === JIT || fn.startsWith('JS ')
}

module.exports = { total, functions, gc, JIT, isJit, readPerfMap }
