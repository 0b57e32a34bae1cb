import { test } from 'tap'
import type { Test } from 'tap'
import { EventEmitter, once } from 'node:events'
import { spawn } from 'node:child_process'
import { createServer } from 'node:net'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { metrics } from '@opentelemetry/api'
import Fastify from 'fastify'
import sendAndContinue, { defineTask } from '../lib/index'
import { runWorker, WORKER_USAGE } from '../lib/jobs/cli'
import { serveMetrics } from '../lib/jobs/prometheus'
import { startSqliteWorker, tasksModule } from './durable-children'
import type { LogLine } from './helpers'
import { COUNT, DURATION, ENDED, JOB_WAIT_TIME, scrape, select, total, WAIT_TIME } from './metrics-helpers'
import { tempDir } from './sqlite-helpers'

// The worker CLI's --metrics-port: a worker scraped as Prometheus scrapes it, without code. The
// first test runs the built CLI in a child process on a real SQLite file; the others run the
// same command in this process (and its errors), and once with the SDK not installed.

// the task of the tasks module the CLI loads (fixtures/durable/tasks.cjs), as a web app of this process enqueues it
const record = defineTask<{ ms: number }>('record', () => {})

async function enqueue (t: Test, path: string, count: number): Promise<void> {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(sendAndContinue, { queue: { engine: 'sqlite', path, work: false, tasks: [record] } })
  app.post('/record/:i', (request, reply) => reply.code(202).sendAndContinue('ok', record.with({ ms: 1 })))
  for (let i = 0; i < count; i++) t.equal((await app.inject({ method: 'POST', url: `/record/${i}` })).statusCode, 202)
  await app.close()
}

const completed = (lines: LogLine[]): LogLine[] => lines.filter((line) => line.deferred?.outcome === 'completed')

test('fastify-send-and-continue worker --sqlite <file> --metrics-port 0: a child process serves Prometheus text whose counts are its log lines', async (t) => {
  const path = join(await tempDir(t), 'jobs.db')
  await enqueue(t, path, 5)
  const worker = startSqliteWorker(t, path, ['--metrics-port', '0', '--concurrency', '2'])
  await worker.until((lines) => lines.some((line) => line.msg === 'durable worker started'))
  const started = worker.lines.find((line) => line.msg === 'durable worker started') as LogLine & { metrics: { port: number, path: string } }
  t.match(started, { engine: 'sqlite', metrics: { port: Number, path: '/metrics' } })
  t.ok(started.metrics.port > 0, `listening on the port the system chose, ${started.metrics.port}`)
  await worker.until((lines) => completed(lines).length === 5)

  const url = `http://127.0.0.1:${started.metrics.port}/metrics`
  const scraped = await scrape(url)
  const labels = { engine: 'sqlite', task_name: 'record', http_route: '/record/:i' }
  t.equal(total(scraped, ENDED, { ...labels, outcome: 'completed' }), completed(worker.lines).length, 'task.ended: the worker\'s final lines')
  t.equal(total(scraped, ENDED), 5, 'and nothing else')
  t.equal(total(scraped, `${DURATION}_count`, { engine: 'sqlite', task_name: 'record', outcome: 'completed' }), 5)
  t.same(select(scraped, `${WAIT_TIME}_count`), [], 'no in-process task ran in the worker')
  t.equal(total(scraped, `${JOB_WAIT_TIME}_count`, { engine: 'sqlite' }), 5)
  t.same(select(scraped, COUNT).map((sample) => [sample.labels.engine, sample.labels.state, sample.value]), [['sqlite', 'running', 0]])
  const queuedSeconds = completed(worker.lines).reduce((sum, line) => sum + (line.deferred?.queuedMs as number) / 1000, 0)
  t.equal(Math.round(total(scraped, `${JOB_WAIT_TIME}_sum`, { engine: 'sqlite' }) * 1000), Math.round(queuedSeconds * 1000), 'the waits are the lines\' queuedMs, in seconds')
  t.equal((await fetch(`http://127.0.0.1:${started.metrics.port}/other`)).status, 404)

  worker.process.kill('SIGTERM')
  t.same(await worker.exited, { code: 0, signal: null })
  t.match(worker.lines.find((line) => line.deferredShutdown !== undefined), { deferredShutdown: { completed: 5 } })
  await t.rejects(fetch(url), 'the metrics server closed with the worker')
})

class Sink extends Writable {
  text = ''
  override _write (chunk: Buffer, _encoding: string, done: () => void): void {
    this.text += chunk.toString()
    done()
  }
}

function io (): { stdout: Sink, stderr: Sink, signals: EventEmitter } {
  return { stdout: new Sink(), stderr: new Sink(), signals: new EventEmitter() }
}

test('--metrics-port in this process: the SDK is registered before the worker starts and removed after it closed', async (t) => {
  const path = join(await tempDir(t), 'jobs.db')
  await enqueue(t, path, 2)
  const out = io()
  const exited = runWorker([tasksModule, '--sqlite', path, '--metrics-port', '0'], out)
  const lines = (): Array<Record<string, any>> => out.stdout.text.split('\n').filter((line) => line !== '').map((line) => JSON.parse(line))
  while (lines().filter((line) => line.deferred?.outcome === 'completed').length < 2) await new Promise((resolve) => setTimeout(resolve, 20))
  const { metrics: served } = lines().find((line) => line.msg === 'durable worker started') as { metrics: { port: number } }
  t.equal(total(await scrape(`http://127.0.0.1:${served.port}/metrics?from=prometheus`), ENDED, { engine: 'sqlite', outcome: 'completed' }), 2)
  t.equal((await fetch(`http://127.0.0.1:${served.port}/`)).status, 404, 'only /metrics is served')
  t.equal((await fetch(`http://127.0.0.1:${served.port}/metrics`, { method: 'POST' })).status, 404)
  out.signals.emit('SIGTERM')
  t.equal(await exited, 0)
  t.equal(out.stderr.text, '')
  t.notOk(lookedUp(), 'the provider is unregistered once the worker closed')
})

function lookedUp (): boolean {
  return metrics.getMeterProvider().getMeter('x') !== (require('@opentelemetry/api') as typeof import('@opentelemetry/api')).createNoopMeter()
}

test('--metrics-port must be a port: a coded usage error that says what was expected and given', async (t) => {
  t.match(WORKER_USAGE, /--metrics-port <port>/)
  for (const value of ['70000', 'abc', '-1', '1.5', '']) {
    const out = io()
    t.equal(await runWorker([tasksModule, '--sqlite', 'jobs.db', `--metrics-port=${value}`], out), 2, value)
    t.equal(out.stderr.text, `fastify-send-and-continue worker: --metrics-port should be a whole number from 0 to 65535, instead got '${value}'\nRun "fastify-send-and-continue worker --help" for the options.\n`)
  }
  // a coded error thrown by the tasks module is not a usage error
  const out = io()
  t.equal(await runWorker([join(__dirname, 'fixtures', 'metrics', 'bad-tasks.cjs'), '--sqlite', 'jobs.db'], out), 1)
  t.match(out.stderr.text, /^fastify-send-and-continue worker: defineTask\(\): name should be/)
  t.notMatch(out.stderr.text, '--help')
})

test('the metrics port is taken, or the worker cannot start: exit 1, nothing left registered', async (t) => {
  const taken = createServer()
  await new Promise<void>((resolve) => taken.listen(0, resolve))
  t.teardown(() => { taken.close() })
  const port = (taken.address() as AddressInfo).port
  const out = io()
  t.equal(await runWorker([tasksModule, '--sqlite', join(await tempDir(t), 'jobs.db'), '--metrics-port', String(port)], out), 1)
  t.match(out.stderr.text, /^fastify-send-and-continue worker: listen EADDRINUSE/)
  t.notOk(lookedUp())

  const broken = io()
  t.equal(await runWorker([tasksModule, '--sqlite', '/dev/null/jobs.db', '--metrics-port', '0'], broken), 1)
  t.match(broken.stderr.text, /FST_SAC_SQLITE_PATH|path should name a database file/)
  t.notOk(lookedUp(), 'the metrics server closed with the worker that did not start')
})

test('without the metrics SDK: FST_SAC_MISSING_METRICS_SDK names what to install', async (t) => {
  await t.rejects(serveMetrics('w', '--metrics-port', 0, (id) => {
    if (id === '@opentelemetry/api') return id
    throw new Error('not found')
  }), {
    code: 'FST_SAC_MISSING_METRICS_SDK',
    message: 'w: --metrics-port needs the OpenTelemetry metrics SDK, which is not installed (missing: @opentelemetry/sdk-metrics, @opentelemetry/exporter-prometheus); install it with: npm install @opentelemetry/sdk-metrics @opentelemetry/exporter-prometheus'
  })
  // the command line, with the SDK hidden from module resolution
  const child = spawn(process.execPath, [
    ...process.execArgv,
    '--require', join(__dirname, 'fixtures', 'metrics', 'hide-sdk.cjs'),
    join(__dirname, '..', 'lib', 'cli.ts'), 'worker', tasksModule, '--sqlite', 'unused.db', '--metrics-port', '9464'
  ])
  let stderr = ''
  child.stderr.on('data', (chunk) => { stderr += chunk })
  const [code] = await once(child, 'exit')
  t.equal(code, 1)
  t.equal(stderr, 'fastify-send-and-continue worker: --metrics-port needs the OpenTelemetry metrics SDK, which is not installed (missing: @opentelemetry/sdk-metrics, @opentelemetry/exporter-prometheus); install it with: npm install @opentelemetry/sdk-metrics @opentelemetry/exporter-prometheus\n')
})
