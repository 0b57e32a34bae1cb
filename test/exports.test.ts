import { test } from 'tap'
import plugin = require('../lib/index')

test('the module is the plugin, with default and named exports of the same function', async (t) => {
  t.type(plugin, 'function')
  t.equal(plugin.default, plugin)
  t.equal(plugin.fastifySendAndContinue, plugin)
  t.type(plugin.isSendAndContinueError, 'function')
  t.type(plugin.defineTask, 'function')
  t.type(plugin.createWorker, 'function')
})

test('the plugin is wrapped once by fastify-plugin, for Fastify 5, under the package name', async (t) => {
  const meta = (plugin as unknown as Record<symbol, unknown>)[Symbol.for('plugin-meta')]
  t.match(meta, { fastify: '5.x', name: 'fastify-send-and-continue' })
  t.equal((plugin as unknown as Record<symbol, unknown>)[Symbol.for('skip-override')], true)
})
