import t, { test } from 'tap'
import { readFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { commandOf, root, runCommand } from './commands'
import { startRedis } from './redis'

// The durable example and demo load the built package: run to prove they work, not to cover lib/.
// The demo runs twice (SQLite, then BullMQ), 300 jobs and a killed worker each.
t.setTimeout(180_000)

function freePort (): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo
      server.close(() => resolve(port))
    })
  })
}

test('examples/durable: the app enqueues, the worker (started with the command in its header) sends the e-mail', async (t) => {
  const port = await freePort()
  await startRedis(t, { args: ['--port', String(port), '--bind', '127.0.0.1'] })
  const env = { REDIS_URL: `redis://127.0.0.1:${port}`, PORT: '0' }
  const readme = await readFile(join(root, 'README.md'), 'utf8')
  for (const file of ['examples/durable/app.ts', 'examples/durable/worker.ts']) {
    t.ok(readme.includes(await commandOf(file)), `the README shows how to run ${file}`)
  }
  const app = await runCommand((await commandOf('examples/durable/app.ts')).replace(/^REDIS_URL=\S+ /, ''), env)
  t.equal(app.code, 0, app.stderr)
  t.match(app.stdout, 'client got 201 {"ok":true}: the job is in Redis, a worker sends the e-mail')
  const enqueued = app.stdout.split('\n').filter((line) => line.includes('"enqueued"')).map((line) => JSON.parse(line))
  t.equal(enqueued.length, 1)

  const worker = await runCommand((await commandOf('examples/durable/worker.ts')).replace(/^REDIS_URL=\S+ /, ''), env, (stdout, stop) => {
    if (stdout.includes('"outcome":"completed"')) stop()
  })
  const lines = worker.stdout.split('\n').filter((line) => line.startsWith('{')).map((line) => JSON.parse(line))
  t.match(lines.find((line) => line.msg === 'welcome e-mail sent'), { reqId: enqueued[0].reqId, email: 'ada@example.com', attempt: 1 })
  t.match(lines.find((line) => line.deferred?.outcome === 'completed'), { reqId: enqueued[0].reqId, deferred: { task: 'sendWelcome', jobId: 'sendWelcome~ada%40example.com' } })
  t.match(lines.find((line) => line.deferredShutdown !== undefined), { deferredShutdown: { drained: true, completed: 1 } })
})

test('npm run demo:durable kills a worker mid-batch and loses nothing: on SQLite by default, on BullMQ with --engine bullmq', async (t) => {
  const pkg = JSON.parse(await readFile(join(root, 'package.json'), 'utf8'))
  t.equal(pkg.scripts['demo:durable'], 'npm run build && tsx examples/durable/demo.ts')
  // what the script runs once the build is done (the suite builds first)
  const sqlite = await runCommand('npx tsx examples/durable/demo.ts', {})
  t.equal(sqlite.code, 0, sqlite.stderr)
  t.match(sqlite.stdout, /each response goes out once its job is in the SQLite file/)
  t.match(sqlite.stdout, /worker A killed after completing \d+ jobs; its running jobs are leased to a dead process/)
  t.match(sqlite.stdout, /Result: 300 of 300 jobs completed, 0 lost; \d+ ran twice/)
  const bullmq = await runCommand('npx tsx examples/durable/demo.ts --engine bullmq', {})
  t.equal(bullmq.code, 0, bullmq.stderr)
  t.match(bullmq.stdout, /each response goes out once its job is in Redis/)
  t.match(bullmq.stdout, /Result: 300 of 300 jobs completed, 0 lost; \d+ ran twice/)
})
