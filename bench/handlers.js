'use strict'

// Route handlers by kind (a variant's `handler`). Each counts the requests it saw in
// `count.handled`; `task` is the variant's deferred work (bench/tasks.js).

const { performance } = require('node:perf_hooks')
const { loggedRunner } = require('./tasks')

const body = { hello: 'world' }

function noop () {}

function routeFor (kind, task, count, dispatchMs) {
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

module.exports = { routeFor }
