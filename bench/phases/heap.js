'use strict'

// Heap and RSS per pending task, one process per variant (bench/heap.js). Counts bytes, not
// time, so it may run beside the instruction-count phase.

const { fork } = require('node:child_process')
const path = require('node:path')

const HEAP_VARIANTS = ['bare', 'setimmediate', 'onresponse', 'sac', 'setimmediate-pino', 'setimmediate-log-pino', 'sac-pino']

function runOne (name, tasks, tmpDir) {
  return new Promise((resolve, reject) => {
    const child = fork(path.join(__dirname, '..', 'heap.js'), [name, String(tasks), path.join(tmpDir, `heap-${name}.log`)], {
      execArgv: ['--expose-gc'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc']
    })
    let result = null
    child.on('message', (message) => { result = message })
    child.once('exit', (code) => {
      if (result === null) reject(new Error(`heap ${name} exited with ${code} and no result`))
      else resolve(result)
    })
  })
}

async function runHeap ({ tasks, tmpDir, log }) {
  const heap = []
  for (const name of HEAP_VARIANTS) {
    const result = await runOne(name, tasks, tmpDir)
    heap.push(result)
    log(`heap ${name.padEnd(22)} ${result.heapBytesPerTask.toFixed(0).padStart(6)} B/task heap, ${result.rssBytesPerTask.toFixed(0).padStart(6)} B/task RSS (${result.tasks} pending, loaded in ${result.loadMs} ms)`)
  }
  return heap
}

/** Heap per task of `name` minus that of `reference`, in bytes. */
function beyond (heap, name, reference) {
  const of = (n) => heap.find((h) => h.name === n)?.heapBytesPerTask ?? NaN
  return of(name) - of(reference)
}

module.exports = { runHeap, beyond, HEAP_VARIANTS }
