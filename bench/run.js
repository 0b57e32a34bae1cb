'use strict'

// `npm run bench`: every variant in its own process, loaded in interleaved rounds, then the
// fixed-rate (dispatch latency) phase and the heap phase. Writes bench/results/latest.json,
// BENCHMARKS.md and the README's bench block. `BENCH_QUICK=1` (or --quick) for a short run
// that writes only under bench/results/tmp/; `BENCH_NO_WRK=1` (or --no-wrk) for autocannon only.

const { fork, execFile, spawnSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { promisify } = require('node:util')
const autocannon = require('autocannon')
const { variants, probe, pluginOptions, TASK_MS } = require('./variants')
const { runPaced } = require('./paced')
const { spread, percentiles, paired } = require('./stats')
const { writeReports } = require('./report')

const root = path.join(__dirname, '..')
const tmpDir = path.join(__dirname, 'results', 'tmp')
const execFileAsync = promisify(execFile)

const argv = process.argv.slice(2)
const quick = process.env.BENCH_QUICK === '1' || argv.includes('--quick')
const noWrk = process.env.BENCH_NO_WRK === '1' || argv.includes('--no-wrk')

const CONNECTIONS = 50
// wrk takes whole seconds. With wrk present autocannon gets the shorter share: it competes with
// the server for the two cores, so wrk's numbers are the primary ones.
const plan = quick
  ? { rounds: 3, autocannonSeconds: 1, wrkSeconds: 1, warmupSeconds: 0.5, fixedRateRounds: 1, fixedRateSeconds: 1, heapTasks: 10_000 }
  : { rounds: 10, autocannonSeconds: 1, wrkSeconds: 2, warmupSeconds: 1, fixedRateRounds: 4, fixedRateSeconds: 2, heapTasks: 100_000 }
const HEAP_VARIANTS = ['bare', 'setimmediate', 'onresponse', 'sac', 'sac-pino']
const FIXED_RATE_VARIANTS = ['plain', 'sac-50ms', 'sac-50ms-probe', 'setimmediate-50ms', 'onresponse-50ms']

function log (line) {
  process.stdout.write(`${line}\n`)
}

function wrkVersion () {
  if (noWrk) return null
  const result = spawnSync('wrk', ['-v'], { encoding: 'utf8' })
  if (result.error) return null
  const first = `${result.stdout}${result.stderr}`.split('\n')[0]
  return first.replace(/\s*Copyright.*$/, '').trim()
}

function git (...args) {
  const result = spawnSync('git', args, { cwd: root, encoding: 'utf8' })
  return result.status === 0 ? result.stdout.trim() : null
}

function versionOf (name) {
  return require(`${name}/package.json`).version
}

function environment (wrk) {
  const cpus = os.cpus()
  return {
    cpu: cpus[0]?.model ?? 'unknown',
    cores: cpus.length,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    fastify: versionOf('fastify'),
    autocannon: versionOf('autocannon'),
    wrk,
    plugin: require('../package.json').version,
    commit: git('rev-parse', '--short', 'HEAD'),
    libChanged: (git('status', '--porcelain', '--', 'lib') ?? '') !== ''
  }
}

class Server {
  constructor (variant) {
    this.variant = variant
    this.port = 0
    this.stopping = false
    this.waiting = new Map()
    this.nextId = 0
    const logFile = path.join(tmpDir, `${variant.name}.log`)
    this.child = fork(path.join(__dirname, 'server.js'), [variant.name, logFile], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc']
    })
    this.ready = new Promise((resolve, reject) => {
      this.child.on('message', (message) => {
        if (message.type === 'ready') {
          this.port = message.port
          resolve()
        } else if (message.type === 'snapshot') {
          this.waiting.get(message.id)(message)
          this.waiting.delete(message.id)
        }
      })
      this.child.once('exit', (code, signal) => {
        if (this.stopping) return
        const err = new Error(`server ${variant.name} exited early (${code ?? signal})`)
        reject(err)
        console.error(err.message)
        process.exit(1)
      })
    })
  }

  snapshot (options = {}) {
    const id = this.nextId++
    return new Promise((resolve) => {
      this.waiting.set(id, resolve)
      this.child.send({ type: 'snapshot', id, ...options })
    })
  }

  stop () {
    this.stopping = true
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000)
      this.child.once('exit', () => {
        clearTimeout(timer)
        resolve()
      })
      this.child.send({ type: 'stop' })
    })
  }
}

function runAutocannon (port, seconds) {
  return new Promise((resolve, reject) => {
    // autocannon's own histogram keeps whole milliseconds; the raw times keep the fraction
    const latencies = []
    const options = { url: `http://127.0.0.1:${port}/`, connections: CONNECTIONS, duration: seconds }
    const instance = autocannon(options, (err, result) => {
      if (err) return reject(err)
      const latency = percentiles(latencies)
      resolve({
        requests: result['2xx'],
        rps: result['2xx'] / result.duration,
        latencyP50: latency.p50,
        latencyP99: latency.p99,
        errors: result.errors + result.timeouts + result.non2xx
      })
    })
    instance.on('response', (client, statusCode, bytes, responseTime) => {
      latencies.push(responseTime)
    })
  })
}

const UNITS = { us: 0.001, ms: 1, s: 1000, m: 60_000 }

function wrkLatency (stdout, percent) {
  const match = stdout.match(new RegExp(`^\\s*${percent}%\\s+([\\d.]+)(us|ms|s|m)\\s*$`, 'm'))
  return match === null ? NaN : Number(match[1]) * UNITS[match[2]]
}

async function runWrk (port, seconds) {
  const { stdout } = await execFileAsync('wrk', [
    '-t1', `-c${CONNECTIONS}`, `-d${seconds}s`, '--latency', `http://127.0.0.1:${port}/`
  ])
  const total = stdout.match(/(\d+) requests in ([\d.]+)(us|ms|s|m)/)
  const non2xx = stdout.match(/Non-2xx or 3xx responses: (\d+)/)
  const socketErrors = stdout.match(/Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/)
  const requests = Number(total[1]) - (non2xx === null ? 0 : Number(non2xx[1]))
  return {
    requests,
    rps: requests / (Number(total[2]) * UNITS[total[3]] / 1000),
    latencyP50: wrkLatency(stdout, 50),
    latencyP99: wrkLatency(stdout, 99),
    // read errors are the connections wrk cuts at the end of the run
    errors: (non2xx === null ? 0 : Number(non2xx[1])) +
      (socketErrors === null ? 0 : Number(socketErrors[1]) + Number(socketErrors[3]) + Number(socketErrors[4]))
  }
}

/** One load on one server, with the server's CPU time and request count around it. */
async function measure (server, tool, seconds, rate) {
  const before = await server.snapshot()
  const load = tool === 'wrk'
    ? await runWrk(server.port, seconds)
    : tool === 'paced' ? await runPaced(server.port, rate, seconds, CONNECTIONS) : await runAutocannon(server.port, seconds)
  const after = await server.snapshot({ settle: true, dispatch: server.variant === probe })
  const handled = after.handled - before.handled
  const result = {
    ...load,
    handled,
    cpuMicrosPerRequest: (after.cpuMicros - before.cpuMicros) / handled,
    dropped: after.stats === null ? 0 : after.stats.dropped - before.stats.dropped
  }
  if (after.dispatchMs !== undefined) result.dispatchMs = after.dispatchMs
  return result
}

function rotate (list, by) {
  const at = by % list.length
  return [...list.slice(at), ...list.slice(0, at)]
}

function fmt (value, digits = 0) {
  return Number.isFinite(value) ? value.toFixed(digits) : '-'
}

function runHeap (name, tasks) {
  return new Promise((resolve, reject) => {
    const child = fork(path.join(__dirname, 'heap.js'), [name, String(tasks), path.join(tmpDir, `heap-${name}.log`)], {
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

function summarize (rounds, tools) {
  const summary = {}
  for (const tool of tools) {
    summary[tool] = {}
    const of = (name, metric) => rounds.map((round) => round[tool][name][metric])
    for (const variant of variants) {
      const pair = variant.pair ?? 'plain'
      summary[tool][variant.name] = {
        pair,
        rps: spread(of(variant.name, 'rps')),
        latencyP50: spread(of(variant.name, 'latencyP50')),
        latencyP99: spread(of(variant.name, 'latencyP99')),
        cpuMicrosPerRequest: spread(of(variant.name, 'cpuMicrosPerRequest')),
        ratio: {
          rps: spread(paired(of(variant.name, 'rps'), of(pair, 'rps'))),
          latencyP99: spread(paired(of(variant.name, 'latencyP99'), of(pair, 'latencyP99'))),
          cpuMicrosPerRequest: spread(paired(of(variant.name, 'cpuMicrosPerRequest'), of(pair, 'cpuMicrosPerRequest')))
        },
        errors: of(variant.name, 'errors').reduce((a, b) => a + b, 0),
        dropped: of(variant.name, 'dropped').reduce((a, b) => a + b, 0)
      }
    }
    const cpuRatio = (a, b) => spread(paired(of(a, 'cpuMicrosPerRequest'), of(b, 'cpuMicrosPerRequest')))
    summary[tool].comparisons = {
      sacVsSetImmediateCpu: cpuRatio('sac-50ms', 'setimmediate-50ms'),
      sacVsOnResponseCpu: cpuRatio('sac-50ms', 'onresponse-50ms'),
      onResponseVsSetImmediateCpu: cpuRatio('onresponse-50ms', 'setimmediate-50ms')
    }
  }
  return summary
}

function summarizeFixedRate (fixed) {
  const summary = {}
  for (const name of FIXED_RATE_VARIANTS) {
    const runs = fixed.map((round) => round[name])
    summary[name] = {
      latencyP50: spread(runs.map((run) => run.latencyP50)),
      latencyP99: spread(runs.map((run) => run.latencyP99)),
      rps: spread(runs.map((run) => run.rps)),
      cpuMicrosPerRequest: spread(runs.map((run) => run.cpuMicrosPerRequest)),
      ratioLatencyP99: spread(paired(runs.map((run) => run.latencyP99), fixed.map((round) => round.plain.latencyP99)))
    }
  }
  const samples = fixed.flatMap((round) => round[probe.name].dispatchMs)
  const dispatch = percentiles(samples.filter((ms) => Number.isFinite(ms)).map((ms) => ms * 1000))
  summary.dispatchMicros = { ...dispatch, missing: samples.filter((ms) => !Number.isFinite(ms)).length }
  return summary
}

function targets (summary, fixedRate, heap, primary) {
  const s = summary[primary]
  const bare = heap.find((h) => h.name === 'bare').heapBytesPerTask
  const sacHeap = heap.find((h) => h.name === 'sac').heapBytesPerTask
  const list = [
    {
      id: 'idle-cpu',
      goal: 'plugin registered, route not deferring: CPU per request within 2% of plain',
      measured: s['plugin-idle'].ratio.cpuMicrosPerRequest,
      unit: 'x',
      met: s['plugin-idle'].ratio.cpuMicrosPerRequest.median <= 1.02
    },
    {
      id: 'sac-vs-setimmediate-cpu',
      goal: '`sendAndContinue` + 50 ms task: CPU per request at most 1.1x `send` + `setImmediate`',
      measured: s.comparisons.sacVsSetImmediateCpu,
      unit: 'x',
      met: s.comparisons.sacVsSetImmediateCpu.median <= 1.1
    },
    {
      id: 'sac-vs-onresponse-cpu',
      goal: '`sendAndContinue` + 50 ms task: CPU per request clearly below the `onResponse`-awaiting hook (whole interquartile range below 1x)',
      measured: s.comparisons.sacVsOnResponseCpu,
      unit: 'x',
      met: s.comparisons.sacVsOnResponseCpu.p75 < 1
    },
    {
      id: 'sac-p99',
      goal: '`sendAndContinue` + 50 ms task: p99 latency within 1.1x of plain (at saturation)',
      measured: s['sac-50ms'].ratio.latencyP99,
      unit: 'x',
      met: s['sac-50ms'].ratio.latencyP99.median <= 1.1
    },
    {
      id: 'sac-p99-fixed-rate',
      goal: 'the same at half of saturation (steady open-loop rate)',
      measured: fixedRate['sac-50ms'].ratioLatencyP99,
      unit: 'x',
      met: fixedRate['sac-50ms'].ratioLatencyP99.median <= 1.1
    },
    {
      id: 'heap',
      goal: 'heap per pending task under 1 KB beyond the task\'s own closure',
      measured: { median: sacHeap - bare },
      unit: 'B',
      met: sacHeap - bare < 1024
    },
    {
      id: 'dispatch',
      goal: 'dispatch latency p99 under 1 ms at half of saturation',
      measured: { median: fixedRate.dispatchMicros.p99 },
      unit: 'us',
      met: fixedRate.dispatchMicros.p99 < 1000
    }
  ]
  return list
}

async function main () {
  const startedAt = Date.now()
  fs.mkdirSync(tmpDir, { recursive: true })
  const wrk = wrkVersion()
  const tools = wrk === null ? ['autocannon'] : ['autocannon', 'wrk']
  const primary = tools.includes('wrk') ? 'wrk' : 'autocannon'
  if (wrk === null && !quick) plan.autocannonSeconds = 2
  const seconds = { autocannon: plan.autocannonSeconds, wrk: plan.wrkSeconds }
  const loadAverageStart = os.loadavg()
  log(`fastify-send-and-continue bench: ${quick ? 'quick' : 'full'} run, ${plan.rounds} rounds of ${variants.length} variants, ${tools.map((tool) => `${tool} ${seconds[tool]} s`).join(' + ')} per variant and round`)
  log(`load average at start: ${loadAverageStart.map((l) => l.toFixed(2)).join(' ')}`)

  const servers = [...variants, probe].map((variant) => new Server(variant))
  await Promise.all(servers.map((server) => server.ready))
  const byName = new Map(servers.map((server) => [server.variant.name, server]))
  const loaded = servers.filter((server) => server.variant !== probe)

  log('warm-up')
  for (const server of servers) {
    // the probe is only loaded at the end: give it the JIT warm-up the others get from the rounds
    await runAutocannon(server.port, server.variant === probe ? 4 * plan.warmupSeconds : plan.warmupSeconds)
    await server.snapshot({ settle: true, dispatch: server.variant === probe })
  }

  const rounds = []
  for (let r = 0; r < plan.rounds; r++) {
    const round = Object.fromEntries(tools.map((tool) => [tool, {}]))
    for (const server of rotate(loaded, r)) {
      for (const tool of tools) {
        const result = await measure(server, tool, seconds[tool])
        round[tool][server.variant.name] = result
        log(`round ${r + 1}/${plan.rounds} ${tool.padEnd(10)} ${server.variant.name.padEnd(18)} ${fmt(result.rps).padStart(6)} req/s  p99 ${fmt(result.latencyP99, 2).padStart(6)} ms  ${fmt(result.cpuMicrosPerRequest, 1).padStart(6)} us CPU/req`)
      }
    }
    rounds.push(round)
  }
  const summary = summarize(rounds, tools)

  // Half of what sac-50ms sustained under the primary tool: the rate of the dispatch-latency target.
  const rate = Math.round(summary[primary]['sac-50ms'].rps.median / 2)
  const fixed = []
  for (let r = 0; r < plan.fixedRateRounds; r++) {
    const round = {}
    for (const name of rotate(FIXED_RATE_VARIANTS, r)) {
      const result = await measure(byName.get(name), 'paced', plan.fixedRateSeconds, rate)
      round[name] = result
      log(`fixed rate ${rate} req/s ${name.padEnd(18)} ${fmt(result.rps).padStart(6)} req/s  p50 ${fmt(result.latencyP50, 3)} ms  p99 ${fmt(result.latencyP99, 3)} ms`)
    }
    fixed.push(round)
  }
  const fixedRate = { rate, ...summarizeFixedRate(fixed) }
  log(`dispatch latency: p50 ${fmt(fixedRate.dispatchMicros.p50, 1)} us, p99 ${fmt(fixedRate.dispatchMicros.p99, 1)} us over ${fixedRate.dispatchMicros.count} tasks`)

  const peak = {}
  for (const server of servers) {
    const last = await server.snapshot({ settle: true, dispatch: server.variant === probe })
    peak[server.variant.name] = { maxRssMiB: last.maxRssKb / 1024, stats: last.stats }
  }
  await Promise.all(servers.map((server) => server.stop()))

  const heap = []
  for (const name of HEAP_VARIANTS) {
    const result = await runHeap(name, plan.heapTasks)
    heap.push(result)
    log(`heap ${name.padEnd(13)} ${fmt(result.heapBytesPerTask).padStart(6)} B/task heap, ${fmt(result.rssBytesPerTask).padStart(6)} B/task RSS (${result.tasks} pending, loaded in ${result.loadMs} ms)`)
  }

  const loadAverageEnd = os.loadavg()
  log(`load average at end: ${loadAverageEnd.map((l) => l.toFixed(2)).join(' ')}`)
  const results = {
    generatedBy: quick ? 'BENCH_QUICK=1 npm run bench' : 'npm run bench',
    date: new Date(startedAt).toISOString(),
    durationSeconds: Math.round((Date.now() - startedAt) / 1000),
    quick,
    environment: { ...environment(wrk), loadAverageStart, loadAverageEnd },
    plan: { ...plan, fixedRateClient: 'paced', connections: CONNECTIONS, taskMs: TASK_MS, pluginOptions: { ...pluginOptions, concurrency: String(pluginOptions.concurrency) }, tools, primary },
    variants: variants.map(({ name, label, summary, pair }) => ({ name, label, summary, pair: pair ?? 'plain' })),
    summary,
    fixedRate,
    peak,
    heap,
    targets: targets(summary, fixedRate, heap, primary),
    rounds: rounds.map((round) => {
      // the per-round table without the raw dispatch samples
      return Object.fromEntries(Object.entries(round).map(([tool, byVariant]) => [tool, Object.fromEntries(
        Object.entries(byVariant).map(([name, m]) => [name, {
          rps: m.rps, latencyP50: m.latencyP50, latencyP99: m.latencyP99, cpuMicrosPerRequest: m.cpuMicrosPerRequest, handled: m.handled, errors: m.errors, dropped: m.dropped
        }]))]))
    })
  }
  for (const name of fs.readdirSync(tmpDir)) {
    if (name.endsWith('.log')) fs.rmSync(path.join(tmpDir, name))
  }
  const written = writeReports(results)
  log(`done in ${results.durationSeconds} s: ${written.join(', ')}`)
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
