'use strict'

// `node bench/probes/sqlite-batch.js`: what one group-commit batch costs the web process with
// better-sqlite3, split into its statements, as lib/engines/sqlite/store.ts writes it (WAL, the
// `jobs` table of lib/engines/sqlite/schema.ts, one INSERT per job): the two
// `PRAGMA busy_timeout` around the transaction, BEGIN IMMEDIATE + COMMIT, and the INSERTs, for 1
// and 8 jobs per batch, `synchronous` NORMAL and FULL. CPU time of this process per batch (µs).
// `--partial`: the two secondary indexes made partial (jobs_due only over waiting rows,
// jobs_finished only over finished ones), so an insert of a waiting job updates one of them.

const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const Database = require('better-sqlite3')
const { SCHEMA: BASE } = require('../../dist/engines/sqlite/schema')

const SCHEMA = !process.argv.includes('--partial')
  ? BASE
  : BASE.replace('ON jobs (queue, state, run_at);', "ON jobs (queue, run_at) WHERE state = 'waiting';")
    .replace('ON jobs (queue, state, finished_at);', "ON jobs (queue, state, finished_at) WHERE state IN ('completed', 'failed');")

const INSERT = `INSERT OR IGNORE INTO jobs (queue, id, task, payload, attempts, backoff, delay, state, run_at, created_at)
  VALUES (?, ?, ?, ?, ?, ?, ?, 'waiting', ?, ?)`
const payload = JSON.stringify({ data: { n: 1 }, request: { id: 'req-1', method: 'POST', url: '/', ip: '127.0.0.1', headers: {} }, route: '/', connection: null, statusCode: 200, enqueuedAt: Date.now(), token: 'b0c1c2d3-0000-4000-8000-000000000000' })

function cpu (n, fn) {
  const before = process.cpuUsage()
  for (let i = 0; i < n; i++) fn(i)
  const used = process.cpuUsage(before)
  return (used.user + used.system) / n
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sac-probe-sqlite-'))
try {
  for (const synchronous of ['NORMAL', 'FULL']) {
    const db = new Database(path.join(dir, `${synchronous}.db`))
    db.pragma('journal_mode = WAL')
    db.pragma(`synchronous = ${synchronous}`)
    db.exec(SCHEMA)
    const insert = db.prepare(INSERT)
    let seq = 0
    const row = () => ['q', `bench-job~${seq++}`, 'bench-job', payload, 1, null, 0, Date.now(), Date.now()]
    const n = synchronous === 'FULL' ? 1000 : 5000
    for (const jobs of [1, 8]) {
      const pragmas = cpu(n, () => { db.exec('PRAGMA busy_timeout = 1999'); db.exec('PRAGMA busy_timeout = 2000') })
      const empty = cpu(n, () => { db.exec('BEGIN IMMEDIATE'); db.exec('COMMIT') })
      const whole = cpu(n, () => {
        db.exec('PRAGMA busy_timeout = 1999')
        db.exec('BEGIN IMMEDIATE')
        for (let j = 0; j < jobs; j++) insert.run(...row())
        db.exec('COMMIT')
        db.exec('PRAGMA busy_timeout = 2000')
      })
      const inserts = cpu(n, () => { db.exec('BEGIN IMMEDIATE'); for (let j = 0; j < jobs; j++) insert.run(...row()); db.exec('COMMIT') }) - empty
      console.log(`synchronous ${synchronous}, ${jobs} job(s) per batch: whole batch ${whole.toFixed(1)} µs CPU = two busy_timeout PRAGMAs ${pragmas.toFixed(1)} + BEGIN/COMMIT ${empty.toFixed(1)} + INSERTs and their WAL pages ${inserts.toFixed(1)}`)
    }
    db.close()
  }
} finally {
  fs.rmSync(dir, { recursive: true, force: true })
}
