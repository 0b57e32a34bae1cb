'use strict'

// Heap and RSS per pending task: `node --expose-gc bench/heap.js <variant> <tasks> <log file>`.
// "Pending" means running: every task has started and awaits a promise that never settles.
// Requests come over real keep-alive sockets (10 connections, pipelined), so an `onResponse`
// hook keeps real request and response objects alive; the plugin keeps neither.

const net = require('node:net')
const { setTimeout: sleep } = require('node:timers/promises')
const Fastify = require('fastify')
const pino = require('pino')
const fastifySendAndContinue = require('..')
const { pluginOptions } = require('./variants')
const { loggedRunner } = require('./tasks')

const variants = {
  bare: { label: 'bare pending async function (no Fastify)' },
  setimmediate: { label: '`send` + `setImmediate(task)`' },
  onresponse: { label: 'route `onResponse` hook awaiting the task' },
  sac: { label: '`sendAndContinue`', plugin: true },
  'setimmediate-pino': { label: '`send` + `setImmediate(task)`, pino to a file', logger: true },
  'setimmediate-log-pino': { label: '`send` + `setImmediate(task)` logging one line per task through `request.log`, pino to a file', logger: true, logs: true },
  'sac-pino': { label: '`sendAndContinue`, pino to a file', plugin: true, logger: true }
}

const name = process.argv[2]
const tasks = Number(process.argv[3])
const logFile = process.argv[4]
const variant = variants[name]
const CONNECTIONS = 10
const PIPELINE = 64
const REQUEST = 'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'
const STATUS_LINE = 'HTTP/1.1 200'
const body = { hello: 'world' }

let gate = Promise.resolve()
let started = 0

async function task () {
  started++
  await gate
}

// as bench/handlers.js: one line per task through the request's logger when it ends
const runAndLog = loggedRunner(task)

function measure () {
  global.gc()
  global.gc()
  const memory = process.memoryUsage()
  return { heapUsed: memory.heapUsed, rss: memory.rss }
}

async function build () {
  // a synchronous file destination: nothing waits in the log stream's buffer when the heap is read
  const app = Fastify({ logger: variant.logger ? { level: 'info', stream: pino.destination({ dest: logFile, sync: true }) } : false })
  if (variant.plugin) {
    // the default timeout would end the tasks before the measurement on a slow machine; a long
    // one keeps the per-task timer, as in production
    await app.register(fastifySendAndContinue, { ...pluginOptions, timeout: 600_000 })
  }
  const options = name === 'onresponse'
    ? { onResponse: async function awaitTask () { await task() } }
    : {}
  app.get('/', options, function handler (request, reply) {
    if (variant.logs) {
      reply.send(body)
      setImmediate(runAndLog, request.log)
    } else if (name.startsWith('setimmediate')) {
      reply.send(body)
      setImmediate(task)
    } else if (variant.plugin) {
      reply.sendAndContinue(body, task)
    } else {
      reply.send(body)
    }
  })
  await app.listen({ host: '127.0.0.1', port: 0 })
  return app
}

// A minimal pipelining client: it only counts status lines, so its own cost stays small and
// whatever it allocates is garbage by the time the heap is read.
function loadConnection (port, total) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1')
    let sent = 0
    let received = 0
    let tail = ''
    function send () {
      const n = Math.min(PIPELINE, total - sent)
      if (n <= 0) return
      sent += n
      socket.write(REQUEST.repeat(n))
    }
    socket.setNoDelay(true)
    socket.on('connect', () => { send(); send() })
    socket.on('error', reject)
    socket.on('data', (chunk) => {
      const text = tail + chunk.toString('latin1')
      let at = text.indexOf(STATUS_LINE)
      while (at !== -1) {
        received++
        at = text.indexOf(STATUS_LINE, at + STATUS_LINE.length)
      }
      tail = text.slice(-(STATUS_LINE.length - 1))
      if (received >= total) {
        socket.end(resolve)
      } else if (sent - received < PIPELINE) {
        send()
      }
    })
  })
}

async function load (app, count) {
  const port = app.server.address().port
  const connections = []
  for (let i = 0; i < CONNECTIONS; i++) {
    const share = Math.floor(count / CONNECTIONS) + (i < count % CONNECTIONS ? 1 : 0)
    if (share > 0) connections.push(loadConnection(port, share))
  }
  await Promise.all(connections)
}

async function until (condition) {
  while (!condition()) await sleep(10)
}

async function quiesce () {
  await sleep(100)
  await new Promise(setImmediate)
}

async function main () {
  if (variant === undefined || !(tasks > 0)) throw new Error(`usage: heap.js <${Object.keys(variants).join('|')}> <tasks> <log file>`)
  const app = name === 'bare' ? null : await build()
  // warm-up with tasks that end at once, so code and caches are in place before the baseline
  for (let i = 0; i < 2000; i++) task()
  if (app !== null) await load(app, 2000)
  await quiesce()

  gate = new Promise(() => {})
  started = 0
  const before = measure()
  const startedAt = Date.now()
  if (app === null) {
    for (let i = 0; i < tasks; i++) task()
  } else {
    await load(app, tasks)
  }
  await until(() => started >= tasks)
  await quiesce()
  const after = measure()
  const stats = app?.sendAndContinue?.stats() ?? null
  process.send({
    name,
    label: variant.label,
    tasks,
    started,
    loadMs: Date.now() - startedAt,
    heapBytesPerTask: (after.heapUsed - before.heapUsed) / tasks,
    rssBytesPerTask: (after.rss - before.rss) / tasks,
    heapUsedBefore: before.heapUsed,
    heapUsedAfter: after.heapUsed,
    running: stats?.running ?? null
  })
  process.disconnect()
  // the pending tasks would keep nothing alive, but the app's server might
  process.exit(0)
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
