'use strict'

// Renders bench results as BENCHMARKS.md and the README's bench block.
// `node bench/report.js [results.json]` re-renders them from a results file without a new run.

const fs = require('node:fs')
const path = require('node:path')

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

function kib (bytes) {
  return `${(bytes / 1024).toFixed(2)} KiB`
}

function loadTable (results, tool) {
  const summary = results.summary[tool]
  const rows = [
    '| Variant | req/s | req/s vs pair | p50 ms | p99 ms | p99 vs pair | CPU µs/req | CPU vs pair | peak RSS MiB |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |'
  ]
  for (const variant of results.variants) {
    const s = summary[variant.name]
    const pair = s.pair === 'plain' ? '' : ` (vs \`${s.pair}\`)`
    const trouble = s.errors > 0 || s.dropped > 0 ? ` (${s.errors} errors, ${s.dropped} dropped)` : ''
    rows.push(`| ${variant.label}${pair}${trouble} | ${withSpread(s.rps, (v) => num(v))} | ${withSpread(s.ratio.rps, ratio)} | ${num(s.latencyP50.median, 2)} | ${num(s.latencyP99.median, 2)} | ${withSpread(s.ratio.latencyP99, ratio)} | ${withSpread(s.cpuMicrosPerRequest, (v) => num(v, 1))} | ${withSpread(s.ratio.cpuMicrosPerRequest, ratio)} | ${num(results.peak[variant.name].maxRssMiB, 0)} |`)
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
    ['onResponseVsSetImmediateCpu', '`onResponse` hook / `send` + `setImmediate`']
  ]
  for (const [key, label] of named) {
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
    '| Variant | req/s | p50 ms | p99 ms | p99 vs plain | CPU µs/req |',
    '| --- | ---: | ---: | ---: | ---: | ---: |'
  ]
  for (const [name, label] of Object.entries(labels)) {
    const s = fixed[name]
    rows.push(`| ${label} | ${num(s.rps.median)} | ${num(s.latencyP50.median, 3)} | ${num(s.latencyP99.median, 3)} | ${withSpread(s.ratioLatencyP99, ratio)} | ${num(s.cpuMicrosPerRequest.median, 1)} |`)
  }
  return rows.join('\n')
}

function heapTable (results) {
  const bare = results.heap.find((h) => h.name === 'bare')
  const rows = [
    `| ${num(results.heap[0].tasks)} pending tasks | heap per task | beyond a bare pending async function | RSS per task |`,
    '| --- | ---: | ---: | ---: |'
  ]
  for (const h of results.heap) {
    const beyond = h.name === 'bare' ? '-' : kib(h.heapBytesPerTask - bare.heapBytesPerTask)
    rows.push(`| ${h.label} | ${kib(h.heapBytesPerTask)} | ${beyond} | ${kib(h.rssBytesPerTask)} |`)
  }
  return rows.join('\n')
}

function targetValue (target) {
  const format = target.unit === 'x'
    ? ratio
    : target.unit === 'B' ? kib : (v) => `${num(v, 0)} µs`
  return withSpread(target.measured, format)
}

function targetTable (results) {
  const rows = [
    `| Target (goal of the design; measured with ${results.plan.primary} unless said) | Measured: median (interquartile range) | Met |`,
    '| --- | ---: | :---: |'
  ]
  for (const target of results.targets) {
    rows.push(`| ${target.goal} | ${targetValue(target)} | ${target.met ? 'yes' : '**no**'} |`)
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
  const rows = [
    `| Target | baseline: ${baseline.date.slice(0, 16).replace('T', ' ')}, commit ${baseline.environment.commit}${baseline.environment.libChanged ? ' + uncommitted lib/' : ''} | this run: commit ${results.environment.commit}${results.environment.libChanged ? ' + uncommitted lib/' : ''} |`,
    '| --- | ---: | ---: |'
  ]
  for (const target of results.targets) {
    const before = baseline.targets.find((t) => t.id === target.id)
    // the baseline's fixed-rate phase used autocannon's bursty overallRate: not the same measurement
    const comparable = before !== undefined && (target.id !== 'sac-p99-fixed-rate' || baseline.plan.fixedRateClient === results.plan.fixedRateClient)
    const then = comparable ? `${targetValue(before)} ${before.met ? '(met)' : '(missed)'}` : '-'
    rows.push(`| ${target.goal} | ${then} | ${targetValue(target)} ${target.met ? '(met)' : '(missed)'} |`)
  }
  return `
## Against the baseline

The same targets in \`bench/results/baseline.json\`, an earlier full run on this machine kept for comparison
(before the hot-path changes in \`lib/\`). Different runs meet different background load: compare with care.

${rows.join('\n')}
`
}

function loadAverage (values) {
  return values.map((v) => v.toFixed(2)).join(' ')
}

function markdown (results) {
  const env = results.environment
  const plan = results.plan
  const control = results.summary[plan.primary]['plain-control'].ratio
  const tools = plan.tools.map((tool) => tool === 'wrk' ? env.wrk : `autocannon ${env.autocannon}`).join(' and ')
  const libNote = env.libChanged ? ', built from a working tree with uncommitted changes in `lib/`' : ''
  return `# Benchmarks

<!-- Generated by \`${results.generatedBy}\` (bench/run.js, bench/report.js) from bench/results/latest.json: edit the generator, not this file. -->

What the plugin costs next to the alternatives, measured in one run on one machine.
Regenerate with \`npm run bench\` (about ${Math.ceil(results.durationSeconds / 60)} minutes; \`BENCH_QUICK=1 npm run bench\` for a short trial that writes under \`bench/results/tmp/\` only).

| | |
| --- | --- |
| Date | ${results.date} (the run took ${results.durationSeconds} s) |
| Command | \`${results.generatedBy}\` |
| Machine | ${env.cpu}, ${env.cores} cores, ${env.memoryGiB} GiB, ${env.os} |
| Node.js | ${env.node} |
| Fastify | ${env.fastify} |
| Plugin | ${env.plugin} at commit ${env.commit}${libNote} |
| Load | ${tools}; ${plan.connections} connections to 127.0.0.1; ${plan.rounds} interleaved rounds; per round and variant ${plan.tools.map((tool) => `${plan[`${tool}Seconds`]} s of ${tool}`).join(' then ')} |
| Load average (1, 5, 15 min) | ${loadAverage(env.loadAverageStart)} at start, ${loadAverage(env.loadAverageEnd)} at end |
| Noise control | a second plain server measured ${withSpread(control.rps, ratio)} of plain's req/s and ${withSpread(control.cpuMicrosPerRequest, ratio)} of its CPU per request (${plan.primary}) |

## Targets

${targetTable(results)}
${baselineSection(results)}
## Under load: ${plan.primary}

Closed loop, ${plan.connections} connections, as fast as the server answers. Each cell is the median over
${plan.rounds} rounds, with the interquartile range in brackets; "vs pair" is the median of the round-by-round ratio
to \`plain\` (to \`plain-pino\` for the pino row), measured minutes apart at most.

${loadTable(results, plan.primary)}
${plan.tools.length > 1 ? `\n## Under load: ${plan.tools.filter((tool) => tool !== plan.primary).join(', ')}\n\nautocannon runs in the benchmark's own Node.js process and takes one of the two cores; it compresses differences in req/s.\n\n${loadTable(results, plan.tools.find((tool) => tool !== plan.primary))}\n` : ''}
## The task's cost: paired CPU ratios

${comparisonTable(results)}

## Half of saturation: latency and dispatch

A steady ${num(results.fixedRate.rate)} req/s, half of what \`sendAndContinue\` + 50 ms task sustained under ${plan.primary},
${plan.fixedRateRounds} rounds of ${plan.fixedRateSeconds} s per variant. The load comes from \`bench/paced.js\`, an open-loop client
that sends at an even pace over ${plan.connections} keep-alive sockets and times each request from its write to its status
line (autocannon's \`overallRate\` is a quota per connection and second, so it fires in bursts at full speed).

${fixedRateTable(results)}

Dispatch latency, from the response's \`finish\` event to the task's first line (\`performance.now()\` in the server,
${num(results.fixedRate.dispatchMicros.count)} tasks): p50 ${num(results.fixedRate.dispatchMicros.p50, 1)} µs, p99 ${num(results.fixedRate.dispatchMicros.p99, 1)} µs, max ${num(results.fixedRate.dispatchMicros.max, 1)} µs.

## Memory per pending task

${heapTable(results)}

Each row is its own process (\`node --expose-gc\`): the heap after two forced GCs with ${num(results.heap[0].tasks)} tasks
pending, minus the heap before, divided by the task count. Pending means running: every task has started and awaits
a promise that never settles. Requests come over 10 real keep-alive connections (pipelined). The bare row is the
same \`async\` function called ${num(results.heap[0].tasks)} times without Fastify: the task's own closure.
The plugin rows use \`{ concurrency: Infinity, timeout: 600000 }\` (the long timeout keeps the per-task timer without
letting it fire during the measurement).

## How it is measured

- Every variant runs in its own child process (\`bench/server.js\`) on 127.0.0.1, all started at once and idle
  while another one is loaded. Rounds interleave the variants (A B C … then B C … A, rotating the start).
- Each load is ${plan.autocannonSeconds} s of autocannon${plan.tools.includes('wrk') ? ` followed by ${plan.wrkSeconds} s of \`wrk -t1 -c50 --latency\`` : ''}. req/s and latency come from the load
  generator (autocannon's raw response times, not its whole-millisecond histogram); CPU comes from the server:
  \`process.cpuUsage()\` (user + system) before the load and after every task of the load has ended, divided by the
  requests its handler saw.
- Every variant answers \`{"hello":"world"}\` with the logger off, except the two pino rows
  (\`logger: { level: 'info', file }\`, a synchronous file destination).
- The 50 ms task is the same module-level \`async\` function everywhere (\`await setTimeout(50)\` from
  \`node:timers/promises\`). The plugin is registered with \`${JSON.stringify(plan.pluginOptions).replace(/"/g, '')}\` so no task waits or
  is dropped; its default \`timeout\` (30 s) stays, so each task still arms a timer.
- Peak RSS is each server's \`maxRSS\` over the whole run.
- Wall-clock req/s on this shared 2-core machine moves by tens of percent between identical servers; trust the CPU per
  request and the paired ratios first, and the noise-control row to see how noisy the run was.

## Variants

${results.variants.map((v) => `- **${v.label}** (\`${v.name}\`): ${v.summary}`).join('\n')}
`
}

function readmeBlock (results) {
  const env = results.environment
  const tool = results.plan.primary
  const s = results.summary[tool]
  const rows = ['plugin-idle', 'sac-noop', 'sac-50ms', 'setimmediate-50ms', 'onresponse-50ms', 'inline-50ms']
  const bare = results.heap.find((h) => h.name === 'bare').heapBytesPerTask
  const heapOf = (name) => results.heap.find((h) => h.name === name).heapBytesPerTask
  const table = [
    '| vs plain `reply.send()` (medians of paired ratios) | req/s | CPU per request | p99 latency, saturated |',
    '| --- | ---: | ---: | ---: |',
    ...rows.map((name) => {
      const v = results.variants.find((variant) => variant.name === name)
      return `| ${v.label} | ${ratio(s[name].ratio.rps.median)} | ${ratio(s[name].ratio.cpuMicrosPerRequest.median)} | ${ratio(s[name].ratio.latencyP99.median)} |`
    })
  ].join('\n')
  return `${START}
<!-- generated by \`npm run bench\` from bench/results/latest.json -->
${env.cores} cores (${env.cpu}), Node.js ${env.node}, Fastify ${env.fastify}, ${results.plan.rounds} interleaved rounds with ${tool}, ${results.date.slice(0, 10)}:

${table}

- CPU per request with a 50 ms task: ${ratio(s.comparisons.sacVsSetImmediateCpu.median)} of \`send\` + \`setImmediate\`, ${ratio(s.comparisons.sacVsOnResponseCpu.median)} of a route \`onResponse\` hook awaiting the task.
- Heap per pending task: ${kib(heapOf('sac'))} (${kib(heapOf('sac') - bare)} beyond a bare pending async function), against ${kib(heapOf('onresponse'))} for the \`onResponse\` hook and ${kib(heapOf('setimmediate'))} for \`setImmediate\`.
- From the response's \`finish\` to the task's start, at half of saturation: p50 ${num(results.fixedRate.dispatchMicros.p50, 0)} µs, p99 ${num(results.fixedRate.dispatchMicros.p99, 0)} µs.

Method, every variant, the targets and the noise control: [BENCHMARKS.md](BENCHMARKS.md).
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
  const out = results.quick ? path.join(__dirname, 'results', 'tmp') : null
  const json = out === null ? path.join(__dirname, 'results', 'latest.json') : path.join(out, 'quick.json')
  fs.mkdirSync(path.dirname(json), { recursive: true })
  fs.writeFileSync(json, `${JSON.stringify(results, null, 2)}\n`)
  written.push(path.relative(root, json))
  const md = out === null ? path.join(root, 'BENCHMARKS.md') : path.join(out, 'BENCHMARKS.md')
  fs.writeFileSync(md, markdown(results))
  written.push(path.relative(root, md))
  if (out === null && updateReadme(results, path.join(root, 'README.md'))) written.push('README.md')
  return written
}

module.exports = { writeReports, markdown, readmeBlock }

if (require.main === module) {
  const file = process.argv[2] ?? path.join(__dirname, 'results', 'latest.json')
  const results = JSON.parse(fs.readFileSync(file, 'utf8'))
  console.log(writeReports(results).join('\n'))
}
