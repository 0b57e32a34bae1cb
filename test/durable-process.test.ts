import { test } from 'tap'
import { defineTask } from '../lib/index'
import { addJobs, buildDurable, inspect } from './durable-helpers'
import { startWorker } from './durable-children'
import type { LogLine } from './helpers'
import { startRedis } from './redis'

const finals = (lines: LogLine[]): LogLine[] => lines.filter((line) => line.deferred?.outcome === 'completed')

test('a route\'s job runs in a worker process; its line carries the request\'s reqId, the jobId and the attempt', async (t) => {
  const redis = await startRedis(t)
  // the web side's task of the same name: the worker loads its own module, as in production
  const record = defineTask('record', () => {})
  const { app, logs } = await buildDurable(t, redis, { tasks: [record] })
  app.post('/items', (request, reply) => reply.code(202).sendAndContinue({ ok: true }, record.with({ ms: 1 })))
  const response = await app.inject({ method: 'POST', url: '/items' })
  t.equal(response.statusCode, 202)
  const [enqueued] = logs.outcomes
  const worker = startWorker(t, redis.path)
  await worker.until((lines) => finals(lines).length === 1)
  const [line] = finals(worker.lines)
  t.match(line, {
    reqId: enqueued.reqId,
    deferred: { task: 'record', outcome: 'completed', jobId: enqueued.deferred?.jobId, attempt: 1, queue: 'fastify-send-and-continue', route: '/items', method: 'POST', statusCode: 202 }
  })
  worker.process.kill('SIGTERM')
  t.same(await worker.exited, { code: 0, signal: null })
})

test('kill -9 of a worker in the middle of 1,000 jobs, then a new worker: every job completes, few run twice', async (t) => {
  const redis = await startRedis(t)
  const queue = inspect(t, redis)
  const total = 1000
  const concurrency = 10
  await addJobs(queue, 'record', total, (i) => ({ i, ms: 3 }))
  // short locks so the crashed worker's jobs come back within a second or two, not 30-60 s
  const options = ['--concurrency', String(concurrency), '--lock-duration', '1000', '--stalled-interval', '500']
  const first = startWorker(t, redis.path, options)
  await first.until((lines) => finals(lines).length >= 200)
  first.process.kill('SIGKILL')
  t.same(await first.exited, { code: null, signal: 'SIGKILL' })
  const doneByFirst = finals(first.lines).length
  t.ok(doneByFirst < total, `the first worker finished ${doneByFirst} before it was killed`)

  const second = startWorker(t, redis.path, options)
  const ids = (): Set<unknown> => new Set([...finals(first.lines), ...finals(second.lines)].map((line) => line.deferred?.jobId))
  await second.until(() => ids().size === total)
  second.process.kill('SIGTERM')
  t.same(await second.exited, { code: 0, signal: null })
  t.same(await queue.getJobCounts('completed', 'failed', 'waiting', 'active', 'delayed'), { completed: total, failed: 0, waiting: 0, active: 0, delayed: 0 })
  const runs = finals(first.lines).length + finals(second.lines).length
  const duplicates = runs - total
  t.comment(`${duplicates} of ${total} jobs ran twice (at-least-once)`)
  t.ok(duplicates <= concurrency, `at most the jobs running at the kill run twice: ${duplicates}`)
})

test('SIGTERM: the worker drains within --drain-timeout, then returns its unfinished job to the queue and exits 0', async (t) => {
  const redis = await startRedis(t)
  const queue = inspect(t, redis)
  await addJobs(queue, 'hold', 1)
  await addJobs(queue, 'record', 3, () => ({ ms: 1 }))
  const worker = startWorker(t, redis.path, ['--drain-timeout', '100'])
  // the hold job was taken first (concurrency 10): it is running once the others are done
  await worker.until((lines) => finals(lines).length === 3)
  worker.process.kill('SIGTERM')
  t.same(await worker.exited, { code: 0, signal: null })
  const shutdown = worker.lines.find((line) => line.deferredShutdown !== undefined)
  t.match(shutdown, { level: 40, deferredShutdown: { drained: false, drainTimeout: 100, completed: 3, cancelled: 1 } })
  t.same(await queue.getJobCounts('waiting', 'active'), { waiting: 1, active: 0 })
})
