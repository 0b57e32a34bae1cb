import tap, { test } from 'tap'
import type { Test } from 'tap'
import { once } from 'node:events'
import { Readable } from 'node:stream'
import Fastify from 'fastify'
import sendAndContinue from '../lib/index'
import { DURATION_BUCKETS, Meters, WAIT_BUCKETS, lookUpMeters } from '../lib/metrics'
import { OUTCOMES } from '../lib/types'
import { build, deferred, listen, LogCollector } from './helpers'
import type { LogLine } from './helpers'
import { abortMidStream } from './reliability-helpers'
import { COUNT, DURATION, ENDED, registerSdk, RESPONSES, RETRIES, select, total, WAIT_TIME } from './metrics-helpers'
import type { Scraped } from './metrics-helpers'

// In-process tasks with the OpenTelemetry metrics SDK registered before the plugin, as an
// operator sets it up: real requests (inject, and real sockets for client aborts), the exporter's
// Prometheus text fetched over HTTP and parsed, and every count checked against the log lines
// the same app wrote and its stats().

const sdk = registerSdk()
tap.teardown(async () => { await (await sdk).close() })

const finals = (lines: LogLine[]): LogLine[] => lines.filter((line) => (OUTCOMES as readonly unknown[]).includes(line.deferred?.outcome))

/** A response that sends one chunk and then waits: the client hangs up in the middle. */
function endless (): Readable {
  let sent = false
  return new Readable({
    read () {
      if (!sent) {
        sent = true
        this.push('first chunk')
      }
    }
  })
}

/** Every final line counted by route, task and outcome, against the counter's series of that route. */
function checkEnded (t: Test, scraped: Scraped, lines: LogLine[], route: string): void {
  const expected = new Map<string, number>()
  for (const line of finals(lines)) {
    if (line.deferred?.route !== route) continue
    const key = `${line.deferred.task as string} ${line.deferred.outcome as string}`
    expected.set(key, (expected.get(key) ?? 0) + 1)
  }
  const got = new Map(select(scraped, ENDED, { http_route: route }).map((sample) => [`${sample.labels.task_name} ${sample.labels.outcome}`, sample.value]))
  t.same(Object.fromEntries([...got].sort()), Object.fromEntries([...expected].sort()), `task.ended on ${route} counts the final lines`)
  for (const sample of select(scraped, ENDED, { http_route: route })) t.equal(sample.labels.engine, 'in-process')
}

test('every in-process outcome: the counters, histograms and gauges agree with the log lines and stats()', async (t) => {
  const { scrape } = await sdk
  const logs = new LogCollector()
  const app = Fastify({ logger: { level: 'info', stream: logs } })
  t.teardown(() => app.close())
  await app.register(sendAndContinue, { concurrency: 2, maxQueued: 1, drainTimeout: 0 })
  const gate = deferred()
  const held = deferred()
  let flaky = 0
  app.get('/m/ok', (request, reply) => reply.sendAndContinue('ok', async function ok () {}))
  app.get('/m/fail', (request, reply) => reply.sendAndContinue('ok', function fail () { throw new Error('boom') }))
  app.get('/m/slow', (request, reply) => reply.sendAndContinue('ok', async function slow ({ signal }) { await once(signal, 'abort') }, { timeout: 20 }))
  app.get('/m/retry', (request, reply) => reply.sendAndContinue('ok', function flakyTask () {
    if (++flaky < 3) throw new Error(`attempt ${flaky}`)
  }, { attempts: 3 }))
  let late = 0
  app.get('/m/retry-timeout', (request, reply) => reply.sendAndContinue('ok', async function lateOnce ({ signal }) {
    if (++late === 1) await once(signal, 'abort')
  }, { attempts: 2, timeout: 20 }))
  app.get('/m/block', (request, reply) => reply.sendAndContinue('ok', async function block () { await gate.promise }))
  app.get('/m/hold', async (request, reply) => {
    reply.defer(async function afterHold () {})
    await held.promise
    return 'ok'
  })
  app.get('/m/forever', (request, reply) => reply.sendAndContinue('ok', function forever () { return new Promise(() => {}) }))
  app.get('/m/stream-run', (request, reply) => reply.type('text/plain').sendAndContinue(endless(), async function afterAbort () {}))
  app.get('/m/stream-skip', { config: { sendAndContinue: { onClientAbort: 'skip' } } }, (request, reply) => reply.type('text/plain').sendAndContinue(endless(), async function skippedTask () {}))

  for (const path of ['/m/ok', '/m/ok', '/m/fail', '/m/slow', '/m/retry', '/m/retry-timeout']) await app.inject(path)
  await app.sendAndContinue.drain()

  // two running (the bound), one queued, one pending: then the next one is dropped
  await app.inject('/m/block')
  await app.inject('/m/block')
  await app.inject('/m/block')
  const holding = app.inject('/m/hold')
  await logs.until((lines) => lines.filter((line) => line.msg === 'incoming request').length >= 10)
  t.match(app.sendAndContinue.stats(), { pending: 1, running: 2, queued: 1, saturated: true })
  const busy = await scrape()
  const stats = app.sendAndContinue.stats()
  for (const state of ['pending', 'queued', 'running', 'retrying'] as const) {
    t.equal(total(busy, COUNT, { engine: 'in-process', state }), stats[state], `task.count ${state} is stats().${state}`)
  }
  await app.inject('/m/block')
  t.equal(app.sendAndContinue.stats().dropped, 1)
  gate.resolve()
  held.resolve()
  await holding
  await app.sendAndContinue.drain()

  // client aborts over a real socket: run (the task completes, connection aborted), skip
  const { port } = await listen(app)
  await abortMidStream(port, '/m/stream-run')
  await abortMidStream(port, '/m/stream-skip')
  await logs.until((lines) => finals(lines).some((line) => line.deferred?.task === 'skippedTask') && finals(lines).some((line) => line.deferred?.task === 'afterAbort'))
  await app.sendAndContinue.drain()

  // the shutdown drain runs out at once: the task that never settles is cancelled
  await app.inject('/m/forever')
  await app.close()
  const after = app.sendAndContinue.stats()
  t.match(after, { completed: 9, failed: 1, timeout: 1, skipped: 1, cancelled: 1, dropped: 1 })

  const scraped = await scrape()
  t.equal(scraped.types.get(ENDED), 'counter')
  t.equal(scraped.types.get(DURATION), 'histogram')
  t.equal(scraped.units.get(DURATION), 's')
  t.equal(scraped.types.get(COUNT), 'gauge')
  for (const route of ['/m/ok', '/m/fail', '/m/slow', '/m/retry', '/m/retry-timeout', '/m/block', '/m/hold', '/m/forever', '/m/stream-run', '/m/stream-skip']) {
    checkEnded(t, scraped, logs.lines, route)
  }
  const mine = { engine: 'in-process' }
  for (const outcome of OUTCOMES) {
    t.equal(total(scraped, ENDED, { ...mine, outcome }), after[outcome], `task.ended ${outcome} is stats().${outcome}`)
    t.equal(total(scraped, ENDED, { ...mine, outcome }), (logs.lines.find((line) => line.deferredShutdown !== undefined)?.deferredShutdown as Record<string, number>)[outcome], 'and the shutdown line')
  }

  // retries: one per `retrying` line, by the outcome of the attempt that was retried
  const retrying = logs.lines.filter((line) => line.deferred?.outcome === 'retrying')
  t.equal(retrying.length, 3)
  t.same(select(scraped, RETRIES).map((sample) => [sample.labels.task_name, sample.labels.outcome, sample.labels.http_route, sample.value]), [['flakyTask', 'failed', '/m/retry', 2], ['lateOnce', 'timeout', '/m/retry-timeout', 1]])

  // responses that carried work, by how the connection ended: one per close line
  for (const connection of ['finished', 'aborted']) {
    const closes = logs.closes.filter((line) => line.deferred?.connection === connection)
    t.equal(total(scraped, RESPONSES, { connection }), closes.length, `response.closed ${connection}: the close lines`)
    for (const route of new Set(closes.map((line) => line.deferred?.route as string))) {
      t.equal(total(scraped, RESPONSES, { connection, http_route: route }), closes.filter((line) => line.deferred?.route === route).length)
    }
  }
  t.equal(total(scraped, RESPONSES, { connection: 'aborted' }), 2)
  t.notOk(select(scraped, RESPONSES).some((sample) => 'engine' in sample.labels), 'a response has no engine')

  // one duration per attempt that ran (its final or retrying line), one wait per attempt started
  const ran = [...finals(logs.lines).filter((line) => !['skipped', 'dropped'].includes(line.deferred?.outcome as string)), ...retrying]
  t.equal(total(scraped, `${DURATION}_count`, mine), ran.length)
  t.equal(total(scraped, `${WAIT_TIME}_count`), ran.length)
  t.equal(total(scraped, `${DURATION}_count`, { ...mine, task_name: 'flakyTask', outcome: 'failed' }), 2, 'each retried attempt, by its outcome')
  t.equal(total(scraped, `${DURATION}_count`, { ...mine, task_name: 'flakyTask', outcome: 'completed' }), 1)
  t.equal(total(scraped, `${DURATION}_count`, { ...mine, outcome: 'skipped' }), 0, 'a task that never ran has no duration')
  const loggedSeconds = ran.reduce((sum, line) => sum + (line.deferred?.durationMs as number) / 1000, 0)
  const measured = total(scraped, `${DURATION}_sum`, mine)
  t.ok(measured >= loggedSeconds && measured - loggedSeconds < 0.25, `duration sum ${measured} s, the lines say ${loggedSeconds} s`)
  const slow = select(scraped, `${DURATION}_bucket`, { ...mine, task_name: 'slow', outcome: 'timeout' })
  t.same(slow.map((sample) => sample.labels.le), [...DURATION_BUCKETS.map(String), '+Inf'], 'the explicit bucket boundaries, in seconds')
  t.same(slow.filter((sample) => Number(sample.labels.le) < 0.02).map((sample) => sample.value), [0, 0, 0], 'a 20 ms time limit that ran out lands past 0.01 s')
  t.equal(slow[slow.length - 1].value, 1)
  t.same(select(scraped, `${WAIT_TIME}_bucket`).map((sample) => sample.labels.le), [...WAIT_BUCKETS.map(String), '+Inf'])
  // fewer attributes on the histograms (each record hashes them): durations by task, outcome and engine, in-process waits none
  const scope = ['otel_scope_name', 'otel_scope_version']
  t.same(Object.keys(select(scraped, `${DURATION}_count`, mine)[0].labels).sort(), ['engine', ...scope, 'outcome', 'task_name'])
  t.same(Object.keys(select(scraped, `${WAIT_TIME}_count`)[0].labels).sort(), scope)
  // the bounded attribute set: never a request id, job id or URL
  const keys = new Set(scraped.samples.filter((sample) => sample.name.startsWith('fastify_send_and_continue')).flatMap((sample) => Object.keys(sample.labels)))
  t.same([...keys].sort(), ['connection', 'engine', 'http_route', 'le', 'otel_scope_name', 'otel_scope_version', 'outcome', 'state', 'task_name'])

  // the app closed: nothing of it is pending, queued or running any more
  t.same(select(scraped, COUNT, mine).map((sample) => sample.value), [0, 0, 0, 0])
  t.match(logs.lines.find((line) => line.msg === 'deferred work ready'), { deferredStart: { metrics: true } })
})

test('two apps in one process add up: the series are the process\'s, not an app\'s', async (t) => {
  const { scrape } = await sdk
  const gate = deferred()
  const apps = await Promise.all([0, 1].map(async () => {
    const { app } = await build(t)
    app.get('/twice', (request, reply) => reply.sendAndContinue('ok', function twice () {}))
    app.get('/wait', (request, reply) => reply.sendAndContinue('ok', () => gate.promise))
    return app
  }))
  for (const app of apps) await app.inject('/twice')
  for (const app of apps) await app.sendAndContinue.drain()
  t.equal(total(await scrape(), ENDED, { http_route: '/twice', outcome: 'completed' }), 2)
  // both watch their scheduler: the gauge is their sum
  for (const app of apps) await app.inject('/wait')
  t.equal(total(await scrape(), COUNT, { engine: 'in-process', state: 'running' }), 2)
  gate.resolve()
})

test('the not-found handler\'s work has no http.route; the provider is looked up once', async (t) => {
  const { scrape } = await sdk
  const { app } = await build(t)
  app.setNotFoundHandler((request, reply) => reply.code(404).sendAndContinue('no', function notFound () {}))
  await app.inject('/nowhere')
  await app.sendAndContinue.drain()
  const [sample] = select(await scrape(), ENDED, { task_name: 'notFound' })
  t.same(sample.labels, { engine: 'in-process', task_name: 'notFound', outcome: 'completed', otel_scope_name: 'fastify-send-and-continue', otel_scope_version: sample.labels.otel_scope_version })
  t.equal(lookUpMeters(), lookUpMeters(), 'the same instruments while the provider stays')
})

test('attribute objects are made once per route, task and outcome, never per record', async (t) => {
  const seen: Array<Record<string, string>> = []
  const record = (value: number, attributes: Record<string, string>): void => { seen.push(attributes) }
  const meters = new Meters(null, { duration: { record }, waitTime: { record }, jobWaitTime: { record }, enqueueDuration: { record } })
  const route = meters.engine('in-process').route('/r')
  t.equal(meters.engine('in-process').route('/r'), route, 'one object per route')
  for (let i = 0; i < 3; i++) {
    route.started(1)
    route.ended('a', 'completed', 2)
    route.started(1)
    route.ended('b', 'failed', 2)
    route.retried('a', 'timeout', 3)
  }
  route.ended('a', 'dropped', -1)
  route.enqueueHeld(4)
  route.enqueueHeld(4)
  t.equal(seen.length, 17, 'a task that never ran records no duration')
  t.equal(new Set(seen).size, 5, 'the waits, durations of a completed, b failed, a timeout, and the enqueue')
  t.same(seen.slice(0, 2), [{}, { engine: 'in-process', outcome: 'completed', 'task.name': 'a' }], 'an in-process wait has no attribute')
  meters.engine('sqlite').route('/r').started(1)
  t.same(seen[seen.length - 1], { engine: 'sqlite' }, 'a durable job\'s wait has its engine')
  t.equal(meters.engine('in-process').route('/other'), meters.engine('in-process').route('/other'))
  t.equal(route.task('a'), route.task('a'))
  t.equal(route.responseAttributes, route.responseAttributes)
  t.same(route.responseAttributes.aborted, { 'http.route': '/r', connection: 'aborted' })
})
