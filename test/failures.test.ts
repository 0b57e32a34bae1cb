import { test } from 'tap'
import type { Test } from 'tap'
import { build, listen } from './helpers'

function failOnCrash (t: Test): void {
  const onRejection = (reason: unknown): void => { t.fail(`unhandled rejection: ${String(reason)}`) }
  const onException = (err: Error): void => { t.fail(`uncaught exception: ${err.message}`) }
  process.on('unhandledRejection', onRejection)
  process.on('uncaughtException', onException)
  t.teardown(() => {
    process.off('unhandledRejection', onRejection)
    process.off('uncaughtException', onException)
  })
}

test('a task that throws or rejects is logged as failed, with the error under err, and the server keeps serving', async (t) => {
  failOnCrash(t)
  const { app, logs } = await build(t)
  app.get('/throws', (req, reply) => reply.sendAndContinue('ok', function throwsSync () { throw new TypeError('sync boom') }))
  app.get('/rejects', (req, reply) => reply.sendAndContinue('ok', async function rejects () { throw new Error('async boom') }))
  app.get('/rejects-string', (req, reply) => reply.sendAndContinue('ok', function rejectsString () {
    return Promise.reject('not an error') // eslint-disable-line prefer-promise-reject-errors
  }))
  app.get('/thenable', (req, reply) => reply.sendAndContinue('ok', function badThenable () {
    return { then () { throw new Error('then threw') } }
  }))
  const { url } = await listen(app)
  for (const path of ['/throws', '/rejects', '/rejects-string', '/thenable']) {
    const response = await fetch(url + path)
    t.equal(await response.text(), 'ok', `${path} answered`)
  }
  await logs.untilOutcomes(4)
  const byTask = Object.fromEntries(logs.outcomes.map((line) => [line.deferred?.task, line]))
  for (const name of ['throwsSync', 'rejects', 'rejectsString', 'badThenable']) {
    t.match(byTask[name], { level: 50, msg: 'deferred task failed', deferred: { outcome: 'failed', connection: 'finished' } })
  }
  t.match(byTask.throwsSync.err, { type: 'TypeError', message: 'sync boom' })
  t.match(byTask.rejects.err, { type: 'Error', message: 'async boom' })
  t.equal(byTask.rejectsString.err, 'not an error')
  t.match(byTask.badThenable.err, { message: 'then threw' })
  t.equal((await fetch(`${url}/throws`)).status, 200, 'still serving')
  await app.sendAndContinue.drain()
  t.equal(app.sendAndContinue.stats().failed, 5)
})

test('a failed task does not stop the request\'s other tasks', async (t) => {
  failOnCrash(t)
  const { app, logs } = await build(t)
  const ran: string[] = []
  app.get('/', (req, reply) => reply.sendAndContinue('ok', [
    function first () { ran.push('first'); throw new Error('first failed') },
    async function second () { ran.push('second') },
    async function third () { ran.push('third'); throw new Error('third failed') }
  ]))
  await app.inject('/')
  await app.sendAndContinue.drain()
  t.same(ran, ['first', 'second', 'third'])
  t.same(logs.outcomes.map((line) => `${line.deferred?.task}:${line.deferred?.outcome}`).sort(), [
    'first:failed', 'second:completed', 'third:failed'
  ])
})

test('an onDropped callback that throws is logged, not thrown', async (t) => {
  failOnCrash(t)
  const { app, logs } = await build(t, { concurrency: 1, maxQueued: 0, onDropped () { throw new Error('outbox down') } })
  app.get('/', (req, reply) => reply.sendAndContinue('ok', [function holds () { return new Promise((resolve) => setTimeout(resolve, 5)) }, function overflow () {}]))
  await app.inject('/')
  await app.sendAndContinue.drain()
  const line = logs.lines.find((l) => l.msg === 'onDropped threw')
  t.match(line, { level: 50, err: { message: 'outbox down' }, deferred: { task: 'overflow', route: '/' } })
  t.match(logs.outcomes.find((l) => l.deferred?.task === 'overflow'), { deferred: { outcome: 'dropped', reason: 'queue-full' } })
})
