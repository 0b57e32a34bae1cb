import { test } from 'tap'
import { build, deferred } from './helpers'

test('a task past its timeout: signal aborted with a TimeoutError, outcome timeout, logged at warn', async (t) => {
  const { app, logs } = await build(t, { timeout: 20 })
  const aborted = deferred<unknown>()
  app.get('/', (req, reply) => reply.sendAndContinue('ok', function slowMail ({ signal }) {
    return new Promise((resolve, reject) => {
      signal.addEventListener('abort', () => {
        aborted.resolve(signal.reason)
        reject(signal.reason)
      })
    })
  }))
  await app.inject('/')
  const reason = await aborted.promise as DOMException
  t.equal(reason.name, 'TimeoutError')
  t.equal(reason.message, 'deferred task "slowMail" timed out after 20 ms')
  await logs.untilOutcomes(1)
  t.match(logs.outcomes[0], { level: 40, msg: 'deferred task timed out', deferred: { task: 'slowMail', outcome: 'timeout', timeoutMs: 20 } })
  t.ok((logs.outcomes[0].deferred?.durationMs as number) >= 19, 'it ran for its whole time limit')
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(logs.outcomes.length, 1, 'the rejection after the timeout logs nothing more')
})

test('a task that ignores its signal still frees its slot at the timeout', async (t) => {
  const { app, logs } = await build(t, { timeout: 20, concurrency: 1 })
  const second = deferred<boolean>()
  app.get('/', (req, reply) => reply.sendAndContinue('ok', [
    function neverSettles () { return new Promise(() => {}) },
    function next ({ signal }) { second.resolve(signal.aborted) }
  ]))
  await app.inject('/')
  t.equal(await second.promise, false, 'the next task ran, with a live signal')
  await app.sendAndContinue.drain()
  t.same(logs.outcomes.map((line) => `${line.deferred?.task}:${line.deferred?.outcome}`), ['neverSettles:timeout', 'next:completed'])
  t.ok((logs.outcomes[1].deferred?.queuedMs as number) >= 19, 'the second task queued behind the first')
})

test('a signal read after the timeout is already aborted', async (t) => {
  const { app, logs } = await build(t, { timeout: 10 })
  const seen = deferred<boolean>()
  app.get('/', (req, reply) => reply.sendAndContinue('ok', (ctx) => new Promise<void>((resolve) => {
    setTimeout(() => {
      seen.resolve(ctx.signal.aborted)
      resolve()
    }, 30)
  })))
  await app.inject('/')
  t.equal(await seen.promise, true)
  t.equal(logs.outcomes[0].deferred?.outcome, 'timeout')
})

test('the time limit comes from the call, else the route, else the plugin; 0 means none', async (t) => {
  const { app, logs } = await build(t, { timeout: 10 })
  const wait = (ms: number) => () => new Promise((resolve) => setTimeout(resolve, ms))
  app.get('/plugin', (req, reply) => reply.sendAndContinue('ok', wait(40), { name: 'plugin' }))
  app.get('/route', { config: { sendAndContinue: { timeout: 0 } } }, (req, reply) => reply.sendAndContinue('ok', wait(40), { name: 'route' }))
  app.get('/call', { config: { sendAndContinue: { timeout: 0 } } }, (req, reply) => reply.sendAndContinue('ok', wait(40), { name: 'call', timeout: 5 }))
  app.get('/none', (req, reply) => reply.sendAndContinue('ok', wait(40), { name: 'none', timeout: 0 }))
  await Promise.all(['/plugin', '/route', '/call', '/none'].map((url) => app.inject(url)))
  await app.sendAndContinue.drain()
  const outcome = Object.fromEntries(logs.outcomes.map((line) => [line.deferred?.task, line.deferred?.outcome]))
  t.same(outcome, { plugin: 'timeout', route: 'completed', call: 'timeout', none: 'completed' })
})
