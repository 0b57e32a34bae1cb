import { test } from 'tap'
import sendAndContinue, { defineTask } from '../../lib/index'
import { build, deferred } from '../helpers'
import { finals } from './conformance'

// The memory engine goes through the plugin's own bounds (concurrency, maxQueued, drainTimeout),
// as in-process tasks do, and keeps nothing past the process: app.close() drains it or says what
// it cancelled.

test('memory: jobs run concurrency at a time; past concurrency + maxQueued a job is dropped (queue-full), the answer unchanged', async (t) => {
  const gate = deferred()
  let running = 0
  let most = 0
  const hold = defineTask('hold', async () => {
    most = Math.max(most, ++running)
    await gate.promise
    running--
  })
  const { app, logs } = await build(t, { concurrency: 2, maxQueued: 1, queue: { engine: 'memory', tasks: [hold] } })
  app.post('/', (request, reply) => reply.code(202).sendAndContinue('ok', hold.with(null)))
  const codes: number[] = []
  for (let i = 0; i < 4; i++) codes.push((await app.inject({ method: 'POST', url: '/' })).statusCode)
  t.same(codes, [202, 202, 202, 202])
  await logs.until((lines) => finals(lines).length >= 1)
  t.match(finals(logs.lines), [{ reqId: 'req-4', level: 50, deferred: { task: 'hold', outcome: 'dropped', reason: 'queue-full', jobId: /^hold~/ } }])
  t.equal(app.sendAndContinue.stats().dropped, 1, 'stats() counts the dropped line')
  gate.resolve()
  await app.sendAndContinue.drain()
  t.equal(most, 2, 'never more than concurrency at once')
  t.match(app.sendAndContinue.stats(), { completed: 3, dropped: 1, running: 0 })
})

test('memory: drain() and app.close() wait for delayed jobs and jobs waiting out a backoff', async (t) => {
  const runs: string[] = []
  const later = defineTask('later', () => { runs.push('later') })
  const flaky = defineTask('flaky', (data, { attempt }) => {
    runs.push(`flaky ${attempt}`)
    if (attempt === 1) throw new Error('once')
  }, { attempts: 2, backoff: 100 })
  const { app, logs } = await build(t, { queue: { engine: 'memory', tasks: [later, flaky] } })
  app.post('/', (request, reply) => reply.sendAndContinue('ok', [later.with(null, { delay: 150 }), flaky.with(null)]))
  await app.inject({ method: 'POST', url: '/' })
  await app.sendAndContinue.drain()
  t.same(runs.sort(), ['flaky 1', 'flaky 2', 'later'])

  await app.inject({ method: 'POST', url: '/' })
  await app.close()
  t.same(runs.length, 6, 'app.close() waited for the second request\'s jobs too')
  const shutdown = logs.lines.find((line) => line.deferredShutdown !== undefined)
  t.match(shutdown, { level: 30, deferredShutdown: { drained: true, completed: 4 } })
})

test('memory: when the drain runs out, running and waiting jobs end cancelled, one line each, counted in the shutdown line', async (t) => {
  const started = deferred()
  let signal: AbortSignal | null = null
  const stuck = defineTask('stuck', async (data, ctx) => {
    signal = ctx.signal
    started.resolve()
    await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve))
  }, { timeout: 0 })
  const later = defineTask('later', () => { t.fail('a cancelled job must not run') })
  const { app, logs } = await build(t, { drainTimeout: 50, queue: { engine: 'memory', tasks: [stuck, later] } })
  app.post('/', (request, reply) => reply.sendAndContinue('ok', [stuck.with(null), later.with(null, { delay: 60_000 })]))
  await app.inject({ method: 'POST', url: '/' })
  await started.promise
  await app.close()
  t.equal((signal as AbortSignal | null)?.aborted, true, 'the running job\'s signal was aborted')
  t.match(finals(logs.lines).map((line) => [line.deferred?.task, line.deferred?.outcome, line.level]).sort(), [['later', 'cancelled', 40], ['stuck', 'cancelled', 40]])
  const shutdown = logs.lines.find((line) => line.deferredShutdown !== undefined)
  t.match(shutdown, { level: 40, deferredShutdown: { drained: false, cancelled: 2 } })
})

test('memory: a job registered after the headers went out (onResponse) is enqueued and runs', async (t) => {
  const ran = deferred<string>()
  const audit = defineTask('audit', (data: { path: string }) => { ran.resolve(data.path) })
  const { app } = await build(t, { queue: { engine: 'memory', tasks: [audit] } })
  app.addHook('onResponse', async (request, reply) => { reply.defer(audit.with({ path: request.url })) })
  app.get('/late', (request, reply) => reply.sendAndContinue('ok'))
  await app.inject('/late')
  t.equal(await ran.promise, '/late')
})

test('memory: engine-specific options are refused with the engine they belong to; unknown engines too', async (t) => {
  const tasks = [defineTask('t', () => {})]
  const cases: Array<[unknown, string, string]> = [
    [{ engine: 'memory', tasks, path: 'x.db' }, 'FST_SAC_ENGINE_OPTION', "fastify-send-and-continue queue: path is an option of the 'sqlite' engine, it should not be given with engine 'memory'"],
    [{ engine: 'memory', tasks, connection: 'redis://x' }, 'FST_SAC_ENGINE_OPTION', "fastify-send-and-continue queue: connection is an option of the 'bullmq' engine, it should not be given with engine 'memory'"],
    [{ engine: 'sqlite', tasks, path: 'x.db', connection: 'redis://x' }, 'FST_SAC_ENGINE_OPTION', "fastify-send-and-continue queue: connection is an option of the 'bullmq' engine, it should not be given with engine 'sqlite'"],
    [{ tasks, connection: 'redis://x', path: 'x.db' }, 'FST_SAC_ENGINE_OPTION', "fastify-send-and-continue queue: path is an option of the 'sqlite' engine, it should not be given with engine 'bullmq'"],
    [{ engine: 'bullmq', tasks, connection: 'redis://x', work: false }, 'FST_SAC_ENGINE_OPTION', "fastify-send-and-continue queue: work is an option of the 'sqlite' engine, it should not be given with engine 'bullmq'"],
    [{ engine: 'postgres', tasks }, 'FST_SAC_INVALID_OPTION', "fastify-send-and-continue queue: engine should be 'memory', 'sqlite' or 'bullmq', instead got 'postgres'"],
    [{ engine: 'memory', tasks, nmae: 'x' }, 'FST_SAC_UNKNOWN_OPTION', "fastify-send-and-continue queue: unknown option 'nmae', expected one of engine, tasks, name, enqueueTimeout, onEnqueueError"],
    [{ engine: 'sqlite', tasks }, 'FST_SAC_INVALID_OPTION', 'fastify-send-and-continue queue: path should be the path of a database file (a non-empty string), instead got undefined'],
    [{ engine: 'sqlite', tasks, path: 'x.db', work: 'yes' }, 'FST_SAC_INVALID_OPTION', "fastify-send-and-continue queue: work should be a boolean, instead got 'yes'"],
    [{ engine: 'sqlite', tasks, path: 'x.db', synchronous: 'off' }, 'FST_SAC_INVALID_OPTION', "fastify-send-and-continue queue: synchronous should be 'normal' or 'full', instead got 'off'"],
    [{ engine: 'sqlite', tasks, path: 'x.db', concurrency: 0 }, 'FST_SAC_INVALID_OPTION', 'fastify-send-and-continue queue: concurrency should be a whole number of at least 1, instead got 0'],
    [{ engine: 'sqlite', tasks, path: 'x.db', lockDuration: 0 }, 'FST_SAC_INVALID_OPTION', 'fastify-send-and-continue queue: lockDuration should be a whole number of milliseconds from 1 to 2147483647, instead got 0']
  ]
  for (const [queue, code, message] of cases) {
    const { default: Fastify } = await import('fastify')
    const app = Fastify()
    await t.rejects(async () => await app.register(sendAndContinue, { queue } as never).ready(), { code, message }, message)
    await app.close()
  }
})

test('a response whose work is only durable jobs does not say it runs deferred work: its close line counts the jobs apart', async (t) => {
  const audit = defineTask('audit', () => {})
  const { app, logs } = await build(t, { queue: { engine: 'memory', tasks: [audit] } })
  app.post('/jobs', (request, reply) => reply.code(201).sendAndContinue('ok', [audit.with({ n: 1 }), audit.with({ n: 2 })]))
  app.post('/mixed', (request, reply) => reply.code(201).sendAndContinue('ok', [audit.with({ n: 3 }), function local () {}]))
  await app.inject({ method: 'POST', url: '/jobs' })
  await app.inject({ method: 'POST', url: '/mixed' })
  await app.sendAndContinue.drain()
  t.match(logs.closes, [
    { reqId: 'req-1', msg: 'response finished, deferred jobs handed to the queue', deferred: { tasks: 0, jobs: 2 } },
    { reqId: 'req-2', msg: 'response finished, running deferred work', deferred: { tasks: 1, jobs: 1 } }
  ])
  const plain = await build(t)
  plain.app.get('/', (request, reply) => reply.sendAndContinue('ok', () => {}))
  await plain.app.inject('/')
  t.notOk('jobs' in (plain.logs.closes[0].deferred ?? {}), 'lines of apps without durable jobs are unchanged')
})
