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
