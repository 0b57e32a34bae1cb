import { test } from 'tap'
import type { Test } from 'tap'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Fastify from 'fastify'
import sendAndContinue, { defineTask } from '../lib/index'
import { startChild, startSqliteWorker } from './durable-children'
import type { Child } from './durable-children'
import type { LogLine } from './helpers'
import { finals } from './engines/conformance'

// The SQLite engine over real processes and a real file: the built package in child processes
// (the app and CLI workers), killed with SIGKILL or stopped with SIGTERM, as deployed.

const appScript = join(__dirname, 'fixtures', 'sqlite', 'app.cjs')

async function tempFile (t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'sac-sqlite-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  return join(dir, 'var', 'deferred.db')
}

async function startApp (t: Test, file: string, env: NodeJS.ProcessEnv = {}): Promise<{ child: Child, url: string }> {
  const child = startChild(t, [appScript], { SQLITE_PATH: file, ...env })
  await child.until((lines) => lines.some((line) => /^Server listening at /.test(line.msg)))
  const listening = child.lines.find((line) => /^Server listening at /.test(line.msg)) as LogLine
  return { child, url: listening.msg.replace('Server listening at ', '') }
}

async function post (url: string, task: string, body: unknown = {}): Promise<number> {
  const response = await fetch(`${url}/${task}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  await response.text()
  return response.status
}

const completed = (lines: LogLine[]): LogLine[] => lines.filter((line) => line.deferred?.outcome === 'completed')

test('the job is in the file before the 2xx: the app is killed with SIGKILL after answering, a worker started later runs the job with the request\'s reqId', async (t) => {
  const file = await tempFile(t)
  const { child: app, url } = await startApp(t, file, { WORK: '0' })
  t.equal(await post(url, 'record', { ms: 1 }), 202)
  app.process.kill('SIGKILL')
  t.same(await app.exited, { code: null, signal: 'SIGKILL' })
  const enqueued = app.lines.find((line) => line.deferred?.outcome === 'enqueued') as LogLine
  t.ok(enqueued, 'the app logged the enqueue before answering')

  const worker = startSqliteWorker(t, file)
  await worker.until((lines) => completed(lines).length === 1)
  t.match(completed(worker.lines)[0], {
    reqId: enqueued.reqId,
    deferred: { task: 'record', outcome: 'completed', jobId: enqueued.deferred?.jobId, attempt: 1, queue: 'fastify-send-and-continue', route: '/:task', statusCode: 202 }
  })
  worker.process.kill('SIGTERM')
  t.same(await worker.exited, { code: 0, signal: null })
})

test('kill -9 of a worker while its job runs: a new worker on the machine sees the owner dead and runs the job again at once', async (t) => {
  const file = await tempFile(t)
  const { child: app, url } = await startApp(t, file, { WORK: '0' })
  t.equal(await post(url, 'block'), 202)
  const first = startSqliteWorker(t, file, ['--lock-duration', '600000'])
  await first.until((lines) => lines.some((line) => line.msg === 'block started'))
  first.process.kill('SIGKILL')
  await first.exited
  // with a 10-minute lease, only knowing the owner is dead brings the job back now
  const second = startSqliteWorker(t, file, ['--lock-duration', '600000', '--drain-timeout', '0'])
  await second.until((lines) => lines.some((line) => line.msg === 'block started'))
  const started = second.lines.find((line) => line.msg === 'block started') as LogLine
  t.same(started.started, { jobId: (first.lines.find((line) => line.msg === 'block started') as LogLine & { started: { jobId: string } }).started.jobId, attempt: 1 }, 'the same job, as the same attempt')
  second.process.kill('SIGTERM')
  t.same(await second.exited, { code: 0, signal: null })
  t.match(second.lines.find((line) => line.deferred?.outcome === 'retrying'), { deferred: { reason: 'worker-closing' } }, 'a graceful close gives it back to the file')
  app.process.kill('SIGTERM')
  await app.exited
})

test('three workers on one file share 300 jobs: each runs exactly once, none lost', async (t) => {
  const file = await tempFile(t)
  const record = defineTask('record', () => {})
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(sendAndContinue, { queue: { engine: 'sqlite', path: file, work: false, tasks: [record] } })
  app.post('/:i', (request, reply) => reply.code(202).sendAndContinue('ok', record.with({ ms: 1 })))
  const total = 300
  const answers = await Promise.all(Array.from({ length: total }, (_, i) => app.inject({ method: 'POST', url: `/${i}` })))
  t.same(new Set(answers.map((answer) => answer.statusCode)), new Set([202]))
  t.equal(app.sendAndContinue.stats().durable?.enqueued, total)

  const workers = [0, 1, 2].map(() => startSqliteWorker(t, file, ['--concurrency', '5']))
  const all = (): LogLine[] => workers.flatMap((worker) => completed(worker.lines))
  // whichever worker writes the last line sees the total reached
  await Promise.race(workers.map((worker) => worker.until(() => all().length >= total)))
  // a worker still loading when the others finish has no SIGTERM handler yet: the signal would kill it
  await Promise.all(workers.map((worker) => worker.until((lines) => lines.some((line) => line.msg === 'durable worker started'))))
  for (const worker of workers) worker.process.kill('SIGTERM')
  for (const worker of workers) t.same(await worker.exited, { code: 0, signal: null })
  const ids = all().map((line) => line.deferred?.jobId)
  t.equal(new Set(ids).size, total, 'every job ran')
  t.equal(ids.length, total, 'none ran twice')
  t.comment(`jobs per worker: ${workers.map((worker) => completed(worker.lines).length).join(', ')}`)
  t.same(workers.flatMap((worker) => finals(worker.lines)).filter((line) => line.deferred?.outcome !== 'completed'), [], 'no other final line')
})

test('SIGTERM to the app (work: true): app.close() drains its running job, then exits 0 with one shutdown line', async (t) => {
  const file = await tempFile(t)
  const { child: app, url } = await startApp(t, file)
  t.equal(await post(url, 'record', { ms: 300 }), 202)
  await app.until((lines) => lines.some((line) => line.deferred?.outcome === 'enqueued'))
  app.process.kill('SIGTERM')
  t.same(await app.exited, { code: 0, signal: null })
  t.match(completed(app.lines), [{ deferred: { task: 'record', attempt: 1 } }], 'the job ran to its end in the app')
  t.match(app.lines.find((line) => line.deferredShutdown !== undefined), { deferredShutdown: { drained: true, completed: 1 } })
})
