import t, { test } from 'tap'
import { execFile } from 'node:child_process'
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'

// The package as a new user installs it: the packed tarball into a fresh project with Fastify
// alone. Each engine's driver is an optional peer dependency, so an app that only defers
// in-process gets none of them, the memory engine works, an engine whose driver is missing fails
// at registration with a coded error that says what to install, and the published types check
// without the drivers installed.

const run = promisify(execFile)
// npm install of the tarball and its dependencies, then a compile: about 20 s here, more on a busy machine
t.setTimeout(240_000)
const root = join(__dirname, '..')
const hasNodeSqlite = (() => {
  try {
    require('node:sqlite')
    return true
  } catch {
    return false
  }
})()

const SCRIPT = `
'use strict'
const assert = require('node:assert')
const Fastify = require('fastify')
const sendAndContinue = require('fastify-send-and-continue')
const { createWorker, defineTask } = sendAndContinue
const hello = defineTask('hello', () => {})

async function refused (queue) {
  const app = Fastify()
  try {
    await app.register(sendAndContinue, { queue: { ...queue, tasks: [hello] } }).ready()
    return null
  } catch (err) {
    return { code: err.code, message: err.message }
  } finally {
    await app.close()
  }
}

async function main () {
  const out = {}
  const app = Fastify()
  await app.register(sendAndContinue, { queue: { engine: 'memory', tasks: [hello] } })
  let ran = 0
  app.get('/', (request, reply) => reply.sendAndContinue('ok', [() => { ran++ }, hello.with({ n: 1 })]))
  assert.strictEqual((await app.inject('/')).body, 'ok')
  await app.sendAndContinue.drain()
  out.memory = { ran, completed: app.sendAndContinue.stats().completed }
  await app.close()
  out.bullmq = await refused({ connection: 'redis://127.0.0.1:1' })
  out.sqlite = await refused({ engine: 'sqlite', path: require('node:path').join(process.argv[2], 'jobs.db') })
  out.worker = await createWorker({ connection: 'redis://127.0.0.1:1', tasks: [hello] }).then(() => null, (err) => ({ code: err.code, message: err.message }))
  console.log(JSON.stringify(out))
}
main().catch((err) => { console.error(err); process.exit(1) })
`

const CONSUMER = `
import Fastify from 'fastify'
import sendAndContinue, { createWorker, defineTask } from 'fastify-send-and-continue'
import type { QueueOptions, SqliteQueueOptions, WorkerOptions } from 'fastify-send-and-continue'

export const hello = defineTask<{ n: number }>('hello', async (data, ctx) => { ctx.log.info({ n: data.n, attempt: ctx.attempt }) }, { attempts: 3, backoff: { type: 'exponential', delay: 100 } })
const sqlite: SqliteQueueOptions = { engine: 'sqlite', path: 'var/jobs.db', tasks: [hello], synchronous: 'full' }
const queues: QueueOptions[] = [sqlite, { engine: 'memory', tasks: [hello] }, { connection: 'redis://127.0.0.1:6379', tasks: [hello], prefix: 'bull' }]
const worker: WorkerOptions = { engine: 'sqlite', path: 'var/jobs.db', tasks: [hello] }
export async function start (): Promise<void> {
  const app = Fastify()
  await app.register(sendAndContinue, { queue: queues[0] })
  app.post('/', async (request, reply) => reply.code(202).sendAndContinue({ ok: true }, hello.with({ n: 1 }, { key: 'k', delay: 10 })))
  await createWorker(worker)
}
`

test('a fresh install: no engine driver comes with the package; memory works; a missing driver is a coded error; the types check without the drivers', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sac-fresh-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const { stdout: packed } = await run('npm', ['pack', '--ignore-scripts', '--silent', '--pack-destination', dir], { cwd: root })
  const tarball = join(dir, packed.trim().split('\n').pop() as string)
  const app = join(dir, 'app')
  await run('mkdir', ['-p', app])
  await writeFile(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true }))
  await run('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error', tarball, 'fastify@5', '@types/node@20', 'typescript@~6.0.3'], { cwd: app, maxBuffer: 16 * 1024 * 1024 })

  const installed = new Set(await readdir(join(app, 'node_modules')))
  t.same(['bullmq', 'ioredis', 'better-sqlite3', 'msgpackr'].filter((name) => installed.has(name)), [], 'no engine driver is installed with the package')

  await writeFile(join(app, 'fresh.cjs'), SCRIPT)
  const { stdout } = await run(process.execPath, ['fresh.cjs', dir], { cwd: app })
  const out = JSON.parse(stdout)
  t.same(out.memory, { ran: 1, completed: 2 }, 'the memory engine runs a job beside an in-process task')
  t.same(out.bullmq, {
    code: 'FST_SAC_MISSING_DRIVER',
    message: "fastify-send-and-continue queue: the 'bullmq' engine needs the package bullmq and ioredis, which is not installed; install it with: npm install bullmq ioredis"
  })
  t.same(out.worker, {
    code: 'FST_SAC_MISSING_DRIVER',
    message: "createWorker(): the 'bullmq' engine needs the package bullmq and ioredis, which is not installed; install it with: npm install bullmq ioredis"
  })
  if (hasNodeSqlite) {
    t.equal(out.sqlite, null, 'where Node has node:sqlite, the sqlite engine needs nothing installed')
  } else {
    t.same(out.sqlite, {
      code: 'FST_SAC_MISSING_DRIVER',
      message: "fastify-send-and-continue queue: the 'sqlite' engine needs the package better-sqlite3, which is not installed; install it with: npm install better-sqlite3@12"
    })
  }

  await writeFile(join(app, 'consumer.ts'), CONSUMER)
  await writeFile(join(app, 'tsconfig.json'), JSON.stringify({ compilerOptions: { strict: true, module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', noEmit: true, skipLibCheck: false, types: ['node'] }, files: ['consumer.ts'] }))
  const tsc = await run(process.execPath, [join(app, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], { cwd: app }).then(() => '', (err: { stdout: string }) => err.stdout)
  t.equal(tsc, '', 'the published declarations type-check with skipLibCheck off and no driver installed')
})
