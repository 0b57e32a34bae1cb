'use strict'

// `node bench/probes/worker-instructions.js [concurrency] [small] [large] [--functions]`: instructions per job of
// the worker's main thread, `createWorker()` against a hand-written BullMQ `Worker` logging one
// line per job (the engines phase's worker throughput pair), which the machine's load does not
// move. Each runs under `valgrind --tool=callgrind --separate-threads=yes` twice, after `small`
// and after `large` jobs were preloaded into a redis-server of its own; the difference divided by
// `large - small` leaves out start-up and shut-down. Also Redis commands per job. Defaults: 10,
// 2,000, 10,000 (a few minutes: under valgrind a worker runs about 70 jobs/s). `--functions`
// also names the JavaScript (V8's perf map) and prints where the difference per job goes, by group.

const { spawn } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const Redis = require('ioredis')
const { startRedis } = require('../redis')
const { preload } = require('../phases/engines')
const { functions, readPerfMap, total } = require('../callgrind/annotate')

const args = process.argv.slice(2)
const byFunction = args.includes('--functions')
const [concurrency = '10', small = '2000', large = '10000'] = args.filter((arg) => arg !== '--functions')

// the groups of `--functions`, first match wins; the rest is one row
const GROUPS = [
  ['garbage collection', /Scaveng|Heap::|Marking|Sweep|Evacuat|IteratePointers|Pretenuring|MarkCompact|LiveObject|ObjectCache|Promoted|sprp|AllocateRaw|AllocateInNewSpace/],
  ['JSON.parse (the job as Redis returns it)', /JsonParser/],
  ['JSON.stringify (the line\'s nested object)', /JsonStringifier/],
  ['UTF-8 and copies (strings out to Redis and the log)', /Utf8|memcpy|memmove/],
  ['JavaScript, named (V8 perf map)', /^JS /],
  ['V8 builtins (property access, calls, promises)', /^Builtins_/]
]
const REST = 'the rest (V8 runtime, libuv, the kernel interface)'

async function commands (client) {
  const calls = {}
  for (const [, name, n] of (await client.info('commandstats')).matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) calls[name] = Number(n)
  return calls
}

/** Main-thread instructions of one worker run over `jobs` preloaded jobs, and Redis commands per job. */
async function run (kind, jobs) {
  const redis = await startRedis()
  const client = new Redis({ path: redis.socketPath })
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sac-worker-cg-'))
  try {
    await preload(kind, jobs, redis.socketPath)
    const before = await commands(client)
    const child = spawn('valgrind', ['--tool=callgrind', '--separate-threads=yes', `--callgrind-out-file=${path.join(dir, 'cg.%p')}`,
      process.execPath, '--single-threaded-gc', ...(byFunction ? ['--perf-basic-prof'] : []), path.join(__dirname, 'worker-alone.js'), kind, concurrency, String(jobs), redis.socketPath, path.join(dir, 'worker.log')],
    { stdio: ['ignore', 'ignore', 'inherit'] })
    const code = await new Promise((resolve) => child.on('exit', resolve))
    if (code !== 0) throw new Error(`the ${kind} worker exited with ${code}`)
    const after = await commands(client)
    const perJob = Object.fromEntries(Object.entries(after).map(([name, n]) => [name, (n - (before[name] ?? 0)) / jobs]).filter(([name, n]) => n >= 0.01 && name !== 'info'))
    const main = fs.readdirSync(dir).filter((file) => file.endsWith('-01')).sort()[0]
    const map = byFunction ? `/tmp/perf-${child.pid}.map` : null
    const costs = map === null ? null : functions(path.join(dir, main), false, readPerfMap(map))
    if (map !== null) fs.rmSync(map, { force: true })
    return { instructions: total(path.join(dir, main)), perJob, costs }
  } finally {
    client.disconnect()
    await redis.stop()
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

async function main () {
  const rows = {}
  for (const kind of ['plugin', 'handwritten']) {
    // the two runs of a kind side by side: valgrind takes one core each
    const [a, b] = await Promise.all([run(kind, Number(small)), run(kind, Number(large))])
    const jobs = Number(large) - Number(small)
    rows[kind] = { kinstrPerJob: (b.instructions - a.instructions) / jobs / 1000, perJob: b.perJob, groups: b.costs === null ? null : grouped(a.costs, b.costs, jobs) }
    console.log(`${kind.padEnd(12)} concurrency ${concurrency}: ${rows[kind].kinstrPerJob.toFixed(1)} kinstr/job; redis per job: ${Object.entries(b.perJob).map(([name, n]) => `${name} ${n.toFixed(2)}`).join(', ')}`)
  }
  console.log(`createWorker() / hand-written: ${(rows.plugin.kinstrPerJob / rows.handwritten.kinstrPerJob).toFixed(3)}x`)
  if (!byFunction) return
  console.log('kinstr/job by group: createWorker(), hand-written, difference')
  for (const [group, plugin] of rows.plugin.groups) {
    const handwritten = rows.handwritten.groups.get(group)
    console.log(`${plugin.toFixed(1).padStart(7)} ${handwritten.toFixed(1).padStart(7)} ${(plugin - handwritten).toFixed(1).padStart(7)}  ${group}`)
  }
}

/** kinstr per job of each group between the two runs' per-function costs. */
function grouped (before, after, jobs) {
  const sums = new Map([...GROUPS.map(([group]) => [group, 0]), [REST, 0]])
  for (const fn of new Set([...before.keys(), ...after.keys()])) {
    const group = GROUPS.find(([, pattern]) => pattern.test(fn))?.[0] ?? REST
    sums.set(group, sums.get(group) + ((after.get(fn) ?? 0) - (before.get(fn) ?? 0)) / jobs / 1000)
  }
  return sums
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
