'use strict'

// One variant in its own process: `node bench/server.js <variant> <log file>`.
// It answers the runner over IPC with its CPU time, request and task counts and memory.

const path = require('node:path')
const { setTimeout: sleep } = require('node:timers/promises')
const Fastify = require('fastify')
const { byName, pluginOptions } = require('./variants')
const { counters, makeTask } = require('./tasks')
const { routeFor } = require('./handlers')
const tracing = require('./tracing')
const metrics = require('./metrics')

const variant = byName(process.argv[2])
// the `sac-before` row: the plugin built at the `--before` commit (bench/before.js)
const fastifySendAndContinue = require(variant.before ? process.env.BENCH_BEFORE_DIST : '..')
const logFile = variant.loggerFile ?? process.argv[3]
const count = { handled: 0, ...counters() }
const dispatchMs = []
// a durable variant's job runs in a worker, if any (in this process with the memory engine and
// sqlite's `work: true`): it only counts itself
const task = variant.queue ? fastifySendAndContinue.defineTask('bench-job', completeJob) : makeTask(variant.task, count)

function completeJob () {
  count.completed++
}

function queueOptions () {
  if (!variant.queue) return {}
  const engine = variant.queue === true ? { engine: 'bullmq' } : variant.queue
  if (engine.engine === 'bullmq') return { queue: { ...engine, connection: { path: process.env.BENCH_REDIS_SOCKET }, tasks: [task] } }
  if (engine.engine === 'sqlite') return { queue: { ...engine, path: path.join(process.env.BENCH_SQLITE_DIR, `${variant.name}.db`), tasks: [task] } }
  return { queue: { ...engine, tasks: [task] } }
}

/** The hand-written variants' own BullMQ queue, on a client with ioredis's defaults. */
function handwrittenQueue (app) {
  if (!variant.handler.startsWith('handwritten-bullmq')) return null
  const { Queue } = require('bullmq')
  const Redis = require('ioredis')
  const connection = new Redis({ path: process.env.BENCH_REDIS_SOCKET, maxRetriesPerRequest: null })
  const queue = new Queue('bench-handwritten', { connection })
  app.addHook('onClose', async () => {
    await queue.close()
    connection.disconnect()
  })
  return queue
}

async function main () {
  const logger = !variant.logger
    ? false
    : variant.loggerSync === true
      ? { level: 'info', stream: require('pino').destination({ dest: logFile, sync: true }) }
      : { level: 'info', file: logFile }
  const app = Fastify({ logger })
  const extra = variant.tracing === undefined ? {} : await tracing.setup(app, variant.tracing)
  if (variant.metrics !== undefined) Object.assign(extra, await metrics.setup(variant.metrics))
  if (variant.responseLogLevel !== undefined) extra.responseLogLevel = variant.responseLogLevel
  if (variant.plugin) await app.register(fastifySendAndContinue, { ...pluginOptions, ...extra, ...queueOptions() })
  const route = routeFor(variant.handler, task, count, dispatchMs, handwrittenQueue(app))
  app.route({ method: variant.method ?? 'GET', url: '/', ...route.options, handler: route.handler })

  // Every timed task of the last load has ended, so its CPU time lands in the window it belongs
  // to. Released tasks (variant.task.pending) stay pending by design: nothing to wait for.
  async function settle () {
    await sleep(10)
    if (variant.task?.pending !== undefined) return
    if (variant.plugin) await app.sendAndContinue.drain()
    while (count.running > 0) await sleep(5)
  }

  async function snapshot (message) {
    if (message.settle) await settle()
    const cpu = process.cpuUsage()
    const memory = process.memoryUsage()
    const reply = {
      type: 'snapshot',
      id: message.id,
      cpuMicros: cpu.user + cpu.system,
      handled: count.handled,
      started: count.started,
      completed: count.completed,
      running: count.running,
      rss: memory.rss,
      heapUsed: memory.heapUsed,
      maxRssKb: process.resourceUsage().maxRSS,
      stats: variant.plugin ? app.sendAndContinue.stats() : null
    }
    if (message.dispatch) reply.dispatchMs = dispatchMs.splice(0)
    return reply
  }

  // the runner is gone (stopped or crashed): nothing left to answer
  process.once('disconnect', () => process.exit(0))
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
