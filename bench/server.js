'use strict'

// One variant in its own process: `node bench/server.js <variant> <log file>`.
// It answers the runner over IPC with its CPU time, request count and memory.

const { performance } = require('node:perf_hooks')
const { setTimeout: sleep } = require('node:timers/promises')
const Fastify = require('fastify')
const fastifySendAndContinue = require('..')
const { byName, pluginOptions, TASK_MS } = require('./variants')

const variant = byName(process.argv[2])
const logFile = process.argv[3]
const body = { hello: 'world' }

let handled = 0
let running = 0
const dispatchMs = []

async function task () {
  running++
  await sleep(TASK_MS)
  running--
}

function isRunning () {
  return running > 0
}

function noop () {}

function send (request, reply) {
  handled++
  reply.send(body)
}

const handlers = {
  plain: send,
  'plain-control': send,
  'plugin-idle': send,
  'plain-pino': send,
  'sac-noop' (request, reply) {
    handled++
    reply.sendAndContinue(body, noop)
  },
  'sac-50ms' (request, reply) {
    handled++
    reply.sendAndContinue(body, task)
  },
  'sac-50ms-pino' (request, reply) {
    handled++
    reply.sendAndContinue(body, task)
  },
  'setimmediate-50ms' (request, reply) {
    handled++
    reply.send(body)
    setImmediate(task)
  },
  'onresponse-50ms': send,
  async 'inline-50ms' (request, reply) {
    handled++
    await task()
    return body
  },
  'sac-50ms-probe' (request, reply) {
    handled++
    const probe = { finishedAt: 0 }
    // first in line: Fastify's own 'finish' listener (which runs onResponse) was added before the handler
    reply.raw.prependOnceListener('finish', () => { probe.finishedAt = performance.now() })
    reply.sendAndContinue(body, () => {
      dispatchMs.push(probe.finishedAt === 0 ? NaN : performance.now() - probe.finishedAt)
      return task()
    })
  }
}

async function awaitTask () {
  await task()
}

async function main () {
  const app = Fastify({ logger: variant.logger ? { level: 'info', file: logFile } : false })
  if (variant.plugin) await app.register(fastifySendAndContinue, pluginOptions)
  const routeOptions = variant.name === 'onresponse-50ms' ? { onResponse: awaitTask } : {}
  app.get('/', routeOptions, handlers[variant.name])

  // Every task of the last load has ended, so its CPU time lands in the window it belongs to.
  async function settle () {
    await sleep(10)
    if (variant.plugin) await app.sendAndContinue.drain()
    while (isRunning()) await sleep(5)
  }

  async function snapshot (message) {
    if (message.settle) await settle()
    const cpu = process.cpuUsage()
    const memory = process.memoryUsage()
    const reply = {
      type: 'snapshot',
      id: message.id,
      cpuMicros: cpu.user + cpu.system,
      handled,
      rss: memory.rss,
      heapUsed: memory.heapUsed,
      maxRssKb: process.resourceUsage().maxRSS,
      stats: variant.plugin ? app.sendAndContinue.stats() : null
    }
    if (message.dispatch) reply.dispatchMs = dispatchMs.splice(0)
    return reply
  }

  process.on('message', (message) => {
    if (message.type === 'snapshot') {
      snapshot(message).then((reply) => process.send(reply))
    } else if (message.type === 'stop') {
      app.close().then(() => process.disconnect())
    }
  })

  await app.listen({ host: '127.0.0.1', port: 0 })
  process.send({ type: 'ready', port: app.server.address().port })
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
