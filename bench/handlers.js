'use strict'

// Route handlers by kind (a variant's `handler`). Each counts the requests it saw in
// `count.handled`; `task` is the variant's deferred work (bench/tasks.js); `queue` a BullMQ
// `Queue` for the hand-written enqueue variants.

const { randomUUID } = require('node:crypto')
const { performance } = require('node:perf_hooks')
const { loggedRunner } = require('./tasks')

const body = { hello: 'world' }

function noop () {}

// The bounds the plugin's BullMQ engine gives every job (lib/engines/bullmq/engine.ts), so the
// hand-written variant asks Redis for the same work.
const KEEP_COMPLETED = { age: 3600, count: 10_000 }
const KEEP_FAILED = { age: 7 * 24 * 3600, count: 100_000 }
const JOB_OPTIONS = { attempts: 1, removeOnComplete: KEEP_COMPLETED, removeOnFail: KEEP_FAILED }

function routeFor (kind, task, count, dispatchMs, queue = null) {
  function send (request, reply) {
    count.handled++
    reply.send(body)
  }

  const runAndLog = loggedRunner(task)

  async function awaitTask () {
    await task()
  }

  const handlers = {
    send,
    onresponse: send,
    sac (request, reply) {
      count.handled++
      reply.sendAndContinue(body, task)
    },
    'sac-noop' (request, reply) {
      count.handled++
      reply.sendAndContinue(body, noop)
    },
    // `task` is a durable task here (bench/server.js defines it when the variant has `queue`)
    'sac-durable' (request, reply) {
      count.handled++
      return reply.sendAndContinue(body, task.with({ n: count.handled }))
    },
    async 'handwritten-bullmq' (request, reply) {
      count.handled++
      await queue.add('bench-job', { n: count.handled }, JOB_OPTIONS)
      return body
    },
    // the plugin's job, written by hand: its data (request snapshot, route, status, time, token)
    // and a `<task>~<UUID>` id, so the rest of the difference is the plugin's own work
    async 'handwritten-bullmq-job' (request, reply) {
      count.handled++
      const data = {
        data: { n: count.handled },
        request: { id: request.id, method: request.method, url: request.url, routeUrl: request.routeOptions.url },
        route: request.routeOptions.url,
        connection: null,
        statusCode: reply.statusCode,
        enqueuedAt: Date.now(),
        token: randomUUID()
      }
      await queue.add('bench-job', data, { ...JOB_OPTIONS, jobId: `bench-job~${randomUUID()}` })
      return body
    },
    async 'handwritten-bullmq-log' (request, reply) {
      count.handled++
      const started = performance.now()
      const job = await queue.add('bench-job', { n: count.handled }, JOB_OPTIONS)
      request.log.info({ task: 'bench-job', jobId: job.id, queue: queue.name, durationMs: performance.now() - started }, 'job enqueued')
      return body
    },
    setimmediate (request, reply) {
      count.handled++
      reply.send(body)
      setImmediate(task)
    },
    'setimmediate-log' (request, reply) {
      count.handled++
      reply.send(body)
      setImmediate(runAndLog, request.log)
    },
    async inline (request, reply) {
      count.handled++
      await task()
      return body
    },
    probe (request, reply) {
      count.handled++
      const probe = { finishedAt: 0 }
      // first in line: Fastify's own 'finish' listener (which runs onResponse) was added before the handler
      reply.raw.prependOnceListener('finish', () => { probe.finishedAt = performance.now() })
      reply.sendAndContinue(body, function probedTask () {
        dispatchMs.push(probe.finishedAt === 0 ? NaN : performance.now() - probe.finishedAt)
        return task()
      })
    }
  }
  const handler = handlers[kind]
  if (handler === undefined) throw new Error(`unknown handler ${kind}`)
  return { handler, options: kind === 'onresponse' ? { onResponse: awaitTask } : {} }
}

module.exports = { routeFor, JOB_OPTIONS }
