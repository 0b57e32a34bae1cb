'use strict'

// `node bench/probes/engines-instructions.js [variant ...] [--requests N]`: the engines phase's
// web-side instruction counts (callgrind, as in `--only engines`) for a few of its variants, plus
// what Redis did for them: `INFO commandstats` calls and `total_reads_processed` per request,
// which do not depend on the machine's load either. Each Redis variant gets a redis-server of its
// own (so its counts are its own); a SQLite variant a temp dir. For before/after comparisons of a
// change: build (`npm run build`), run, change, build, run again.
// `--js-names` names the JavaScript functions in the cost centres. Default variants: eng-in-process eng-handwritten eng-bullmq eng-sqlite eng-memory.

const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const Redis = require('ioredis')
const { engineVariants, sqliteEndToEndVariants } = require('../variants')
const { startRedis } = require('../redis')
const { runCallgrind } = require('../phases/callgrind')

const args = process.argv.slice(2)
const at = args.indexOf('--requests')
const requests = at === -1 ? 4000 : Number(args.splice(at, 2)[1])
// names V8's compiled JavaScript function by function (dearer GC: for finding, not for figures)
const jsNames = args.includes('--js-names')
if (jsNames) args.splice(args.indexOf('--js-names'), 1)
const names = args.length > 0 ? args : ['eng-in-process', 'eng-handwritten', 'eng-bullmq', 'eng-sqlite', 'eng-memory']

async function redisCounters (client) {
  const stats = await client.info('commandstats')
  const calls = {}
  for (const [, name, n] of stats.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) calls[name] = Number(n)
  const reads = Number(/total_reads_processed:(\d+)/.exec(await client.info('stats'))[1])
  return { calls, reads }
}

async function main () {
  const sqliteDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sac-probe-sqlite-'))
  process.env.BENCH_SQLITE_DIR = sqliteDir
  const variants = names.map((name) => {
    // the end-to-end rows (the app runs its jobs too) count each request with its job
    const known = [...engineVariants, ...sqliteEndToEndVariants]
    const variant = known.find((v) => v.name === name)
    if (variant === undefined) throw new Error(`unknown variant ${name} (known: ${known.map((v) => v.name).join(', ')})`)
    return { ...variant, pending: null }
  })
  const log = (line) => console.error(line)
  const rows = []
  try {
    // one at a time: each Redis variant's server is its own, and the two cores stay for valgrind and Redis
    for (const variant of variants) {
      const redis = variant.redis === true ? await startRedis() : null
      const client = redis === null ? null : new Redis({ path: redis.socketPath })
      if (redis !== null) process.env.BENCH_REDIS_SOCKET = redis.socketPath
      try {
        const before = client === null ? null : await redisCounters(client)
        const counted = await runCallgrind({ plan: { parallel: 1, warmup: 4000, countedWarmup: 1000, requests, jsNames }, log, variants: [variant] })
        const row = counted.variants[0]
        const result = { name: variant.name, kinstrPerRequest: row.kinstrPerRequest, gcKinstrPerRequest: row.gcKinstrPerRequest, errors: row.errors, top: row.top.slice(0, 60) }
        if (client !== null) {
          // every request of the run (warm-ups included) went to this server: per request of the whole run
          const after = await redisCounters(client)
          const total = 4000 + 1000 + requests
          result.redisPerRequest = Object.fromEntries(Object.entries(after.calls)
            .map(([name, n]) => [name, (n - (before.calls[name] ?? 0)) / total])
            .filter(([name, n]) => n > 0.001 && name !== 'info'))
          result.redisReadsPerRequest = (after.reads - before.reads) / total
        }
        rows.push(result)
      } finally {
        client?.disconnect()
        await redis?.stop()
      }
    }
  } finally {
    fs.rmSync(sqliteDir, { recursive: true, force: true })
  }
  for (const row of rows) {
    console.log(`${row.name.padEnd(26)} ${row.kinstrPerRequest.toFixed(1).padStart(7)} kinstr/req (GC ${row.gcKinstrPerRequest.toFixed(1)}, without ${(row.kinstrPerRequest - row.gcKinstrPerRequest).toFixed(1)})${row.errors > 0 ? `, ${row.errors} errors` : ''}`)
    if (row.redisPerRequest !== undefined) {
      console.log(`${''.padEnd(26)} redis per request: ${Object.entries(row.redisPerRequest).map(([name, n]) => `${name} ${n.toFixed(2)}`).join(', ')}; reads ${row.redisReadsPerRequest.toFixed(2)}`)
    }
  }
  if (process.env.PROBE_JSON !== undefined) fs.writeFileSync(process.env.PROBE_JSON, JSON.stringify(rows, null, 2))
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
