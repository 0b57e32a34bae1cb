'use strict'

// The "Engines side by side" section of BENCHMARKS.md and bench/results/engines.json. The engines
// phase runs on its own (`npm run bench -- --only engines`), so its section is kept between
// markers: that run writes it in place, a full run keeps the one already there. A quick run
// writes only under bench/results/tmp/.

const fs = require('node:fs')
const path = require('node:path')

const START = '<!-- engines:start -->'
const END = '<!-- engines:end -->'
const BEFORE = '## How it is measured'
const root = path.join(__dirname, '..')

function num (value, digits = 0) {
  return Number.isFinite(value) ? value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits }) : '-'
}

function spreadText (s, digits, unit = '') {
  if (s === undefined || !Number.isFinite(s.median)) return '-'
  return `${num(s.median, digits)}${unit} (${num(s.p25, digits)}–${num(s.p75, digits)})`
}

function signed (s, digits, unit) {
  if (s === undefined || !Number.isFinite(s.median)) return '-'
  const sign = (v) => `${v >= 0 ? '+' : ''}${num(v, digits)}`
  return `${sign(s.median)}${unit} (${sign(s.p25)}–${sign(s.p75)})`
}

/** Every target of issue 18 with what this run measured (medians of paired ratios). */
function engineTargets (e) {
  const list = []
  const web = e.web.summary
  const add = (goal, measured, text, met) => list.push({ goal, measured, text, met })
  const bull = web['eng-bullmq']?.vsPair
  if (bull !== undefined) {
    add('BullMQ enqueue: web-process CPU/request ≤ 1.0× hand-written (logger off)', bull.cpuMicrosPerRequest.median, spreadText(bull.cpuMicrosPerRequest, 2, '×'), bull.cpuMicrosPerRequest.median <= 1)
    add('BullMQ enqueue: redis-server CPU/request ≤ 1.0× hand-written', bull.redisCpuMicrosPerRequest.median, spreadText(bull.redisCpuMicrosPerRequest, 2, '×'), bull.redisCpuMicrosPerRequest.median <= 1)
    add('BullMQ enqueue: req/s ≥ 1.0× hand-written', bull.rps.median, spreadText(bull.rps, 2, '×'), bull.rps.median >= 1)
    add('BullMQ enqueue: p99 ≤ hand-written + 1 ms', bull.latencyP99Ms.median, signed(bull.latencyP99Ms, 2, ' ms'), bull.latencyP99Ms.median <= 1)
  }
  const instr = (name) => e.instructions?.variants?.find((v) => v.name === name)
  const counted = (goal, name, limit) => {
    const row = instr(name)
    if (row !== undefined) add(`${goal} — instructions/request (callgrind)`, row.ratio, `${num(row.ratio, 3)}× (without GC ${num(row.ratioWithoutGc, 3)}×)`, limit === null ? null : row.ratio <= limit)
  }
  counted('BullMQ enqueue: web-process CPU/request ≤ 1.0× hand-written (logger off)', 'eng-bullmq', 1)
  const pino = web['eng-bullmq-pino']?.vsPair
  if (pino !== undefined) {
    add('with pino at info: web CPU/request vs hand-written logging one line per job (shown, no target)', pino.cpuMicrosPerRequest.median, spreadText(pino.cpuMicrosPerRequest, 2, '×'), null)
    add('with pino at info: req/s vs hand-written logging one line per job (shown, no target)', pino.rps.median, spreadText(pino.rps, 2, '×'), null)
  }
  if (e.workers.summary !== undefined) {
    for (const [concurrency, w] of Object.entries(e.workers.summary)) {
      add(`Worker throughput, concurrency ${concurrency}: \`createWorker()\` ≥ 0.9× hand-written \`Worker\``, w.ratio.median, `${spreadText(w.ratio, 2, '×')}: ${num(w.plugin.jobsPerSecond.median)} against ${num(w.handwritten.jobsPerSecond.median)} jobs/s`, w.ratio.median >= 0.9)
    }
  }
  counted('with pino at info: against hand-written logging one line per job (shown, no target)', 'eng-bullmq-pino', null)
  const sqlite = web['eng-sqlite']?.vsPair
  add('SQLite (`work: false`): web CPU/request ≤ 2× the in-process task', sqlite.cpuMicrosPerRequest.median, spreadText(sqlite.cpuMicrosPerRequest, 2, '×'), sqlite.cpuMicrosPerRequest.median <= 2)
  counted('SQLite (`work: false`): web CPU/request ≤ 2× the in-process task', 'eng-sqlite', 2)
  const normal = e.endToEnd.summary['e2e-sqlite-normal']
  add('SQLite end to end (`work: true`, `synchronous: \'normal\'`): ≥ 5,000 jobs/s completed', normal.completedPerSecond.median, `${spreadText(normal.completedPerSecond, 0, '/s')}`, normal.completedPerSecond.median >= 5000)
  const full = e.endToEnd.summary['e2e-sqlite-full']
  add('SQLite end to end, `synchronous: \'full\'` (shown, no target)', full.completedPerSecond.median, `${spreadText(full.completedPerSecond, 0, '/s')}`, null)
  const memory = web['eng-memory']?.vsPair
  add('Memory engine: web CPU/request ≤ 1.1× the in-process task', memory.cpuMicrosPerRequest.median, spreadText(memory.cpuMicrosPerRequest, 2, '×'), memory.cpuMicrosPerRequest.median <= 1.1)
  counted('Memory engine: web CPU/request ≤ 1.1× the in-process task', 'eng-memory', 1.1)
  return list
}

function webTable (e, names) {
  const { engineVariants } = require('./variants')
  const rows = [
    '| Variant | req/s | p99 ms | web CPU µs/req | redis-server CPU µs/req | compared with | web CPU ratio | redis CPU ratio | req/s ratio | p99 difference |',
    '| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |'
  ]
  for (const variant of engineVariants.filter((v) => names.includes(v.name))) {
    const s = e.web.summary[variant.name]
    if (s === undefined) continue
    const trouble = s.errors > 0 ? ` (${s.errors} errors)` : ''
    const v = s.vsPair
    rows.push(`| ${variant.label}${trouble} | ${spreadText(s.rps, 0)} | ${spreadText(s.latencyP99, 2)} | ${spreadText(s.cpuMicrosPerRequest, 1)} | ${spreadText(s.redisCpuMicrosPerRequest, 1)} | ${v === undefined ? '-' : `\`${s.pair}\``} | ${v === undefined ? '-' : spreadText(v.cpuMicrosPerRequest, 2, '×')} | ${v === undefined ? '-' : spreadText(v.redisCpuMicrosPerRequest, 2, '×')} | ${v === undefined ? '-' : spreadText(v.rps, 2, '×')} | ${v === undefined ? '-' : signed(v.latencyP99Ms, 2, ' ms')} |`)
  }
  return rows.join('\n')
}

function instructionTable (x) {
  if (x === undefined) return ''
  if (x.skipped !== undefined) return `Not measured: ${x.skipped}.`
  const rows = [
    '| Variant | kinstr/request | of which GC | compared with | ratio | ratio without GC |',
    '| --- | ---: | ---: | --- | ---: | ---: |'
  ]
  for (const v of x.variants) {
    rows.push(`| \`${v.name}\`${v.errors > 0 ? ` (${v.errors} errors)` : ''} | ${num(v.kinstrPerRequest, 1)} | ${num(v.gcKinstrPerRequest, 1)} | ${v.pair === undefined ? '-' : `\`${v.pair}\``} | ${num(v.ratio, 3)}× | ${num(v.ratioWithoutGc, 3)}× |`)
  }
  const bull = x.variants.find((v) => v.name === 'eng-bullmq')
  const grows = bull === undefined || bull.grows.length === 0
    ? ''
    : `

Where \`eng-bullmq\` spends more than \`eng-handwritten\` (own instructions per request, kinstr; V8's compiled JavaScript is one
row without a name here, see "Profiles" for it by function):

| Function | \`eng-bullmq\` | \`eng-handwritten\` | difference |
| --- | ---: | ---: | ---: |
${bull.grows.map((g) => `| \`${g.fn.replace(/\|/g, '\\|').slice(0, 90)}\` | ${num(g.kinstr, 2)} | ${num(g.reference, 2)} | ${g.delta >= 0 ? '+' : ''}${num(g.delta, 2)} |`).join('\n')}`
  return `${x.valgrind}, each server under \`valgrind --tool=callgrind\` with \`node --single-threaded-gc\` (as in "Instructions per
request"): ${num(x.plan.warmup)} requests uncounted, ${num(x.plan.countedWarmup)} counted warm-up, then ${num(x.plan.requests)} measured, POST, ${x.plan.connections} connections. Under valgrind a
server answers about 1,000 requests/s, so the group commit gathers fewer responses per batch than at full speed.
Only the web process's main thread is counted.

${rows.join('\n')}${grows}`
}

function workerTable (w) {
  if (w.summary === undefined) return `Not measured: ${w.skipped}`
  const rows = [
    '| Concurrency | worker | jobs/s | worker CPU µs/job | redis-server CPU µs/job | `createWorker()` / hand-written jobs/s |',
    '| ---: | --- | ---: | ---: | ---: | ---: |'
  ]
  for (const [concurrency, s] of Object.entries(w.summary)) {
    rows.push(`| ${concurrency} | \`createWorker()\` | ${spreadText(s.plugin.jobsPerSecond, 0)} | ${spreadText(s.plugin.cpuMicrosPerJob, 1)} | ${spreadText(s.plugin.redisCpuMicrosPerJob, 1)} | ${spreadText(s.ratio, 2, '×')} |`)
    rows.push(`| ${concurrency} | hand-written \`Worker\`, one line per job | ${spreadText(s.handwritten.jobsPerSecond, 0)} | ${spreadText(s.handwritten.cpuMicrosPerJob, 1)} | ${spreadText(s.handwritten.redisCpuMicrosPerJob, 1)} | |`)
  }
  return rows.join('\n')
}

function endToEndTable (x) {
  const { sqliteEndToEndVariants } = require('./variants')
  const rows = [
    '| Variant | requests answered/s | jobs completed/s | backlog at the window\'s end | process CPU µs/job | p99 ms |',
    '| --- | ---: | ---: | ---: | ---: | ---: |'
  ]
  for (const variant of sqliteEndToEndVariants) {
    const s = x.summary[variant.name]
    const trouble = s.errors > 0 ? ` (${s.errors} errors)` : ''
    rows.push(`| ${variant.label}${trouble}${s.allCompleted ? '' : ' (**not every job completed after the load**)'} | ${spreadText(s.answeredPerSecond, 0)} | ${spreadText(s.completedPerSecond, 0)} | ${spreadText(s.backlogAtEnd, 0)} | ${spreadText(s.cpuMicrosPerJob, 1)} | ${spreadText(s.latencyP99, 2)} |`)
  }
  return rows.join('\n')
}

function enginesSection (results) {
  const e = results.engines
  const env = results.environment
  const targets = engineTargets(e)
  const names = (logger) => e.web.variants.filter((name) => name.endsWith('-pino') === logger)
  return `${START}
## Engines side by side (durable work, issue 18)

\`npm run bench -- --only engines\` (about 5 minutes; not part of a full run), measured on ${results.date.slice(0, 10)}, commit
${env.commit}${env.libChanged ? ' + uncommitted lib/' : ''}: ${env.cores} noisy cores (${env.cpu}), ${env.node}, ${e.redis === null ? 'no redis-server (its parts skipped)' : e.redis.replace(/ sha=.*$/, '')} started by the
phase on a unix socket (\`--save '' --appendonly no --maxmemory-policy noeviction\`), SQLite files in a temp dir on local
disk (\`${e.sqliteDir}\`). Medians with the quartiles of the rounds in brackets; ratios are paired by round (each round
runs every variant once, rotated), so they compare better than the absolute figures, which move with the machine's load.
The load generator (autocannon, in the bench process) shares the 2 cores with the servers and Redis: every row is at
saturation, so req/s and p99 follow from CPU per request.

### Targets

| Target | Measured | Met |
| --- | ---: | :---: |
${targets.map((t) => `| ${t.goal} | ${t.text} | ${t.met === null ? 'shown' : t.met ? 'yes' : '**no**'} |`).join('\n')}

### 1. Web side: BullMQ against a hand-written \`queue.add()\`, SQLite and memory against the in-process task

${e.web.rounds} interleaved rounds of ${e.web.seconds} s of autocannon per variant, POST \`{"n":1}\`, ${e.web.connections} keep-alive connections, no
worker running (the jobs stay in Redis and in the SQLite file). The hand-written variant has its own \`Queue\` on an
ioredis client with defaults, and awaits \`queue.add('bench-job', { n }, { attempts: 1, removeOnComplete: { age: 3600,
count: 10000 }, removeOnFail: { age: 604800, count: 100000 } })\` (the plugin's bounds) before answering. Web CPU is the
server process's own (user + system); redis-server's from \`INFO cpu\` over the same window.

Logger off:

${webTable(e, names(false))}

Fastify's logger (pino) at \`info\` to a file; the hand-written variant writes one \`request.log.info\` line per job:

${webTable(e, names(true))}

### 1b. Web side in instructions per request (callgrind)

The wall-clock CPU figures above move by several times between rounds on this shared machine (other sessions
run test suites beside it; the load average was ${results.environment.loadAverageStart?.map((l) => l.toFixed(1)).join(' ') ?? '-'} at the start). Instructions per request
do not depend on that load: the ratios to trust for the CPU targets.

${instructionTable(e.instructions)}

### 2. Worker throughput

${e.workers.summary === undefined
? ''
: `${e.workers.rounds} interleaved rounds; each run: Redis flushed, ${num(e.workers.jobs)} jobs preloaded (the plugin's through its own web path, \`inject()\`ed
requests into an app with the \`bullmq\` engine; the hand-written ones with \`addBulk\` and the options above), then a
worker process started and timed until no job waits or runs (polled every 10 ms). No-op task; pino at info to a file
(\`pino.destination({ sync: false })\`) in both: \`createWorker()\` writes its own lines, the hand-written \`Worker\` one
\`logger.info\` line per job.

`}${workerTable(e.workers)}

### 3. SQLite end to end

The app answers under autocannon (POST, ${e.endToEnd.connections} connections) and runs its own jobs (\`work: true\`, no-op task):
requests answered and jobs completed inside each ${e.endToEnd.seconds} s window, ${e.endToEnd.rounds} interleaved rounds per setting.

${endToEndTable(e.endToEnd)}
${END}
`
}

/** The engines block of an existing BENCHMARKS.md, or `''`. */
function keptEnginesSection (file) {
  if (!fs.existsSync(file)) return ''
  const text = fs.readFileSync(file, 'utf8')
  const start = text.indexOf(START)
  const end = text.indexOf(END)
  return start === -1 || end < start ? '' : `${text.slice(start, end + END.length)}\n\n`
}

/** Writes bench/results/engines.json and the section into BENCHMARKS.md (a quick run: under bench/results/tmp/ only). */
function updateEngines (results) {
  const out = results.quick ? path.join(__dirname, 'results', 'tmp') : path.join(__dirname, 'results')
  fs.mkdirSync(out, { recursive: true })
  const json = path.join(out, 'engines.json')
  const { engines, date, generatedBy, environment } = results
  fs.writeFileSync(json, `${JSON.stringify({ generatedBy, date, environment, targets: engineTargets(engines), engines }, null, 2)}\n`)
  const file = results.quick ? path.join(out, 'BENCHMARKS-engines.md') : path.join(root, 'BENCHMARKS.md')
  const block = enginesSection(results)
  if (results.quick) {
    fs.writeFileSync(file, block)
  } else {
    const text = fs.readFileSync(file, 'utf8')
    const start = text.indexOf(START)
    const end = text.indexOf(END)
    if (start !== -1 && end > start) {
      fs.writeFileSync(file, text.slice(0, start) + block + text.slice(end + END.length + 1))
    } else {
      const at = text.indexOf(BEFORE)
      fs.writeFileSync(file, at === -1 ? `${text}\n${block}` : `${text.slice(0, at)}${block}\n${text.slice(at)}`)
    }
  }
  return [path.relative(root, json), `${path.relative(root, file)}${results.quick ? '' : ' (engines section)'}`]
}

module.exports = { enginesSection, engineTargets, keptEnginesSection, updateEngines }
