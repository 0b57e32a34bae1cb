import tap, { test } from 'tap'
import { join } from 'node:path'
import Fastify from 'fastify'
import sendAndContinue, { createWorker, defineTask } from '../lib/index'
import { AttemptRunner } from '../lib/jobs/attempt'
import { lookUpMeters } from '../lib/metrics'
import { OUTCOMES } from '../lib/types'
import { deferred, LogCollector } from './helpers'
import type { LogLine } from './helpers'
import { workerLogger } from './durable-helpers'
import { tempDir } from './sqlite-helpers'
import { COUNT, DURATION, ENDED, ENQUEUE_DURATION, ENQUEUE_FAILURES, ENQUEUED, JOB_WAIT_TIME, registerSdk, RETRIES, select, total, WAIT_TIME } from './metrics-helpers'

// Durable jobs with the OpenTelemetry metrics SDK registered first: the memory engine, the SQLite
// engine run by the app (work: true) and by createWorker() in this process, each scraped over HTTP
// as Prometheus text and checked against the lines written and stats().

const sdk = registerSdk()
tap.teardown(async () => { await (await sdk).close() })

const finals = (lines: LogLine[]): LogLine[] => lines.filter((line) => (OUTCOMES as readonly unknown[]).includes(line.deferred?.outcome))

function byTaskAndOutcome (lines: LogLine[]): Record<string, number> {
  const counts: Record<string, number> = {}
  for (const line of finals(lines)) {
    const key = `${line.deferred?.task as string} ${line.deferred?.outcome as string}`
    counts[key] = (counts[key] ?? 0) + 1
  }
  return counts
}

test('memory engine: jobs enqueued, retried, dropped past the bound, cancelled at close, refused after it, as the lines and stats() count them', async (t) => {
  const { scrape } = await sdk
  const gate = deferred()
  const late = deferred()
  let flaky = 0
  const memOk = defineTask('memOk', () => {})
  const memFlaky = defineTask('memFlaky', () => { if (++flaky === 1) throw new Error('once') }, { attempts: 2 })
  const memBlock = defineTask('memBlock', () => gate.promise)
  const memForever = defineTask('memForever', () => new Promise(() => {}))
  const logs = new LogCollector()
  const app = Fastify({ logger: { level: 'info', stream: logs } })
  t.teardown(() => app.close())
  await app.register(sendAndContinue, { concurrency: 1, maxQueued: 1, drainTimeout: 0, queue: { engine: 'memory', tasks: [memOk, memFlaky, memBlock, memForever] } })
  const tasks: Record<string, typeof memOk> = { memOk, memFlaky, memBlock, memForever }
  app.post('/mem/:name', (request, reply) => reply.code(202).sendAndContinue('ok', tasks[(request.params as { name: string }).name].with({})))
  app.post('/late', async (request, reply) => {
    await late.promise
    return reply.sendAndContinue('ok', memOk.with({}))
  })

  for (const name of ['memOk', 'memOk', 'memFlaky']) await app.inject({ method: 'POST', url: `/mem/${name}` })
  await app.sendAndContinue.drain()
  // one running, one waiting in the store: the third has no room (concurrency + maxQueued)
  for (let i = 0; i < 3; i++) await app.inject({ method: 'POST', url: '/mem/memBlock' })
  await logs.until((lines) => lines.some((line) => line.deferred?.reason === 'queue-full'))
  const busy = await scrape()
  t.equal(total(busy, COUNT, { engine: 'memory', state: 'running' }), 1)
  t.equal(total(busy, COUNT, { engine: 'memory', state: 'queued' }), 1)
  t.equal(total(busy, COUNT, { engine: 'memory', state: 'enqueueing' }), 0)
  t.equal(total(busy, COUNT, { state: 'running' }), app.sendAndContinue.stats().running, 'running, summed over engines, is stats().running')
  gate.resolve()
  await app.sendAndContinue.drain()

  // at close: one running job and one waiting are cancelled; a request still running is refused
  const refused = app.inject({ method: 'POST', url: '/late' })
  await app.inject({ method: 'POST', url: '/mem/memForever' })
  await app.inject({ method: 'POST', url: '/mem/memForever' })
  await logs.until((lines) => lines.filter((line) => line.msg === 'incoming request').length >= 9)
  await app.close()
  late.resolve()
  t.equal((await refused).statusCode, 503)
  const stats = app.sendAndContinue.stats()
  t.match(stats, { completed: 5, failed: 0, dropped: 2, cancelled: 2, durable: { enqueued: 7, enqueueFailed: 1 } })

  const scraped = await scrape()
  const memory = { engine: 'memory' }
  const got: Record<string, number> = {}
  for (const sample of select(scraped, ENDED, memory)) got[`${sample.labels.task_name} ${sample.labels.outcome}`] = sample.value
  t.same(got, byTaskAndOutcome(logs.lines), 'task.ended: the final lines, by task and outcome')
  for (const outcome of OUTCOMES) t.equal(total(scraped, ENDED, { outcome }), stats[outcome], `task.ended ${outcome} is stats().${outcome}`)
  t.equal(total(scraped, ENDED, { engine: 'in-process' }), 0)
  const enqueuedLines = logs.lines.filter((line) => line.deferred?.outcome === 'enqueued')
  t.equal(total(scraped, ENQUEUED, memory), enqueuedLines.length)
  t.equal(total(scraped, ENQUEUED, memory), stats.durable?.enqueued)
  t.equal(total(scraped, ENQUEUED, { ...memory, task_name: 'memBlock', http_route: '/mem/:name' }), 2)
  t.equal(total(scraped, ENQUEUE_FAILURES, memory), stats.durable?.enqueueFailed)
  t.equal(total(scraped, ENQUEUE_FAILURES, { ...memory, task_name: 'memOk', http_route: '/late' }), 1)
  t.same(select(scraped, RETRIES, memory).map((sample) => [sample.labels.task_name, sample.labels.outcome, sample.value]), [['memFlaky', 'failed', 1]])
  t.equal(logs.lines.filter((line) => line.deferred?.outcome === 'retrying').length, 1)
  // every request's enqueue held its response, the refused one too; none ran here as an in-process task
  t.equal(total(scraped, `${ENQUEUE_DURATION}_count`, { ...memory, http_route: '/mem/:name' }), 8)
  t.equal(total(scraped, `${ENQUEUE_DURATION}_count`, { ...memory, http_route: '/late' }), 1)
  t.equal(scraped.units.get(ENQUEUE_DURATION), 's')
  t.equal(total(scraped, `${WAIT_TIME}_count`), 0, 'the in-process scheduler ran nothing')
  // a job cancelled while it ran has a duration, one cancelled before it started has none
  t.equal(total(scraped, `${DURATION}_count`, { ...memory, task_name: 'memForever', outcome: 'cancelled' }), 1)
  // memOk 2, memFlaky 2 (the retried attempt and the last), memBlock 2, memForever 1
  t.equal(total(scraped, `${DURATION}_count`, memory), 7, 'every attempt that ran')
  t.equal(total(scraped, `${JOB_WAIT_TIME}_count`, memory), 7, 'every attempt that started')
  t.equal(total(scraped, COUNT, { engine: 'memory', state: 'running' }), 0, 'the app closed')
})

test('sqlite engine run by the app (work: true): the jobs it ran count under engine sqlite', async (t) => {
  const { scrape } = await sdk
  const path = join(await tempDir(t), 'jobs.db')
  const sqOk = defineTask('sqOk', () => {})
  const logs = new LogCollector()
  const app = Fastify({ logger: { level: 'info', stream: logs } })
  t.teardown(() => app.close())
  await app.register(sendAndContinue, { queue: { engine: 'sqlite', path, tasks: [sqOk] } })
  app.post('/sq/:id', (request, reply) => reply.code(202).sendAndContinue('ok', sqOk.with({})))
  for (let i = 0; i < 3; i++) t.equal((await app.inject({ method: 'POST', url: `/sq/${i}` })).statusCode, 202)
  await logs.until((lines) => finals(lines).length === 3)
  await app.sendAndContinue.drain()
  const scraped = await scrape()
  const sqlite = { engine: 'sqlite', task_name: 'sqOk', http_route: '/sq/:id' }
  t.equal(total(scraped, ENDED, { ...sqlite, outcome: 'completed' }), 3)
  t.equal(total(scraped, ENDED, { ...sqlite, outcome: 'completed' }), app.sendAndContinue.stats().completed)
  t.equal(total(scraped, ENQUEUED, sqlite), app.sendAndContinue.stats().durable?.enqueued)
  t.equal(total(scraped, `${JOB_WAIT_TIME}_count`, { engine: 'sqlite' }), 3)
  t.equal(total(scraped, `${DURATION}_count`, { engine: 'sqlite', task_name: 'sqOk', outcome: 'completed' }), 3)
  t.equal(total(scraped, `${ENQUEUE_DURATION}_count`, { engine: 'sqlite', http_route: '/sq/:id' }), 3)
  t.ok(select(scraped, COUNT, { engine: 'sqlite', state: 'running' }).length === 1, 'the app reports the jobs it runs')
})

test('createWorker() in this process: its jobs count under its engine; metrics: false and a job of an unknown task', async (t) => {
  const { scrape } = await sdk
  const path = join(await tempDir(t), 'jobs.db')
  const wk = defineTask('wk', () => {})
  const unknown = defineTask('notInWorker', () => {})
  const quiet = defineTask('wkQuiet', () => {})
  const hold = defineTask('wkHold', () => new Promise(() => {}))
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(sendAndContinue, { queue: { engine: 'sqlite', path, work: false, tasks: [wk, unknown, quiet, hold] } })
  app.post('/wk', (request, reply) => reply.code(202).sendAndContinue('ok', [wk.with({}), wk.with({}), unknown.with({})]))
  app.post('/quiet', (request, reply) => reply.code(202).sendAndContinue('ok', quiet.with({})))
  app.post('/hold', (request, reply) => reply.code(202).sendAndContinue('ok', hold.with({})))
  await app.inject({ method: 'POST', url: '/wk' })

  await t.rejects(createWorker({ engine: 'sqlite', path, tasks: [wk], metrics: 'yes' as never }), { code: 'FST_SAC_INVALID_OPTION', message: "createWorker(): metrics should be a boolean, instead got 'yes'" })
  const { logger, logs } = workerLogger()
  const worker = await createWorker({ engine: 'sqlite', path, tasks: [wk], logger, concurrency: 1 })
  await logs.until((lines) => finals(lines).length === 3)
  const running = await scrape()
  t.ok(select(running, COUNT, { engine: 'sqlite', state: 'running' }).length === 1, 'the worker reports its running jobs')
  await worker.close()
  const scraped = await scrape()
  const labels = { engine: 'sqlite', http_route: '/wk' }
  t.equal(total(scraped, ENDED, { ...labels, task_name: 'wk', outcome: 'completed' }), worker.stats().completed)
  t.equal(total(scraped, ENDED, { ...labels, task_name: 'notInWorker', outcome: 'failed' }), 1, 'a job the worker cannot run is failed')
  t.equal(total(scraped, `${DURATION}_count`, { engine: 'sqlite', task_name: 'notInWorker' }), 0, 'and never ran')
  t.equal(total(scraped, ENDED, labels), finals(logs.lines).length)

  // a job running when the worker's drain runs out goes back to the file: a retry, not an end
  const closing = workerLogger()
  await app.inject({ method: 'POST', url: '/hold' })
  const holder = await createWorker({ engine: 'sqlite', path, tasks: [hold], logger: closing.logger, drainTimeout: 0 })
  while (holder.stats().running === 0) await new Promise((resolve) => setTimeout(resolve, 10))
  await holder.close()
  t.match(closing.logs.lines.filter((line) => line.deferred !== undefined), [{ deferred: { task: 'wkHold', outcome: 'retrying', reason: 'worker-closing' } }])
  const given = await scrape()
  t.same(select(given, RETRIES, { task_name: 'wkHold' }).map((sample) => [sample.labels.outcome, sample.labels.engine, sample.value]), [['cancelled', 'sqlite', 1]])
  t.same(select(given, ENDED, { task_name: 'wkHold' }), [], 'not a task that ended: it runs again')
  t.equal(total(given, `${DURATION}_count`, { task_name: 'wkHold', outcome: 'cancelled' }), 1)

  const silent = workerLogger()
  await app.inject({ method: 'POST', url: '/quiet' })
  const off = await createWorker({ engine: 'sqlite', path, tasks: [quiet], logger: silent.logger, metrics: false })
  await silent.logs.until((lines) => finals(lines).length === 1)
  await off.close()
  t.same(select(await scrape(), ENDED, { task_name: 'wkQuiet' }), [], 'metrics: false records nothing')
})

test('a job failed as stalled (its runs lost twice) counts as failed, with no duration', async (t) => {
  const { scrape } = await sdk
  const meters = lookUpMeters()
  const { logger } = workerLogger()
  const runner = new AttemptRunner({ tasks: new Map(), queue: 'q', engine: 'sqlite', logger, durable: true, metrics: meters?.engine('sqlite') })
  runner.stalled({
    id: 'lost~1',
    name: 'lost',
    attempt: 1,
    attempts: 1,
    backoff: undefined,
    delay: 0,
    payload: { data: {}, request: { id: 'req-1', method: 'POST', url: '/lost', routeUrl: '/lost' }, route: '/lost', connection: null, statusCode: 202, enqueuedAt: Date.now() }
  }, new Error('job stalled more than allowable limit'))
  const scraped = await scrape()
  t.equal(total(scraped, ENDED, { task_name: 'lost', outcome: 'failed', http_route: '/lost', engine: 'sqlite' }), 1)
  t.equal(total(scraped, `${DURATION}_count`, { task_name: 'lost' }), 0)
})
