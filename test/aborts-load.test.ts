import { test } from 'tap'
import { Readable } from 'node:stream'
import { build, listen } from './helpers'
import { abortMidStream, countBy, duplicates, failOnCrash, inBatches } from './reliability-helpers'

failOnCrash()

const CLIENTS = 1000
const IN_FLIGHT = 50

/** A body whose first chunk goes out at once and whose end never comes: only the client can end it. */
function endless (): Readable {
  const body = new Readable({ read () {} })
  body.push('first chunk\n')
  return body
}

test(`${CLIENTS} clients hanging up mid-stream: ${CLIENTS} task runs, ${CLIENTS} aborted close lines, no duplicates`, async (t) => {
  const { app, logs } = await build(t)
  const runs = new Map<string, number>()
  const connections = new Set<string>()
  const bodies: Readable[] = []
  app.get('/stream', (req, reply) => {
    const body = endless()
    bodies.push(body)
    return reply.type('text/plain').sendAndContinue(body, async function record (ctx) {
      runs.set(ctx.request.id, (runs.get(ctx.request.id) ?? 0) + 1)
      connections.add(ctx.connection)
    })
  })
  const { port } = await listen(app)

  const answers = await inBatches(CLIENTS, IN_FLIGHT, () => abortMidStream(port, '/stream'))
  t.equal(answers.filter((a) => a.statusCode === 200).length, CLIENTS, 'every client saw the first chunk of a 200')

  await logs.until(() => logs.closes.length >= CLIENTS && logs.outcomes.length >= CLIENTS)
  await app.sendAndContinue.drain()

  t.equal(runs.size, CLIENTS, 'one task run per request')
  t.same([...runs.values()].filter((n) => n !== 1), [], 'no task ran twice')
  t.same([...connections], ['aborted'], 'every task saw an aborted connection')

  const closes = logs.closes
  t.equal(closes.length, CLIENTS, 'one close line per response')
  t.same(countBy(closes, (l) => l.deferred?.connection), new Map([['aborted', CLIENTS]]), 'every close line says aborted')
  t.same(duplicates(closes, (l) => l.reqId), [], 'no request logged two close lines')
  t.ok(closes.every((l) => l.deferred?.tasks === 1 && l.deferred.statusCode === 200))

  const outcomes = logs.outcomes
  t.equal(outcomes.length, CLIENTS, 'one outcome line per task')
  t.same(duplicates(outcomes, (l) => l.reqId), [], 'no task logged two outcomes')
  t.same(countBy(outcomes, (l) => l.deferred?.outcome), new Map([['completed', CLIENTS]]))
  t.ok(outcomes.every((l) => l.deferred?.connection === 'aborted'))
  t.same(new Set(outcomes.map((l) => l.reqId)), new Set(closes.map((l) => l.reqId)), 'outcomes and close lines name the same requests')

  t.match(app.sendAndContinue.stats(), { pending: 0, queued: 0, running: 0, completed: CLIENTS, failed: 0, dropped: 0 })
  t.ok(bodies.every((body) => body.destroyed), 'Fastify destroyed every abandoned body stream')
})

test('with onClientAbort: skip, hung-up clients skip their tasks, once each; always tasks still run', async (t) => {
  const clients = 200
  const { app, logs } = await build(t, { onClientAbort: 'skip' })
  let ran = 0
  let alwaysRan = 0
  const seen = new Set<string>()
  app.get('/stream', (req, reply) => {
    reply.defer(function lastWord (ctx) {
      alwaysRan++
      seen.add(JSON.stringify(ctx.outcomes?.map((o) => o.outcome)))
    }, { always: true })
    return reply.sendAndContinue(endless(), () => { ran++ })
  })
  const { port } = await listen(app)

  await inBatches(clients, IN_FLIGHT, () => abortMidStream(port, '/stream'))
  await logs.until(() => logs.outcomes.length >= 2 * clients)
  await app.sendAndContinue.drain()

  t.equal(ran, 0, 'no skipped task ran')
  t.equal(alwaysRan, clients)
  t.same([...seen], ['["skipped"]'], 'each always task saw its sibling skipped')
  t.equal(logs.closes.length, clients)
  t.ok(logs.closes.every((l) => l.deferred?.connection === 'aborted' && l.deferred.tasks === 2))
  t.same(countBy(logs.outcomes, (l) => l.deferred?.outcome), new Map([['skipped', clients], ['completed', clients]]))
  t.same(duplicates(logs.outcomes, (l) => `${l.reqId} ${l.deferred?.task}`), [])
  t.match(app.sendAndContinue.stats(), { pending: 0, skipped: clients, completed: clients })
})
