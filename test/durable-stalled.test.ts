import t, { test } from 'tap'
import type { Test } from 'tap'
import diagnostics from 'node:diagnostics_channel'
import { SpanKind, SpanStatusCode } from '@opentelemetry/api'
import type { Queue } from 'bullmq'
import { Redis } from 'ioredis'
import type { TaskMessage } from '../lib/channels'
import { createWorker, defineTask } from '../lib/index'
import { startWorker } from './durable-children'
import { addJobs, inspect, workerLogger } from './durable-helpers'
import type { LogLine } from './helpers'
import { startRedis } from './redis'
import type { RedisServer } from './redis'
import { exporter, parentOf, spanNamed } from './tracing-helpers'

// A job whose workers die during it (kill -9) more than BullMQ's maxStalledCount (1) times is
// failed by BullMQ in the next worker that takes it, without running it: that worker writes its
// final line. Three worker lifetimes of lockDuration + stalledInterval each: a slow file.
t.setTimeout(120_000)

// short locks, so that a killed worker's job comes back in a second or two, not 30-60 s
const LOCKS = ['--lock-duration', '1000', '--stalled-interval', '500']
const STALLED = 'job stalled more than allowable limit'

interface Started { jobId: string, attempt: number }

function startsOf (lines: LogLine[], jobId: string): Started[] {
  return lines.map((line) => line.started as Started | undefined).filter((started) => started?.jobId === jobId) as Started[]
}

function failedLines (lines: LogLine[], jobId: string): LogLine[] {
  return lines.filter((line) => line.deferred?.outcome === 'failed' && line.deferred.jobId === jobId)
}

/** Runs the `block` job `jobId` in two CLI workers in turn and kills each (-9) once it started. */
async function killTwice (tt: Test, redis: RedisServer, jobId: string): Promise<void> {
  for (const which of ['first', 'second']) {
    const worker = startWorker(tt, redis.path, LOCKS)
    await worker.until((lines) => startsOf(lines, jobId).length === 1)
    tt.same(startsOf(worker.lines, jobId), [{ jobId, attempt: 1 }], `the ${which} worker started the job, attempt 1`)
    worker.process.kill('SIGKILL')
    tt.same(await worker.exited, { code: null, signal: 'SIGKILL' })
  }
}

async function stateOf (queue: Queue, jobId: string): Promise<string> {
  return await queue.getJobState(jobId)
}

test('a job whose workers are killed twice: the third worker logs its one final failed line, reason stalled, and does not run it', async (t) => {
  const redis = await startRedis(t)
  const queue = inspect(t, redis)
  const [jobId] = await addJobs(queue, 'block', 1)
  await killTwice(t, redis, jobId)

  const third = startWorker(t, redis.path, LOCKS)
  await third.until((lines) => failedLines(lines, jobId).length === 1)
  t.equal(await stateOf(queue, jobId), 'failed', 'BullMQ moved it to failed: it cannot start again')
  third.process.kill('SIGTERM')
  t.same(await third.exited, { code: 0, signal: null })

  const [line, ...more] = failedLines(third.lines, jobId)
  t.same(more, [], 'exactly one final line')
  t.match(line, {
    level: 50,
    reqId: 'req-1',
    msg: 'deferred task failed: stalled',
    deferred: {
      task: 'block',
      outcome: 'failed',
      reason: 'stalled',
      jobId,
      attempt: 1,
      queue: 'fastify-send-and-continue',
      route: '/items/:id',
      method: 'POST',
      statusCode: 202,
      connection: null,
      durationMs: 0,
      queuedMs: Number
    },
    err: { type: 'UnrecoverableError', message: STALLED }
  })
  t.same(startsOf(third.lines, jobId), [], 'the task did not start a third time')
  t.match(third.lines.find((line) => line.deferredShutdown !== undefined), { deferredShutdown: { failed: 1, completed: 0 } })
})

test('in createWorker(): the line, stats(), a zero-length failed span in the request\'s trace, one outcome message; the worker\'s own failed lines are not doubled', async (t) => {
  exporter.reset()
  const redis = await startRedis(t)
  const queue = inspect(t, redis)
  // the trace context a traced web process writes into the job
  const traceId = '4bf92f3577b34da6a3ce929d0e0e4736'
  const parentId = '00f067aa0ba902b7'
  const [jobId] = await addJobs(queue, 'block', 1, () => ({}))
  const job = await queue.getJob(jobId)
  await job?.updateData({ ...job.data, trace: { traceparent: `00-${traceId}-${parentId}-01` } })
  await killTwice(t, redis, jobId)
  // a job this worker fails itself: its line is written once, by the attempt
  const [explodes] = await addJobs(queue, 'explode', 1)

  const messages: TaskMessage[] = []
  function onOutcome (message: unknown): void { messages.push(message as TaskMessage) }
  diagnostics.subscribe('fastify-send-and-continue:task:outcome', onOutcome)
  t.teardown(() => diagnostics.unsubscribe('fastify-send-and-continue:task:outcome', onOutcome))

  let ran = 0
  const block = defineTask('block', () => { ran++ })
  const explode = defineTask('explode', () => { throw new Error('boom') })
  const { logger, logs } = workerLogger()
  const worker = await createWorker({ connection: redis.connection, tasks: [block, explode], logger, lockDuration: 1000, stalledInterval: 500 })
  t.teardown(() => worker.close())
  await logs.until((lines) => failedLines(lines, jobId).length === 1 && failedLines(lines, explodes).length === 1)
  t.equal(await stateOf(queue, jobId), 'failed')
  t.equal(await stateOf(queue, explodes), 'failed')
  await worker.close()

  t.equal(ran, 0, 'the stalled job did not run here')
  t.equal(failedLines(logs.lines, jobId).length, 1)
  t.match(failedLines(logs.lines, jobId)[0], { reqId: 'req-1', deferred: { reason: 'stalled', attempt: 1 }, err: { message: STALLED } })
  t.equal(failedLines(logs.lines, explodes).length, 1, 'a failure of our own attempt: one line')
  t.notOk(failedLines(logs.lines, explodes)[0].deferred?.reason)
  t.match(worker.stats(), { failed: 2, completed: 0, running: 0, retrying: 0 })

  const span = spanNamed('deferred block')
  t.equal(span.spanContext().traceId, traceId, 'in the request\'s trace')
  t.equal(parentOf(span), parentId, 'child of the span active at registration')
  t.same(span.duration, [0, 0], 'zero-length: nothing ran here')
  t.match(span.attributes, { 'deferred.outcome': 'failed', 'deferred.job_id': jobId, 'deferred.attempt': 1, 'error.type': 'UnrecoverableError' })
  t.equal(span.kind, SpanKind.CONSUMER, 'an attempt taken from the queue, as the runs it stands for')
  t.match(span.attributes, { 'messaging.system': 'bullmq', 'messaging.destination.name': 'fastify-send-and-continue', 'messaging.operation.type': 'process', 'messaging.message.id': jobId })
  t.same(span.status, { code: SpanStatusCode.ERROR, message: `failed: ${STALLED}` })
  t.match(messages, [{ name: 'block', outcome: 'failed', jobId, attempt: 1, requestId: 'req-1', durationMs: 0, error: { message: STALLED } }])
  t.equal(messages.length, 1, 'one outcome message, for the job that never ran here')
})

test('a job failed by BullMQ whose data is not a job of ours: an error line, and the worker goes on', async (t) => {
  const redis = await startRedis(t)
  const queue = inspect(t, redis)
  await queue.add('block', { not: 'ours' }, { jobId: 'foreign' })
  // what BullMQ's stalled-job check writes on a job that stalled too often
  const client = new Redis(redis.connection)
  t.teardown(() => client.quit())
  await client.hset('bull:fastify-send-and-continue:foreign', 'defa', STALLED)
  const [after] = await addJobs(queue, 'record', 1)

  const record = defineTask('record', () => {})
  const { logger, logs } = workerLogger()
  const worker = await createWorker({ connection: redis.connection, tasks: [defineTask('block', () => {}), record], logger })
  t.teardown(() => worker.close())
  await logs.until((lines) => lines.some((line) => line.deferred?.outcome === 'completed') && lines.some((line) => line.msg === 'durable worker error'))
  t.equal(await stateOf(queue, 'foreign'), 'failed')
  t.match(logs.lines.find((line) => line.msg === 'durable worker error'), { level: 50, err: { type: 'TypeError' } })
  t.match(logs.outcomes, [{ deferred: { task: 'record', outcome: 'completed', jobId: after } }])
  t.match(worker.stats(), { failed: 1, completed: 1 })
})
