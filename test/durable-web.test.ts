import { test } from 'tap'
import Fastify from 'fastify'
import { Readable } from 'node:stream'
import { performance } from 'node:perf_hooks'
import sendAndContinue, { defineTask } from '../lib/index'
import type { JobPayload } from '../lib/jobs/types'
import { buildDurable, inspect } from './durable-helpers'
import { deferred, listen } from './helpers'
import { abortBeforeResponse } from './reliability-helpers'
import { startRedis } from './redis'

const sendWelcome = defineTask<{ userId: number }>('sendWelcome', () => {})
const audit = defineTask('audit', () => {}, { attempts: 3, backoff: { type: 'fixed', delay: 50 } })

test('the 2xx goes out only once the job is in Redis, logged enqueued with the reqId and jobId', async (t) => {
  const redis = await startRedis(t)
  const { app, logs } = await buildDurable(t, redis, { tasks: [sendWelcome, audit] })
  const queue = inspect(t, redis)
  let jobId = ''
  app.post('/users/:id', (request, reply) => {
    const job = sendWelcome.with({ userId: 7 })
    jobId = job.jobId
    return reply.code(201).sendAndContinue({ ok: true }, job)
  })
  const response = await app.inject({ method: 'POST', url: '/users/7' })
  t.equal(response.statusCode, 201)
  const job = await queue.getJob(jobId)
  t.ok(job, 'the job exists when the response arrives')
  t.equal(job?.name, 'sendWelcome')
  const payload = job?.data as JobPayload
  t.match(payload, {
    data: { userId: 7 },
    request: { id: 'req-1', method: 'POST', url: '/users/7', routeUrl: '/users/:id' },
    route: '/users/:id',
    connection: null,
    statusCode: 201
  })
  t.type(payload.enqueuedAt, 'number')
  t.equal(job?.opts.attempts, 1)
  const [line] = logs.outcomes
  t.match(line, {
    level: 30,
    reqId: 'req-1',
    msg: 'deferred job enqueued',
    deferred: { task: 'sendWelcome', outcome: 'enqueued', jobId, queue: 'fastify-send-and-continue', method: 'POST', route: '/users/:id', statusCode: 201, connection: null, queuedMs: 0 }
  })
  t.same(app.sendAndContinue.stats().durable, { enqueued: 1, enqueueing: 0, enqueueFailed: 0 })
})

test('several jobs of a request go in one batch, beside in-process functions; options reach BullMQ', async (t) => {
  const redis = await startRedis(t)
  const { app, logs } = await buildDurable(t, redis, { tasks: [sendWelcome, audit], name: 'jobs', prefix: 'app' })
  const queue = inspect(t, redis, 'jobs', 'app')
  const ran: string[] = []
  app.get('/', (request, reply) => {
    reply.defer([sendWelcome.with({ userId: 1 }, { key: 'user-1' }), function local () { ran.push('local') }])
    reply.defer(audit.with({ what: 'read' }, { key: 'read', delay: 60_000 }))
    return 'ok'
  })
  const response = await app.inject('/')
  t.equal(response.body, 'ok')
  await app.sendAndContinue.drain()
  t.same(ran, ['local'])
  t.same(await queue.getJobCounts('waiting', 'delayed'), { waiting: 1, delayed: 1 })
  const delayed = await queue.getJob('audit~read')
  t.match(delayed?.opts, { attempts: 3, backoff: { type: 'fixed', delay: 50 }, delay: 60_000 })
  t.same(logs.outcomes.map((line) => [line.deferred?.task, line.deferred?.outcome, line.deferred?.queue]), [
    ['sendWelcome', 'enqueued', 'jobs'], ['audit', 'enqueued', 'jobs'], ['local', 'completed', undefined]
  ])
  // the same key again is the same job
  await app.inject('/')
  t.same(await queue.getJobCounts('waiting', 'delayed'), { waiting: 1, delayed: 1 })
})

test('a job registered after the headers went out is enqueued at once', async (t) => {
  const redis = await startRedis(t)
  const { app, logs } = await buildDurable(t, redis, { tasks: [sendWelcome] })
  const queue = inspect(t, redis)
  app.addHook('onResponse', async (request, reply) => {
    reply.defer(sendWelcome.with({ userId: 2 }, { key: 'late' }))
  })
  app.get('/', async () => 'ok')
  app.get('/hijacked', (request, reply) => {
    reply.hijack()
    reply.defer(sendWelcome.with({ userId: 3 }, { key: 'hijacked' }))
    reply.raw.end('raw')
  })
  app.get('/never-sent', (request, reply) => {
    // the jobs wait for onSend, which never runs: the response's close adds them
    reply.defer(sendWelcome.with({ userId: 4 }, { key: 'never-sent' }))
    reply.hijack()
    reply.raw.end('raw')
  })
  await app.inject('/')
  await app.inject('/hijacked')
  await app.inject('/never-sent')
  await logs.until((lines) => lines.filter((line) => line.deferred?.outcome === 'enqueued').length === 3)
  const late = await queue.getJob('sendWelcome~late')
  t.match(late?.data, { connection: 'finished', statusCode: 200 })
  t.ok(await queue.getJob('sendWelcome~hijacked'))
  t.ok(await queue.getJob('sendWelcome~never-sent'))
})

test('a client that hangs up before the response: its jobs are added when the response closes, connection aborted', async (t) => {
  const redis = await startRedis(t)
  const { app, logs } = await buildDurable(t, redis, { tasks: [sendWelcome] })
  const queue = inspect(t, redis)
  const running = deferred()
  app.get('/', (request, reply) => {
    reply.defer(sendWelcome.with({ userId: 5 }, { key: 'aborted' }))
    running.resolve()
    // never answers: the client gives up first
    return new Promise(() => {})
  })
  const { port } = await listen(app)
  t.equal(await abortBeforeResponse(port, '/', running.promise), 'aborted')
  await logs.until((lines) => lines.some((line) => line.deferred?.outcome === 'enqueued'))
  t.match((await queue.getJob('sendWelcome~aborted'))?.data, { connection: 'aborted', data: { userId: 5 } })
})

test('with Redis stopped: 503 with Retry-After within enqueueTimeout, each job logged dropped', async (t) => {
  const redis = await startRedis(t)
  const { app, logs } = await buildDurable(t, redis, { tasks: [sendWelcome, audit], enqueueTimeout: 300 }, { retryAfter: 7 })
  app.get('/', (request, reply) => reply.sendAndContinue({ ok: true }, [sendWelcome.with({ userId: 1 }), audit.with(null)]))
  app.get('/stream', (request, reply) => {
    reply.defer(sendWelcome.with({ userId: 1 }))
    return reply.header('content-length', '3').send(Readable.from(['abc']))
  })
  await redis.stop()
  const started = performance.now()
  const response = await app.inject('/')
  const elapsed = performance.now() - started
  t.equal(response.statusCode, 503)
  t.equal(response.headers['retry-after'], '7')
  t.same(response.json(), { statusCode: 503, error: 'Service Unavailable', message: 'deferred work could not be enqueued, retry later' })
  t.ok(elapsed < 300 + 1000, `answered in ${Math.round(elapsed)} ms`)
  const dropped = logs.outcomes.filter((line) => line.deferred?.outcome === 'dropped')
  t.equal(dropped.length, 2)
  t.match(dropped[0], { level: 50, reqId: 'req-1', msg: 'deferred task dropped: enqueue-failed', deferred: { task: 'sendWelcome', reason: 'enqueue-failed', queue: 'fastify-send-and-continue' }, err: { message: String } })
  const stream = await app.inject('/stream')
  t.equal(stream.statusCode, 503)
  t.equal(stream.headers['content-length'], String(stream.body.length))
  t.same(app.sendAndContinue.stats().durable, { enqueued: 0, enqueueing: 0, enqueueFailed: 3 })
})

test('with Redis stopped and late registration: the job is logged dropped, the response is untouched', async (t) => {
  const redis = await startRedis(t)
  const { app, logs } = await buildDurable(t, redis, { tasks: [sendWelcome], enqueueTimeout: 200 })
  app.addHook('onResponse', async (request, reply) => {
    reply.defer(sendWelcome.with({ userId: 2 }))
  })
  app.get('/', async () => 'ok')
  await redis.stop()
  const response = await app.inject('/')
  t.equal(response.statusCode, 200)
  await logs.until((lines) => lines.some((line) => line.deferred?.outcome === 'dropped'))
  t.match(logs.outcomes, [{ deferred: { task: 'sendWelcome', outcome: 'dropped', reason: 'enqueue-failed' } }])
})

test("onEnqueueError: 'run-local' answers normally and runs the job in this process, with a warning", async (t) => {
  const redis = await startRedis(t)
  const seen: unknown[] = []
  const local = defineTask<{ n: number }>('local', (data, ctx) => {
    seen.push({ data, jobId: ctx.jobId, attempt: ctx.attempt, name: ctx.name, aborted: ctx.signal.aborted, statusCode: ctx.statusCode, connection: ctx.connection, url: ctx.request.url })
  })
  const { app, logs } = await buildDurable(t, redis, { tasks: [local], enqueueTimeout: 200, onEnqueueError: 'run-local' })
  app.get('/', (request, reply) => reply.sendAndContinue('ok', local.with({ n: 1 }, { key: 'k' })))
  app.addHook('onResponse', async (request, reply) => {
    reply.defer(local.with({ n: 2 }, { key: 'late' }))
  })
  await redis.stop()
  const response = await app.inject('/')
  t.equal(response.statusCode, 200)
  t.equal(response.body, 'ok')
  await logs.until((lines) => lines.filter((line) => line.deferred?.outcome === 'completed').length === 2)
  t.same(seen, [
    { data: { n: 1 }, jobId: 'local~k', attempt: 1, name: 'local', aborted: false, statusCode: 200, connection: 'finished', url: '/' },
    { data: { n: 2 }, jobId: 'local~late', attempt: 1, name: 'local', aborted: false, statusCode: 200, connection: 'finished', url: '/' }
  ])
  const warnings = logs.lines.filter((line) => line.deferredFallback !== undefined)
  t.equal(warnings.length, 2)
  t.match(warnings[0], { level: 40, reqId: 'req-1', msg: 'durable job not enqueued, running it in this process', deferredFallback: { task: 'local', jobId: 'local~k', queue: 'fastify-send-and-continue', method: 'GET', route: '/' }, err: { message: String } })
  t.match(logs.outcomes.filter((line) => line.deferred?.outcome === 'completed'), [{ deferred: { task: 'local' } }, { deferred: { task: 'local' } }])
})

test('app.close() waits for the enqueues in flight, then closes the connection', async (t) => {
  const redis = await startRedis(t)
  const { app, logs } = await buildDurable(t, redis, { tasks: [sendWelcome] })
  const queue = inspect(t, redis)
  app.addHook('onResponse', async (request, reply) => {
    reply.defer(sendWelcome.with({ userId: 9 }, { key: 'in-flight' }))
    // close at once: the enqueue has only started
    app.close().catch(() => {})
  })
  app.get('/', async () => 'ok')
  await app.inject('/')
  await app.close()
  t.ok(await queue.getJob('sendWelcome~in-flight'), 'the job reached Redis before close() resolved')
  t.equal(logs.outcomes.filter((line) => line.deferred?.outcome === 'enqueued').length, 1)
})

test('a request still running after app.close() cannot enqueue: its job is refused like a Redis failure', async (t) => {
  const redis = await startRedis(t)
  const { app, logs } = await buildDurable(t, redis, { tasks: [sendWelcome] })
  const gate = deferred()
  app.get('/', async (request, reply) => {
    await gate.promise
    return reply.sendAndContinue('ok', sendWelcome.with({ userId: 1 }))
  })
  const response = app.inject('/')
  await new Promise((resolve) => setImmediate(resolve))
  await app.close()
  gate.resolve()
  t.equal((await response).statusCode, 503)
  t.match(logs.outcomes, [{ deferred: { outcome: 'dropped', reason: 'enqueue-failed' }, err: { message: 'the queue is closed: the app is closing' } }])
})

test('durable jobs: coded errors for a job without a queue, an unknown task, always', async (t) => {
  const redis = await startRedis(t)
  const other = defineTask('sendWelcome', () => {})
  const { app } = await buildDurable(t, redis, { tasks: [sendWelcome] })
  const errors: unknown[] = []
  app.get('/unknown', (request, reply) => {
    try { reply.defer(audit.with(null)) } catch (err) { errors.push(err) }
    try { reply.defer(other.with(null)) } catch (err) { errors.push(err) }
    try { reply.defer(sendWelcome.with({ userId: 1 }), { always: true }) } catch (err) { errors.push(err) }
    return 'ok'
  })
  await app.inject('/unknown')
  t.match(errors, [
    { code: 'FST_SAC_UNKNOWN_TASK', message: "reply.defer(): the task should be one of the tasks given to the queue (sendWelcome), instead got 'audit'" },
    { code: 'FST_SAC_UNKNOWN_TASK', message: "reply.defer(): the task should be one of the tasks given to the queue (sendWelcome), instead got 'sendWelcome'" },
    { code: 'FST_SAC_INVALID_OPTION', message: 'reply.defer(): always should be false for a durable job (always tasks run in this process), instead got true' }
  ])

  const plain = Fastify()
  t.teardown(() => plain.close())
  await plain.register(sendAndContinue)
  plain.get('/', (request, reply) => reply.sendAndContinue('ok', [() => {}, sendWelcome.with({ userId: 1 })]))
  const response = await plain.inject('/')
  t.equal(response.statusCode, 500)
  t.match(response.json(), { code: 'FST_SAC_NO_QUEUE', message: 'reply.sendAndContinue(): a durable job needs the plugin registered with the queue option, instead got no queue option' })
})

test('the queue option: each wrong shape is a coded error that says what was expected', async (t) => {
  const tasks = [sendWelcome]
  const connection = 'redis://127.0.0.1:1'
  const cases: Array<[unknown, string, string]> = [
    ['redis://x', 'FST_SAC_INVALID_OPTION', "fastify-send-and-continue: queue should be an object, instead got 'redis://x'"],
    [{ connection, tasks, url: 'x' }, 'FST_SAC_UNKNOWN_OPTION', "fastify-send-and-continue queue: unknown option 'url', expected one of engine, tasks, name, enqueueTimeout, onEnqueueError, connection, prefix"],
    [{ tasks }, 'FST_SAC_INVALID_OPTION', 'fastify-send-and-continue queue: connection should be a redis:// URL or an object of ioredis options, instead got undefined'],
    [{ connection: 'localhost:6379', tasks }, 'FST_SAC_INVALID_OPTION', "fastify-send-and-continue queue: connection should be a redis:// URL or an object of ioredis options, instead got 'localhost:6379'"],
    [{ connection, tasks: [] }, 'FST_SAC_INVALID_OPTION', 'fastify-send-and-continue queue: tasks should be a non-empty array of tasks made by defineTask(), instead got []'],
    [{ connection, tasks: [sendWelcome, sendWelcome] }, 'FST_SAC_DUPLICATE_TASK', "fastify-send-and-continue queue: task names should be unique, instead got 'sendWelcome' twice"],
    [{ connection, tasks, name: 'a:b' }, 'FST_SAC_INVALID_OPTION', "fastify-send-and-continue queue: name should be a non-empty string without ':', instead got 'a:b'"],
    [{ connection, tasks, prefix: '' }, 'FST_SAC_INVALID_OPTION', "fastify-send-and-continue queue: prefix should be a non-empty string without ':', instead got ''"],
    [{ connection, tasks, enqueueTimeout: 0 }, 'FST_SAC_INVALID_OPTION', 'fastify-send-and-continue queue: enqueueTimeout should be a whole number of milliseconds from 1 to 2147483647, instead got 0'],
    [{ connection, tasks, onEnqueueError: 'retry' }, 'FST_SAC_INVALID_OPTION', "fastify-send-and-continue queue: onEnqueueError should be 'reject' or 'run-local', instead got 'retry'"]
  ]
  for (const [queue, code, message] of cases) {
    const app = Fastify()
    await t.rejects(async () => await app.register(sendAndContinue, { queue } as never).ready(), { code, message }, message)
    await app.close()
  }
})

test('startup: an unreachable Redis and an evicting maxmemory-policy are refused', async (t) => {
  const redis = await startRedis(t)
  const tasks = [sendWelcome]
  await redis.stop()
  const down = Fastify()
  await t.rejects(async () => await down.register(sendAndContinue, { queue: { connection: redis.connection, tasks, enqueueTimeout: 200 } }).ready(), {
    code: 'FST_SAC_REDIS_UNREACHABLE',
    message: /^fastify-send-and-continue queue: Redis should answer within 200 ms, instead got '.+'$/
  })
  await down.close()

  const evicting = await startRedis(t, { maxmemoryPolicy: 'allkeys-lru' })
  const app = Fastify()
  await t.rejects(async () => await app.register(sendAndContinue, { queue: { connection: evicting.connection, tasks } }).ready(), {
    code: 'FST_SAC_REDIS_EVICTION',
    message: "fastify-send-and-continue queue: Redis maxmemory-policy should be 'noeviction' (any other policy may evict jobs), instead got 'allkeys-lru'"
  })
  await app.close()

  const url = Fastify()
  await t.rejects(async () => await url.register(sendAndContinue, { queue: { connection: 'redis://127.0.0.1:1', tasks, enqueueTimeout: 200 } }).ready(), { code: 'FST_SAC_REDIS_UNREACHABLE' })
  await url.close()
})

test('a Redis that accepts connections but does not answer: refused at startup, 503 within enqueueTimeout', async (t) => {
  const redis = await startRedis(t)
  const { app, logs } = await buildDurable(t, redis, { tasks: [sendWelcome], enqueueTimeout: 200 })
  app.get('/', (request, reply) => reply.sendAndContinue('ok', sendWelcome.with({ userId: 1 })))
  redis.process.kill('SIGSTOP')
  t.teardown(() => { redis.process.kill('SIGCONT') })
  const response = await app.inject('/')
  t.equal(response.statusCode, 503)
  t.match(logs.outcomes, [{ deferred: { outcome: 'dropped', reason: 'enqueue-failed' }, err: { message: 'Redis did not answer within 200 ms' } }])

  const hung = Fastify()
  await t.rejects(async () => await hung.register(sendAndContinue, { queue: { connection: redis.connection, tasks: [sendWelcome], enqueueTimeout: 200 } }).ready(), {
    code: 'FST_SAC_REDIS_UNREACHABLE',
    message: "fastify-send-and-continue queue: Redis should answer within 200 ms, instead got 'no answer'"
  })
  await hung.close()
  redis.process.kill('SIGCONT')
})

test('with the logger above error level, enqueues and failures write nothing and are still counted', async (t) => {
  const redis = await startRedis(t)
  const logs: string[] = []
  const app = Fastify({ logger: { level: 'fatal', stream: { write: (line: string) => { logs.push(line) } } } })
  t.teardown(() => app.close())
  await app.register(sendAndContinue, { queue: { connection: redis.connection, tasks: [sendWelcome], enqueueTimeout: 200 } })
  app.get('/', (request, reply) => reply.sendAndContinue('ok', sendWelcome.with({ userId: 1 })))
  t.equal((await app.inject('/')).statusCode, 200)
  await redis.stop()
  t.equal((await app.inject('/')).statusCode, 503)
  t.same(logs, [])
  t.same(app.sendAndContinue.stats().durable, { enqueued: 1, enqueueing: 0, enqueueFailed: 1 })
})

test('group commit: concurrent responses\' jobs reach Redis together (a few reads, not one per response), each response waits for its own', async (t) => {
  const redis = await startRedis(t)
  const { app, logs } = await buildDurable(t, redis, { tasks: [sendWelcome, audit] })
  app.post('/:id', (request, reply) => {
    const id = Number((request.params as { id: string }).id)
    return reply.code(201).sendAndContinue({ id }, id % 2 === 0 ? sendWelcome.with({ userId: id }) : [audit.with({ id }), sendWelcome.with({ userId: id })])
  })
  const { Redis } = await import('ioredis')
  const probe = new Redis(redis.connection)
  t.teardown(() => probe.disconnect())
  const reads = async (): Promise<number> => Number(/total_reads_processed:(\d+)/.exec(await probe.info('stats'))?.[1])
  const before = await reads()
  const answers = await Promise.all(Array.from({ length: 20 }, (_, id) => app.inject({ method: 'POST', url: `/${id}` })))
  t.same(answers.map((answer) => answer.statusCode), Array(20).fill(201))
  t.equal(logs.outcomes.filter((line) => line.deferred?.outcome === 'enqueued').length, 30, 'every job logged enqueued before its response')
  // the probe's own INFO is one read; 20 responses enqueueing one by one would be 20 or more
  const during = await reads() - before - 1
  t.ok(during < 10, `${during} reads by Redis for 20 responses' enqueues`)
  t.equal(await inspect(t, redis).count(), 30, 'all 30 jobs are in Redis')
})
