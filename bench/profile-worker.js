'use strict'

// `node bench/profile-worker.js <plugin|handwritten> [concurrency] [jobs]`: the engines phase's
// worker throughput run for one worker, under `node --cpu-prof`: starts a redis-server, preloads
// the jobs as the phase does, runs bench/engines-worker.js with the profiler and prints where its
// CPU time went (bench/profile.js's summary). The .cpuprofile lands in bench/results/tmp/profiles/.

const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')
const { startRedis } = require('./redis')
const { preload } = require('./phases/engines')
const { summarize } = require('./profile')

const [kind = 'plugin', concurrency = '100', jobs = '20000'] = process.argv.slice(2)
const dir = path.join(__dirname, 'results', 'tmp', 'profiles')
const name = `worker-${kind}-${concurrency}`

async function main () {
  fs.mkdirSync(dir, { recursive: true })
  const redis = await startRedis()
  try {
    await preload(kind, Number(jobs), redis.socketPath)
    const run = spawnSync(process.execPath, ['--cpu-prof', `--cpu-prof-dir=${dir}`, `--cpu-prof-name=${name}.cpuprofile`,
      path.join(__dirname, 'engines-worker.js'), kind, concurrency, jobs, redis.socketPath, path.join(dir, `${name}.log`)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] })
    console.log(`${name}: ${run.stdout.trim()}`)
  } finally {
    await redis.stop()
  }
  summarize(path.join(dir, `${name}.cpuprofile`))
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
