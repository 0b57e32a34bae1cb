// Testing an app that uses the plugin: inject() answers before the deferred work ends, so await
// app.sendAndContinue.drain() before checking what the work did. Node's own test runner here;
// the same two calls work with tap, vitest or jest.
//
// Run: node --import tsx --test examples/testing/app.test.ts
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Writable } from 'node:stream'
import { build } from './app'

test('signup answers at once and sends the e-mail after the response', async (t) => {
  const sent: string[] = []
  const app = await build({ async send (to) { sent.push(to) } })
  t.after(() => app.close())

  const response = await app.inject({ method: 'POST', url: '/signup', payload: { email: 'ada@example.com' } })
  assert.equal(response.statusCode, 201)
  assert.deepEqual(response.json(), { ok: true })

  await app.sendAndContinue.drain()
  assert.deepEqual(sent, ['ada@example.com'])
  assert.equal(app.sendAndContinue.stats().completed, 1)
})

test('a failing mailer does not change the answer, and is logged with the request id', async (t) => {
  const lines: Array<Record<string, any>> = []
  const stream = new Writable({
    write (chunk, encoding, done) {
      lines.push(JSON.parse(chunk.toString()))
      done()
    }
  })
  const app = await build({ async send () { throw new Error('SMTP refused') } }, { logger: { stream } })
  t.after(() => app.close())

  const response = await app.inject({ method: 'POST', url: '/signup', payload: { email: 'ada@example.com' } })
  assert.equal(response.statusCode, 201)

  await app.sendAndContinue.drain()
  const failed = lines.find((line) => line.deferred?.outcome === 'failed')
  assert.equal(failed?.deferred.task, 'sendWelcomeEmail')
  assert.equal(failed?.err.message, 'SMTP refused')
  assert.equal(failed?.reqId, 'req-1')
})
