'use strict'
// The built package, loaded by name the way users load it: require() gives the plugin itself.
const assert = require('node:assert')
const plugin = require('fastify-send-and-continue')
const Fastify = require('fastify')

assert.strictEqual(typeof plugin, 'function')
assert.strictEqual(plugin.default, plugin)
assert.strictEqual(plugin.fastifySendAndContinue, plugin)
assert.strictEqual(typeof plugin.isSendAndContinueError, 'function')

async function main () {
  const app = Fastify()
  await app.register(plugin)
  let ran = false
  app.get('/', (req, reply) => reply.sendAndContinue('ok', () => { ran = true }))
  const response = await app.inject('/')
  assert.strictEqual(response.body, 'ok')
  await app.sendAndContinue.drain()
  assert.strictEqual(ran, true)
  await app.close()
  console.log('smoke (require): ok')
}
main().catch((err) => { console.error(err); process.exit(1) })
