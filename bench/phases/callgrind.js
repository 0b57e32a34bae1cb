'use strict'

// Instruction counts per request under valgrind's callgrind: one server process per variant,
// a JIT warm-up with counting off, `callgrind_control -i on`, a counted warm-up (V8 retunes
// itself to the slower clock), `callgrind_control -z`, a fixed number of keep-alive requests
// from autocannon in this process, `callgrind_control -d`. Only the main thread's dump counts:
// `--single-threaded-gc` keeps garbage collection on it, and V8's compiler threads, whose work
// varies between identical runs, are left out (their share is shown apart).

const fs = require('node:fs')
const path = require('node:path')
const { Server } = require('../servers')
const { runAutocannon } = require('../load/autocannon')
const { ensureValgrind, control } = require('../callgrind/valgrind')
const { total, functions, gc, isJit, readPerfMap } = require('../callgrind/annotate')
const { HEAVY } = require('../variants')

const CONNECTIONS = 10

async function measureOne (variant, plan, dir) {
  const server = new Server(variant, {
    logFile: path.join(dir, `${variant.name}.log`),
    quiet: true,
    wrap: {
      execPath: 'valgrind',
      execArgv: ['--tool=callgrind', '--separate-threads=yes', '--instr-atstart=no', `--callgrind-out-file=${path.join(dir, `${variant.name}.%p`)}`],
      // --perf-basic-prof (--js-names): V8 writes where it compiled each function, which names the
      // JIT rows; it also makes garbage collection dearer (2,500 pending: GC 12.7k -> 15.4k per
      // request), so target runs go without
      nodeArgs: plan.jsNames ? ['--single-threaded-gc', '--perf-basic-prof'] : ['--single-threaded-gc']
    }
  })
  try {
    // where the phase's time goes (seconds): start, warm-up, counted warm-up, measured requests
    const seconds = []
    let at = Date.now()
    const lap = () => { seconds.push(Math.round((Date.now() - at) / 1000)); at = Date.now() }
    await server.ready
    lap()
    // the engines phase's variants answer POST with a small JSON body
    const post = variant.method === 'POST' ? { n: 1 } : undefined
    const load = (amount) => runAutocannon(server.port, { amount, connections: CONNECTIONS, post })
    await load(plan.warmup)
    lap()
    await control(server.pid, '-i', 'on')
    await load(plan.countedWarmup)
    lap()
    const before = await server.snapshot()
    await control(server.pid, '-z')
    const result = await load(requestsFor(variant, plan))
    await control(server.pid, '-d')
    const after = await server.snapshot()
    lap()
    return { before, after, seconds, errors: result.errors, files: dumps(dir, variant.name, server.pid), perfMap: plan.jsNames ? keepPerfMap(dir, variant.name, server.pid) : null }
  } finally {
    await server.kill()
  }
}

/** Moves V8's perf map of the server beside its dumps; `null` when V8 wrote none. */
function keepPerfMap (dir, name, pid) {
  const from = `/tmp/perf-${pid}.map`
  if (!fs.existsSync(from)) return null
  const to = path.join(dir, `${name}.map`)
  fs.copyFileSync(from, to)
  fs.rmSync(from, { force: true })
  return to
}

/** The first dump's per-thread files: thread 1 is node's main thread. */
function dumps (dir, name, pid) {
  const prefix = `${name}.${pid}.1-`
  const files = fs.readdirSync(dir).filter((file) => file.startsWith(prefix)).sort()
  return files.map((file) => path.join(dir, file))
}

function summarizeOne (variant, measured) {
  const { before, after, files, perfMap } = measured
  const requests = after.handled - before.handled
  const [main, ...others] = files
  const map = perfMap === null ? null : readPerfMap(perfMap)
  const inclusive = functions(main, true, map)
  const self = functions(main, false, map)
  const perRequest = (n) => n / requests / 1000
  const top = [...self].sort((a, b) => b[1] - a[1]).slice(0, 200).map(([fn, ir]) => [fn, perRequest(ir)])
  return {
    name: variant.name,
    base: variant.base,
    tracing: variant.tracing,
    metrics: variant.metrics,
    before: variant.before,
    label: variant.label,
    logger: variant.logger,
    pending: variant.pending,
    requests,
    errors: measured.errors,
    kinstrPerRequest: perRequest(total(main)),
    gcKinstrPerRequest: perRequest(gc(inclusive)),
    jitKinstrPerRequest: perRequest([...self].reduce((sum, [fn, ir]) => isJit(fn) ? sum + ir : sum, 0)),
    otherThreadsKinstrPerRequest: perRequest(others.reduce((sum, file) => sum + total(file), 0)),
    tasksPerRequest: (after.completed - before.completed) / requests,
    pendingAtStart: before.running,
    pendingAtEnd: after.running,
    top,
    file: path.relative(path.join(__dirname, '..', '..'), main)
  }
}

/**
 * Runs `worker` over `items`, `width` at a time, the dearest first (by `cost`), so that no lane is
 * left with a long variant once the others are done; the results keep the items' order.
 */
async function pool (items, width, cost, worker) {
  const results = new Array(items.length)
  const order = items.map((_, at) => at).sort((a, b) => cost(items[b]) - cost(items[a]))
  let next = 0
  async function lane () {
    while (next < order.length) {
      const at = order[next++]
      results[at] = await worker(items[at], at)
    }
  }
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, lane))
  return results
}

/** The per-request difference in self cost, function by function, largest first. */
function costCentres (variant, reference, count = 25) {
  const ref = new Map(reference.top)
  const seen = new Map(variant.top)
  const names = new Set([...seen.keys(), ...ref.keys()])
  return [...names]
    .map((fn) => ({ fn, kinstr: seen.get(fn) ?? 0, reference: ref.get(fn) ?? 0 }))
    .map((row) => ({ ...row, delta: row.kinstr - row.reference }))
    .sort((a, b) => b.delta - a.delta)
    .slice(0, count)
}

// With 2,500 tasks pending a mark-compact comes only every few thousand requests: those variants
// are measured over a longer window, or whether one lands in it decides their figure.
function requestsFor (variant, plan) {
  return variant.pending !== null && variant.pending >= HEAVY ? plan.heavyRequests : plan.requests
}

async function runCallgrind ({ plan, log, variants }) {
  const tool = ensureValgrind(log)
  if (tool.missing !== undefined) {
    log(`instruction counts: skipped, ${tool.missing}`)
    return { skipped: tool.missing }
  }
  if (tool.installed) log(`instruction counts: installed ${tool.version} from Debian`)
  const dir = path.join(__dirname, '..', 'results', 'tmp', 'callgrind')
  fs.rmSync(dir, { recursive: true, force: true })
  fs.mkdirSync(dir, { recursive: true })
  const startedAt = Date.now()
  log(`instruction counts: ${variants.length} variants under ${tool.version}, ${plan.parallel} at a time; per variant ${plan.warmup} requests warm-up, ${plan.countedWarmup} counted warm-up, ${plan.requests} measured (${plan.heavyRequests} with ${HEAVY} pending)`)
  // a pino row takes about twice as long as its logger-off pair
  const cost = (variant) => requestsFor(variant, plan) * (variant.logger ? 2 : 1)
  const rows = await pool(variants, plan.parallel, cost, async (variant) => {
    const measured = await measureOne(variant, plan, dir)
    const row = summarizeOne(variant, measured)
    log(`callgrind ${variant.name.padEnd(24)} ${row.kinstrPerRequest.toFixed(1).padStart(6)} kinstr/req (GC ${row.gcKinstrPerRequest.toFixed(1)}), ${row.pendingAtEnd} pending, ${row.tasksPerRequest.toFixed(2)} tasks/req; ${measured.seconds.join(' + ')} s (start, warm-up, counted warm-up, measured)`)
    return row
  })
  return {
    valgrind: tool.version,
    installed: tool.installed === true,
    seconds: Math.round((Date.now() - startedAt) / 1000),
    plan: { ...plan, connections: CONNECTIONS },
    variants: rows
  }
}

module.exports = { runCallgrind, costCentres }
