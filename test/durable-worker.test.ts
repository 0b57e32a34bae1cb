import { test } from 'tap'
import { createWorker, defineTask } from '../lib/index'
import type { DurableTaskContext } from '../lib/index'
import { addJobs, buildDurable, inspect, workerLogger } from './durable-helpers'
import { deferred } from './helpers'
import { startRedis } from './redis'

test('a route\'s job runs in the worker: same reqId, the request snapshot, one final line with jobId, attempt and queue', async (t) => {
  const redis = await startRedis(t)
  const seen = deferred<{ data: unknown, ctx: DurableTaskContext }>()
  const sendWelcome = defineTask<{ userId: number }>('sendWelcome', (data, ctx) => {
    ctx.log.info('sending')
    seen.resolve({ data, ctx })
  })
  const { app } = await buildDurable(t, redis, { tasks: [sendWelcome] })
  let jobId = ''
  app.post('/users/:id', (request, reply) => {
    const job = sendWelcome.with({ userId: 3 })
    jobId = job.jobId
    return reply.code(201).sendAndContinue({ ok: true }, job)
  })
  await app.inject({ method: 'POST', url: '/users/3?x=1' })

  const { logger, logs } = workerLogger()
  const worker = await createWorker({ connection: redis.connection, tasks: [sendWelcome], logger })
  t.teardown(() => worker.close())
  t.equal(worker.queue, 'fastify-send-and-continue')
  const { data, ctx } = await seen.promise
  t.same(data, { userId: 3 })
  t.match(ctx, { name: 'sendWelcome', jobId, attempt: 1, connection: null, statusCode: 201, request: { id: 'req-1', method: 'POST', url: '/users/3?x=1', routeUrl: '/users/:id' } })
  t.equal(ctx.signal.aborted, false)
  await logs.untilOutcomes(1)
  t.match(logs.lines.find((line) => line.msg === 'sending'), { reqId: 'req-1' })
  const [line] = logs.outcomes
  t.match(line, {
    level: 30,
    reqId: 'req-1',
    msg: 'deferred task completed',
    deferred: { task: 'sendWelcome', outcome: 'completed', connection: null, method: 'POST', route: '/users/:id', statusCode: 201, durationMs: Number, queuedMs: Number, jobId, attempt: 1, queue: 'fastify-send-and-continue' }
  })
  t.match(worker.stats(), { completed: 1, failed: 0, running: 0, retrying: 0 })
})

test('retries: two failed attempts log retrying, the third completes; exhausted attempts log failed once', async (t) => {
  const redis = await startRedis(t)
  const queue = inspect(t, redis)
  const tries = new Map<string, number>()
  const flaky = defineTask('flaky', (data, { jobId }) => {
    const n = (tries.get(jobId) ?? 0) + 1
    tries.set(jobId, n)
    if (jobId === 'flaky~0' && n === 3) return
    if (n === 1) throw new Error(`boom ${n}`)
    return Promise.reject('not an Error') // eslint-disable-line prefer-promise-reject-errors
  })
  await addJobs(queue, 'flaky', 2, undefined, { attempts: 3, backoff: { type: 'exponential', delay: 10 } })
  const { logger, logs } = workerLogger()
  const worker = await createWorker({ connection: redis.connection, tasks: [flaky], logger })
  t.teardown(() => worker.close())
  await logs.until(() => logs.outcomes.filter((line) => line.deferred?.outcome !== 'retrying').length === 2)
  const of = (jobId: string): Array<[unknown, unknown, unknown, unknown]> => logs.outcomes
    .filter((line) => line.deferred?.jobId === jobId)
    .map((line) => [line.deferred?.outcome, line.deferred?.attempt, line.deferred?.delayMs, line.err?.message])
  t.same(of('flaky~0'), [['retrying', 1, 10, 'boom 1'], ['retrying', 2, 20, "'not an Error'"], ['completed', 3, undefined, undefined]])
  t.same(of('flaky~1'), [['retrying', 1, 10, 'boom 1'], ['retrying', 2, 20, "'not an Error'"], ['failed', 3, undefined, "'not an Error'"]])
  t.match(logs.outcomes.find((line) => line.deferred?.outcome === 'retrying'), { level: 40, msg: 'deferred job attempt failed, retrying', reqId: 'req-1' })
  t.match(worker.stats(), { completed: 1, failed: 1, retrying: 4 })
  // the final line comes before BullMQ is told; once closed, the worker told it
  await worker.close()
  t.same(await queue.getJobCounts('completed', 'failed'), { completed: 1, failed: 1 })
})

test('a job past its timeout: the signal aborts, the attempt is retried, the last one ends as timeout', async (t) => {
  const redis = await startRedis(t)
  const queue = inspect(t, redis)
  const reasons: unknown[] = []
  const slow = defineTask('slow', (data, { signal }) => new Promise((resolve) => {
    signal.addEventListener('abort', () => { reasons.push(signal.reason); resolve(undefined) })
  }), { timeout: 50 })
  const sync = defineTask('sync', () => { throw new Error('sync throw') })
  await addJobs(queue, 'slow', 1, undefined, { attempts: 2 })
  await addJobs(queue, 'sync', 1)
  const { logger, logs } = workerLogger()
  const worker = await createWorker({ connection: redis.connection, tasks: [slow, sync], logger })
  t.teardown(() => worker.close())
  await logs.until(() => logs.outcomes.filter((line) => line.deferred?.outcome !== 'retrying').length === 2)
  t.match(logs.outcomes.filter((line) => line.deferred?.task === 'slow'), [
    { level: 40, deferred: { outcome: 'retrying', attempt: 1, timeoutMs: 50, delayMs: 0 }, err: { message: 'durable task "slow" timed out after 50 ms' } },
    { level: 40, msg: 'deferred task timed out', deferred: { outcome: 'timeout', attempt: 2, timeoutMs: 50 } }
  ])
  t.match(logs.outcomes.find((line) => line.deferred?.task === 'sync'), { level: 50, deferred: { outcome: 'failed', attempt: 1 }, err: { message: 'sync throw' } })
  t.match(reasons, [{ name: 'TimeoutError' }, { name: 'TimeoutError' }])
  t.match(worker.stats(), { timeout: 1, failed: 1, retrying: 1 })
})

test('a job of a task the worker does not know fails once with a coded error, not retried', async (t) => {
  const redis = await startRedis(t)
  const queue = inspect(t, redis)
  await addJobs(queue, 'ghost', 1, undefined, { attempts: 3 })
  const { logger, logs } = workerLogger()
  const worker = await createWorker({ connection: redis.connection, tasks: [defineTask('known', () => {})], logger })
  t.teardown(() => worker.close())
  await logs.untilOutcomes(1)
  await worker.close()
  t.match(logs.outcomes, [{ deferred: { task: 'ghost', outcome: 'failed', attempt: 1 }, err: { code: 'FST_SAC_UNKNOWN_TASK', message: "worker of queue fastify-send-and-continue: the task should be one of the tasks given to the queue (known), instead got 'ghost'" } }])
  t.same(await queue.getJobCounts('failed'), { failed: 1 })
})

test('close() waits for running jobs within drainTimeout', async (t) => {
  const redis = await startRedis(t)
  const queue = inspect(t, redis)
  const started = deferred()
  const release = deferred()
  const task = defineTask('held', async () => { started.resolve(); await release.promise })
  await addJobs(queue, 'held', 1)
  const { logger, logs } = workerLogger()
  const worker = await createWorker({ connection: redis.connection, tasks: [task], logger, drainTimeout: 10_000 })
  await started.promise
  t.equal(worker.stats().running, 1)
  const closed = worker.close()
  t.equal(worker.close(), closed, 'one close')
  release.resolve()
  await closed
  t.match(logs.outcomes, [{ deferred: { outcome: 'completed' } }])
  t.match(logs.lines.at(-1), { msg: 'deferred work drained', deferredShutdown: { drained: true, drainTimeout: 10_000, completed: 1 } })
})

test('close() past drainTimeout aborts the signal and returns the job to waiting; the next worker runs it', async (t) => {
  const redis = await startRedis(t)
  const queue = inspect(t, redis)
  const started = deferred()
  const reasons: unknown[] = []
  let runs = 0
  const stubborn = defineTask('stubborn', (data, { signal, attempt }) => {
    runs++
    if (runs > 1) return attempt
    started.resolve()
    signal.addEventListener('abort', () => { reasons.push(signal.reason) })
    return new Promise(() => {}) // ignores its signal
  })
  await addJobs(queue, 'stubborn', 1)
  const first = workerLogger()
  const worker = await createWorker({ connection: redis.connection, tasks: [stubborn], logger: first.logger, drainTimeout: 50 })
  await started.promise
  await worker.close()
  t.match(reasons, [{ name: 'AbortError', message: 'durable task "stubborn" aborted: the worker is closing' }])
  t.match(first.logs.outcomes, [{ level: 40, deferred: { outcome: 'retrying', reason: 'worker-closing', delayMs: 0, attempt: 1, jobId: 'stubborn~0' } }])
  t.match(first.logs.lines.at(-1), { level: 40, deferredShutdown: { drained: false, cancelled: 1, drainTimeout: 50 } })
  t.same(await queue.getJobCounts('waiting', 'active'), { waiting: 1, active: 0 })

  const second = workerLogger()
  const next = await createWorker({ connection: redis.connection, tasks: [stubborn], logger: second.logger })
  t.teardown(() => next.close())
  await second.logs.untilOutcomes(1)
  t.match(second.logs.outcomes, [{ deferred: { outcome: 'completed', attempt: 1, jobId: 'stubborn~0' } }])
})

test('two workers share one queue; each job has one final line', async (t) => {
  const redis = await startRedis(t)
  const queue = inspect(t, redis)
  const task = defineTask('share', () => new Promise((resolve) => setTimeout(resolve, 5)))
  await addJobs(queue, 'share', 60)
  const a = workerLogger()
  const b = workerLogger()
  const [one, two] = await Promise.all([
    createWorker({ connection: redis.connection, tasks: [task], logger: a.logger, concurrency: 2 }),
    createWorker({ connection: redis.connection, tasks: [task], logger: b.logger, concurrency: 2 })
  ])
  t.teardown(() => Promise.all([one.close(), two.close()]))
  // whichever collector gets the last line sees the total
  const all = (): boolean => a.logs.outcomes.length + b.logs.outcomes.length === 60
  await Promise.race([a.logs.until(all), b.logs.until(all)])
  const ids = [...a.logs.outcomes, ...b.logs.outcomes].map((line) => line.deferred?.jobId)
  t.equal(new Set(ids).size, 60)
  t.ok(one.stats().completed > 0 && two.stats().completed > 0, `${one.stats().completed} + ${two.stats().completed}`)
})

test('createWorker(): bad options, an unreachable Redis and an evicting one are coded errors', async (t) => {
  const tasks = [defineTask('t', () => {})]
  const connection = 'redis://127.0.0.1:1'
  const cases: Array<[unknown, string, string]> = [
    [null, 'FST_SAC_INVALID_OPTION', 'createWorker(): the options should be an object, instead got null'],
    [{ connection, tasks, queue: 'x' }, 'FST_SAC_UNKNOWN_OPTION', "createWorker(): unknown option 'queue', expected one of engine, tasks, name, concurrency, logger, drainTimeout, lockDuration, metrics, connection, prefix, stalledInterval"],
    [{ connection: 6379, tasks }, 'FST_SAC_INVALID_OPTION', 'createWorker(): connection should be a redis:// URL or an object of ioredis options, instead got 6379'],
    [{ connection, tasks: [] }, 'FST_SAC_INVALID_OPTION', 'createWorker(): tasks should be a non-empty array of tasks made by defineTask(), instead got []'],
    [{ connection, tasks, name: '' }, 'FST_SAC_INVALID_OPTION', "createWorker(): name should be a non-empty string without ':', instead got ''"],
    [{ connection, tasks, prefix: 'a:b' }, 'FST_SAC_INVALID_OPTION', "createWorker(): prefix should be a non-empty string without ':', instead got 'a:b'"],
    [{ connection, tasks, concurrency: 0 }, 'FST_SAC_INVALID_OPTION', 'createWorker(): concurrency should be a whole number of at least 1, instead got 0'],
    [{ connection, tasks, drainTimeout: -1 }, 'FST_SAC_INVALID_OPTION', 'createWorker(): drainTimeout should be a whole number of milliseconds from 0 to 2147483647, instead got -1'],
    [{ connection, tasks, lockDuration: 0 }, 'FST_SAC_INVALID_OPTION', 'createWorker(): lockDuration should be a whole number of milliseconds from 1 to 2147483647, instead got 0']
  ]
  for (const [options, code, message] of cases) {
    await t.rejects(createWorker(options as never), { code, message }, message)
  }
  const redis = await startRedis(t)
  await redis.stop()
  await t.rejects(createWorker({ connection: redis.connection, tasks }), { code: 'FST_SAC_REDIS_UNREACHABLE', message: /^createWorker\(\): Redis should answer within 5000 ms/ })
  const evicting = await startRedis(t, { maxmemoryPolicy: 'volatile-lru' })
  await t.rejects(createWorker({ connection: evicting.connection, tasks }), { code: 'FST_SAC_REDIS_EVICTION', message: /instead got 'volatile-lru'$/ })
})
