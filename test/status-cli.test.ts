import t, { test } from 'tap'
import type { Test } from 'tap'
import Database from 'better-sqlite3'
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { once } from 'node:events'
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import Fastify from 'fastify'
import { Redis } from 'ioredis'
import sendAndContinue, { createWorker, defineTask } from '../lib/index'
import { taskOfId } from '../lib/engines/bullmq/status'
import { SCHEMA_VERSION } from '../lib/engines/sqlite/schema'
import { readSqliteStatus } from '../lib/engines/sqlite/status'
import { STALLED_MESSAGE } from '../lib/jobs/lease-loop'
import { formatAge, parseStatusArgs, runStatus, STATUS_USAGE } from '../lib/jobs/status'
import type { StatusReport } from '../lib/jobs/status'
import { VERSION } from '../lib/report/cli'
import { inspect, workerLogger } from './durable-helpers'
import { startRedis } from './redis'
import { job, makeStore, peek, tempDir, versionOne } from './sqlite-helpers'

// `fastify-send-and-continue status`: the real command line in child processes, on a real SQLite
// file and a real redis-server holding jobs in every state; the store is left as it was.

// each run of the command line is a new Node process compiling TypeScript: a few seconds apiece
t.setTimeout(180_000)

const CLI = join(__dirname, '..', 'lib', 'cli.ts')
const QUEUE = 'fastify-send-and-continue'

interface Ran { code: number | null, stdout: string, stderr: string }

/** The command line in a child process, through the test runner's TypeScript loader. */
async function cli (args: string[]): Promise<Ran> {
  const child = spawn(process.execPath, [...process.execArgv, CLI, 'status', ...args])
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk) => { stdout += chunk })
  child.stderr.on('data', (chunk) => { stderr += chunk })
  const [code] = await once(child, 'exit')
  return { code, stdout, stderr }
}

class Sink extends Writable {
  text = ''
  override _write (chunk: Buffer, _encoding: string, done: () => void): void {
    this.text += chunk.toString()
    done()
  }
}

/** The same, in this process: for the many argument mistakes. */
async function inProcess (args: string[]): Promise<Ran> {
  const stdout = new Sink()
  const stderr = new Sink()
  const code = await runStatus(args, { stdout, stderr })
  return { code, stdout: stdout.text, stderr: stderr.text }
}

function freePort (): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo
      server.close(() => resolve(port))
    })
  })
}

function sha256 (path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex')
}

/**
 * A SQLite file written through the engine's own store: jobs of two tasks waiting, delayed,
 * active, completed and failed (an error, a timeout, a stalled job, one without a message), and a
 * job of another queue. Times are set afterwards so the order and ages are known.
 */
async function sqliteFile (t: Test): Promise<string> {
  const path = join(await tempDir(t), 'deferred.db')
  const store = makeStore(t, path, { queue: QUEUE })
  await store.check(1000)
  const welcome = (id: string, extra = {}): ReturnType<typeof job> => job(`sendWelcome~${id}`, { task: 'sendWelcome', ...extra })
  const charge = (id: string): ReturnType<typeof job> => job(`chargeCard~${id}`, { task: 'chargeCard' })
  async function lease (record: ReturnType<typeof job>, owner = 'me'): Promise<string> {
    await store.enqueue([record], 1000)
    const [leased] = await store.take(owner, 1, 60_000)
    t.equal(leased.id, record.jobId)
    return leased.id
  }
  const f1 = await lease(charge('f1'))
  for (let i = 0; i < 2; i++) {
    await store.retry('me', f1, 0)
    await store.take('me', 1, 60_000)
  }
  await store.finish('me', f1, 'failed', 'card declined: insufficient funds')
  await store.finish('me', await lease(charge('f2')), 'timeout', 'durable task "chargeCard" timed out after 5000 ms')
  const f3 = await lease(charge('f3'), 'dead')
  await store.recover((owner) => owner === 'dead')
  t.equal((await store.take('dead', 1, 60_000))[0].id, f3)
  t.same((await store.recover((owner) => owner === 'dead')).map((failed) => failed.id), [f3], 'lost twice: failed as stalled')
  await store.finish('me', await lease(charge('f4')), 'failed')
  for (const id of ['c1', 'c2']) await store.finish('me', await lease(welcome(id)), 'completed')
  await lease(welcome('a1'))
  await store.enqueue([welcome('w1'), welcome('w2'), charge('w3'), welcome('d1', { delay: 60_000 })], 1000)
  const other = makeStore(t, path, { queue: 'other' })
  await other.enqueue([job('audit~1', { task: 'audit' })], 1000)
  await other.close()
  await store.close()

  const db = new Database(path)
  const now = Date.now()
  db.prepare("UPDATE jobs SET created_at = ?, run_at = ? WHERE id = 'sendWelcome~w1'").run(now - 90_000, now - 90_000)
  for (const [i, id] of ['f1', 'f2', 'f3', 'f4'].entries()) db.prepare('UPDATE jobs SET finished_at = ? WHERE id = ?').run(now - 4000 + i * 1000, `chargeCard~${id}`)
  db.close()
  return path
}

test('status --sqlite: jobs per state and task, the oldest waiting job, the newest failed ones, in text and --json; the file is left as it was', async (t) => {
  const path = await sqliteFile(t)
  const before = sha256(path)

  const json = await cli(['--sqlite', path, '--json'])
  t.equal(json.code, 0, json.stderr)
  const report = JSON.parse(json.stdout) as StatusReport
  t.match(report, { version: VERSION, engine: 'sqlite', queue: QUEUE, time: /^\d{4}-\d\d-\d\dT/ })
  t.same(report.states, { waiting: 3, delayed: 1, active: 1, completed: 2, failed: 4 })
  t.same(report.tasks, [
    { task: 'chargeCard', waiting: 1, delayed: 0, active: 0, completed: 0, failed: 4 },
    { task: 'sendWelcome', waiting: 2, delayed: 1, active: 1, completed: 2, failed: 0 }
  ])
  t.match(report.oldestWaiting, { id: 'sendWelcome~w1', task: 'sendWelcome', enqueuedAt: /Z$/ })
  const waitingMs = report.oldestWaiting?.waitingMs as number
  t.ok(waitingMs >= 90_000 && waitingMs < 120_000, `waiting for ${waitingMs} ms`)
  t.same(report.failed.map(({ failedAt, ...job }) => job), [
    { id: 'chargeCard~f4', task: 'chargeCard', error: null, attempts: 1 },
    { id: 'chargeCard~f3', task: 'chargeCard', error: STALLED_MESSAGE, attempts: 1 },
    { id: 'chargeCard~f2', task: 'chargeCard', error: 'durable task "chargeCard" timed out after 5000 ms', attempts: 1 },
    { id: 'chargeCard~f1', task: 'chargeCard', error: 'card declined: insufficient funds', attempts: 3 }
  ], 'newest first: id, task, the message kept, the attempt its final line named')
  t.ok(report.failed.every((job, i) => i === 0 || job.failedAt < report.failed[i - 1].failedAt))

  const text = await cli(['--sqlite', path, '--failed', '2'])
  t.equal(text.code, 0, text.stderr)
  const out = text.stdout
  t.match(out, /^Queue fastify-send-and-continue \(sqlite\), read at \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ\n/)
  t.match(out, '\nJobs: 3 waiting, 1 delayed, 1 active, 2 completed, 4 failed.\n')
  t.match(out, /task +│ +waiting │ +delayed │ +active │ +completed │ +failed/)
  t.match(out, /chargeCard +│ +1 │ +0 │ +0 │ +0 │ +4 │/)
  t.match(out, /sendWelcome +│ +2 │ +1 │ +1 │ +2 │ +0 │/)
  t.match(out, /\nOldest waiting job: sendWelcome~w1 \(sendWelcome\), enqueued \S+ \S+, 1 min \d+ s ago\.\n/)
  t.match(out, '\nFailed jobs, newest first (2 of 4):\n')
  t.match(out, /chargeCard~f4 +│ chargeCard +│ +1 │ - +│/)
  t.match(out, /chargeCard~f3 +│ chargeCard +│ +1 │ job stalled more than allowable/)
  t.notMatch(out, 'chargeCard~f2', '--failed 2: two listed')

  const other = await inProcess(['--sqlite', path, '--name', 'other', '--failed', '0', '--json'])
  t.match(JSON.parse(other.stdout), { queue: 'other', states: { waiting: 1 }, tasks: [{ task: 'audit', waiting: 1 }], failed: [] })

  t.equal(sha256(path), before, 'the database file is unchanged')
  // a reader of a WAL database may create the empty -wal and -shm companions SQLite needs
  t.equal(existsSync(path + '-wal') ? statSync(path + '-wal').size : 0, 0, 'nothing was written to the WAL')
})

test('status --sqlite reads a file of schema version 1 (no error column) without changing it', async (t) => {
  const path = await versionOne(t, 'sendWelcome~x', 'sendWelcome', QUEUE)
  const before = sha256(path)
  const ran = await inProcess(['--sqlite', path, '--json'])
  t.equal(ran.code, 0, ran.stderr)
  t.match(JSON.parse(ran.stdout), { states: { failed: 1 }, failed: [{ id: 'sendWelcome~x', task: 'sendWelcome', error: null }] })
  t.equal(sha256(path), before, 'unchanged')
})

test('status --sqlite: an empty queue; files that cannot be read exit 1 with a coded error\'s message', async (t) => {
  const path = await sqliteFile(t)
  const empty = await inProcess(['--sqlite', path, '--name', 'nothing'])
  t.equal(empty.code, 0)
  t.match(empty.stdout, '\nJobs: 0 waiting, 0 delayed, 0 active, 0 completed, 0 failed.\n\nOldest waiting job: none (no job is due).\n')
  t.notMatch(empty.stdout, 'task', 'no table without tasks')
  t.notMatch(empty.stdout, 'Failed jobs')

  const dir = await tempDir(t)
  const missing = await inProcess(['--sqlite', join(dir, 'missing.db')])
  t.same(missing, { code: 1, stdout: '', stderr: `fastify-send-and-continue status: --sqlite should be an existing database file of the sqlite engine, instead got '${join(dir, 'missing.db')}' (unable to open database file)\n` })
  t.notOk(existsSync(join(dir, 'missing.db')), 'and it is not created')

  writeFileSync(join(dir, 'junk.db'), Buffer.alloc(4096, 7))
  const junk = await inProcess(['--sqlite', join(dir, 'junk.db')])
  t.equal(junk.code, 1)
  t.match(junk.stderr, 'should be this engine\'s job database or a new file, instead got a file that is not a SQLite database; it was left unchanged')

  const foreign = new Database(join(dir, 'foreign.db'))
  foreign.exec('CREATE TABLE notes (x)')
  foreign.close()
  t.match((await inProcess(['--sqlite', join(dir, 'foreign.db')])).stderr, 'instead got a SQLite database of something else (application_id 0, user_version 0)')

  const newer = peek(t, join(dir, 'newer.db'))
  newer.exec(`PRAGMA application_id = ${0x46534143}; PRAGMA user_version = 99`)
  t.match((await inProcess(['--sqlite', join(dir, 'newer.db')])).stderr, `should have schema version ${SCHEMA_VERSION} or older, instead got 99`)

  // ours by its header, but no jobs table: an error of the query, prefixed with the command
  const broken = peek(t, join(dir, 'broken.db'))
  broken.exec(`PRAGMA application_id = ${0x46534143}; PRAGMA user_version = 1`)
  t.same(await inProcess(['--sqlite', join(dir, 'broken.db')]), { code: 1, stdout: '', stderr: 'fastify-send-and-continue status: no such table: jobs\n' })

  t.throws(() => readSqliteStatus({
    path: 'x.db',
    queue: QUEUE,
    failed: 1,
    where: 'w',
    open: () => ({ exec () {}, close () {}, prepare () { throw new Error('disk I/O error') } })
  }), { code: 'FST_SAC_SQLITE_FOREIGN', message: "w: 'x.db' should be this engine's job database or a new file, instead got disk I/O error; it was left unchanged" })
})

test('status --redis: the BullMQ queue through its public API, in text and --json; Redis is left as it was', async (t) => {
  const redis = await startRedis(t, { args: ['--enable-debug-command', 'yes'] })
  const sendWelcome = defineTask('sendWelcome', () => {})
  const chargeCard = defineTask('chargeCard', () => { throw new Error('card declined') }, { attempts: 2 })
  let release!: () => void
  const released = new Promise<void>((resolve) => { release = resolve })
  let onStart!: () => void
  const started = new Promise<void>((resolve) => { onStart = resolve })
  const slow = defineTask('slow', async () => {
    onStart()
    await released
  })
  const tasks = [sendWelcome, chargeCard, slow]
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(sendAndContinue, { queue: { connection: redis.connection, name: 'jobs', prefix: 'app', tasks } })
  app.post('/signup', (request, reply) => reply.code(201).sendAndContinue('ok', sendWelcome.with({})))
  app.post('/later', (request, reply) => reply.code(201).sendAndContinue('ok', sendWelcome.with({}, { delay: 60_000 })))
  app.post('/charge', (request, reply) => reply.code(201).sendAndContinue('ok', chargeCard.with({})))
  app.post('/slow', (request, reply) => reply.code(201).sendAndContinue('ok', slow.with({})))
  const post = async (url: string): Promise<void> => { t.equal((await app.inject({ method: 'POST', url })).statusCode, 201) }

  // one job at a time: once the slow one runs, what comes next waits
  const { logger, logs } = workerLogger()
  const worker = await createWorker({ connection: redis.connection, name: 'jobs', prefix: 'app', tasks, logger, concurrency: 1 })
  t.teardown(() => worker.close())
  await post('/signup')
  await post('/signup')
  await post('/charge')
  await logs.until(() => logs.outcomes.filter((line) => line.deferred?.outcome !== 'retrying').length === 3)
  await post('/slow')
  await started
  await post('/signup')
  await post('/charge')
  await post('/later')
  // a job another program added to the queue, with an id of its own: counted under its name
  await inspect(t, redis, 'jobs', 'app').add('external', {}, { jobId: 'external-1' })

  const running = await cli(['--redis', redis.path, '--name', 'jobs', '--prefix', 'app', '--json'])
  t.equal(running.code, 0, running.stderr)
  const report = JSON.parse(running.stdout) as StatusReport
  t.match(report, { version: VERSION, engine: 'bullmq', queue: 'jobs' })
  t.same(report.states, { waiting: 3, delayed: 1, active: 1, completed: 2, failed: 1 })
  t.same(report.tasks, [
    { task: 'chargeCard', waiting: 1, delayed: 0, active: 0, completed: 0, failed: 1 },
    { task: 'external', waiting: 1, delayed: 0, active: 0, completed: 0, failed: 0 },
    { task: 'sendWelcome', waiting: 1, delayed: 1, active: 0, completed: 2, failed: 0 },
    { task: 'slow', waiting: 0, delayed: 0, active: 1, completed: 0, failed: 0 }
  ])
  t.match(report.oldestWaiting, { id: /^sendWelcome~/, task: 'sendWelcome', enqueuedAt: /Z$/, waitingMs: Number })
  t.match(report.failed, [{ id: /^chargeCard~/, task: 'chargeCard', error: 'card declined', attempts: 2, failedAt: /Z$/ }])
  t.equal(report.failed.length, 1)

  release()
  await worker.close()
  const probe = new Redis(redis.connection)
  t.teardown(() => probe.disconnect())
  const digest = async (): Promise<unknown> => await probe.call('DEBUG', 'DIGEST')
  const before = await digest()

  const text = await cli(['--redis', redis.path, '--name', 'jobs', '--prefix', 'app'])
  t.equal(text.code, 0, text.stderr)
  t.match(text.stdout, /^Queue jobs \(bullmq\), read at /)
  t.match(text.stdout, '\nJobs: 3 waiting, 1 delayed, 0 active, 3 completed, 1 failed.\n')
  t.match(text.stdout, /slow +│ +0 │ +0 │ +0 │ +1 │ +0 │/)
  t.match(text.stdout, /\nOldest waiting job: sendWelcome~\S+ \(sendWelcome\), enqueued .+ ago\.\n/)
  t.match(text.stdout, /\nFailed jobs, newest first \(1 of 1\):\n[\s\S]*chargeCard~\S+ +│ chargeCard +│ +2 │ card declined/)

  const none = await inProcess(['--redis', redis.path, '--name', 'jobs', '--prefix', 'app', '--failed', '0', '--json'])
  t.same(JSON.parse(none.stdout).failed, [], '--failed 0')
  const empty = JSON.parse((await inProcess(['--redis', redis.path, '--json'])).stdout) as StatusReport
  t.same([empty.queue, empty.states, empty.tasks, empty.oldestWaiting], [QUEUE, { waiting: 0, delayed: 0, active: 0, completed: 0, failed: 0 }, [], null],
    'the default name and prefix: nothing there')
  t.equal(await digest(), before, 'Redis holds exactly what it held before')
})

test('status --redis: a Redis that refuses the connection exits 1 at once', async (t) => {
  const port = await freePort()
  const started = Date.now()
  const ran = await inProcess(['--redis', `redis://127.0.0.1:${port}`])
  t.same(ran, { code: 1, stdout: '', stderr: `fastify-send-and-continue status: Redis should answer within 5000 ms, instead got 'connect ECONNREFUSED 127.0.0.1:${port}'\n` })
  t.ok(Date.now() - started < 4000, 'without waiting for the timeout')
})

test('status usage errors: exit 2, a coded error saying what was expected and what was given, and a hint', async (t) => {
  const cases: Array<[string[], string, string]> = [
    [[], 'FST_SAC_INVALID_OPTION', 'the store should be given by one of --sqlite <file> and --redis <url>, instead got neither'],
    [['--sqlite', 'a.db', '--redis', 'redis://x'], 'FST_SAC_INVALID_OPTION', 'the store should be given by one of --sqlite <file> and --redis <url>, instead got both'],
    [['a.db'], 'FST_SAC_INVALID_OPTION', "arguments should be options only (the store is given by --sqlite or --redis), instead got 'a.db'"],
    [['--sqlite', 'a.db', '--', 'b'], 'FST_SAC_INVALID_OPTION', "arguments should be options only (the store is given by --sqlite or --redis), instead got 'b'"],
    [['--sqlite', 'a.db', '--verbose'], 'FST_SAC_UNKNOWN_OPTION', "unknown option '--verbose', expected one of --sqlite, --redis, --name, --prefix, --failed, --json, --help"],
    [['-x'], 'FST_SAC_UNKNOWN_OPTION', "unknown option '-x', expected one of --sqlite"],
    [['--sqlite'], 'FST_SAC_INVALID_OPTION', '--sqlite should be followed by the path of a SQLite database file, instead got nothing'],
    [['--sqlite', '--json'], 'FST_SAC_INVALID_OPTION', "--sqlite should be followed by the path of a SQLite database file, instead got the option '--json'"],
    [['--sqlite='], 'FST_SAC_INVALID_OPTION', "--sqlite should be the path of a SQLite database file, instead got ''"],
    [['--sqlite', 'a', '--sqlite', 'b'], 'FST_SAC_INVALID_OPTION', '--sqlite should be given once, instead got it twice'],
    [['--sqlite', 'a', '--json=yes'], 'FST_SAC_INVALID_OPTION', "--json should be a flag without a value, instead got 'yes'"],
    [['--redis', 'localhost:6379'], 'FST_SAC_INVALID_OPTION', "--redis should be a redis:// or rediss:// URL, or the path of a unix socket, instead got 'localhost:6379'"],
    [['--redis', '/run/redis.sock', '--name='], 'FST_SAC_INVALID_OPTION', "--name should be a queue name, instead got ''"],
    [['--sqlite', 'a.db', '--prefix', 'p'], 'FST_SAC_ENGINE_OPTION', "--prefix is an option of the bullmq engine, it should not be given with engine 'sqlite'"],
    [['--sqlite', 'a.db', '--failed', 'many'], 'FST_SAC_INVALID_OPTION', "--failed should be a whole number from 0 to 1000, instead got 'many'"],
    [['--sqlite', 'a.db', '--failed', '1001'], 'FST_SAC_INVALID_OPTION', "--failed should be a whole number from 0 to 1000, instead got '1001'"]
  ]
  for (const [args, code, message] of cases) {
    t.throws(() => parseStatusArgs(args), { code }, `${args.join(' ')}: ${code}`)
    const ran = await inProcess(args)
    t.equal(ran.code, 2, message)
    t.match(ran.stderr, `fastify-send-and-continue status: ${message}`)
    t.match(ran.stderr, '\nRun "fastify-send-and-continue status --help" for the options.\n')
    t.equal(ran.stdout, '')
  }
  for (const help of [['--help'], ['-h'], ['--sqlite', 'a.db', '--help']]) t.same(await inProcess(help), { code: 0, stdout: STATUS_USAGE, stderr: '' })
})

test('ages and task names', async (t) => {
  t.same([0, 999, 1000, 59_999, 60_000, 192_000, 3_600_000, 18_240_000, 86_400_000, 183_600_000].map(formatAge),
    ['0 ms', '999 ms', '1 s', '59 s', '1 min 0 s', '3 min 12 s', '1 h 0 min', '5 h 4 min', '1 d 0 h', '2 d 3 h'])
  t.equal(taskOfId('sendWelcome~42'), 'sendWelcome')
  t.equal(taskOfId('a%7Eb%3Ac~k~more'), 'a~b:c', 'escaped names come back whole')
  t.equal(taskOfId('external-1'), null)
  t.equal(taskOfId('~x'), null)
  t.equal(taskOfId('%E0%A4%A~x'), null, 'not an escape this plugin made')
})
