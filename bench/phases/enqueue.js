'use strict'

// Enqueue phase (`npm run bench -- --only enqueue`): CPU per request and p99 of
// `sendAndContinue` with a durable job, against the in-process task and plain `send`, under
// autocannon in interleaved rounds. The phase starts its own redis-server (bench/redis.js) and
// stops it at the end; without redis-server installed it says so and is skipped. No worker runs:
// only the enqueue before the answer is measured, so the jobs wait in Redis (a few tens of
// thousands in a short run, freed with the server).

const Redis = require('ioredis')
const path = require('node:path')
const { enqueueVariants } = require('../variants')
const { Server } = require('../servers')
const { redisVersion, startRedis } = require('../redis')
const { CONNECTIONS, measure, rotate, fmt } = require('./wallclock')
const { runAutocannon } = require('../load/autocannon')
const { spread, paired } = require('../stats')

const SKIPPED = 'redis-server is not installed: enqueue phase skipped (`apt-get install -y redis-server` adds it)'

/** redis-server's own CPU time so far, in µs (INFO's figures have µs precision). */
async function redisCpuMicros (client) {
  const info = await client.info('cpu')
  const field = (name) => Number(new RegExp(`^${name}:([0-9.]+)`, 'm').exec(info)[1])
  return Math.round((field('used_cpu_user') + field('used_cpu_sys')) * 1e6)
}

function summarize (rounds) {
  const of = (name, metric) => rounds.map((round) => round[name][metric])
  const summary = {}
  for (const variant of enqueueVariants) {
    const name = variant.name
    summary[name] = {
      rps: spread(of(name, 'rps')),
      latencyP50: spread(of(name, 'latencyP50')),
      latencyP99: spread(of(name, 'latencyP99')),
      cpuMicrosPerRequest: spread(of(name, 'cpuMicrosPerRequest')),
      redisCpuMicrosPerRequest: spread(of(name, 'redisCpuMicrosPerRequest')),
      errors: of(name, 'errors').reduce((a, b) => a + b, 0)
    }
  }
  const ratio = (a, b, metric) => spread(paired(of(a, metric), of(b, metric)))
  const comparisons = {
    durableVsInProcessCpu: ratio('enqueue-durable', 'enqueue-in-process', 'cpuMicrosPerRequest'),
    durableVsInProcessP99: ratio('enqueue-durable', 'enqueue-in-process', 'latencyP99'),
    durableVsPlainCpu: ratio('enqueue-durable', 'enqueue-plain', 'cpuMicrosPerRequest'),
    durableVsPlainP99: ratio('enqueue-durable', 'enqueue-plain', 'latencyP99')
  }
  return { summary, comparisons }
}

async function runEnqueue ({ rounds, seconds, warmupSeconds, tmpDir, log }) {
  const redis = redisVersion()
  if (redis === null) {
    log(SKIPPED)
    return { skipped: SKIPPED }
  }
  log(`enqueue: ${rounds} rounds of ${enqueueVariants.length} variants, autocannon ${seconds} s each, ${CONNECTIONS} connections; ${redis}`)
  const server = await startRedis()
  // the durable variant's server (a forked child) reads the socket from its environment
  process.env.BENCH_REDIS_SOCKET = server.socketPath
  const client = new Redis({ path: server.socketPath })
  const servers = enqueueVariants.map((variant) => new Server(variant, { logFile: path.join(tmpDir, `${variant.name}.log`) }))
  try {
    await Promise.all(servers.map((s) => s.ready))
    for (const s of servers) {
      await runAutocannon(s.port, { seconds: warmupSeconds, connections: CONNECTIONS })
      await s.snapshot({ settle: true })
    }
    const results = []
    for (let r = 0; r < rounds; r++) {
      const round = {}
      for (const s of rotate(servers, r)) {
        const redisBefore = await redisCpuMicros(client)
        const result = await measure(s, 'autocannon', { seconds })
        result.redisCpuMicrosPerRequest = (await redisCpuMicros(client) - redisBefore) / result.handled
        round[s.variant.name] = result
        log(`enqueue round ${r + 1}/${rounds} ${s.variant.name.padEnd(20)} ${fmt(result.rps).padStart(6)} req/s  p99 ${fmt(result.latencyP99, 2).padStart(6)} ms  ${fmt(result.cpuMicrosPerRequest, 1).padStart(6)} us CPU/req (+ redis-server ${fmt(result.redisCpuMicrosPerRequest, 1)} us)  ${result.errors} errors`)
      }
      results.push(round)
    }
    const jobsWaiting = await client.llen('bull:fastify-send-and-continue:wait')
    return { redis, rounds, seconds, connections: CONNECTIONS, jobsWaiting, ...summarize(results) }
  } finally {
    await Promise.all(servers.map((s) => s.stop()))
    client.disconnect()
    await server.stop()
  }
}

module.exports = { runEnqueue, redisCpuMicros, SKIPPED }
