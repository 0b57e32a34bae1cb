'use strict'

// The deferred work every variant runs, counted so a snapshot shows equal work: `started`,
// `completed`, and `running` (started, not yet ended).

const { performance } = require('node:perf_hooks')
const { setTimeout: sleep } = require('node:timers/promises')

function counters () {
  return { started: 0, completed: 0, running: 0 }
}

/** A task awaiting a timer: the wall-clock phases' "50 ms task". */
function timedTask (ms, count) {
  return async function task () {
    count.started++
    count.running++
    await sleep(ms)
    count.running--
    count.completed++
  }
}

/**
 * A task that ends when the `pending`-th later task starts: exactly `pending` tasks stay pending
 * whatever the request rate, which under valgrind is slow and differs from variant to variant.
 * The waiting tasks' resolvers sit in a ring, so releasing one allocates nothing.
 */
function releasedTask (pending, count) {
  const ring = new Array(pending + 1).fill(null)
  let head = 0
  let tail = 0
  function wait (resolve) {
    ring[tail] = resolve
    tail = (tail + 1) % ring.length
  }
  function releaseOldest () {
    if (count.running <= pending) return
    const resolve = ring[head]
    ring[head] = null
    head = (head + 1) % ring.length
    resolve()
  }
  return async function task () {
    count.started++
    count.running++
    const done = new Promise(wait)
    releaseOldest()
    await done
    count.running--
    count.completed++
  }
}

function makeTask (spec, count) {
  if (spec === undefined) return null
  return spec.pending === undefined ? timedTask(spec.ms, count) : releasedTask(spec.pending, count)
}

/**
 * What a careful user writes around setImmediate: `task`, then one line through the request's
 * logger when it ends, an error line when it fails, nothing that can crash the process.
 */
function loggedRunner (task) {
  return async function runAndLog (log) {
    const startedAt = performance.now()
    try {
      await task()
      log.info({ task: task.name, durationMs: performance.now() - startedAt }, 'task completed')
    } catch (err) {
      log.error({ err, task: task.name }, 'task failed')
    }
  }
}

module.exports = { counters, makeTask, loggedRunner }
