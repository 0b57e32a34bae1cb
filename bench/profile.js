'use strict'

// `node bench/profile.js [variant] [seconds]`: runs one bench server under `node --cpu-prof`,
// loads it (wrk when installed, else autocannon), and prints where its CPU time went: the
// plugin's own functions (dist/) with what they call, and the hottest functions overall.
// The .cpuprofile lands in bench/results/tmp/profiles/ for Chrome DevTools or speedscope.
// A POST variant (the engines phase's) is loaded by autocannon with its JSON body and 20
// connections; one that needs Redis gets a redis-server of its own, one with the sqlite engine a
// temp dir for its file. Self time is also summed by package (node_modules/<name>) and for GC.

const { fork, spawnSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')
const os = require('node:os')
const autocannon = require('autocannon')
const { byName } = require('./variants')
const { startRedis } = require('./redis')

const name = process.argv[2] ?? 'sac-50ms'
const seconds = Number(process.argv[3] ?? 5)
const dir = path.join(__dirname, 'results', 'tmp', 'profiles')
const dist = path.join(__dirname, '..', 'dist') + path.sep

function startServer () {
  byName(name)
  fs.mkdirSync(dir, { recursive: true })
  const child = fork(path.join(__dirname, 'server.js'), [name, path.join(dir, `${name}.log`)], {
    execArgv: ['--cpu-prof', `--cpu-prof-dir=${dir}`, `--cpu-prof-name=${name}.cpuprofile`],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc']
  })
  return new Promise((resolve) => {
    child.on('message', (message) => {
      if (message.type === 'ready') resolve({ child, port: message.port })
    })
  })
}

function load (port) {
  const url = `http://127.0.0.1:${port}/`
  if (byName(name).method === 'POST') {
    return autocannon({ url, connections: 20, duration: seconds, method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"n":1}' }).then((result) => result.requests.average)
  }
  const wrk = spawnSync('wrk', ['-t1', '-c50', `-d${seconds}s`, url], { encoding: 'utf8' })
  if (!wrk.error) return wrk.stdout.match(/Requests\/sec:\s+([\d.]+)/)?.[1]
  return autocannon({ url, connections: 50, duration: seconds }).then((result) => result.requests.average)
}

function where (frame) {
  const file = frame.url.replace(/^file:\/\//, '')
  const short = file.includes('node_modules') ? file.slice(file.lastIndexOf('node_modules') + 13) : path.relative(path.join(__dirname, '..'), file)
  return `${frame.functionName || '(anonymous)'} ${short || '(native)'}:${frame.lineNumber + 1}`
}

function summarize (file) {
  const profile = JSON.parse(fs.readFileSync(file, 'utf8'))
  const nodes = new Map(profile.nodes.map((node) => [node.id, { ...node, self: 0, total: 0 }]))
  for (let i = 0; i < profile.samples.length; i++) nodes.get(profile.samples[i]).self += profile.timeDeltas[i] ?? 0
  const parent = new Map()
  for (const node of nodes.values()) for (const child of node.children ?? []) parent.set(child, node.id)
  // what `reply.sendAndContinue()` spends in `reply.send()` (and the parts of it V8 inlined) is
  // Fastify's answer, not the plugin's cost
  const isSend = (node) => node.callFrame.url.endsWith('fastify/lib/reply.js')
  function total (node) {
    if (node.totalDone) return node.total
    node.total = node.self + (node.children ?? []).reduce((sum, id) => {
      const child = nodes.get(id)
      return isSend(child) ? sum : sum + total(child)
    }, 0)
    node.totalDone = true
    return node.total
  }
  let all = 0
  let idle = 0
  const self = new Map()
  const plugin = new Map()
  for (const node of nodes.values()) {
    all += node.self
    if (node.callFrame.functionName === '(idle)') idle += node.self
    const key = where(node.callFrame)
    self.set(key, (self.get(key) ?? 0) + node.self)
    if (!node.callFrame.url.includes(dist)) continue
    // the outermost plugin frame of each stack: its total counts everything the plugin caused
    let up = parent.get(node.id)
    let outer = true
    while (up !== undefined) {
      if (nodes.get(up).callFrame.url.includes(dist)) { outer = false; break }
      up = parent.get(up)
    }
    if (outer) plugin.set(key, (plugin.get(key) ?? 0) + total(node))
  }
  const busy = all - idle
  const pct = (us) => `${(us / busy * 100).toFixed(1).padStart(5)}%`
  console.log(`\n${path.relative(process.cwd(), file)}: ${(busy / 1000).toFixed(0)} ms busy of ${(all / 1000).toFixed(0)} ms sampled`)
  console.log('\nplugin code (dist/), outermost frames, including what they call (not Fastify reply.js):')
  const pluginTotal = [...plugin.values()].reduce((a, b) => a + b, 0)
  for (const [key, us] of [...plugin].sort((a, b) => b[1] - a[1]).slice(0, 15)) console.log(`  ${pct(us)}  ${key}`)
  console.log(`  ${pct(pluginTotal)}  all of it`)
  const packages = new Map()
  for (const node of nodes.values()) {
    if (node.callFrame.functionName === '(idle)') continue
    const url = node.callFrame.url
    const at = url.lastIndexOf('node_modules/')
    const pkg = at !== -1
      ? url.slice(at + 13).split('/').slice(0, url.slice(at + 13).startsWith('@') ? 2 : 1).join('/')
      : url.includes(dist) ? 'plugin (dist/)' : url.startsWith('node:') ? 'node core (JS)' : url === '' ? node.callFrame.functionName : 'other'
    packages.set(pkg, (packages.get(pkg) ?? 0) + node.self)
  }
  console.log('\nself time by package (native frames by their name):')
  for (const [key, us] of [...packages].sort((a, b) => b[1] - a[1]).slice(0, 15)) console.log(`  ${pct(us)}  ${key}`)
  console.log('\nhottest functions, self time:')
  for (const [key, us] of [...self].filter(([key]) => !key.startsWith('(idle)')).sort((a, b) => b[1] - a[1]).slice(0, 25)) console.log(`  ${pct(us)}  ${key}`)
}

async function main () {
  const variant = byName(name)
  const redis = variant.redis === true || variant.queue === true || variant.queue?.engine === 'bullmq' ? await startRedis() : null
  if (redis !== null) process.env.BENCH_REDIS_SOCKET = redis.socketPath
  if (variant.queue?.engine === 'sqlite') process.env.BENCH_SQLITE_DIR = fs.mkdtempSync(path.join(os.tmpdir(), 'sac-profile-sqlite-'))
  const { child, port } = await startServer()
  // a short warm-up outside the measurement would still be in the profile: keep the load long
  const rps = await load(port)
  console.log(`${name}: ${rps} req/s under load`)
  await new Promise((resolve) => {
    child.once('exit', resolve)
    child.send({ type: 'stop' })
  })
  await redis?.stop()
  if (process.env.BENCH_SQLITE_DIR !== undefined) fs.rmSync(process.env.BENCH_SQLITE_DIR, { recursive: true, force: true })
  summarize(path.join(dir, `${name}.cpuprofile`))
}

module.exports = { summarize }

if (require.main === module) {
  main().catch((err) => {
    console.error(err)
    process.exit(1)
  })
}
