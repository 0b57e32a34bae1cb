// The behaviours tested with inject() elsewhere, once more over a real socket each.
import { test } from 'tap'
import type { TaskOutcome } from '../lib/index'
import { build, deferred, listen } from './helpers'

interface ErrorReply { statusCode: number, code: string, error: string, message: string }

test('over a socket: route opt-in with global: false, and config.sendAndContinue: false', async (t) => {
  const { app, logs } = await build(t, { global: false })
  app.get('/in', { config: { sendAndContinue: { timeout: 1000 } } }, (req, reply) => reply.sendAndContinue('in', function optedIn () {}))
  app.get('/not-in', (req, reply) => reply.sendAndContinue('x', () => {}))
  app.get('/off', { config: { sendAndContinue: false } }, (req, reply) => reply.sendAndContinue('x', () => {}))
  const { url } = await listen(app)
  t.equal(await (await fetch(`${url}/in`)).text(), 'in')
  const notIn = await fetch(`${url}/not-in`)
  t.equal(notIn.status, 500)
  // fetch types a JSON body as unknown: these are Fastify's error replies
  t.equal((await notIn.json() as ErrorReply).code, 'FST_SAC_NOT_ENABLED')
  const off = await fetch(`${url}/off`)
  t.equal((await off.json() as ErrorReply).code, 'FST_SAC_NOT_ENABLED')
  await logs.untilOutcomes(1)
  await app.sendAndContinue.drain()
  t.same(logs.outcomes.map((line) => line.deferred?.task), ['optedIn'])
})

test('over a socket: several tasks, defer from hooks, a thrown handler error, always tasks', async (t) => {
  const { app, logs } = await build(t)
  const seen = deferred<{ outcomes: readonly TaskOutcome[] | undefined, statusCode: number }>()
  app.addHook('onRequest', async (req, reply) => {
    reply.defer(function fromHook () {})
  })
  app.get('/', async (req, reply) => {
    reply.defer([function first () {}, async function second () {}])
    reply.defer((ctx) => { seen.resolve({ outcomes: ctx.outcomes, statusCode: ctx.statusCode }) }, { always: true, name: 'always' })
    throw new Error('handler failed')
  })
  const { url } = await listen(app)
  const response = await fetch(url)
  t.equal(response.status, 500)
  const { outcomes, statusCode } = await seen.promise
  t.equal(statusCode, 500)
  t.same(outcomes?.map(({ name, outcome }) => `${name}:${outcome}`).sort(), ['first:completed', 'fromHook:completed', 'second:completed'])
  await logs.untilOutcomes(4)
  t.equal(logs.outcomes.at(-1)?.deferred?.task, 'always')
  t.match(logs.closes, [{ deferred: { connection: 'finished', statusCode: 500, tasks: 4 } }])
})
