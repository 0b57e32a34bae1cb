'use strict'

// The "Enqueue cost (durable jobs)" section of BENCHMARKS.md. The enqueue phase needs a
// redis-server and runs on its own (`npm run bench -- --only enqueue`), so its section is kept
// between markers: that run writes it into BENCHMARKS.md in place, and a full run, which does
// not measure it, keeps the one already there.

const { keptBlock, markers, writeBlock } = require('./sections')

const { start: START, end: END } = markers('enqueue')

function num (value, digits) {
  return Number.isFinite(value) ? value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits }) : '-'
}

function spreadText (s, digits, unit = '') {
  if (s === undefined || !Number.isFinite(s.median)) return '-'
  return `${num(s.median, digits)}${unit} (${num(s.p25, digits)}–${num(s.p75, digits)})`
}

function enqueueSection (results) {
  const e = results.enqueue
  const { enqueueVariants } = require('./variants')
  const rows = enqueueVariants.map((variant) => {
    const s = e.summary[variant.name]
    const trouble = s.errors > 0 ? ` (${s.errors} errors)` : ''
    return `| ${variant.label}${trouble} | ${spreadText(s.rps, 0)} | ${num(s.latencyP50.median, 2)} | ${spreadText(s.latencyP99, 2)} | ${spreadText(s.cpuMicrosPerRequest, 1)} | ${spreadText(s.redisCpuMicrosPerRequest, 1)} |`
  })
  const c = e.comparisons
  return `${START}
## Enqueue cost (durable jobs)

Measured on ${results.date.slice(0, 10)} with \`${results.generatedBy}\` (${e.rounds} interleaved rounds of ${e.seconds} s of autocannon per
variant, ${e.connections} connections, ${results.environment.cores} noisy cores, commit ${results.environment.commit}). The phase starts its own ${e.redis.replace(/ sha=.*$/, '')}
on a unix socket (\`--save '' --appendonly no --maxmemory-policy noeviction\`) and stops it at the end; no worker runs,
so the ${num(e.jobsWaiting, 0)} jobs added were still waiting at the end. Medians with the quartiles of the rounds in brackets;
server CPU as in the other wall-clock rows, redis-server's own CPU (from \`INFO cpu\`) beside it. Every row is at
saturation (50 connections, each sending as soon as it has its answer): the durable row's lower req/s and longer
latencies follow from its CPU per request (BullMQ's add through ioredis, plus Redis), so compare CPU per request first.

| Variant | req/s | p50 ms | p99 ms | server CPU µs/req | redis-server CPU µs/req |
| --- | ---: | ---: | ---: | ---: | ---: |
${rows.join('\n')}

Paired by round: a durable job costs ${spreadText(c.durableVsInProcessCpu, 2, 'x')} the server CPU per request of the in-process task
and ${spreadText(c.durableVsPlainCpu, 2, 'x')} that of plain \`send\`; its p99 is ${spreadText(c.durableVsInProcessP99, 2, 'x')} that of the
in-process task and ${spreadText(c.durableVsPlainP99, 2, 'x')} that of plain \`send\`. The answer waits for Redis to hold the job, so
that wait is in every durable latency figure.
${END}
`
}

/** The enqueue block of an existing BENCHMARKS.md, or `''`. */
function keptSection (file) {
  return keptBlock(file, 'enqueue')
}

/** Writes the enqueue block into BENCHMARKS.md: in place of the old one, or before `How it is measured`. */
function updateBenchmarks (results, file) {
  writeBlock(file, 'enqueue', enqueueSection(results))
}

module.exports = { enqueueSection, keptSection, updateBenchmarks }
