'use strict'

// `node bench/probes/worker-instructions.js [concurrency] [small] [large]`: instructions per job of
// the worker's main thread, `createWorker()` against a hand-written BullMQ `Worker` logging one
// line per job (the engines phase's worker throughput pair), which the machine's load does not
// move. Each runs under `valgrind --tool=callgrind --separate-threads=yes` twice, after `small`
// and after `large` jobs were preloaded into a redis-server of its own; the difference divided by
// `large - small` leaves out start-up and shut-down. Also Redis commands per job. Defaults: 10,
// 2,000, 10,000 (a few minutes: under valgrind a worker runs about 70 jobs/s).

const { spawn } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const Redis = require('ioredis')
const { startRedis } = require('../redis')
const { preload } = require('../phases/engines')
const { total } = require('../callgrind/annotate')

const [concurrency = '10', small = '2000', large = '10000'] = process.argv.slice(2)

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
      process.execPath, '--single-threaded-gc', path.join(__dirname, 'worker-alone.js'), kind, concurrency, String(jobs), redis.socketPath, path.join(dir, 'worker.log')],
    { stdio: ['ignore', 'ignore', 'inherit'] })
    const code = await new Promise((resolve) => child.on('exit', resolve))
    if (code !== 0) throw new Error(`the ${kind} worker exited with ${code}`)
    const after = await commands(client)
    const perJob = Object.fromEntries(Object.entries(after).map(([name, n]) => [name, (n - (before[name] ?? 0)) / jobs]).filter(([name, n]) => n >= 0.01 && name !== 'info'))
    const main = fs.readdirSync(dir).filter((file) => file.endsWith('-01')).sort()[0]
    return { instructions: total(path.join(dir, main)), perJob }
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
    rows[kind] = { kinstrPerJob: (b.instructions - a.instructions) / (Number(large) - Number(small)) / 1000, perJob: b.perJob }
    console.log(`${kind.padEnd(12)} concurrency ${concurrency}: ${rows[kind].kinstrPerJob.toFixed(1)} kinstr/job; redis per job: ${Object.entries(b.perJob).map(([name, n]) => `${name} ${n.toFixed(2)}`).join(', ')}`)
  }
  console.log(`createWorker() / hand-written: ${(rows.plugin.kinstrPerJob / rows.handwritten.kinstrPerJob).toFixed(3)}x`)
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
