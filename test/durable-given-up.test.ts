import { test } from 'tap'
import { createWorker, defineTask } from '../lib/index'
import { buildDurable, inspect, workerLogger } from './durable-helpers'
import { startRedis } from './redis'

// A 503 means the job does not run; a 2xx means it does. With Redis frozen (SIGSTOP) the add
// times out and the client gets 503, but the add still sits in Redis's socket: after SIGCONT it
// reaches Redis and a worker could run it. The enqueue's token is cancelled right behind it, on
// the same connection, so the worker that takes the job ends it without running it.

test('a 503 means the job does not run: Redis frozen during the enqueue, thawed, a worker takes the late job and does not run it', async (t) => {
  const redis = await startRedis(t)
  let ran = 0
  const sendWelcome = defineTask('sendWelcome', () => { ran++ })
  const { app, logs } = await buildDurable(t, redis, { tasks: [sendWelcome], enqueueTimeout: 200 })
  app.post('/signup', (request, reply) => reply.code(201).sendAndContinue({ ok: true }, sendWelcome.with({ userId: 1 })))

  redis.process.kill('SIGSTOP')
  t.teardown(() => { redis.process.kill('SIGCONT') })
  const response = await app.inject({ method: 'POST', url: '/signup' })
  t.equal(response.statusCode, 503)
  t.match(logs.outcomes, [{ deferred: { outcome: 'dropped', reason: 'enqueue-failed', statusCode: 503 } }], 'the dropped line carries the status the client got')
  t.equal(app.sendAndContinue.stats().dropped, 1, 'stats() counts that line')
  t.match(app.sendAndContinue.stats().durable, { enqueueFailed: 1 })
  redis.process.kill('SIGCONT')

  // the late add reached Redis: the job is there
  const queue = inspect(t, redis)
  const waiting = await queue.getJobs(['waiting'])
  t.equal(waiting.length, 1, 'the add reached Redis after the timeout')

  const { logger, logs: workerLogs } = workerLogger()
  const worker = await createWorker({ connection: redis.connection, tasks: [sendWelcome], logger })
  t.teardown(() => worker.close())
  await workerLogs.until((lines) => lines.some((line) => line.deferredGivenUp !== undefined))
  t.equal(ran, 0, 'the task never ran')
  t.match(workerLogs.lines.find((line) => line.deferredGivenUp !== undefined), {
    level: 40,
    reqId: 'req-1',
    msg: 'durable job not run: the web process gave up on its enqueue',
    deferredGivenUp: { task: 'sendWelcome', jobId: waiting[0].id, queue: 'fastify-send-and-continue', method: 'POST', route: '/signup', statusCode: 503 }
  })
  t.same(workerLogs.outcomes, [], 'no second final line: the web process wrote the job\'s')
  t.match(worker.stats(), { completed: 0, failed: 0, dropped: 0 })

  // a later enqueue with the same key is another token: it runs
  const again = await app.inject({ method: 'POST', url: '/signup' })
  t.equal(again.statusCode, 201)
  await workerLogs.until((lines) => lines.some((line) => line.deferred?.outcome === 'completed'))
  t.equal(ran, 1, 'the retried request\'s job runs')
})

test('run-local: a job run in the web process after a failed enqueue never also runs in a worker', async (t) => {
  const redis = await startRedis(t)
  let ranHere = 0
  let ranInWorker = 0
  const webTask = defineTask('audit', () => { ranHere++ })
  const workerTask = defineTask('audit', () => { ranInWorker++ })
  const { app, logs } = await buildDurable(t, redis, { tasks: [webTask], enqueueTimeout: 200, onEnqueueError: 'run-local' })
  app.post('/', (request, reply) => reply.code(202).sendAndContinue('ok', webTask.with({ key: 1 })))
  redis.process.kill('SIGSTOP')
  t.teardown(() => { redis.process.kill('SIGCONT') })
  t.equal((await app.inject({ method: 'POST', url: '/' })).statusCode, 202)
  await app.sendAndContinue.drain()
  t.equal(ranHere, 1)
  t.ok(logs.lines.some((line) => line.deferredFallback !== undefined))
  redis.process.kill('SIGCONT')

  const { logger, logs: workerLogs } = workerLogger()
  const worker = await createWorker({ connection: redis.connection, tasks: [workerTask], logger })
  t.teardown(() => worker.close())
  await workerLogs.until((lines) => lines.some((line) => line.deferredGivenUp !== undefined))
  t.equal(ranInWorker, 0)
  t.match(workerLogs.lines.find((line) => line.deferredGivenUp !== undefined), { deferredGivenUp: { statusCode: 202 } }, 'the status the client got')
})

test('the app closes before Redis confirmed the cancellation: its shutdown line says how many jobs may still run', async (t) => {
  const redis = await startRedis(t)
  const sendWelcome = defineTask('sendWelcome', () => {})
  const { app, logs } = await buildDurable(t, redis, { tasks: [sendWelcome], enqueueTimeout: 100 })
  app.post('/', (request, reply) => reply.sendAndContinue('ok', [sendWelcome.with({ n: 1 }), sendWelcome.with({ n: 2 })]))
  redis.process.kill('SIGSTOP')
  t.teardown(() => { redis.process.kill('SIGCONT') })
  t.equal((await app.inject({ method: 'POST', url: '/' })).statusCode, 503)
  await app.close()
  t.match(logs.lines.find((line) => line.deferredShutdown !== undefined), { deferredShutdown: { mayStillRun: 2, dropped: 2 } })
})

test('while Redis does not answer the mark is tried again every 500 ms; once it answers, nothing may still run', async (t) => {
  const redis = await startRedis(t)
  const sendWelcome = defineTask('sendWelcome', () => {})
  const { app, logs } = await buildDurable(t, redis, { tasks: [sendWelcome], enqueueTimeout: 100 })
  app.post('/', (request, reply) => reply.sendAndContinue('ok', sendWelcome.with({ n: 1 })))
  redis.process.kill('SIGSTOP')
  t.teardown(() => { redis.process.kill('SIGCONT') })
  t.equal((await app.inject({ method: 'POST', url: '/' })).statusCode, 503)
  // the first mark times out after 100 ms; the retries at 500 ms intervals time out too
  await new Promise((resolve) => setTimeout(resolve, 1200))
  redis.process.kill('SIGCONT')
  await app.close()
  const shutdown = logs.lines.find((line) => line.deferredShutdown !== undefined)
  t.equal(shutdown?.deferredShutdown?.mayStillRun, undefined, 'Redis took the mark before the app closed')
  const { Redis } = await import('ioredis')
  const probe = new Redis(redis.connection)
  t.teardown(() => probe.disconnect())
  const marks = await probe.keys('bull:fastify-send-and-continue:sac-cancelled:*')
  t.equal(marks.length, 1, 'one mark, for the one enqueue given up on')
})
