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
  await engines()
  console.log('smoke (require): ok')
}

// The engines that need no server, on this Node: memory, and sqlite through better-sqlite3 where
// installed, else Node's own node:sqlite (a fresh install on Node 22.13+ has only that)
async function engines () {
  const { mkdtempSync, rmSync } = require('node:fs')
  const { join } = require('node:path')
  const { tmpdir } = require('node:os')
  const dir = mkdtempSync(join(tmpdir(), 'sac-smoke-'))
  let sqlite = true
  try {
    require.resolve('better-sqlite3')
  } catch {
    try { require('node:sqlite') } catch { sqlite = false }
  }
  try {
    const queues = [{ engine: 'memory' }]
    if (sqlite) queues.push({ engine: 'sqlite', path: join(dir, 'jobs.db') })
    for (const queue of queues) {
      const runs = []
      const hello = plugin.defineTask('hello', (data, ctx) => { runs.push([data.n, ctx.attempt]) })
      const app = Fastify()
      await app.register(plugin, { queue: { ...queue, tasks: [hello] } })
      app.get('/', (req, reply) => reply.sendAndContinue('ok', hello.with({ n: 1 })))
      assert.strictEqual((await app.inject('/')).body, 'ok')
      await app.sendAndContinue.drain()
      assert.deepStrictEqual(runs, [[1, 1]], `the ${queue.engine} engine ran the job`)
      await app.close()
    }
    console.log(`smoke (engines): ${queues.map((queue) => queue.engine).join(', ')}${sqlite ? '' : ' (no SQLite binding on this Node)'}`)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}
main().catch((err) => { console.error(err); process.exit(1) })
