import { test } from 'tap'
import type { TaskOutcome } from '../lib/index'
import { build, deferred } from './helpers'

test('always tasks run after the other tasks settle and see their outcomes', async (t) => {
  const { app, logs } = await build(t, { timeout: 30 })
  const seen = deferred<{ outcomes: readonly TaskOutcome[] | undefined, connection: string }>()
  const order: string[] = []
  app.get('/', (req, reply) => {
    reply.defer((ctx) => {
      order.push('always')
      seen.resolve({ outcomes: ctx.outcomes, connection: ctx.connection })
    }, { always: true, name: 'shutdownFunction' })
    reply.sendAndContinue('ok', [
      async function slow () { await new Promise((resolve) => setTimeout(resolve, 5)); order.push('slow') },
      function broken () { order.push('broken'); throw new Error('smtp down') },
      function hangs () { order.push('hangs'); return new Promise(() => {}) }
    ])
  })
  await app.inject('/')
  const { outcomes, connection } = await seen.promise
  t.equal(order.at(-1), 'always', 'the always task ran last')
  t.equal(connection, 'finished')
  t.same(outcomes?.map(({ name, outcome }) => ({ name, outcome })), [
    { name: 'broken', outcome: 'failed' },
    { name: 'slow', outcome: 'completed' },
    { name: 'hangs', outcome: 'timeout' }
  ])
  t.equal((outcomes?.[0].error as Error).message, 'smtp down')
  await app.sendAndContinue.drain()
  t.equal(logs.outcomes.at(-1)?.deferred?.task, 'shutdownFunction')
})

test('always tasks run even when the client aborted and the policy skips the others', async (t) => {
  const { app, logs } = await build(t, { onClientAbort: 'skip' })
  const seen = deferred<readonly TaskOutcome[] | undefined>()
  app.get('/', (req, reply) => {
    reply.defer(() => { t.fail('skipped tasks must not run') })
    reply.defer((ctx) => { seen.resolve(ctx.outcomes) }, { always: true })
    // the connection goes away before anything is sent
    reply.raw.destroy()
  })
  app.inject('/').catch(() => {})
  const outcomes = await seen.promise
  t.same(outcomes?.map(({ outcome }) => outcome), ['skipped'])
  await app.sendAndContinue.drain()
  t.same(logs.outcomes.map((line) => line.deferred?.outcome), ['skipped', 'completed'])
  t.equal(logs.closes[0].deferred?.connection, 'aborted')
})

test('a request with only always tasks runs them at once', async (t) => {
  const { app } = await build(t)
  const seen = deferred<readonly TaskOutcome[] | undefined>()
  app.get('/', (req, reply) => {
    reply.sendAndContinue('ok', (ctx) => { seen.resolve(ctx.outcomes) }, { always: true })
  })
  await app.inject('/')
  t.same(await seen.promise, [])
})

test('an always task deferred after the response closed still runs after the others', async (t) => {
  const { app, logs } = await build(t)
  const release = deferred()
  const seen = deferred<readonly TaskOutcome[] | undefined>()
  app.get('/', (req, reply) => {
    reply.sendAndContinue('ok', function held () { return release.promise })
    reply.raw.once('close', () => {
      reply.defer((ctx) => { seen.resolve(ctx.outcomes) }, { always: true, name: 'lateAlways' })
      release.resolve()
    })
  })
  await app.inject('/')
  t.same((await seen.promise)?.map(({ name }) => name), ['held'])
  await app.sendAndContinue.drain()
  t.same(logs.outcomes.map((line) => line.deferred?.task), ['held', 'lateAlways'])
})

test('an always task deferred once the others settled runs at once', async (t) => {
  const { app } = await build(t)
  const seen = deferred<readonly TaskOutcome[] | undefined>()
  app.get('/', (req, reply) => {
    reply.sendAndContinue('ok', function quick () {
      // by now this request's tasks have been dispatched and `quick` is the last one running
      setImmediate(() => {
        reply.defer((ctx) => { seen.resolve(ctx.outcomes) }, { always: true })
      })
    })
  })
  await app.inject('/')
  t.same((await seen.promise)?.map(({ name, outcome }) => `${name}:${outcome}`), ['quick:completed'])
})
