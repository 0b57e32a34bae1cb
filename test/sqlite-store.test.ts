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
import { envWithoutCoverage } from './child-env'
import { counting, job, makeStore, peek, QUEUE, rowOf, startChild, tempDir } from './sqlite-helpers'

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

  class DatabaseSync { constructor (readonly path: string) {} }
  t.same(loadSqlite('w', without({ DatabaseSync }))('x.db'), { path: 'x.db' }, 'node:sqlite when better-sqlite3 is missing')

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
  const cases: Array<[string, (db: Database.Database) => void, object]> = [
    ['tables, no application_id', (db) => db.exec('CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES (1)'), {
      code: 'FST_SAC_SQLITE_FOREIGN',
      message: /: '.*notes\.db' should be this engine's job database or a new file, instead got a SQLite database of something else \(application_id 0, user_version 0, 1 tables and indexes\); it was left unchanged$/
    }],
    ['another application_id', (db) => db.pragma('application_id = 1234'), { code: 'FST_SAC_SQLITE_FOREIGN', message: /application_id 1234, user_version 0, 0 tables/ }],
    ['a user_version only', (db) => db.pragma('user_version = 3'), { code: 'FST_SAC_SQLITE_FOREIGN', message: /application_id 0, user_version 3, 0 tables/ }],
    ['ours, newer', (db) => { db.pragma(`application_id = ${APPLICATION_ID}`); db.pragma('user_version = 2') }, {
      code: 'FST_SAC_SQLITE_SCHEMA',
      message: /should have schema version 1 or older, instead got 2 \(written by a newer fastify-send-and-continue\); it was left unchanged$/
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

test('a closed store refuses to work', async (t) => {
  const store = makeStore(t, join(await tempDir(t), 'jobs.db'))
  await store.close()
  await store.close()
  await t.rejects(store.check(1000), { message: "createWorker(): the SQLite store of queue 'q' is closed" })
  await t.rejects(store.enqueue([job('a')], 1000), { message: /is closed/ })
  await t.rejects(store.take('me', 1, 1000), { message: /is closed/ })
})
