import Database from 'better-sqlite3'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdir, readdir, readFile, stat, symlink, writeFile } from 'node:fs/promises'
import { hostname } from 'node:os'
import { dirname, join } from 'node:path'
import t, { test } from 'tap'
import type { Test } from 'tap'
import ts from 'typescript'
import { isDeadOwner, ownerId } from '../lib/engines/owner'
import { loadSqlite } from '../lib/engines/sqlite/binding'
import type { Load } from '../lib/engines/sqlite/binding'
import { APPLICATION_ID, SCHEMA_VERSION } from '../lib/engines/sqlite/schema'
import { KEEP_COMPLETED, KEEP_FAILED } from '../lib/engines/sqlite/store'
import { STALLED_MESSAGE } from '../lib/jobs/lease-loop'
import { envWithoutCoverage } from './child-env'
import { counting, job, makeStore, peek, QUEUE, rowOf, startChild, tempDir, versionOne } from './sqlite-helpers'

// child processes through the TypeScript loader take a second or more each to start
t.setTimeout(120_000)

const root = join(__dirname, '..')

function notFound (id: string): Error {
  return Object.assign(new Error(`Cannot find module '${id}'\nRequire stack:\n- ${__filename}`), { code: 'MODULE_NOT_FOUND' })
}

function unknownBuiltin (id: string): Error {
  return Object.assign(new Error(`No such built-in module: ${id}`), { code: 'ERR_UNKNOWN_BUILTIN_MODULE' })
}

/** A loader without better-sqlite3, with `nodeSqlite` as node:sqlite (or without it). */
function without (nodeSqlite?: unknown): Load {
  return (id) => {
    if (id === 'better-sqlite3') throw notFound(id)
    if (nodeSqlite === undefined) throw unknownBuiltin(id)
    return nodeSqlite
  }
}

test('loadSqlite: better-sqlite3 when installed, node:sqlite when not, else FST_SAC_MISSING_DRIVER', async (t) => {
  const dir = await tempDir(t)
  const db = loadSqlite('createWorker()')(join(dir, 'a.db'))
  t.same(db.prepare('SELECT 1 + ? AS n').get(1), { n: 2 }, 'the real binding opens a file')
  db.close()

  class DatabaseSync { constructor (readonly path: string, readonly options?: object) {} }
  t.same(loadSqlite('w', without({ DatabaseSync }))('x.db'), { path: 'x.db', options: undefined }, 'node:sqlite when better-sqlite3 is missing')
  t.same(loadSqlite('w', without({ DatabaseSync }), true)('x.db'), { path: 'x.db', options: { readOnly: true } }, 'read-only, for the status command')

  const readOnly = loadSqlite('status', require, true)
  t.throws(() => readOnly(join(dir, 'missing.db')), { code: 'SQLITE_CANTOPEN' }, 'read-only opens existing files only')
  const existing = readOnly(join(dir, 'a.db'))
  t.throws(() => existing.exec('CREATE TABLE t (x)'), { code: 'SQLITE_READONLY' }, 'and never writes')
  existing.close()

  t.throws(() => loadSqlite('createWorker()', without()), {
    code: 'FST_SAC_MISSING_DRIVER',
    message: "createWorker(): the 'sqlite' engine needs the package better-sqlite3, which is not installed; install it with: npm install better-sqlite3@12"
  })

  const dlopen = Object.assign(new Error('was compiled against a different Node.js version'), { code: 'ERR_DLOPEN_FAILED' })
  t.throws(() => loadSqlite('w', () => { throw dlopen }), dlopen, 'a broken better-sqlite3 is reported, not skipped')
  const bindings = notFound('bindings')
  t.throws(() => loadSqlite('w', () => { throw bindings }), bindings, 'so is a missing dependency of it')
  const flagged = new Error('node:sqlite failed')
  t.throws(() => loadSqlite('w', (id) => { throw id === 'better-sqlite3' ? notFound(id) : flagged }), flagged)
})

test('loadSqlite in a process that cannot resolve better-sqlite3 (an install without it)', async (t) => {
  // the binding and the errors module, compiled into a folder outside this repository's
  // node_modules, with @fastify/error (their only dependency) beside them
  const dir = await tempDir(t)
  for (const file of ['engines/sqlite/binding.ts', 'errors.ts']) {
    const source = await readFile(join(root, 'lib', file), 'utf8')
    const out = join(dir, 'lib', file.replace(/\.ts$/, '.js'))
    await mkdir(dirname(out), { recursive: true })
    await writeFile(out, ts.transpileModule(source, { compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true } }).outputText)
  }
  await mkdir(join(dir, 'node_modules', '@fastify'), { recursive: true })
  await symlink(join(root, 'node_modules', '@fastify', 'error'), join(dir, 'node_modules', '@fastify', 'error'))
  await writeFile(join(dir, 'run.js'), `
    let builtin = true
    try { require('node:sqlite') } catch { builtin = false }
    try {
      require('./lib/engines/sqlite/binding.js').loadSqlite('createWorker()')
      console.log(JSON.stringify({ builtin, loaded: true }))
    } catch (err) {
      console.log(JSON.stringify({ builtin, code: err.code, message: err.message }))
    }
  `)
  const env = envWithoutCoverage()
  delete env.NODE_PATH
  const child = spawn(process.execPath, ['run.js'], { cwd: dir, env, stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  child.stdout.on('data', (chunk) => { out += chunk })
  const [code] = await once(child, 'close')
  t.equal(code, 0)
  const result = JSON.parse(out)
  // Node 22.13+ falls back on its own node:sqlite; Node 20 has none
  t.same(result, result.builtin === true
    ? { builtin: true, loaded: true }
    : { builtin: false, code: 'FST_SAC_MISSING_DRIVER', message: "createWorker(): the 'sqlite' engine needs the package better-sqlite3, which is not installed; install it with: npm install better-sqlite3@12" })
})

test('ownerId and isDeadOwner', async (t) => {
  const own = ownerId()
  t.match(own, new RegExp(`^${hostname()}:${process.pid}:[0-9a-f]{12}$`))
  t.equal(ownerId(), own, 'made once per process')
  t.notOk(isDeadOwner(own), 'this process')
  t.ok(isDeadOwner(`${hostname()}:${process.pid}:0123456789ab`), 'an earlier process that had this pid')
  t.notOk(isDeadOwner(`${hostname()}:${process.ppid}:x`), 'a live process of this host')
  t.notOk(isDeadOwner(`not-${hostname()}:${process.pid + 1}:x`), 'another host: unknown')
  for (const malformed of ['', 'x', `${hostname()}:abc:x`, `${hostname()}:0:x`, `${hostname()}:-4:x`]) {
    t.notOk(isDeadOwner(malformed), `malformed: ${malformed}`)
  }
  const child = spawn(process.execPath, ['-e', ''], { env: envWithoutCoverage() })
  await once(child, 'exit')
  t.ok(isDeadOwner(`${hostname()}:${child.pid as number}:x`), 'an exited process of this host')
})

/** The file's bytes, mtime and the folder's listing, to show a refused file was not touched. */
async function snapshot (path: string): Promise<{ bytes: Buffer, mtimeMs: number, files: string[] }> {
  return { bytes: await readFile(path), mtimeMs: (await stat(path)).mtimeMs, files: await readdir(dirname(path)) }
}

test('a new file: its folders are made, WAL, our application_id and schema version, the synchronous asked for', async (t) => {
  const dir = await tempDir(t)
  for (const [synchronous, level] of [['normal', 1], ['full', 2]] as const) {
    const path = join(dir, synchronous, 'deeper', 'jobs.db')
    const wrapped = counting()
    const store = makeStore(t, path, { synchronous, open: wrapped.open })
    await store.check(1000)
    await store.check(1000)
    t.equal(store.name, 'sqlite')
    t.equal(store.queue, QUEUE)
    t.equal(wrapped.connections.length, 1, 'one connection, opened once')
    // synchronous is a setting of the connection: read on the store's own
    t.same(wrapped.connections[0].prepare('PRAGMA synchronous').get(), { synchronous: level }, `synchronous ${synchronous}`)
    const db = peek(t, path)
    t.equal(db.pragma('journal_mode', { simple: true }), 'wal')
    t.equal(db.pragma('application_id', { simple: true }), APPLICATION_ID)
    t.equal(db.pragma('user_version', { simple: true }), SCHEMA_VERSION)
  }
})

test('a file of something else, or of a newer version, is refused and left unchanged', async (t) => {
  const dir = await tempDir(t)
  const cases: Array<[string, (db: Database.Database) => void, { code: string, message: RegExp }]> = [
    ['tables, no application_id', (db) => db.exec('CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES (1)'), {
      code: 'FST_SAC_SQLITE_FOREIGN',
      message: /: '.*notes\.db' should be this engine's job database or a new file, instead got a SQLite database of something else \(application_id 0, user_version 0, 1 tables and indexes\); it was left unchanged$/
    }],
    ['another application_id', (db) => db.pragma('application_id = 1234'), { code: 'FST_SAC_SQLITE_FOREIGN', message: /application_id 1234, user_version 0, 0 tables/ }],
    ['a user_version only', (db) => db.pragma('user_version = 3'), { code: 'FST_SAC_SQLITE_FOREIGN', message: /application_id 0, user_version 3, 0 tables/ }],
    ['ours, newer', (db) => { db.pragma(`application_id = ${APPLICATION_ID}`); db.pragma(`user_version = ${SCHEMA_VERSION + 1}`) }, {
      code: 'FST_SAC_SQLITE_SCHEMA',
      message: new RegExp(`should have schema version ${SCHEMA_VERSION} or older, instead got ${SCHEMA_VERSION + 1} \\(written by a newer fastify-send-and-continue\\); it was left unchanged$`)
    }]
  ]
  for (const [name, make, expected] of cases) {
    const path = join(dir, name.replace(/\W+/g, '-'), 'notes.db')
    await mkdir(dirname(path))
    const db = new Database(path)
    make(db)
    db.close()
    const before = await snapshot(path)
    const store = makeStore(t, path, { where: 'fastify-send-and-continue queue' })
    await t.rejects(store.check(1000), expected, name)
    t.same(await snapshot(path), before, `${name}: same bytes, same mtime, no -wal or -shm beside it`)
  }

  const path = join(dir, 'random.db')
  await writeFile(path, Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919) % 256)))
  const before = await snapshot(path)
  await t.rejects(makeStore(t, path).check(1000), {
    code: 'FST_SAC_SQLITE_FOREIGN',
    message: /^createWorker\(\): '.*random\.db' should be this engine's job database or a new file, instead got a file that is not a SQLite database; it was left unchanged$/
  })
  t.same(await snapshot(path), before, 'random bytes: unchanged')
})

test('a file of ours without a schema version gets the schema', async (t) => {
  const path = join(await tempDir(t), 'jobs.db')
  const db = new Database(path)
  db.pragma(`application_id = ${APPLICATION_ID}`)
  db.close()
  const store = makeStore(t, path)
  await store.enqueue([job('a')], 1000)
  t.equal(peek(t, path).pragma('user_version', { simple: true }), SCHEMA_VERSION)
})

test('a file of schema version 1 gets the error column when opened to write, and keeps its jobs', async (t) => {
  const path = await versionOne(t, 'a')
  const store = makeStore(t, path)
  await store.enqueue([job('b')], 1000)
  const [leased] = await store.take('me', 1, 60_000)
  await store.finish('me', leased.id, 'failed', 'smtp refused')
  const db = peek(t, path)
  t.equal(db.pragma('user_version', { simple: true }), SCHEMA_VERSION)
  t.match(rowOf(db, 'a'), { state: 'failed', error: null }, 'the old job is kept')
  t.match(rowOf(db, 'b'), { state: 'failed', error: 'smtp refused' })
})

/** The jobs table as versions 1 (without `error`) and 2 (`error` given) created it: the state's CHECK an IN list. */
function oldJobsTable (error: string): string {
  return `CREATE TABLE jobs (queue TEXT NOT NULL, id TEXT NOT NULL, task TEXT NOT NULL, payload TEXT NOT NULL, attempts INTEGER NOT NULL,
    backoff TEXT, delay INTEGER NOT NULL, state TEXT NOT NULL CHECK (state IN ('waiting', 'active', 'completed', 'failed')),
    attempts_made INTEGER NOT NULL DEFAULT 0, stalled INTEGER NOT NULL DEFAULT 0, run_at INTEGER NOT NULL, owner TEXT, lock_until INTEGER,
    finished_at INTEGER, outcome TEXT, ${error}created_at INTEGER NOT NULL, PRIMARY KEY (queue, id));`
}

test('a file of schema version 2 gets the state check as comparisons, and keeps its jobs, their order and their errors', async (t) => {
  const path = join(await tempDir(t), 'v2.db')
  // a file as version 2 wrote it: the state's CHECK an IN list
  const old = new Database(path)
  old.pragma('journal_mode = WAL')
  old.exec(`${oldJobsTable('error TEXT, ')}
    CREATE INDEX jobs_waiting ON jobs (queue, run_at) WHERE state = 'waiting';
    CREATE INDEX jobs_active ON jobs (queue) WHERE state = 'active';
    CREATE INDEX jobs_completed ON jobs (queue, finished_at) WHERE state = 'completed';
    CREATE INDEX jobs_failed ON jobs (queue, finished_at) WHERE state = 'failed';
    PRAGMA application_id = ${APPLICATION_ID};
    PRAGMA user_version = 2;`)
  const insert = old.prepare(`INSERT INTO jobs (rowid, queue, id, task, payload, attempts, delay, state, run_at, created_at, outcome, error, finished_at)
    VALUES (?, ?, ?, 'send', ?, 1, 0, ?, 5, 5, ?, ?, ?)`)
  // due in the same millisecond: the rowids, not the ids, say which was added first
  insert.run(30, QUEUE, 'first', JSON.stringify(job('first').payload), 'waiting', null, null, null)
  insert.run(40, QUEUE, 'second', JSON.stringify(job('second').payload), 'waiting', null, null, null)
  insert.run(10, QUEUE, 'third', JSON.stringify(job('third').payload), 'waiting', null, null, null)
  insert.run(20, QUEUE, 'broken', JSON.stringify(job('broken').payload), 'failed', 'failed', 'smtp refused', 6)
  old.close()

  const store = makeStore(t, path)
  await store.enqueue([job('new')], 1000)
  const db = peek(t, path)
  t.equal(db.pragma('user_version', { simple: true }), SCHEMA_VERSION)
  const { sql } = db.prepare("SELECT sql FROM sqlite_master WHERE name = 'jobs'").get() as { sql: string }
  t.match(sql, "CHECK (state = 'waiting' OR state = 'active' OR state = 'completed' OR state = 'failed')")
  t.same(db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all(), [{ name: 'jobs' }], 'the copy took the old name')
  t.same(db.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_%' ORDER BY name").all().map((row) => (row as { name: string }).name),
    ['jobs_active', 'jobs_completed', 'jobs_failed', 'jobs_waiting'])
  t.match(rowOf(db, 'broken'), { state: 'failed', outcome: 'failed', error: 'smtp refused', finished_at: 6 }, 'a failed job keeps its error')
  t.same((await store.take('me', 10, 1000)).map((leased) => leased.id), ['third', 'first', 'second', 'new'], 'taken in the order they were added')
  t.throws(() => db.prepare("UPDATE jobs SET state = 'lost' WHERE id = 'first'").run(), /CHECK constraint failed/, 'the check still holds')
})

test('a path that cannot be a database file: FST_SAC_SQLITE_PATH', async (t) => {
  const dir = await tempDir(t)
  // a regular file where a folder should be stops root too (unlike permissions)
  await writeFile(join(dir, 'file'), '')
  await t.rejects(makeStore(t, join(dir, 'file', 'jobs.db'), { where: 'fastify-send-and-continue queue' }).check(1000), {
    code: 'FST_SAC_SQLITE_PATH',
    message: /^fastify-send-and-continue queue: path should name a database file this process can create or write, instead got '.*file\/jobs\.db' \(E(EXIST|NOTDIR)/
  })
  await t.rejects(makeStore(t, dir).check(1000), { code: 'FST_SAC_SQLITE_PATH' }, 'a folder')
  await t.rejects(makeStore(t, ':memory:').check(1000), {
    code: 'FST_SAC_SQLITE_PATH',
    message: /instead got ':memory:' \(its journal mode should become 'wal', instead it stayed 'memory'\)$/
  }, 'a database no other process could share')
})

test('a better-sqlite3 built for another Node version fails at the first open with its own error', async (t) => {
  const dlopen = Object.assign(new Error('The module was compiled against a different Node.js version'), { code: 'ERR_DLOPEN_FAILED' })
  await t.rejects(makeStore(t, join(await tempDir(t), 'jobs.db'), { open: () => { throw dlopen } }).check(1000), dlopen)
})

test('several processes creating one new file at once', async (t) => {
  const path = join(await tempDir(t), 'new', 'jobs.db')
  const children = Array.from({ length: 4 }, () => startChild(t, ['open', path]))
  for (const child of children) {
    t.same(await child.next(), { opened: true })
    t.same(await child.exited, { code: 0, signal: null })
  }
  const db = peek(t, path)
  t.equal(db.pragma('user_version', { simple: true }), SCHEMA_VERSION)
  t.same(db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all(), [{ name: 'jobs' }])
})

test('indexes: one partial index per state, replacing those of earlier versions; every statement finds its rows through one, and no write builds a table to check the state', async (t) => {
  const path = join(await tempDir(t), 'jobs.db')
  // a file as 0.1 left it: schema version 1 with its two indexes over (queue, state, ...)
  const old = new Database(path)
  old.pragma('journal_mode = WAL')
  old.exec(`${oldJobsTable('')}
    CREATE INDEX jobs_due ON jobs (queue, state, run_at);
    CREATE INDEX jobs_finished ON jobs (queue, state, finished_at);
    PRAGMA application_id = ${APPLICATION_ID};
    PRAGMA user_version = 1;`)
  old.prepare("INSERT INTO jobs (queue, id, task, payload, attempts, delay, state, run_at, created_at) VALUES ('q', 'kept', 'send', ?, 1, 0, 'waiting', 0, 0)")
    .run(JSON.stringify(job('kept').payload))
  old.close()

  const prepared = new Set<string>()
  const store = makeStore(t, path, {
    open: (file) => {
      const db = new Database(file)
      return { exec: (sql) => db.exec(sql), close: () => db.close(), prepare: (sql) => { prepared.add(sql); return db.prepare(sql) } }
    }
  })
  await store.check(1000)
  const db = peek(t, path)
  t.same(db.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_%' ORDER BY name").all().map((row) => (row as { name: string }).name),
    ['jobs_active', 'jobs_completed', 'jobs_failed', 'jobs_waiting'])
  t.equal(db.pragma('user_version', { simple: true }), SCHEMA_VERSION, 'migrated to this version')
  t.same((await store.take('me', 5, 1000)).map((leased) => leased.id), ['kept'], 'the job of the old file is taken')

  // every statement the store prepares, run once
  await store.finish('me', 'kept', 'completed')
  await store.enqueue([job('a'), job('b')], 1000)
  await store.take('me', 1, 1000)
  await store.retry('me', 'a', 0)
  await store.take('me', 1, 1000)
  await store.release('me', 'a')
  await store.renew('me', ['b'], 1000)
  await store.recover(() => true)
  await store.prune()
  await store.nextDue()
  for (const sql of prepared) {
    if (!/\bjobs\b/.test(sql)) continue
    const plan = db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...Array((sql.match(/\?/g) ?? []).length).fill(null))
      .map((row) => (row as { detail: string }).detail)
    t.notOk(plan.some((step) => /^SCAN jobs\b/.test(step)), `${sql.replace(/\s+/g, ' ').slice(0, 80)}: ${plan.join('; ')}`)
    // a statement that writes a job's state checks it without building a table to look it up in
    // (RETURNING collects its rows in one: the recovery of a dead process's jobs only)
    if (/^\s*(INSERT|UPDATE)\b/.test(sql) && !/\bRETURNING\b/.test(sql)) {
      const opcodes = db.prepare(`EXPLAIN ${sql}`).all(...Array((sql.match(/\?/g) ?? []).length).fill(null)).map((row) => (row as { opcode: string }).opcode)
      t.notOk(opcodes.includes('OpenEphemeral'), `${sql.replace(/\s+/g, ' ').slice(0, 80)}: no ephemeral table`)
    }
  }
})

test('a closed store refuses to work', async (t) => {
  const store = makeStore(t, join(await tempDir(t), 'jobs.db'))
  await store.close()
  await store.close()
  await t.rejects(store.check(1000), { message: "createWorker(): the SQLite store of queue 'q' is closed" })
  await t.rejects(store.enqueue([job('a')], 1000), { message: /is closed/ })
  await t.rejects(store.take('me', 1, 1000), { message: /is closed/ })
})

async function opened (t: Test): Promise<{ store: ReturnType<typeof makeStore>, db: Database.Database, path: string }> {
  const path = join(await tempDir(t), 'jobs.db')
  const store = makeStore(t, path)
  await store.check(1000)
  return { store, db: peek(t, path), path }
}

test('take leases due jobs oldest first; finish, nextDue', async (t) => {
  const { store, db } = await opened(t)
  t.equal(await store.nextDue(), null, 'nothing waits')
  await store.enqueue([job('a'), job('b', { task: 'other', backoff: { type: 'exponential', delay: 10 }, attempts: 5 })], 1000)
  await store.enqueue([job('c')], 1000)
  t.equal(await store.nextDue(), 0)

  const before = Date.now()
  const [a, b] = await store.take('me', 2, 10_000)
  t.same(a, { id: 'a', name: 'send', payload: job('a').payload, attempt: 1, attempts: 3, backoff: undefined, delay: 0 })
  t.same(b, { id: 'b', name: 'other', payload: job('b').payload, attempt: 1, attempts: 5, backoff: { type: 'exponential', delay: 10 }, delay: 0 })
  const row = rowOf(db, 'a') as NonNullable<ReturnType<typeof rowOf>>
  t.match(row, { state: 'active', owner: 'me' })
  t.ok((row.lock_until as number) >= before + 10_000, 'locked for lockDuration')
  t.same((await store.take('me', 5, 10_000)).map((leased) => leased.id), ['c'])
  t.same(await store.take('me', 5, 10_000), [], 'nothing due')
  t.equal(await store.nextDue(), null, 'active jobs do not wait')

  t.equal(await store.finish('me', 'a', 'completed'), true)
  t.match(rowOf(db, 'a'), { state: 'completed', outcome: 'completed', attempts_made: 0, owner: null, lock_until: null })
  t.ok((rowOf(db, 'a')?.finished_at as number) >= before)
  t.equal(await store.finish('me', 'a', 'completed'), false, 'finished already')
  t.equal(await store.finish('someone else', 'b', 'failed'), false, 'not the owner')
  t.equal(await store.finish('me', 'b', 'failed', 'card declined'), true)
  t.match(rowOf(db, 'b'), { state: 'failed', outcome: 'failed', attempts_made: 1, error: 'card declined' })
  t.equal(await store.finish('me', 'c', 'timeout', 'x'.repeat(5000)), true)
  t.match(rowOf(db, 'c'), { state: 'failed', outcome: 'timeout', attempts_made: 1 })
  t.equal(rowOf(db, 'c')?.error, 'x'.repeat(1000), 'the message is kept up to 1,000 characters')
  t.equal(rowOf(db, 'a')?.error, null, 'a completed job has none')
  t.equal(await store.finish('me', 'nope', 'completed'), false, 'unknown job')
})

test('jobs due in one millisecond come out in the order they were added; delays', async (t) => {
  const { store, db } = await opened(t)
  const ids = Array.from({ length: 20 }, (_, i) => `j${19 - i}`)
  await store.enqueue(ids.map((id) => job(id)), 1000)
  db.prepare('UPDATE jobs SET run_at = 5').run()
  t.same((await store.take('me', 20, 1000)).map((leased) => leased.id), ids)

  await store.enqueue([job('later', { delay: 60_000 }), job('soon', { delay: 30_000 })], 1000)
  t.same(await store.take('me', 5, 1000), [], 'not due yet')
  const due = await store.nextDue() as number
  t.ok(due > 29_000 && due <= 30_000, `the next is due in ${due} ms`)
  db.prepare("UPDATE jobs SET run_at = run_at - 60000 WHERE id IN ('later', 'soon')").run()
  t.same((await store.take('me', 5, 1000)).map((leased) => [leased.id, leased.delay]), [['soon', 30_000], ['later', 60_000]],
    'both due now, the one due longest ago first; the delay option is carried')
})

test('retry counts the attempt and waits; release does neither', async (t) => {
  const { store, db } = await opened(t)
  await store.enqueue([job('a'), job('b')], 1000)
  await store.take('me', 1, 1000)
  t.equal(await store.retry('other', 'a', 0), false, 'not the owner')
  t.equal(await store.retry('me', 'a', 60_000), true)
  t.match(rowOf(db, 'a'), { state: 'waiting', attempts_made: 1, owner: null, lock_until: null })
  t.same((await store.take('me', 5, 1000)).map((leased) => leased.id), ['b'], 'a waits for its backoff')
  db.prepare("UPDATE jobs SET run_at = run_at - 60000 WHERE id = 'a'").run()
  t.same((await store.take('me', 5, 1000)).map((leased) => [leased.id, leased.attempt]), [['a', 2]], 'the next attempt')

  await store.enqueue([job('c')], 1000)
  t.equal(await store.release('other', 'a'), false, 'not the owner')
  t.equal(await store.release('me', 'a'), true)
  t.equal(await store.release('me', 'a'), false, 'released already')
  t.match(rowOf(db, 'a'), { state: 'waiting', attempts_made: 1, owner: null })
  t.same((await store.take('me', 5, 1000)).map((leased) => [leased.id, leased.attempt]), [['a', 2], ['c', 1]],
    'due at once, same attempt, still ahead of a newer job')
})

test('renew extends the leases still held and answers the lost ones', async (t) => {
  const { store, db } = await opened(t)
  await store.enqueue([job('a'), job('b')], 1000)
  await store.take('me', 2, 1000)
  await store.finish('me', 'b', 'completed')
  const before = Date.now()
  t.same(await store.renew('me', ['a', 'b', 'unknown'], 60_000), ['b', 'unknown'])
  t.ok((rowOf(db, 'a')?.lock_until as number) >= before + 60_000)
  t.same(await store.renew('other', ['a'], 60_000), ['a'], 'another owner')
  t.same(await store.renew('me', [], 60_000), [])
})

test('a lease that expired: recover gives the job back, another owner takes it, the first owner has lost it', async (t) => {
  const { store, db } = await opened(t)
  await store.enqueue([job('a'), job('b')], 1000)
  await store.take('first', 1, 200)
  await store.take('alive', 1, 60_000)
  t.same(await store.recover(() => false), [], 'not expired yet')
  t.match(rowOf(db, 'a'), { state: 'active', owner: 'first' })
  await new Promise((resolve) => setTimeout(resolve, 250))
  t.same(await store.recover(() => false), [])
  t.match(rowOf(db, 'a'), { state: 'waiting', owner: null, stalled: 1, attempts_made: 0 })
  t.match(rowOf(db, 'b'), { state: 'active', owner: 'alive' }, 'a live lease is left alone')
  const [again] = await store.take('second', 1, 60_000)
  t.same([again.id, again.attempt], ['a', 1], 'the same attempt: a lost run does not count')
  t.equal(await store.finish('first', 'a', 'completed'), false, "the first owner's finish changes nothing")
  t.same(await store.renew('first', ['a'], 1000), ['a'])
  t.equal(await store.retry('first', 'a', 0), false)
  t.equal(await store.release('first', 'a'), false)
  t.equal(await store.finish('second', 'a', 'completed'), true)
})

test('recover: a dead owner gives its jobs back at once; a second lost run fails the job', async (t) => {
  const { store, db } = await opened(t)
  await store.enqueue([job('a', { backoff: 5 }), job('b')], 1000)
  await store.take('dead', 1, 60_000)
  await store.take('alive', 1, 60_000)
  const asked: string[] = []
  const isDead = (owner: string): boolean => { asked.push(owner); return owner === 'dead' }
  t.same(await store.recover(isDead), [])
  t.same(asked, ['dead', 'alive'])
  t.match(rowOf(db, 'a'), { state: 'waiting', stalled: 1 })
  await store.retry('alive', 'b', 0)

  await store.take('dead', 2, 60_000)
  const failed = await store.recover(isDead)
  t.same(failed, [{ id: 'a', name: 'send', payload: job('a').payload, attempt: 1, attempts: 3, backoff: 5, delay: 0 }],
    'a: lost twice, failed and answered for its final line')
  t.match(rowOf(db, 'a'), { state: 'failed', outcome: 'stalled', stalled: 2, owner: null, error: STALLED_MESSAGE })
  t.ok(rowOf(db, 'a')?.finished_at)
  t.match(rowOf(db, 'b'), { state: 'waiting', stalled: 1, attempts_made: 1 }, 'b: lost once')
})

test('recover leaves a lease that changed after it was read', async (t) => {
  const { store, db, path } = await opened(t)
  const other = makeStore(t, path)
  await store.enqueue([job('a')], 1000)
  await store.take('dying', 1, 60_000)
  // the owner renews its lease between recover's read and its write (a renewal is written at
  // once; a settlement joins the next group commit, after recover's)
  let renewed: Promise<string[]> | undefined
  const failed = await store.recover((owner) => {
    renewed = other.renew(owner, ['a'], 120_000)
    return true
  })
  t.same(await renewed, [], 'the lease was still held')
  t.same(failed, [])
  t.match(rowOf(db, 'a'), { state: 'active', owner: 'dying', stalled: 0 })
  t.ok((rowOf(db, 'a')?.lock_until as number) > Date.now() + 60_000, 'with the renewed lease')
})

test('a job id already stored is not added again, until pruned', async (t) => {
  const { store, db } = await opened(t)
  await Promise.all([store.enqueue([job('k', { payload: { ...job('k').payload, data: 1 } })], 1000), store.enqueue([job('k'), job('k')], 1000)])
  await store.enqueue([job('k')], 1000)
  t.same(db.prepare('SELECT count(*) AS n FROM jobs').get(), { n: 1 }, 'waiting: one job')
  t.same((await store.take('me', 5, 1000))[0].payload.data, 1, 'the first one added is kept')
  await store.enqueue([job('k')], 1000)
  t.same(await store.take('me', 5, 1000), [], 'active: not added')
  await store.finish('me', 'k', 'completed')
  await store.enqueue([job('k')], 1000)
  t.same(await store.take('me', 5, 1000), [], 'finished and kept: not added')
  t.equal(await store.prune(), 0, 'within the retention')
  db.prepare('UPDATE jobs SET finished_at = ?').run(Date.now() - KEEP_COMPLETED.age * 1000 - 1)
  t.equal(await store.prune(), 1)
  await store.enqueue([job('k')], 1000)
  t.same((await store.take('me', 5, 1000)).map((leased) => leased.id), ['k'], 'pruned: added again')
})

/** `count` finished jobs of `state` written straight into the file, finished `ago` ms ago and the ones after 1 ms apart. */
function finished (db: Database.Database, state: 'completed' | 'failed', count: number, ago: number, queue = QUEUE): void {
  db.prepare(`WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?)
    INSERT INTO jobs (queue, id, task, payload, attempts, delay, state, run_at, finished_at, outcome, created_at)
    SELECT ?, ? || i, 'send', '{}', 1, 0, ?, 0, ? + i, ?, 0 FROM n`).run(count, queue, `${state}-${ago}-`, state, Date.now() - ago, state)
}

function ids (db: Database.Database, state: string): string[] {
  return (db.prepare('SELECT id FROM jobs WHERE state = ? ORDER BY finished_at').all(state) as Array<{ id: string }>).map((row) => row.id)
}

test('prune keeps completed jobs 1 h / 10,000 and failed jobs 7 days / 100,000, per queue', async (t) => {
  const { store, db } = await opened(t)
  const hour = KEEP_COMPLETED.age * 1000
  const week = KEEP_FAILED.age * 1000
  finished(db, 'completed', 2, hour + 10)
  finished(db, 'completed', KEEP_COMPLETED.count + 3, 60_000)
  finished(db, 'failed', 2, week + 10)
  finished(db, 'failed', 3, hour + 10)
  finished(db, 'completed', 2, hour + 10, 'another queue')
  t.equal(await store.prune(), 2 + 3 + 2)
  const completed = ids(db, 'completed')
  t.equal(completed.length, KEEP_COMPLETED.count + 2, 'the newest 10,000 of this queue, and the other queue\'s')
  t.equal(completed.filter((id) => id.startsWith('completed-60000-')).length, KEEP_COMPLETED.count)
  t.notOk(completed.includes('completed-60000-2'), 'the oldest beyond the count went')
  t.same(ids(db, 'failed'), [`failed-${hour + 10}-0`, `failed-${hour + 10}-1`, `failed-${hour + 10}-2`], 'failed: an hour old is kept')

  finished(db, 'failed', KEEP_FAILED.count + 1, 60_000)
  t.equal(await store.prune(), 4, 'the 3 older failed and the oldest of the newest batch')
  t.equal(ids(db, 'failed').length, KEEP_FAILED.count)
})

test('recover prunes, at most every few seconds', async (t) => {
  const { store, db } = await opened(t)
  const old = KEEP_COMPLETED.age * 1000 + 10
  finished(db, 'completed', 1, old)
  await store.recover(() => false)
  t.same(ids(db, 'completed'), [], 'the first recover prunes')
  finished(db, 'completed', 1, old)
  await store.recover(() => false)
  t.equal(ids(db, 'completed').length, 1, 'not again right away')
})

test('group commit: the enqueue() calls of one event-loop turn share one transaction', async (t) => {
  const path = join(await tempDir(t), 'jobs.db')
  const wrapped = counting()
  const store = makeStore(t, path, { open: wrapped.open, where: 'fastify-send-and-continue queue' })
  await store.check(1000)
  const opening = wrapped.commits
  const settled: string[] = []
  const calls = Array.from({ length: 10 }, (_, i) => store.enqueue([job(`a${i}`), job(`b${i}`)], 1000).then(() => { settled.push(`a${i}`) }))
  t.same(settled, [], 'nothing resolves before its commit')
  await Promise.all(calls)
  t.equal(wrapped.commits - opening, 1, 'one transaction for ten calls')
  t.equal(settled.length, 10)
  t.same(peek(t, path).prepare('SELECT count(*) AS n FROM jobs').get(), { n: 20 })
  await store.enqueue([job('c')], 1000)
  t.equal(wrapped.commits - opening, 2, 'a later turn: a second transaction')

  // a commit that fails rejects every caller of its transaction, and stores none of their jobs
  const failure = new Error('disk I/O error')
  wrapped.failCommit = failure
  const results = await Promise.allSettled([store.enqueue([job('x')], 1000), store.enqueue([job('y')], 1000), store.enqueue([job('z')], 1000)])
  t.same(results, [failure, failure, failure].map((reason) => ({ status: 'rejected', reason })))
  t.same(peek(t, path).prepare("SELECT count(*) AS n FROM jobs WHERE id IN ('x', 'y', 'z')").get(), { n: 0 })
  await store.enqueue([job('x')], 1000)
  t.match(rowOf(peek(t, path), 'x'), { state: 'waiting' }, 'the next transaction works')
})

test('group commit: the takes and settlements of one turn join its enqueues\' transaction; a failed commit rejects them all', async (t) => {
  const path = join(await tempDir(t), 'jobs.db')
  const wrapped = counting()
  const store = makeStore(t, path, { open: wrapped.open })
  await store.check(1000)
  await store.enqueue([job('a'), job('b'), job('c')], 1000)
  const [a, b] = await store.take('me', 2, 10_000)
  const opening = wrapped.commits
  const [enqueued, finished, retried, taken] = await Promise.all([
    store.enqueue([job('d')], 1000),
    store.finish('me', a.id, 'completed'),
    store.retry('me', b.id, 60_000),
    store.take('me', 5, 10_000)
  ])
  t.equal(wrapped.commits - opening, 1, 'one transaction')
  t.equal(enqueued, undefined)
  t.equal(finished, true)
  t.equal(retried, true)
  t.same(taken.map((leased) => leased.id), ['c', 'd'], 'a job added in the same turn is taken in the same transaction')
  const db = peek(t, path)
  t.match(rowOf(db, 'a'), { state: 'completed' })

  const failure = new Error('disk I/O error')
  wrapped.failCommit = failure
  const results = await Promise.allSettled([store.enqueue([job('e')], 1000), store.finish('me', 'c', 'completed'), store.take('me', 5, 10_000)])
  t.same(results, [failure, failure, failure].map((reason) => ({ status: 'rejected', reason })))
  t.notOk(rowOf(db, 'e'), 'nothing of the failed transaction was stored')
  t.match(rowOf(db, 'c'), { state: 'active', owner: 'me' }, 'the job is still leased: its lease expires, and it runs again')
})

test('enqueue timeout: a locked file fails the batch after the time left, not the busy timeout', async (t) => {
  const path = join(await tempDir(t), 'jobs.db')
  const wrapped = counting()
  const store = makeStore(t, path, { busyTimeout: 10_000, open: wrapped.open })
  await store.check(1000)
  const other = peek(t, path)
  other.exec('BEGIN IMMEDIATE')
  const start = Date.now()
  const results = await Promise.allSettled([store.enqueue([job('a')], 150), store.enqueue([job('b')], 200)])
  const waited = Date.now() - start
  t.same(results.map((result) => result.status), ['rejected', 'rejected'])
  t.match((results[0] as PromiseRejectedResult).reason, { message: 'database is locked' })
  t.ok(waited >= 140 && waited < 5000, `gave up after ${waited} ms (the smaller timeout)`)
  other.exec('COMMIT')
  await store.enqueue([job('a')], 150)
  t.ok(rowOf(other, 'a'), 'the lock gone, it works')
  // the busy timeout is the store's own again, for the worker side
  t.same(wrapped.connections[0].prepare('PRAGMA busy_timeout').get(), { timeout: 10_000 })
})

test('enqueue timeout: callers whose time ran out before their turn are refused without a write', async (t) => {
  const { store, db } = await opened(t)
  const late = store.enqueue([job('late')], 5)
  const patient = store.enqueue([job('patient')], 10_000)
  // the event loop is held up longer than the first caller's timeout
  const until = Date.now() + 30
  while (Date.now() < until);
  await t.rejects(late, { message: /^the jobs waited \d+ ms for their transaction, longer than the timeout of 5 ms$/ })
  await patient
  t.notOk(rowOf(db, 'late'))
  t.ok(rowOf(db, 'patient'))
  const alone = store.enqueue([job('alone')], 5)
  const again = Date.now() + 30
  while (Date.now() < again);
  await t.rejects(alone, { message: /longer than the timeout of 5 ms/ }, 'a batch of late callers only')
  t.notOk(rowOf(db, 'alone'))
})

test('close commits the enqueues still waiting for their turn', async (t) => {
  const path = join(await tempDir(t), 'jobs.db')
  const store = makeStore(t, path)
  const enqueued = store.enqueue([job('a'), job('b')], 1000)
  await store.close()
  await enqueued
  t.same(peek(t, path).prepare('SELECT id FROM jobs ORDER BY id').all(), [{ id: 'a' }, { id: 'b' }])
})

test('three processes take 300 jobs from one file: each job taken once, none lost', async (t) => {
  const { store, db, path } = await opened(t)
  const all = Array.from({ length: 300 }, (_, i) => `job${i}`)
  await store.enqueue(all.map((id) => job(id)), 5000)
  const children = Array.from({ length: 3 }, () => startChild(t, ['drain', path, QUEUE]))
  for (const child of children) t.same(await child.next(), { ready: true })
  // all three start taking together
  for (const child of children) child.process.stdin?.end('go\n')
  const taken: string[][] = []
  for (const child of children) {
    const { ids } = await child.next() as { ids: string[] }
    taken.push(ids)
    t.same(await child.exited, { code: 0, signal: null }, 'no lease lost')
  }
  t.same(taken.flat().sort(), [...all].sort(), 'every job exactly once')
  t.ok(taken.filter((ids) => ids.length > 0).length >= 2, `shared between processes: ${taken.map((ids) => ids.length).join(', ')}`)
  t.same(db.prepare('SELECT state, count(*) AS n FROM jobs GROUP BY state').all(), [{ state: 'completed', n: 300 }])
})

test('kill -9 of a process holding leases: its jobs come back at once (a dead owner of this host)', async (t) => {
  const { store, db, path } = await opened(t)
  await store.enqueue(['a', 'b', 'c', 'd'].map((id) => job(id)), 1000)
  const child = startChild(t, ['hold', path, QUEUE, '3'])
  const { owner, ids } = await child.next() as { owner: string, ids: string[] }
  t.same(ids, ['a', 'b', 'c'])
  t.same(await store.recover(isDeadOwner), [], 'alive: its leases are kept')
  t.match(rowOf(db, 'a'), { state: 'active', owner })
  child.process.kill('SIGKILL')
  t.same(await child.exited, { code: null, signal: 'SIGKILL' })
  t.same(await store.recover(isDeadOwner), [])
  t.same(db.prepare("SELECT id, state, stalled, owner FROM jobs WHERE id IN ('a', 'b', 'c') ORDER BY id").all(),
    ['a', 'b', 'c'].map((id) => ({ id, state: 'waiting', stalled: 1, owner: null })), 'back to waiting long before the minute-long lease ends')
  t.same((await store.take(ownerId(), 5, 1000)).map((leased) => [leased.id, leased.attempt]), [['a', 1], ['b', 1], ['c', 1], ['d', 1]])
})

test('an owner on another host: its jobs come back only once its lease expired', async (t) => {
  const { store, db } = await opened(t)
  await store.enqueue([job('a')], 1000)
  const elsewhere = `not-${hostname()}:${process.pid}:0123456789ab`
  await store.take(elsewhere, 1, 200)
  t.same(await store.recover(isDeadOwner), [])
  t.match(rowOf(db, 'a'), { state: 'active', owner: elsewhere }, 'unknown is not dead')
  await new Promise((resolve) => setTimeout(resolve, 250))
  t.same(await store.recover(isDeadOwner), [])
  t.match(rowOf(db, 'a'), { state: 'waiting', stalled: 1, owner: null })
})
