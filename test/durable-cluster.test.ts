import t from 'tap'
import type { Test } from 'tap'
import { EventEmitter } from 'node:events'
import { createServer } from 'node:net'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import Fastify from 'fastify'
import type { FastifyInstance } from 'fastify'
import { Queue, Worker } from 'bullmq'
import { Cluster } from 'ioredis'
import sendAndContinue, { createWorker, defineTask } from '../lib/index'
import type { BullQueueOptions } from '../lib/index'
import { clusterNode, runWorker } from '../lib/jobs/cli'
import { clusterClosed } from '../lib/engines/bullmq/worker'
import { createClient } from '../lib/engines/bullmq/client'
import { addJobs, workerLogger } from './durable-helpers'
import { startChild, tasksModule } from './durable-children'
import { LogCollector } from './helpers'
import type { LogLine } from './helpers'
import { startRedisCluster } from './redis-cluster'
import type { RedisCluster } from './redis-cluster'

// The BullMQ engine on a real Redis Cluster of three masters, started once for this file: the web
// side, createWorker(), the CLI in this process and as a child, a cancelled enqueue, the prefix
// rule and the options. Each test uses its own queue name, so they share the cluster.

// a cluster to start and child processes through the TypeScript loader: more than tap's 30 s
t.setTimeout(180_000)
const cluster = startRedisCluster(t)
const completed = (lines: LogLine[]): LogLine[] => lines.filter((line) => line.deferred?.outcome === 'completed')

/** A BullMQ Queue on the cluster, to look at what it holds; closed at teardown. */
function inspect (test: Test, { nodes }: RedisCluster, name: string, prefix = '{bull}'): Queue {
  const client = new Cluster(nodes, { redisOptions: { maxRetriesPerRequest: null } })
  const queue = new Queue(name, { connection: client, prefix })
  test.teardown(async () => {
    await queue.close()
    client.disconnect()
  })
  return queue
}

async function buildApp (test: Test, queue: Omit<BullQueueOptions, 'connection'> & { connection?: BullQueueOptions['connection'] }): Promise<{ app: FastifyInstance, logs: LogCollector }> {
  const { connection } = await cluster
  const logs = new LogCollector()
  const app = Fastify({ logger: { level: 'info', stream: logs } })
  test.teardown(() => app.close())
  await app.register(sendAndContinue, { queue: { connection, ...queue } })
  return { app, logs }
}

class Sink extends Writable {
  text = ''
  override _write (chunk: Buffer, _encoding: string, done: () => void): void {
    this.text += chunk.toString()
    done()
  }
}

function freePort (): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo
      server.close(() => resolve(port))
    })
  })
}

t.test('the web app enqueues on the cluster under {bull} (the 2xx means stored), createWorker() runs the jobs', async (t) => {
  const redis = await cluster
  const record = defineTask<{ n: number }>('record', () => {})
  const { app, logs } = await buildApp(t, { tasks: [record], name: 'web' })
  app.post('/items/:n', (request, reply) => reply.code(202).sendAndContinue({ ok: true }, record.with({ n: Number((request.params as { n: string }).n) })))
  // concurrent responses: one group commit
  const responses = await Promise.all([1, 2, 3, 4, 5].map((n) => app.inject({ method: 'POST', url: `/items/${n}` })))
  t.same(responses.map((response) => response.statusCode), [202, 202, 202, 202, 202])
  const queue = inspect(t, redis, 'web')
  t.match(await queue.getJobCounts('waiting'), { waiting: 5 }, 'stored under the default prefix {bull} before the answers')

  const { logger, logs: workerLogs } = workerLogger()
  const worker = await createWorker({ connection: redis.connection, name: 'web', tasks: [record], logger })
  t.teardown(() => worker.close())
  await workerLogs.until((lines) => completed(lines).length === 5)
  const reqIds = new Map(logs.outcomes.map((line) => [line.deferred?.jobId, line.reqId]))
  for (const line of completed(workerLogs.lines)) {
    t.equal(line.reqId, reqIds.get(line.deferred?.jobId), `${line.deferred?.jobId as string} carries its request's reqId`)
  }
  t.match(worker.stats(), { completed: 5, failed: 0 })
  // a worker logs the outcome before it tells Redis: closed, it told
  await worker.close()
  t.match(await queue.getJobCounts('completed'), { completed: 5 })
})

t.test('a tagged prefix of the app\'s own works on both sides', async (t) => {
  const redis = await cluster
  const record = defineTask('record', () => {})
  const { app } = await buildApp(t, { tasks: [record], name: 'own', prefix: 'app{jobs}' })
  app.post('/', (request, reply) => reply.sendAndContinue('ok', record.with(null)))
  t.equal((await app.inject({ method: 'POST', url: '/' })).statusCode, 200)
  const { logger, logs } = workerLogger()
  const worker = await createWorker({ connection: redis.connection, name: 'own', prefix: 'app{jobs}', tasks: [record], logger })
  t.teardown(() => worker.close())
  await logs.until((lines) => completed(lines).length === 1)
  await worker.close()
  t.match(await inspect(t, redis, 'own', 'app{jobs}').getJobCounts('completed'), { completed: 1 })
})

t.test('the CLI worker with repeated --redis-cluster runs the jobs, then closes on SIGTERM', async (t) => {
  const redis = await cluster
  const queue = inspect(t, redis, 'cli')
  await addJobs(queue, 'record', 3, () => ({ ms: 1 }))
  const logs = new LogCollector()
  const io = { stdout: logs, stderr: new Sink(), signals: new EventEmitter() }
  const exit = runWorker([tasksModule, '--name', 'cli', ...redis.nodes.flatMap(({ host, port }) => ['--redis-cluster', `${host}:${port}`])], io)
  await logs.until((lines) => completed(lines).length === 3)
  io.signals.emit('SIGTERM')
  t.equal(await exit, 0, io.stderr.text)
  t.match(logs.lines.at(-1), { deferredShutdown: { drained: true, completed: 3 } })
  t.match(await queue.getJobCounts('completed'), { completed: 3 })
})

t.test('the CLI worker in a child process, given one node (ioredis finds the others), runs the jobs', async (t) => {
  const redis = await cluster
  const queue = inspect(t, redis, 'child')
  await addJobs(queue, 'record', 20, () => ({ ms: 1 }))
  const [{ host, port }] = redis.nodes
  const worker = startChild(t, [join(__dirname, '..', 'dist', 'cli.js'), 'worker', tasksModule, '--redis-cluster', `${host}:${port}`, '--name', 'child'])
  await worker.until((lines) => completed(lines).length === 20)
  worker.process.kill('SIGTERM')
  t.same(await worker.exited, { code: 0, signal: null })
  t.match(await queue.getJobCounts('completed', 'failed'), { completed: 20, failed: 0 })
})

t.test('closing a worker on a cluster just after its jobs never hangs (BullMQ\'s cluster recovery reconnects the blocking connection close() disconnected)', async (t) => {
  const redis = await cluster
  const record = defineTask('record', () => {})
  // our close() calls worker.disconnect() only when BullMQ's own close() got stuck: count them
  let unstuck = 0
  const disconnect = Worker.prototype.disconnect
  Worker.prototype.disconnect = function (this: Worker) {
    unstuck++
    return disconnect.call(this)
  }
  t.teardown(() => { Worker.prototype.disconnect = disconnect })
  // the race is lost about one close in three: loop until it was, at most 30 times
  for (let i = 0; i < 30; i++) {
    const name = `closing-${i}`
    await addJobs(inspect(t, redis, name), 'record', 5)
    const { logger, logs } = workerLogger()
    const worker = await createWorker({ connection: redis.connection, name, tasks: [record], logger })
    await logs.until((lines) => completed(lines).length === 5)
    const startedAt = Date.now()
    await worker.close()
    t.ok(Date.now() - startedAt < 5000, `close ${i} ended in ${Date.now() - startedAt} ms`)
    t.match(logs.lines.at(-1), { deferredShutdown: { drained: true, completed: 5 } })
    if (unstuck > 0) break
  }
  t.ok(unstuck > 0, 'a close got stuck and was ended')
})

t.test('clusterClosed(): a stuck close is ended by a disconnect once the worker stopped running, never while it runs', async (t) => {
  let running = true
  let end!: () => void
  const stopped = new Promise<void>((resolve) => { end = resolve })
  const calls: string[] = []
  const worker = {
    isRunning () {
      calls.push(`isRunning: ${String(running)}`)
      const was = running
      running = false
      return was
    },
    async disconnect () {
      calls.push('disconnect')
      end()
    }
  }
  await clusterClosed(worker, stopped)
  t.same(calls, ['isRunning: true', 'isRunning: false', 'disconnect'])
  // a close that ends by itself is left alone
  t.equal(await clusterClosed(worker, Promise.resolve()), undefined)
  t.equal(calls.length, 3)
})

t.test('every node is checked at startup: one evicting node refuses the worker', async (t) => {
  const redis = await cluster
  const { port } = redis.nodes[2]
  await redis.cli(port, 'config', 'set', 'maxmemory-policy', 'allkeys-lru')
  t.teardown(() => redis.cli(port, 'config', 'set', 'maxmemory-policy', 'noeviction'))
  await t.rejects(createWorker({ connection: redis.connection, tasks: [defineTask('x', () => {})] }), {
    code: 'FST_SAC_REDIS_EVICTION',
    message: "createWorker(): Redis maxmemory-policy should be 'noeviction' (any other policy may evict jobs), instead got 'allkeys-lru'"
  })
})

t.test('a 503 means the job does not run on a cluster too: the node of the queue frozen during the enqueue, thawed, the worker gives the late job up', async (t) => {
  const redis = await cluster
  let ran = 0
  const sendWelcome = defineTask('sendWelcome', () => { ran++ })
  const { app, logs } = await buildApp(t, { tasks: [sendWelcome], name: 'frozen', enqueueTimeout: 200 })
  app.post('/signup', (request, reply) => reply.code(201).sendAndContinue({ ok: true }, sendWelcome.with({ userId: 1 })))
  // the node that holds the queue's slot; short, well under cluster-node-timeout, so no failover
  const { process: node } = await redis.nodeOf('{bull}')
  node.kill('SIGSTOP')
  t.teardown(() => { node.kill('SIGCONT') })
  const response = await app.inject({ method: 'POST', url: '/signup' })
  t.equal(response.statusCode, 503)
  t.match(logs.outcomes, [{ deferred: { outcome: 'dropped', reason: 'enqueue-failed', statusCode: 503 } }])
  node.kill('SIGCONT')

  const queue = inspect(t, redis, 'frozen')
  t.equal((await queue.getJobs(['waiting'])).length, 1, 'the add reached the node after the timeout')
  const { logger, logs: workerLogs } = workerLogger()
  const worker = await createWorker({ connection: redis.connection, name: 'frozen', tasks: [sendWelcome], logger })
  t.teardown(() => worker.close())
  await workerLogs.until((lines) => lines.some((line) => line.deferredGivenUp !== undefined))
  t.equal(ran, 0, 'the task never ran')
  t.match(workerLogs.lines.find((line) => line.deferredGivenUp !== undefined), { deferredGivenUp: { task: 'sendWelcome', queue: 'frozen', statusCode: 503 } })
  await app.close()
  t.equal(logs.lines.find((line) => line.deferredShutdown !== undefined)?.deferredShutdown?.mayStillRun, undefined, 'the node took the mark')
})

t.test('an unreachable cluster is refused at startup within enqueueTimeout', async (t) => {
  const port = await freePort()
  const app = Fastify()
  t.teardown(() => app.close())
  const startedAt = Date.now()
  await t.rejects(async () => await app.register(sendAndContinue, {
    queue: { connection: { cluster: [{ host: '127.0.0.1', port }] }, tasks: [defineTask('x', () => {})], enqueueTimeout: 300 }
  }).ready(), { code: 'FST_SAC_REDIS_UNREACHABLE', message: /^fastify-send-and-continue queue: Redis should answer within 300 ms/ })
  t.ok(Date.now() - startedAt < 2000, 'refused without waiting on reconnections')
})

t.test('on a cluster connection a prefix needs a hash tag: refused at registration and in createWorker(), before connecting', async (t) => {
  const tasks = [defineTask('x', () => {})]
  const connection = { cluster: [{ host: '127.0.0.1', port: 1 }] }
  for (const prefix of ['bull', '{}bull', 'bull{', 'bull}{']) {
    const message = `prefix should contain a hash tag such as '{bull}' on a Redis Cluster (BullMQ keeps every key of a queue in one hash slot), instead got '${prefix}'`
    const app = Fastify()
    t.teardown(() => app.close())
    await t.rejects(async () => await app.register(sendAndContinue, { queue: { connection, prefix, tasks } }).ready(), { code: 'FST_SAC_CLUSTER_PREFIX', message: `fastify-send-and-continue queue: ${message}` })
    await t.rejects(createWorker({ connection, prefix, tasks }), { code: 'FST_SAC_CLUSTER_PREFIX', message: `createWorker(): ${message}` })
  }
  // the prefix rules of every connection still apply first
  await t.rejects(createWorker({ connection, prefix: '{a:b}', tasks }), { code: 'FST_SAC_INVALID_OPTION', message: /prefix should be a non-empty string without ':'/ })
})

t.test('the cluster option is checked: a non-empty array of { host, port }, node options under redisOptions', async (t) => {
  const tasks = [defineTask('x', () => {})]
  const node = 'should be a node { host, port } with a non-empty host and a port from 1 to 65535'
  const cases: Array<[unknown, string]> = [
    [{ cluster: [] }, 'connection.cluster should be a non-empty array of nodes { host, port }, instead got []'],
    [{ cluster: '127.0.0.1:7000' }, "connection.cluster should be a non-empty array of nodes { host, port }, instead got '127.0.0.1:7000'"],
    [{ cluster: [{ host: '127.0.0.1', port: 7000 }, null] }, `connection.cluster[1] ${node}, instead got null`],
    // a hole is checked as any node is (forEach would skip it)
    [{ cluster: [{ host: '127.0.0.1', port: 7000 }, , { host: '127.0.0.1', port: 7001 }] }, `connection.cluster[1] ${node}, instead got undefined`], // eslint-disable-line no-sparse-arrays
    [{ cluster: [{ host: '', port: 7000 }] }, `connection.cluster[0] ${node}, instead got { host: '', port: 7000 }`],
    [{ cluster: [{ host: 'a', port: '7000' }] }, `connection.cluster[0] ${node}, instead got { host: 'a', port: '7000' }`],
    [{ cluster: [{ host: 'a', port: 0 }] }, `connection.cluster[0] ${node}, instead got { host: 'a', port: 0 }`],
    [{ cluster: [{ host: 'a', port: 65536 }] }, `connection.cluster[0] ${node}, instead got { host: 'a', port: 65536 }`],
    [{ cluster: [{ host: 'a' }] }, `connection.cluster[0] ${node}, instead got { host: 'a' }`],
    [{ cluster: [{ host: 'a', port: 7000 }], password: 'secret' }, "connection should be the cluster's nodes and ioredis cluster options, with each node's connection options under redisOptions, instead got password beside cluster"]
  ]
  for (const [connection, message] of cases) {
    await t.rejects(createWorker({ connection: connection as never, tasks }), { code: 'FST_SAC_INVALID_OPTION', message: `createWorker(): ${message}` })
  }
  const app = Fastify()
  t.teardown(() => app.close())
  await t.rejects(async () => await app.register(sendAndContinue, { queue: { connection: { cluster: [] }, tasks } }).ready(), { code: 'FST_SAC_INVALID_OPTION', message: /^fastify-send-and-continue queue: connection\.cluster should be/ })
})

t.test('--redis-cluster takes host:port (an IPv6 address in brackets); anything else is a usage error', async (t) => {
  t.same(clusterNode('10.0.0.1:6379'), { host: '10.0.0.1', port: 6379 })
  t.same(clusterNode('redis-1.internal:7000'), { host: 'redis-1.internal', port: 7000 })
  t.same(clusterNode('[::1]:7000'), { host: '::1', port: 7000 })
  const usage: Array<[string[], string]> = [
    [['--redis-cluster', '7000'], "--redis-cluster should be host:port, instead got '7000'"],
    [['--redis-cluster', ':7000'], "--redis-cluster should be host:port, instead got ':7000'"],
    [['--redis-cluster', 'a:0'], "--redis-cluster should be host:port, instead got 'a:0'"],
    [['--redis-cluster', 'a:65536'], "--redis-cluster should be host:port, instead got 'a:65536'"],
    [['--redis-cluster', 'a:1', '--redis-cluster', 'b:x'], "--redis-cluster should be host:port, instead got 'b:x'"],
    [['--redis-cluster', 'a:1', '--redis', 'redis://x'], 'give one of --sqlite <file>, --redis <url> and --redis-cluster <host:port>'],
    [['--redis-cluster', 'a:1', '--sqlite', 'jobs.db'], 'give one of --sqlite <file>, --redis <url> and --redis-cluster <host:port>'],
    [['--redis-cluster', 'a:1', '--synchronous', 'full'], '--synchronous is an option of --sqlite']
  ]
  for (const [args, message] of usage) {
    const io = { stdout: new Sink(), stderr: new Sink(), signals: new EventEmitter() }
    t.equal(await runWorker([tasksModule, ...args], io), 2, message)
    t.equal(io.stderr.text, `fastify-send-and-continue worker: ${message}\nRun "fastify-send-and-continue worker --help" for the options.\n`)
  }
  // a prefix without a hash tag: the worker cannot start
  const io = { stdout: new Sink(), stderr: new Sink(), signals: new EventEmitter() }
  t.equal(await runWorker([tasksModule, '--redis-cluster', '127.0.0.1:1', '--prefix', 'bull'], io), 1)
  t.match(io.stderr.text, "fastify-send-and-continue worker: createWorker(): prefix should contain a hash tag such as '{bull}'")
})

t.test('createClient on a cluster: node-level overrides (retries, reconnection) go under redisOptions, beside the user\'s', async (t) => {
  const once = (): null => null
  for (const [overrides, expected] of [
    [{ maxRetriesPerRequest: 1, retryStrategy: once }, { maxRetriesPerRequest: 1, retryStrategy: once, connectTimeout: 50 }],
    [{ maxRetriesPerRequest: null }, { maxRetriesPerRequest: null, connectTimeout: 50 }]
  ] as const) {
    const client = createClient({ cluster: [{ host: '127.0.0.1', port: 1 }], lazyConnect: true, redisOptions: { connectTimeout: 50 } }, overrides) as Cluster
    t.match(client.options.redisOptions, expected)
    if (!('retryStrategy' in overrides)) t.notOk((client.options.redisOptions as { retryStrategy?: unknown }).retryStrategy, 'none set')
    client.disconnect()
  }
})
