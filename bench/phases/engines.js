'use strict'

// Engines phase (`npm run bench -- --only engines`): each durable engine next to what a user
// would write instead (issue 18), in four parts.
//
// 1. Web side, interleaved rounds under autocannon (POST, 20 keep-alive connections): plain
//    `send`, the in-process task, a hand-written `await queue.add()` (of `{ n }`, and of the
//    plugin's own job: the floor) and the `bullmq` engine (logger off, then the same with pino at info), the `sqlite` engine with `work: false` and the
//    `memory` engine. Web-process CPU per request, redis-server CPU per request (INFO cpu), req/s,
//    p99; ratios paired by round against each row's `pair`.
// 2. Worker throughput: N jobs preloaded into Redis, then the time until a worker has completed
//    them all: `createWorker()` against a hand-written BullMQ `Worker` logging one line per job,
//    both with pino at info to a file, concurrency 10 and 100.
// 1b. The same web-side variants' instructions per request under callgrind (bench/phases/
//    callgrind.js), which the machine's load does not move: the CPU ratios to trust on a shared
//    machine. Only the web process's main thread is counted (not redis-server).
// 3. SQLite end to end: the app answers under autocannon and runs its own jobs (`work: true`);
//    requests answered and jobs completed over a 10 s window, `synchronous` 'normal' and 'full'.
// Without redis-server the Redis parts are skipped (said so); the others still run.

const Redis = require('ioredis')
const { Queue } = require('bullmq')
const Fastify = require('fastify')
const { performance } = require('node:perf_hooks')
const fastifySendAndContinue = require('../..')
const { JOB_OPTIONS } = require('../handlers')
const { fork } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { engineVariants, sqliteEndToEndVariants } = require('../variants')
const { Server } = require('../servers')
const { redisVersion, startRedis } = require('../redis')
const { redisCpuMicros } = require('./enqueue')
const { rotate, fmt } = require('./wallclock')
const { runAutocannon } = require('../load/autocannon')
const { spread, paired } = require('../stats')
const { runCallgrind, costCentres } = require('./callgrind')

// counted under callgrind (the pino rows too); at about 1,000 requests/s there
const INSTRUCTION_VARIANTS = ['eng-in-process', 'eng-handwritten', 'eng-handwritten-job', 'eng-bullmq', 'eng-sqlite', 'eng-memory', 'eng-handwritten-log-pino', 'eng-bullmq-pino']

const CONNECTIONS = 20
const POST = { n: 1 }
const NO_REDIS = 'redis-server is not installed: the BullMQ parts of the engines phase are skipped (`apt-get install -y redis-server` adds it)'

/** One load on one server: its CPU, and redis-server's when the variant uses Redis. */
async function measure (server, seconds, redis) {
  const uses = redis !== null && server.variant.redis === true
  const redisBefore = uses ? await redisCpuMicros(redis) : 0
  const before = await server.snapshot()
  const load = await runAutocannon(server.port, { seconds, connections: CONNECTIONS, post: POST })
  const after = await server.snapshot({ settle: true })
  const handled = after.handled - before.handled
  return {
    rps: load.rps,
    latencyP50: load.latencyP50,
    latencyP99: load.latencyP99,
    errors: load.errors,
    handled,
    cpuMicrosPerRequest: (after.cpuMicros - before.cpuMicros) / handled,
    redisCpuMicrosPerRequest: uses ? (await redisCpuMicros(redis) - redisBefore) / handled : NaN,
    jobsPerRequest: (after.completed - before.completed) / handled
  }
}

function summarizeWeb (rounds, list) {
  const of = (name, metric) => rounds.map((round) => round[name][metric])
  const summary = {}
  for (const variant of list) {
    const name = variant.name
    const s = {
      rps: spread(of(name, 'rps')),
      latencyP50: spread(of(name, 'latencyP50')),
      latencyP99: spread(of(name, 'latencyP99')),
      cpuMicrosPerRequest: spread(of(name, 'cpuMicrosPerRequest')),
      redisCpuMicrosPerRequest: spread(of(name, 'redisCpuMicrosPerRequest')),
      errors: of(name, 'errors').reduce((a, b) => a + b, 0)
    }
    const against = (other) => ({
      rps: spread(paired(of(name, 'rps'), of(other, 'rps'))),
      cpuMicrosPerRequest: spread(paired(of(name, 'cpuMicrosPerRequest'), of(other, 'cpuMicrosPerRequest'))),
      redisCpuMicrosPerRequest: spread(paired(of(name, 'redisCpuMicrosPerRequest'), of(other, 'redisCpuMicrosPerRequest'))),
      latencyP99Ms: spread(of(name, 'latencyP99').map((v, i) => v - of(other, 'latencyP99')[i]))
    })
    const ran = (other) => other !== undefined && list.some((v) => v.name === other)
    if (ran(variant.pair)) {
      s.pair = variant.pair
      s.vsPair = against(variant.pair)
    }
    if (ran(variant.floor)) {
      s.floor = variant.floor
      s.vsFloor = against(variant.floor)
    }
    summary[name] = s
  }
  return summary
}

async function runWeb ({ list, rounds, seconds, warmupSeconds, tmpDir, redis, log }) {
  log(`engines, web side: ${rounds} rounds of ${list.length} variants, autocannon ${seconds} s each, POST, ${CONNECTIONS} connections`)
  const servers = list.map((variant) => new Server(variant, { logFile: path.join(tmpDir, `${variant.name}.log`) }))
  try {
    await Promise.all(servers.map((s) => s.ready))
    for (const s of servers) {
      await runAutocannon(s.port, { seconds: warmupSeconds, connections: CONNECTIONS, post: POST })
      await s.snapshot({ settle: true })
    }
    const results = []
    for (let r = 0; r < rounds; r++) {
      const round = {}
      for (const s of rotate(servers, r)) {
        const result = await measure(s, seconds, redis)
        round[s.variant.name] = result
        log(`engines round ${r + 1}/${rounds} ${s.variant.name.padEnd(26)} ${fmt(result.rps).padStart(6)} req/s  p99 ${fmt(result.latencyP99, 2).padStart(6)} ms  ${fmt(result.cpuMicrosPerRequest, 1).padStart(6)} us CPU/req  redis ${fmt(result.redisCpuMicrosPerRequest, 1).padStart(5)} us/req  ${result.errors} errors`)
      }
      results.push(round)
    }
    return { rounds, seconds, connections: CONNECTIONS, variants: list.map((v) => v.name), summary: summarizeWeb(results, list), raw: results }
  } finally {
    await Promise.all(servers.map((s) => s.stop()))
  }
}

/**
 * Puts `jobs` jobs in Redis, as each side writes them: the plugin's through its own web path (a
 * Fastify app with the `bullmq` engine, `inject()`ed requests), the hand-written ones with
 * `addBulk` and the same job options as the hand-written web variant.
 */
async function preload (kind, jobs, socketPath) {
  const startedAt = performance.now()
  if (kind === 'handwritten') {
    const connection = new Redis({ path: socketPath, maxRetriesPerRequest: null })
    const queue = new Queue('bench-handwritten', { connection })
    for (let n = 0; n < jobs; n += 1000) {
      const chunk = []
      for (let i = n; i < Math.min(jobs, n + 1000); i++) chunk.push({ name: 'bench-job', data: { n: i }, opts: JOB_OPTIONS })
      await queue.addBulk(chunk)
    }
    await queue.close()
    connection.disconnect()
  } else {
    const app = Fastify()
    const task = fastifySendAndContinue.defineTask('bench-job', () => {})
    await app.register(fastifySendAndContinue, { queue: { engine: 'bullmq', connection: { path: socketPath }, tasks: [task] } })
    let n = 0
    app.post('/', (request, reply) => reply.sendAndContinue({ hello: 'world' }, task.with({ n: n++ })))
    await app.ready()
    for (let sent = 0; sent < jobs; sent += 500) {
      const batch = []
      for (let i = sent; i < Math.min(jobs, sent + 500); i++) batch.push(app.inject({ method: 'POST', url: '/', payload: POST }))
      for (const response of await Promise.all(batch)) if (response.statusCode !== 200) throw new Error(`preload: ${response.statusCode} ${response.body}`)
    }
    await app.close()
  }
  return performance.now() - startedAt
}

/** Preloads `jobs` jobs, then times a worker child (bench/engines-worker.js) until it completed them all. */
async function runWorker ({ kind, concurrency, jobs, socketPath, logFile }) {
  const preloadMs = await preload(kind, jobs, socketPath)
  const result = await new Promise((resolve, reject) => {
    const child = fork(path.join(__dirname, '..', 'engines-worker.js'), [kind, String(concurrency), String(jobs), socketPath, logFile], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    child.once('message', resolve)
    child.once('exit', (code) => { if (code !== 0) reject(new Error(`worker ${kind} exited with ${code}`)) })
  })
  return { ...result, preloadMs }
}

async function runWorkers ({ rounds, jobs, socketPath, redis, tmpDir, log }) {
  const configs = []
  for (const concurrency of [10, 100]) for (const kind of ['plugin', 'handwritten']) configs.push({ kind, concurrency })
  log(`engines, worker throughput: ${rounds} rounds of ${configs.length} workers, ${jobs} no-op jobs preloaded each, pino at info to a file`)
  const results = []
  for (let r = 0; r < rounds; r++) {
    const round = {}
    for (const config of rotate(configs, r)) {
      await redis.flushall()
      const logFile = path.join(tmpDir, `worker-${config.kind}-${config.concurrency}.log`)
      const result = await runWorker({ ...config, jobs, socketPath, logFile })
      fs.rmSync(logFile, { force: true })
      round[`${config.kind}-${config.concurrency}`] = result
      log(`worker round ${r + 1}/${rounds} ${config.kind.padEnd(12)} concurrency ${String(config.concurrency).padStart(3)}: ${result.completed} jobs in ${fmt(result.elapsedMs)} ms, ${fmt(result.jobsPerSecond)} jobs/s, ${fmt(result.cpuMicrosPerJob, 1)} us worker CPU/job, ${fmt(result.redisCpuMicrosPerJob, 1)} us redis CPU/job (preload ${fmt(result.preloadMs)} ms)`)
    }
    results.push(round)
  }
  const of = (key, metric) => results.map((round) => round[key][metric])
  const summary = {}
  for (const concurrency of [10, 100]) {
    const plugin = `plugin-${concurrency}`
    const hand = `handwritten-${concurrency}`
    summary[concurrency] = {
      plugin: { jobsPerSecond: spread(of(plugin, 'jobsPerSecond')), cpuMicrosPerJob: spread(of(plugin, 'cpuMicrosPerJob')), redisCpuMicrosPerJob: spread(of(plugin, 'redisCpuMicrosPerJob')) },
      handwritten: { jobsPerSecond: spread(of(hand, 'jobsPerSecond')), cpuMicrosPerJob: spread(of(hand, 'cpuMicrosPerJob')), redisCpuMicrosPerJob: spread(of(hand, 'redisCpuMicrosPerJob')) },
      ratio: spread(paired(of(plugin, 'jobsPerSecond'), of(hand, 'jobsPerSecond')))
    }
  }
  return { rounds, jobs, summary, raw: results }
}

/** Requests answered and jobs completed by the app's own worker in one window of load (no settle inside it). */
async function runEndToEnd ({ rounds, seconds, warmupSeconds, tmpDir, log }) {
  log(`engines, sqlite end to end: ${rounds} rounds of ${sqliteEndToEndVariants.length} variants, ${seconds} s windows`)
  const servers = sqliteEndToEndVariants.map((variant) => new Server(variant, { logFile: path.join(tmpDir, `${variant.name}.log`) }))
  try {
    await Promise.all(servers.map((s) => s.ready))
    for (const s of servers) {
      await runAutocannon(s.port, { seconds: warmupSeconds, connections: CONNECTIONS, post: POST })
      await s.snapshot({ settle: true })
    }
    const results = []
    for (let r = 0; r < rounds; r++) {
      const round = {}
      for (const s of rotate(servers, r)) {
        const before = await s.snapshot()
        const load = await runAutocannon(s.port, { seconds, connections: CONNECTIONS, post: POST })
        const after = await s.snapshot()
        const windowSeconds = seconds
        const settled = await s.snapshot({ settle: true })
        const result = {
          answeredPerSecond: (after.handled - before.handled) / windowSeconds,
          completedPerSecond: (after.completed - before.completed) / windowSeconds,
          backlogAtEnd: after.handled - after.completed,
          cpuMicrosPerJob: (after.cpuMicros - before.cpuMicros) / (after.completed - before.completed),
          latencyP99: load.latencyP99,
          errors: load.errors,
          allCompleted: settled.handled === settled.completed
        }
        round[s.variant.name] = result
        log(`sqlite e2e round ${r + 1}/${rounds} ${s.variant.name.padEnd(18)} answered ${fmt(result.answeredPerSecond)}/s, jobs completed ${fmt(result.completedPerSecond)}/s, backlog at end ${result.backlogAtEnd}, p99 ${fmt(result.latencyP99, 2)} ms, ${result.errors} errors`)
      }
      results.push(round)
    }
    const summary = {}
    for (const variant of sqliteEndToEndVariants) {
      const of = (metric) => results.map((round) => round[variant.name][metric])
      summary[variant.name] = {
        answeredPerSecond: spread(of('answeredPerSecond')),
        completedPerSecond: spread(of('completedPerSecond')),
        backlogAtEnd: spread(of('backlogAtEnd')),
        cpuMicrosPerJob: spread(of('cpuMicrosPerJob')),
        latencyP99: spread(of('latencyP99')),
        errors: of('errors').reduce((a, b) => a + b, 0),
        allCompleted: of('allCompleted').every(Boolean)
      }
    }
    return { rounds, seconds, connections: CONNECTIONS, summary, raw: results }
  } finally {
    await Promise.all(servers.map((s) => s.stop()))
  }
}

/** kinstr per request of each counted variant, its ratio to its pair, and the functions that grow most against it. */
function summarizeInstructions (counted, list) {
  if (counted.skipped !== undefined) return counted
  const byName = new Map(counted.variants.map((row) => [row.name, row]))
  const rows = counted.variants.map((row) => {
    const variant = list.find((v) => v.name === row.name)
    const pair = byName.get(variant.pair)
    const floor = byName.get(variant.floor)
    const withoutGc = (r) => r.kinstrPerRequest - r.gcKinstrPerRequest
    return {
      name: row.name,
      kinstrPerRequest: row.kinstrPerRequest,
      gcKinstrPerRequest: row.gcKinstrPerRequest,
      errors: row.errors,
      pair: pair?.name,
      ratio: pair === undefined ? NaN : row.kinstrPerRequest / pair.kinstrPerRequest,
      ratioWithoutGc: pair === undefined ? NaN : withoutGc(row) / withoutGc(pair),
      ...(floor === undefined ? {} : { floor: floor.name, floorRatio: row.kinstrPerRequest / floor.kinstrPerRequest, floorRatioWithoutGc: withoutGc(row) / withoutGc(floor) }),
      grows: pair === undefined ? [] : costCentres(row, pair, 12).map(({ fn, kinstr, reference, delta }) => ({ fn, kinstr, reference, delta }))
    }
  })
  return { valgrind: counted.valgrind, plan: counted.plan, seconds: counted.seconds, variants: rows }
}

async function runEngines ({ quick, tmpDir, log }) {
  const plan = quick
    ? { rounds: 2, seconds: 1, warmupSeconds: 0.5, workerRounds: 1, workerJobs: 2000, e2eRounds: 1, e2eSeconds: 3, callgrind: { parallel: 2, warmup: 1000, countedWarmup: 300, requests: 500 } }
    : { rounds: 5, seconds: 3, warmupSeconds: 1, workerRounds: 3, workerJobs: 20_000, e2eRounds: 2, e2eSeconds: 10, callgrind: { parallel: 2, warmup: 4000, countedWarmup: 1000, requests: 4000 } }
  const sqliteDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sac-bench-sqlite-'))
  // the servers (forked children) read the file's folder from their environment
  process.env.BENCH_SQLITE_DIR = sqliteDir
  const redisLine = redisVersion()
  if (redisLine === null) log(NO_REDIS)
  const server = redisLine === null ? null : await startRedis()
  const redis = server === null ? null : new Redis({ path: server.socketPath })
  if (server !== null) process.env.BENCH_REDIS_SOCKET = server.socketPath
  try {
    const list = engineVariants.filter((v) => redis !== null || v.redis !== true)
    const web = await runWeb({ list, rounds: plan.rounds, seconds: plan.seconds, warmupSeconds: plan.warmupSeconds, tmpDir, redis, log })
    const counted = list.filter((v) => INSTRUCTION_VARIANTS.includes(v.name)).map((v) => ({ ...v, pending: null }))
    const instructions = summarizeInstructions(await runCallgrind({ plan: plan.callgrind, log, variants: counted }), list)
    const workers = redis === null
      ? { skipped: NO_REDIS }
      : await runWorkers({ rounds: plan.workerRounds, jobs: plan.workerJobs, socketPath: server.socketPath, redis, tmpDir, log })
    const endToEnd = await runEndToEnd({ rounds: plan.e2eRounds, seconds: plan.e2eSeconds, warmupSeconds: plan.warmupSeconds, tmpDir, log })
    return { redis: redisLine, sqliteDir: os.tmpdir(), plan, web, instructions, workers, endToEnd }
  } finally {
    redis?.disconnect()
    await server?.stop()
    fs.rmSync(sqliteDir, { recursive: true, force: true })
  }
}

module.exports = { runEngines, preload, NO_REDIS }
