'use strict'

// Renders bench results as BENCHMARKS.md and the README's bench block.
// `node bench/report.js [results.json]` re-renders them from a results file without a new run.

const fs = require('node:fs')
const path = require('node:path')
const { instructionRatios } = require('./targets')
const { costCentres } = require('./phases/callgrind')
const { enqueueSection, keptSection, updateBenchmarks } = require('./enqueue-report')
const { keptEnginesSection } = require('./engines-report')
const { keptMetricsSection } = require('./metrics-report')

const root = path.join(__dirname, '..')
const START = '<!-- bench:start -->'
const END = '<!-- bench:end -->'

function num (value, digits = 0) {
  if (!Number.isFinite(value)) return '-'
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
}

function ratio (value) {
  return Number.isFinite(value) ? `${value.toFixed(2)}x` : '-'
}

/** `median (p25–p75)` */
function withSpread (s, format) {
  if (s === undefined || !Number.isFinite(s.median)) return '-'
  if (s.p25 === undefined) return format(s.median)
  return `${format(s.median)} (${format(s.p25)}–${format(s.p75)})`
}

function bytes (value) {
  return Number.isFinite(value) ? `${num(value)} B` : '-'
}

function loadTable (results, tool) {
  const summary = results.summary[tool]
  const rows = [
    '| Variant | req/s | req/s vs pair | p50 ms | p99 ms | p99 vs pair | CPU µs/req | CPU vs pair | tasks done/req | peak RSS MiB |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |'
  ]
  for (const variant of results.variants) {
    const s = summary[variant.name]
    const pair = s.pair === 'plain' ? '' : ` (vs \`${s.pair}\`)`
    const trouble = s.errors > 0 || s.dropped > 0 ? ` (${s.errors} errors, ${s.dropped} dropped)` : ''
    rows.push(`| ${variant.label}${pair}${trouble} | ${withSpread(s.rps, (v) => num(v))} | ${withSpread(s.ratio.rps, ratio)} | ${num(s.latencyP50.median, 2)} | ${num(s.latencyP99.median, 2)} | ${withSpread(s.ratio.latencyP99, ratio)} | ${withSpread(s.cpuMicrosPerRequest, (v) => num(v, 1))} | ${withSpread(s.ratio.cpuMicrosPerRequest, ratio)} | ${num(s.tasksPerRequest?.median, 2)} | ${num(results.peak[variant.name].maxRssMiB, 0)} |`)
  }
  return rows.join('\n')
}

function comparisonTable (results) {
  const tools = results.plan.tools
  const rows = [
    `| CPU per request, paired by round | ${tools.join(' | ')} |`,
    `| --- | ${tools.map(() => '---:').join(' | ')} |`
  ]
  const named = [
    ['sacVsSetImmediateCpu', '`sendAndContinue` + 50 ms task / `send` + `setImmediate`'],
    ['sacVsOnResponseCpu', '`sendAndContinue` + 50 ms task / `onResponse` hook'],
    ['onResponseVsSetImmediateCpu', '`onResponse` hook / `send` + `setImmediate`'],
    ['sacPinoVsSetImmediateLogCpu', 'with pino: `sendAndContinue` + 50 ms task / `setImmediate` logging one line per task']
  ]
  for (const [key, label] of named) {
    if (results.summary[tools[0]].comparisons[key] === undefined) continue
    rows.push(`| ${label} | ${tools.map((tool) => withSpread(results.summary[tool].comparisons[key], ratio)).join(' | ')} |`)
  }
  return rows.join('\n')
}

function fixedRateTable (results) {
  const fixed = results.fixedRate
  const labels = {
    plain: 'plain `reply.send()`',
    'sac-50ms': '`sendAndContinue` + 50 ms task',
    'sac-50ms-probe': '`sendAndContinue` + 50 ms task, dispatch probe',
    'setimmediate-50ms': '`send` + `setImmediate(task)`',
    'onresponse-50ms': 'route `onResponse` hook awaiting the task'
  }
  const rows = [
    '| Variant | req/s | p50 ms | p99 ms | p99 vs plain | p99 vs `setImmediate` | CPU µs/req | tasks done/req |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |'
  ]
  for (const [name, label] of Object.entries(labels)) {
    const s = fixed[name]
    rows.push(`| ${label} | ${num(s.rps.median)} | ${num(s.latencyP50.median, 3)} | ${num(s.latencyP99.median, 3)} | ${withSpread(s.ratioLatencyP99, ratio)} | ${withSpread(s.ratioLatencyP99VsSetImmediate, ratio)} | ${num(s.cpuMicrosPerRequest.median, 1)} | ${num(s.tasksPerRequest?.median, 2)} |`)
  }
  return rows.join('\n')
}

// Each plugin row's hand-written pair: the setImmediate variant with the same logger.
const HEAP_PAIRS = { sac: 'setimmediate', 'sac-pino': 'setimmediate-pino', 'setimmediate-log-pino': 'setimmediate-pino', 'setimmediate-pino': 'setimmediate', onresponse: 'setimmediate' }

function heapTable (results) {
  const of = (name) => results.heap.find((h) => h.name === name)
  const bare = of('bare')
  const rows = [
    `| ${num(results.heap[0].tasks)} pending tasks | heap per task | beyond a bare pending async function | beyond its \`setImmediate\` pair | RSS per task |`,
    '| --- | ---: | ---: | ---: | ---: |'
  ]
  for (const h of results.heap) {
    const beyondBare = h.name === 'bare' ? '-' : bytes(h.heapBytesPerTask - bare.heapBytesPerTask)
    const pair = of(HEAP_PAIRS[h.name])
    const beyondPair = pair === undefined ? '-' : `${bytes(h.heapBytesPerTask - pair.heapBytesPerTask)} (vs \`${pair.name}\`)`
    rows.push(`| ${h.label} (\`${h.name}\`) | ${bytes(h.heapBytesPerTask)} | ${beyondBare} | ${beyondPair} | ${bytes(h.rssBytesPerTask)} |`)
  }
  return rows.join('\n')
}

function targetValue (target) {
  const format = target.unit === 'x'
    ? (target.id.startsWith('instr') ? ratio3 : ratio)
    : target.unit === 'B' ? bytes : (v) => `${num(v, 0)} µs`
  return withSpread(target.measured, format)
}

function targetTable (results) {
  const rows = [
    '| Target | Measured | Met |',
    '| --- | ---: | :---: |'
  ]
  for (const target of results.targets) {
    rows.push(`| ${target.goal} | ${targetValue(target)} | ${target.met === null ? 'not measured' : target.met ? 'yes' : '**no**'} |`)
  }
  return rows.join('\n')
}

// bench/results/baseline.json: an earlier full run kept for comparison (copy latest.json there
// before changing the hot path), so a change's effect is generated like everything else.
function readBaseline (results) {
  const file = path.join(__dirname, 'results', 'baseline.json')
  if (!fs.existsSync(file)) return null
  const baseline = JSON.parse(fs.readFileSync(file, 'utf8'))
  return baseline.date === results.date ? null : baseline
}

function baselineSection (results) {
  const baseline = readBaseline(results)
  if (baseline === null) return ''
  const rows = []
  for (const target of results.targets) {
    const before = baseline.targets.find((t) => t.id === target.id && t.goal === target.goal)
    if (before === undefined || !Number.isFinite(before.measured.median)) continue
    rows.push(`| ${target.goal} | ${targetValue(before)} | ${targetValue(target)} |`)
  }
  if (rows.length === 0) return ''
  const commit = (r) => `commit ${r.environment.commit}${r.environment.libChanged ? ' + uncommitted lib/' : ''}`
  return `
## Against the baseline

The same targets in \`bench/results/baseline.json\`, an earlier full run on this machine kept for comparison
(copy \`latest.json\` there before changing the hot path). Instruction counts compare across runs; wall-clock figures
meet different background load.

| Target | baseline: ${baseline.date.slice(0, 16).replace('T', ' ')}, ${commit(baseline)} | this run: ${commit(results)} |
| --- | ---: | ---: |
${rows.join('\n')}
`
}

function loadAverage (values) {
  return values.map((v) => v.toFixed(2)).join(' ')
}

function ratio3 (value) {
  return Number.isFinite(value) ? `${value.toFixed(3)}x` : '-'
}

function instructionTable (callgrind) {
  const ratios = instructionRatios(callgrind)
  const rows = [
    '| Variant | pending | logger | kinstr/request | of which GC | without GC | V8 threads left out | tasks done/req | vs its pair |',
    '| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |'
  ]
  for (const v of callgrind.variants) {
    const pair = ratios.find((r) => r.name === v.name && !r.reference.startsWith('plain'))
    const idle = ratios.find((r) => r.name === v.name && r.reference.startsWith('plain'))
    const vs = pair ?? idle
    rows.push(`| ${v.label} (\`${v.name}\`) | ${v.pending === null ? '-' : num(v.pending)} | ${v.logger ? 'pino' : 'off'} | ${num(v.kinstrPerRequest, 1)} | ${num(v.gcKinstrPerRequest, 1)} | ${num(v.kinstrPerRequest - v.gcKinstrPerRequest, 1)} | ${num(v.otherThreadsKinstrPerRequest, 1)} | ${num(v.tasksPerRequest, 2)} | ${vs === undefined ? '-' : `${ratio3(vs.ratio)} of \`${vs.reference}\``} |`)
  }
  return rows.join('\n')
}

function withoutGc (callgrind, name) {
  const v = callgrind.variants.find((x) => x.name === name)
  return v === undefined ? NaN : v.kinstrPerRequest - v.gcKinstrPerRequest
}

function ratioTable (callgrind) {
  const rows = [
    '| Ratio of instructions per request | total | without GC |',
    '| --- | ---: | ---: |'
  ]
  for (const r of instructionRatios(callgrind)) {
    rows.push(`| \`${r.name}\` / \`${r.reference}\` | ${ratio3(r.ratio)} | ${ratio3(withoutGc(callgrind, r.name) / withoutGc(callgrind, r.reference))} |`)
  }
  return rows.join('\n')
}

/** A C++ cost centre shortened: no `v8::internal::`, no return type, no parameters; a C library's file without its path. */
function shortName (fn) {
  if (fn.startsWith('(JIT')) return fn
  // JavaScript: its tier, name and file, without the column
  if (fn.startsWith('JS ')) return fn.slice(3).replace(/:\d+$/, '')
  let name = fn.replace(/v8::internal::|heap::base::/g, '').replace(/\(anonymous namespace\)/g, '{anonymous}')
  // the parameter list: the last balanced (...) group, possibly followed by const and a recursion mark
  let depth = 0
  for (let i = name.length - 1; i >= 0; i--) {
    if (name[i] === ')') depth++
    else if (name[i] === '(' && --depth === 0) {
      name = name.slice(0, i) + name.slice(i).replace(/^\(.*\)( const)?/, '')
      break
    }
  }
  // the return type: whatever precedes the last space outside template brackets
  depth = 0
  for (let i = name.length - 1; i >= 0; i--) {
    if (name[i] === '>') depth++
    else if (name[i] === '<') depth--
    else if (name[i] === ' ' && depth === 0) {
      name = name.slice(i + 1)
      break
    }
  }
  return name.replace(/^[^:]*\/([^/:]+):/, '$1:')
}

/** The functions whose own instructions grow most from the hand-written variant to the plugin. */
function costCentreTable (callgrind, name, reference, count = 15) {
  const variant = callgrind.variants.find((v) => v.name === name)
  const ref = callgrind.variants.find((v) => v.name === reference)
  if (variant === undefined || ref === undefined) return ''
  const rows = [
    `| Function (own instructions, kinstr/request) | \`${name}\` | \`${reference}\` | difference |`,
    '| --- | ---: | ---: | ---: |'
  ]
  for (const row of costCentres(variant, ref, count)) {
    rows.push(`| \`${shortName(row.fn).replace(/\|/g, '\\|')}\` | ${num(row.kinstr, 2)} | ${num(row.reference, 2)} | ${row.delta >= 0 ? '+' : ''}${num(row.delta, 2)} |`)
  }
  return rows.join('\n')
}

function instructionSection (results) {
  const cg = results.callgrind
  if (cg === undefined) return ''
  if (cg.skipped !== undefined) return `\n## Instructions per request (callgrind)\n\nNot measured in this run: ${cg.skipped}.\n`
  const p = cg.plan
  const light = cg.variants.find((v) => v.base === 'sac' && !v.logger)?.name
  const lightRef = light?.replace(/^sac/, 'setimmediate')
  const heavy = cg.variants.find((v) => v.base === 'sac' && !v.logger && v.pending !== null && v.pending >= 1000 && v.tracing === undefined)?.name
  const heavyRef = heavy?.replace(/^sac/, 'setimmediate')
  const pino = cg.variants.find((v) => v.base === 'sac' && v.logger)?.name
  const pinoRef = pino?.replace(/^sac/, 'setimmediate-log')
  return `
## Instructions per request (callgrind)

${cg.valgrind}, ${p.parallel} servers at a time (${cg.seconds} s for the phase). Each variant's server runs under
\`valgrind --tool=callgrind --separate-threads=yes --instr-atstart=no\` with \`node --single-threaded-gc\`;
autocannon in the bench process sends ${num(p.warmup)} keep-alive requests over ${p.connections} connections with counting off (the JIT
warm-up), \`callgrind_control -i on\`, ${num(p.countedWarmup)} more (V8 adjusts to the slower clock), \`callgrind_control -z\`, then
the ${num(p.requests)} measured requests (${num(p.heavyRequests ?? p.requests)} with 2,500 pending: there garbage collection is most of the difference, and a young-generation collection comes only about every 1,600 requests, so one more or fewer in a shorter window moves the figure by several percent) and \`callgrind_control -d\`. Counted: node's main thread, which with
\`--single-threaded-gc\` does all garbage collection; V8's compiler threads are left out (their work varies between identical runs; shown
apart). "GC" is the inclusive cost of \`Heap::CollectGarbage\` and \`IncrementalMarking::Step\`. Each deferring variant
runs the same task, which ends when the N-th later task starts (N = ${[...new Set(cg.variants.map((v) => v.pending).filter((n) => n !== null))].map((n) => num(n)).join(' or ')}), so exactly N are
pending whatever the speed under valgrind (a 50 ms task leaves about 100 pending at 2,000 requests/s, a 1.7 s task about
2,500 at 1,500 requests/s). Logger off, or Fastify's pino logger at \`info\` writing to \`/dev/null\` through a synchronous
destination (\`pino.destination({ dest, sync: true })\`). With pino's default, asynchronous one, sonic-boom measures the
lines waiting for the write in flight again at every write (\`Buffer.byteLength\` of its whole pending chunk), a cost set
by how long that write lasts; under valgrind, which runs one thread at a time, that moved the hand-written
\`setimmediate-log-100-pino\` row from 124.6 to 135.0 kinstr/request between runs of the same code. The wall-clock rows
keep the default destination.

${instructionTable(cg)}

${ratioTable(cg)}

How far to trust a difference: in three runs on this machine the variants without the plugin (the same code
each time) repeated within 2.5% with the logger off (1% without GC) and within 6.5% with pino (4.5% without GC; measured with the asynchronous destination). Garbage collection moves most (one
young-generation collection more or less in a window), so compare the "without GC" column too, and repeat a run
(\`npm run bench -- --only callgrind --variants …\`, \`--requests 24000\` for a longer window: a young-generation
collection comes about every 1,600 requests) before trusting a change smaller than that.
${light === undefined
? ''
: `
### Where the extra instructions go: \`${light}\` against \`${lightRef}\`

The functions whose own instructions grow most, per request (\`callgrind_annotate\` on the dumps in
\`bench/results/tmp/callgrind/\`; ${p.jsNames ? 'with `--js-names`, JavaScript compiled by V8 is named from its perf map, `node --perf-basic-prof`, with its tier (`*` optimized, `^` baseline, `~` interpreted), name and file' : 'JavaScript compiled by V8 has no symbol and is one row here: `npm run bench -- --only callgrind --js-names` names it, function by function, at a higher GC cost'}):

${costCentreTable(cg, light, lightRef)}
`}${heavy === undefined
? ''
: `
### With 2,500 pending: \`${heavy}\` against \`${heavyRef}\`

Here garbage collection is most of the difference (the "GC" column). A young-generation collection comes about every
1,600 requests and a task stays pending for 2,500, so each pending task is copied once or twice (no mark-compact ran
in these windows): what the plugin keeps per pending task, on top of the task's own state, is copied with it. That is
the "beyond its \`setImmediate\` pair" column of the memory table below: the task's bookkeeping (its time limit,
signal, name, start time, list links, async context), the request's work (the \`ctx.request\` fields, the logger,
how the response closed), and following the task's promise, \`then\` with two bound callbacks, its derived promise and
reaction (192 B), for which JavaScript has no lighter way. The \`setImmediate\` variant keeps none of this and cannot
log, time out, abort or count its task.

${costCentreTable(cg, heavy, heavyRef)}
`}${pino === undefined
? ''
: `
### With pino: \`${pino}\` against \`${pinoRef}\`

The plugin writes two lines per deferring response (the response's close line and the task's line) where the
hand-written variant writes one short line, and a pino line is most of a request's cost here: that extra line, not the
bookkeeping, is the gap (\`JsonStringifier\` below: the task line's fields). With the default asynchronous destination
it grows under a backlog: sonic-boom measures its whole pending chunk (\`Buffer.byteLength\`, up to 16 KB) on every
write while one is in flight, so each line costs more the more lines wait; the synchronous destination of these
counts leaves that out.

${costCentreTable(cg, pino, pinoRef)}
`}`
}

function wallclockSections (results) {
  if (results.summary === undefined) return ''
  const plan = results.plan
  return `
## Under load: ${plan.primary}

Closed loop, ${plan.connections} connections, as fast as the server answers. Each cell is the median over
${plan.rounds} rounds, with the interquartile range in brackets; "vs pair" is the median of the round-by-round ratio
to \`plain\` (to \`plain-pino\` for the pino rows), measured minutes apart at most. "tasks done/req" is the tasks
that ran to completion per request handled: equal work is 1.00 for every variant with a task.

${loadTable(results, plan.primary)}
${plan.tools.length > 1 ? `\n## Under load: ${plan.tools.filter((tool) => tool !== plan.primary).join(', ')}\n\nautocannon runs in the benchmark's own Node.js process and takes one of the two cores; it compresses differences in req/s.\n\n${loadTable(results, plan.tools.find((tool) => tool !== plan.primary))}\n` : ''}
## The task's cost: paired CPU ratios

${comparisonTable(results)}

## Half of saturation: latency and dispatch

A steady ${num(results.fixedRate.rate)} req/s, half of what \`sendAndContinue\` + 50 ms task sustained under ${plan.primary},
${plan.fixedRateRounds} rounds of ${plan.fixedRateSeconds} s per variant. The load comes from \`bench/load/paced.js\`, an open-loop client
that sends at an even pace over ${plan.connections} keep-alive sockets and times each request from its write to its status
line (autocannon's \`overallRate\` is a quota per connection and second, so it fires in bursts at full speed).

${fixedRateTable(results)}

Dispatch latency, from the response's \`finish\` event to the task's first line (\`performance.now()\` in the server,
${num(results.fixedRate.dispatchMicros.count)} tasks): p50 ${num(results.fixedRate.dispatchMicros.p50, 1)} µs, p99 ${num(results.fixedRate.dispatchMicros.p99, 1)} µs, max ${num(results.fixedRate.dispatchMicros.max, 1)} µs.
`
}

function heapSection (results) {
  if (results.heap === undefined) return ''
  return `
## Memory per pending task

${heapTable(results)}

Each row is its own process (\`node --expose-gc\`): the heap after two forced GCs with ${num(results.heap[0].tasks)} tasks
pending, minus the heap before, divided by the task count. Pending means running: every task has started and awaits
a promise that never settles. Requests come over 10 real keep-alive connections (pipelined). The bare row is the
same \`async\` function called ${num(results.heap[0].tasks)} times without Fastify: the task's own closure. The pino rows write to a
file at \`info\`. The plugin rows use \`${JSON.stringify(results.plan.pluginOptions).replace(/"/g, '')}\` and \`timeout: 600000\` (a long
timeout keeps the per-task timer without letting it fire during the measurement).
`
}

/**
 * `kept`: the enqueue section of the BENCHMARKS.md being replaced, when this run did not measure
 * it; `keptEngines`: its engines section (written by the engines phase itself); `keptMetrics`:
 * its metrics section (written by bench/metrics-report.js from several runs).
 */
function markdown (results, kept = '', keptEngines = '', keptMetrics = '') {
  const env = results.environment
  const plan = results.plan
  const libNote = env.libChanged ? ', built from a working tree with uncommitted changes in `lib/`' : ''
  const control = results.summary?.[plan.primary]['plain-control'].ratio
  const tools = plan.tools.map((tool) => tool === 'wrk' ? env.wrk : `autocannon ${env.autocannon}`).join(' and ')
  const wallRows = results.summary === undefined
    ? ''
    : `| Load | ${tools}; ${plan.connections} connections to 127.0.0.1; ${plan.rounds} interleaved rounds; per round and variant ${plan.tools.map((tool) => `${plan[`${tool}Seconds`]} s of ${tool}`).join(' then ')} |
| Noise control | a second plain server measured ${withSpread(control.rps, ratio)} of plain's req/s and ${withSpread(control.cpuMicrosPerRequest, ratio)} of its CPU per request (${plan.primary}) |
`
  return `# Benchmarks

<!-- Generated by \`${results.generatedBy}\` (bench/run.js, bench/report.js) from bench/results/latest.json: edit the generator, not this file. -->

What the plugin costs next to writing the same thing by hand, measured in one run on one machine.
Regenerate with \`npm run bench\` (about ${Math.ceil(results.durationSeconds / 60)} minutes); \`npm run bench -- --only callgrind\` runs the
instruction counts alone (\`--variants sac-100,setimmediate-100\` for two of them), \`--quick\` a short trial; both write under
\`bench/results/tmp/\` only. Two phases need a redis-server (started by the phase itself) and are not part of a full run:
\`npm run bench -- --only enqueue\` (the enqueue cost of a durable job) and \`npm run bench -- --only engines\` (about
10 minutes: every engine against what a user would write instead, see "Engines side by side"); each writes its own section
here. Three instruction-count rows have no target and are left out of a full run, to keep it under 10 minutes: the tracing
rows and metrics with \`metrics: false\` (\`npm run bench -- --only callgrind --variants
sac-100,sac-otel-100,sac-untraced-100,sac-metrics-off-100\`, about 2 minutes; the last is also in "Metrics cost" below).

| | |
| --- | --- |
| Date | ${results.date} (the run took ${results.durationSeconds} s) |
| Command | \`${results.generatedBy}\` |
| Machine | ${env.cpu}, ${env.cores} cores, ${env.memoryGiB} GiB, ${env.os} |
| Node.js | ${env.node} |
| Fastify | ${env.fastify} (pino ${env.pino}) |
| Plugin | ${env.plugin} at commit ${env.commit}${libNote} |
| Instruction counts | ${env.valgrind ?? 'not measured'} |
${wallRows}| Load average (1, 5, 15 min) | ${loadAverage(env.loadAverageStart)} at start, ${loadAverage(env.loadAverageEnd)} at end |

## Which figures to trust for what

- **Instruction counts** (callgrind) do not depend on what else the machine does: use them for the targets and
  for differences of a few percent (they repeat within 2.5% with the logger off, 6.5% with pino; see below).
  They count work, not time: no cache misses, no system calls, no waiting.
- **Wall-clock** figures (req/s, latency, CPU µs per request) on this shared 2-core machine move by tens of
  percent between identical servers (see the noise-control row): read their paired ratios as indicative, for
  large effects and for latency, which instructions cannot show.
- **Heap per pending task** counts bytes and repeats within a few bytes, logger off and with pino (whose lines go
  to a synchronous file destination in this phase, so the log stream's buffer is not counted as task memory).

## Targets

${targetTable(results)}
${baselineSection(results)}${instructionSection(results)}${heapSection(results)}${wallclockSections(results)}
${results.enqueue?.summary === undefined ? kept : `${enqueueSection(results)}\n`}${keptMetrics}${keptEngines}## How it is measured

- Every variant runs in its own child process (\`bench/server.js\`) on 127.0.0.1. In the wall-clock phase all are
  started at once and idle while another one is loaded; rounds interleave the variants (A B C … then B C … A).
- Each wall-clock load is ${plan.autocannonSeconds} s of autocannon${plan.tools.includes('wrk') ? ` followed by ${plan.wrkSeconds} s of \`wrk -t1 -c50 --latency\`` : ''}. req/s and latency come from the load
  generator (autocannon's raw response times, not its whole-millisecond histogram); CPU comes from the server:
  \`process.cpuUsage()\` (user + system) before the load and after every task of the load has ended, divided by the
  requests its handler saw.
- Every variant answers \`{"hello":"world"}\` with the logger off, except the pino rows (\`logger: { level: 'info', file }\`,
  a synchronous destination).
- The wall-clock task is the same module-level \`async\` function everywhere (\`await setTimeout(${plan.taskMs})\` from
  \`node:timers/promises\`). The plugin is registered with \`${JSON.stringify(plan.pluginOptions).replace(/"/g, '')}\` so no task waits or
  is dropped; its default \`timeout\` (30 s) stays, so each task still arms a timer.
- The hand-written variant with pino logs one line per task through \`request.log\` when the task ends (its name and
  duration; an error line when it fails): what a careful user writes, and the like-for-like pair of the plugin with pino.
- Peak RSS is each server's \`maxRSS\` over the wall-clock phase.
${results.summary === undefined
? ''
: `
## Variants

${results.variants.map((v) => `- **${v.label}** (\`${v.name}\`): ${v.summary}`).join('\n')}
`}`
}

function readmeBlock (results) {
  const env = results.environment
  const cg = results.callgrind
  const ratios = new Map(instructionRatios(cg).map((r) => [r.id, r.ratio]))
  const heapOf = (name) => results.heap.find((h) => h.name === name).heapBytesPerTask
  const tool = results.plan.primary
  const s = results.summary[tool]
  const lines = []
  if (ratios.size > 0) {
    lines.push(
      '| Instructions per request (callgrind), against writing it by hand | logger off | pino on |',
      '| --- | ---: | ---: |',
      `| plugin registered, route not deferring / plain \`reply.send()\` | ${ratio(ratios.get('plugin-idle/plain'))} | ${ratio(ratios.get('plugin-idle-pino/plain-pino'))} |`,
      `| \`sendAndContinue\` + task / \`send\` + \`setImmediate(task)\` (logging one line per task with pino), 100 pending | ${ratio(ratios.get('sac-100/setimmediate-100'))} | ${ratio(ratios.get('sac-100-pino/setimmediate-log-100-pino'))} |`,
      `| the same, 2,500 pending | ${ratio(ratios.get('sac-2500/setimmediate-2500'))} | ${ratio(ratios.get('sac-2500-pino/setimmediate-log-2500-pino'))} |`,
      ''
    )
  }
  return `${START}
<!-- generated by \`npm run bench\` from bench/results/latest.json -->
${env.cores} cores (${env.cpu}), Node.js ${env.node}, Fastify ${env.fastify}, ${results.date.slice(0, 10)}, commit ${env.commit}:

${lines.join('\n')}
- Heap per pending task beyond \`send\` + \`setImmediate\`: ${bytes(heapOf('sac') - heapOf('setimmediate'))} with the logger off, ${bytes(heapOf('sac-pino') - heapOf('setimmediate-pino'))} with pino.
- Wall clock (indicative on this shared machine), ${tool}, medians of paired ratios: CPU per request with a 50 ms task ${ratio(s.comparisons.sacVsSetImmediateCpu.median)} of \`send\` + \`setImmediate\`; p99 latency at half of saturation ${ratio(results.fixedRate['sac-50ms'].ratioLatencyP99VsSetImmediate.median)} of it; from the response's \`finish\` to the task's start p99 ${num(results.fixedRate.dispatchMicros.p99, 0)} µs.

Method, every variant, the targets and which figures to trust for what: [BENCHMARKS.md](BENCHMARKS.md).
${END}`
}

/** Replaces the README's bench block; leaves the README alone when it has no markers. */
function updateReadme (results, file) {
  const text = fs.readFileSync(file, 'utf8')
  const start = text.indexOf(START)
  const end = text.indexOf(END)
  if (start === -1 || end === -1 || end < start) return false
  fs.writeFileSync(file, text.slice(0, start) + readmeBlock(results) + text.slice(end + END.length))
  return true
}

function writeReports (results) {
  const written = []
  const out = results.quick || results.partial ? path.join(__dirname, 'results', 'tmp') : null
  const json = out === null ? path.join(__dirname, 'results', 'latest.json') : path.join(out, results.partial ? 'partial.json' : 'quick.json')
  fs.mkdirSync(path.dirname(json), { recursive: true })
  fs.writeFileSync(json, `${JSON.stringify(results, null, 2)}\n`)
  written.push(path.relative(root, json))
  const md = out === null ? path.join(root, 'BENCHMARKS.md') : path.join(out, 'BENCHMARKS.md')
  const main = path.join(root, 'BENCHMARKS.md')
  fs.writeFileSync(md, markdown(results, keptSection(main), keptEnginesSection(main), keptMetricsSection(main)))
  written.push(path.relative(root, md))
  // the enqueue phase runs on its own: its section goes into BENCHMARKS.md in place
  if (out !== null && results.enqueue?.summary !== undefined) {
    updateBenchmarks(results, main)
    written.push('BENCHMARKS.md (enqueue section)')
  }
  if (out === null && updateReadme(results, path.join(root, 'README.md'))) written.push('README.md')
  return written
}

/** The instruction-count tables as text, for the console at the end of a run. */
function instructionText (results) {
  const cg = results.callgrind
  if (cg === undefined || cg.skipped !== undefined) return ''
  return `${instructionTable(cg)}\n\n${ratioTable(cg)}\n`
}

module.exports = { writeReports, markdown, readmeBlock, instructionText }

if (require.main === module) {
  const file = process.argv[2] ?? path.join(__dirname, 'results', 'latest.json')
  const results = JSON.parse(fs.readFileSync(file, 'utf8'))
  console.log(writeReports(results).join('\n'))
}
