import { test } from 'tap'
import type { Test } from 'tap'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { appendFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Fastify from 'fastify'
import pino from 'pino'
import sendAndContinue, { defineTask } from '../lib/index'
import type { Report } from '../lib/report/types'
import { envWithoutCoverage } from './child-env'
import type { LogLine } from './helpers'
import { startRedis } from './redis'

// The report read as an operator reads it: the web app's log file and the worker's log file,
// given together to the built CLI. The worker is the built CLI in a child process, as deployed;
// children run the built package, so their coverage does not count (see child-env).

const root = join(__dirname, '..')
const cli = join(root, 'dist', 'cli.js')
const tasksModule = join(__dirname, 'fixtures', 'durable', 'tasks.cjs')

function parseLines (text: string): LogLine[] {
  return text.split('\n').filter((line) => line !== '').map((line) => JSON.parse(line))
}

/** Runs the built CLI to the end: its exit code and what it printed. */
async function runCli (args: string[]): Promise<{ code: number | null, stdout: string }> {
  const child = spawn(process.execPath, [cli, ...args], { env: envWithoutCoverage(), stdio: ['ignore', 'pipe', 'inherit'] })
  let stdout = ''
  child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString() })
  const [code] = await once(child, 'exit')
  return { code, stdout }
}

async function report (files: string[]): Promise<Report> {
  const { code, stdout } = await runCli(['report', '--json', ...files])
  if (code !== 0) throw new Error(`report exited with ${code}: ${stdout}`)
  return JSON.parse(stdout)
}

async function tempDir (t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'sac-durable-report-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  return dir
}

test('report over the web log and the worker log counts a job once by its final outcome, also when a re-run logs it twice', async (t) => {
  const redis = await startRedis(t)
  const dir = await tempDir(t)
  const webLog = join(dir, 'web.log')
  const workerLog = join(dir, 'worker.log')

  // the web app logs to a file as deployed; sync writes, so the file is complete once a request is answered
  const record = defineTask('record', () => {})
  const app = Fastify({ logger: { level: 'info', stream: pino.destination({ dest: webLog, sync: true }) } })
  t.teardown(() => app.close())
  await app.register(sendAndContinue, { queue: { connection: redis.connection, tasks: [record] } })
  app.post('/items', (request, reply) => reply.code(202).sendAndContinue({ ok: true }, record.with({ ms: 1 })))
  const address = await app.listen({ port: 0, host: '127.0.0.1' })
  const response = await fetch(`${address}/items`, { method: 'POST' })
  t.equal(response.status, 202)
  t.same(await response.json(), { ok: true })

  const enqueued = parseLines(await readFile(webLog, 'utf8')).find((line) => line.deferred?.outcome === 'enqueued')
  t.match(enqueued, { reqId: String, deferred: { task: 'record', outcome: 'enqueued', jobId: String, queue: 'fastify-send-and-continue' } })
  const jobId = enqueued?.deferred?.jobId

  // the web log alone: the job is enqueued and not finished yet, under the same id
  const before = await report([webLog])
  t.match(before.jobs, { enqueued: 1, finished: 0, pending: 1, duplicates: 0 })
  t.match(before.jobs.pendingSample, [{ queue: 'fastify-send-and-continue', jobId, route: '/items', task: 'record' }])

  // the worker in its own process, its stdout (pino) kept as its log file
  const worker = spawn(process.execPath, [cli, 'worker', tasksModule, '--redis', redis.path], { env: envWithoutCoverage(), stdio: ['ignore', 'pipe', 'inherit'] })
  const exited = once(worker, 'exit')
  t.teardown(async () => {
    if (worker.exitCode === null && worker.signalCode === null) worker.kill('SIGKILL')
    await exited
  })
  let output = ''
  const finished = new Promise<void>((resolve) => {
    worker.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString()
      if (output.includes('"outcome":"completed"')) resolve()
    })
  })
  await finished
  worker.kill('SIGTERM')
  t.same(await exited, [0, null])
  await writeFile(workerLog, output)

  const final = parseLines(output).find((line) => line.deferred?.outcome === 'completed')
  t.match(final, { reqId: enqueued?.reqId, deferred: { task: 'record', outcome: 'completed', jobId, attempt: 1, queue: 'fastify-send-and-continue', route: '/items', method: 'POST', statusCode: 202 } })

  const both = await report([webLog, workerLog])
  t.same(both.sources.files, [webLog, workerLog])
  t.match(both.jobs, { enqueued: 1, finished: 1, pending: 0, retries: 0, duplicates: 0 })
  t.same(both.jobs.pendingSample, [])
  t.match(both.totals, { tasks: 1, outcomes: { completed: 1, failed: 0, timeout: 0, cancelled: 0, dropped: 0 } })
  t.match(both.groups, [{ route: '/items', task: 'record', tasks: 1, enqueued: 1, outcomes: { completed: 1 } }])
  t.equal(both.groups.length, 1)

  // a worker killed after it logged the final line but before BullMQ heard of it runs the job
  // again, and writes the same final line a second time
  await appendFile(workerLog, `${JSON.stringify(final)}\n`)
  const rerun = await report([webLog, workerLog])
  t.match(rerun.jobs, { enqueued: 1, finished: 1, pending: 0, retries: 0, duplicates: 1 })
  t.match(rerun.totals, { tasks: 1, outcomes: { completed: 1 } })
  t.match(rerun.groups, [{ route: '/items', task: 'record', tasks: 1, enqueued: 1, outcomes: { completed: 1 } }])
  t.equal(rerun.groups.length, 1)
  t.match(rerun.totals, { outcomes: { failed: 0, timeout: 0, cancelled: 0, dropped: 0 } })

  // text output says the same to a reader
  const text = await runCli(['report', webLog, workerLog])
  t.equal(text.code, 0)
  t.match(text.stdout, /Durable jobs: 1 enqueued, 1 finished, 0 not finished yet/)
})
