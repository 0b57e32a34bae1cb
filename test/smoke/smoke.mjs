// The built package, imported by name from an ES module: default and named exports.
import assert from 'node:assert'
import Fastify from 'fastify'
import plugin, { createWorker, defineTask, fastifySendAndContinue, isSendAndContinueError } from 'fastify-send-and-continue'

assert.strictEqual(typeof plugin, 'function')
assert.strictEqual(fastifySendAndContinue, plugin)
assert.strictEqual(typeof isSendAndContinueError, 'function')
assert.strictEqual(typeof defineTask, 'function')
assert.strictEqual(typeof createWorker, 'function')

const app = Fastify()
await app.register(fastifySendAndContinue)
let ran = false
app.get('/', (req, reply) => reply.sendAndContinue('ok', () => { ran = true }))
assert.strictEqual((await app.inject('/')).body, 'ok')
await app.sendAndContinue.drain()
assert.strictEqual(ran, true)
await app.close()
console.log('smoke (import): ok')
