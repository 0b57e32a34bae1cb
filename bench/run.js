'use strict'

// `npm run bench`: the wall-clock phase (interleaved rounds under autocannon and wrk), the
// fixed-rate phase (p99 at equal load, dispatch latency), then the instruction-count phase
// (callgrind) with the heap phase beside it. Writes bench/results/latest.json, BENCHMARKS.md and
// the README's bench block.
//
//   --quick (BENCH_QUICK=1)    short run; writes only under bench/results/tmp/
//   --no-wrk (BENCH_NO_WRK=1)  autocannon only
//   --only callgrind,heap      only these phases (wallclock, callgrind, heap); writes only under
//                              bench/results/tmp/
//   --only enqueue             the enqueue cost of durable jobs (not part of a full run: needs a
//                              redis-server, which it starts itself; skipped when none is
//                              installed); writes its section into BENCHMARKS.md
//   --only engines             each durable engine against what a user would write instead
//                              (BullMQ enqueue and worker, SQLite, memory): about 10 minutes, not
//                              part of a full run; starts its own redis-server (its parts are
//                              skipped when none is installed); writes bench/results/engines.json
//                              and its section into BENCHMARKS.md
//   --variants a,b             instruction-count variants to run (names as printed), e.g.
//                              `--only callgrind --variants sac-100,setimmediate-100`; the rows
//                              without a target (sac-otel-100, sac-untraced-100,
//                              sac-metrics-off-100) run only when named
//   --requests N               measured requests per instruction-count variant (4000, and 24000
//                              with 2,500 pending): a young-generation collection comes about
//                              every 1,600 requests, so a longer window averages GC better
//   --before <git ref>         adds the `sac-before` instruction-count row: the plugin built at that
//                              commit (bench/before.js), against which `sac` shows what the
//                              working tree's changes cost, e.g. `--before main`
//   --js-names                 names the JavaScript in the instruction counts' cost centres
//                              (node --perf-basic-prof); it raises GC's cost, most with 2,500
//                              pending, so it makes a partial run: for finding, not for targets

const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { parseArgs } = require('node:util')
const { variants, probe, instructionVariants, pluginOptions, TASK_MS } = require('./variants')
const { Server } = require('./servers')
const { wrkVersion } = require('./load/wrk')
const { CONNECTIONS, warmUp, runRounds, summarize, compactRounds } = require('./phases/wallclock')
const { runFixedRate } = require('./phases/fixed-rate')
const { runHeap } = require('./phases/heap')
const { runCallgrind } = require('./phases/callgrind')
const { runEnqueue } = require('./phases/enqueue')
const { runEngines } = require('./phases/engines')
const { updateEngines } = require('./engines-report')
const { environment } = require('./environment')
const { targets } = require('./targets')
const tracing = require('./tracing')
const metrics = require('./metrics')
const { buildBefore } = require('./before')
const { writeReports, instructionText } = require('./report')

const PHASES = ['wallclock', 'callgrind', 'heap']
// selectable with --only, not part of a full run
const EXTRA_PHASES = ['enqueue', 'engines']
const tmpDir = path.join(__dirname, 'results', 'tmp')

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: process.env.BENCH_QUICK === '1' },
    'no-wrk': { type: 'boolean', default: process.env.BENCH_NO_WRK === '1' },
    only: { type: 'string' },
    variants: { type: 'string' },
    requests: { type: 'string' },
    before: { type: 'string' },
    'js-names': { type: 'boolean', default: false }
  }
})
const only = args.only === undefined ? PHASES : args.only.split(',')
for (const phase of only) if (![...PHASES, ...EXTRA_PHASES].includes(phase)) throw new Error(`--only: unknown phase ${phase} (one of ${[...PHASES, ...EXTRA_PHASES].join(', ')})`)
const partial = !PHASES.every((phase) => only.includes(phase)) || only.length > PHASES.length || args.variants !== undefined || args.requests !== undefined || args['js-names'] || args.before !== undefined
const quick = args.quick

const plan = quick
  ? { rounds: 2, autocannonSeconds: 1, wrkSeconds: 1, warmupSeconds: 0.5, fixedRateRounds: 1, fixedRateSeconds: 1, heapTasks: 10_000 }
  : { rounds: 5, autocannonSeconds: 1, wrkSeconds: 1, warmupSeconds: 1, fixedRateRounds: 3, fixedRateSeconds: 2, heapTasks: 100_000 }
// Instruction counts do not depend on timing, so two servers run at once, one per core.
const callgrindPlan = quick
  ? { parallel: 2, warmup: 3000, countedWarmup: 500, requests: 1000, heavyRequests: 3000 }
  : { parallel: 2, warmup: 5000, countedWarmup: 1000, requests: 4000, heavyRequests: 24000 }
if (args.requests !== undefined) {
  callgrindPlan.requests = callgrindPlan.heavyRequests = Number(args.requests)
  if (!(Number.isInteger(callgrindPlan.requests) && callgrindPlan.requests > 0)) throw new Error(`--requests should be a positive whole number, instead got ${args.requests}`)
}
callgrindPlan.jsNames = args['js-names']

function log (line) {
  process.stdout.write(`${line}\n`)
}

async function wallclock (wrk) {
  const tools = wrk === null ? ['autocannon'] : ['autocannon', 'wrk']
  const primary = tools.includes('wrk') ? 'wrk' : 'autocannon'
  if (wrk === null && !quick) plan.autocannonSeconds = 2
  const seconds = { autocannon: plan.autocannonSeconds, wrk: plan.wrkSeconds }
  log(`wall clock: ${plan.rounds} rounds of ${variants.length} variants, ${tools.map((tool) => `${tool} ${seconds[tool]} s`).join(' + ')} per variant and round`)

  const servers = [...variants, probe].map((variant) => new Server(variant, { logFile: path.join(tmpDir, `${variant.name}.log`) }))
  try {
    await Promise.all(servers.map((server) => server.ready))
    const byName = new Map(servers.map((server) => [server.variant.name, server]))
    const loaded = servers.filter((server) => server.variant !== probe)
    log('warm-up')
    await warmUp(servers, plan.warmupSeconds, probe)
    const rounds = await runRounds({ servers: loaded, tools, seconds, rounds: plan.rounds, log })
    const summary = summarize(rounds, tools, variants)
    // half of what sac-50ms sustained under the primary tool: the rate of the equal-load targets
    const rate = Math.round(summary[primary]['sac-50ms'].rps.median / 2)
    const fixedRate = await runFixedRate({ byName, rate, rounds: plan.fixedRateRounds, seconds: plan.fixedRateSeconds, probe, log })
    const peak = {}
    for (const server of servers) {
      const last = await server.snapshot({ settle: true })
      peak[server.variant.name] = { maxRssMiB: last.maxRssKb / 1024, stats: last.stats }
    }
    return { tools, primary, summary, fixedRate, peak, rounds: compactRounds(rounds) }
  } finally {
    await Promise.all(servers.map((server) => server.stop()))
  }
}

function selectedInstructionVariants () {
  const all = instructionVariants({ tracing: tracing.available(), metrics: metrics.available(), before: args.before !== undefined })
  // the rows without a target run only when named (--variants): a full run stays under 10 minutes
  if (args.variants === undefined) return all.filter((v) => !v.optional)
  const names = args.variants.split(',')
  const unknown = names.filter((name) => !all.some((v) => v.name === name))
  if (unknown.length > 0) throw new Error(`--variants: unknown ${unknown.join(', ')} (known: ${all.map((v) => v.name).join(', ')})`)
  return all.filter((v) => names.includes(v.name))
}

async function main () {
  const startedAt = Date.now()
  fs.mkdirSync(tmpDir, { recursive: true })
  const wrk = args['no-wrk'] ? null : wrkVersion()
  if (wrk === null && !args['no-wrk'] && only.includes('wallclock')) log('wrk is not installed: autocannon only (`apt-get install -y wrk` adds the primary load tool)')
  const loadAverageStart = os.loadavg()
  log(`fastify-send-and-continue bench: ${quick ? 'quick' : 'full'} run, phases ${only.join(', ')}`)
  log(`load average at start: ${loadAverageStart.map((l) => l.toFixed(2)).join(' ')}`)

  const results = {
    generatedBy: `${quick ? 'BENCH_QUICK=1 ' : ''}npm run bench${partial ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`,
    date: new Date(startedAt).toISOString(),
    quick,
    partial,
    phases: only
  }
  const timed = async (phase, run) => {
    const at = Date.now()
    const result = await run()
    log(`${phase}: ${Math.round((Date.now() - at) / 1000)} s`)
    return result
  }
  if (args.before !== undefined && only.includes('callgrind')) {
    const before = buildBefore(args.before, log)
    process.env.BENCH_BEFORE_DIST = before.dir
    results.before = { ref: args.before, commit: before.commit }
  }
  const wall = only.includes('wallclock') ? await timed('wall clock', () => wallclock(wrk)) : null
  // the heap phase counts bytes, not time: it runs beside the instruction counts
  const heapDone = only.includes('heap') ? timed('heap', () => runHeap({ tasks: plan.heapTasks, tmpDir, log })) : Promise.resolve(undefined)
  const callgrind = only.includes('callgrind') ? await timed('instruction counts', () => runCallgrind({ plan: callgrindPlan, log, variants: selectedInstructionVariants() })) : undefined
  const heap = await heapDone
  const engines = only.includes('engines') ? await timed('engines', () => runEngines({ quick, tmpDir, log })) : undefined
  const enqueue = only.includes('enqueue') ? await timed('enqueue', () => runEnqueue({ rounds: quick ? 2 : 3, seconds: 2, warmupSeconds: plan.warmupSeconds, tmpDir, log })) : undefined

  const loadAverageEnd = os.loadavg()
  log(`load average at end: ${loadAverageEnd.map((l) => l.toFixed(2)).join(' ')}`)
  Object.assign(results, {
    durationSeconds: Math.round((Date.now() - startedAt) / 1000),
    environment: { ...environment({ wrk, valgrind: callgrind?.valgrind ?? null }), loadAverageStart, loadAverageEnd },
    plan: {
      ...plan,
      fixedRateClient: 'paced',
      connections: CONNECTIONS,
      taskMs: TASK_MS,
      pluginOptions: { concurrency: String(pluginOptions.concurrency), maxQueued: String(pluginOptions.maxQueued) },
      tools: wall?.tools ?? [],
      primary: wall?.primary ?? null,
      callgrind: callgrindPlan
    },
    variants: variants.map(({ name, label, summary, pair }) => ({ name, label, summary, pair: pair ?? 'plain' })),
    summary: wall?.summary,
    fixedRate: wall?.fixedRate,
    peak: wall?.peak,
    callgrind,
    heap,
    enqueue,
    engines
  })
  results.targets = targets(results)
  if (callgrind?.variants !== undefined) log(`\n${instructionText(results)}`)
  for (const target of results.targets.filter((t) => t.met !== null)) {
    const verdict = target.met ? 'met' : 'MISSED'
    log(`target ${target.id.padEnd(16)} ${Number.isFinite(target.measured.median) ? target.measured.median.toFixed(target.unit === 'x' ? 3 : 0) : '-'}${target.unit} (limit ${target.limit}${target.unit}): ${verdict}`)
  }
  results.rounds = wall?.rounds
  for (const name of fs.readdirSync(tmpDir)) {
    if (name.endsWith('.log')) fs.rmSync(path.join(tmpDir, name))
  }
  const written = writeReports(results)
  if (engines !== undefined) written.push(...updateEngines(results))
  log(`done in ${results.durationSeconds} s: ${written.join(', ')}`)
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
