import { test } from 'tap'
import { EventEmitter, once } from 'node:events'
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { createServer } from 'node:net'
import type { AddressInfo } from 'node:net'
import { Writable } from 'node:stream'
import { defineTask } from '../lib/index'
import { runWorker, tasksOf, WORKER_USAGE } from '../lib/jobs/cli'
import type { WorkerIo } from '../lib/jobs/cli'
import { addJobs, inspect } from './durable-helpers'
import { LogCollector } from './helpers'
import { startRedis } from './redis'

const tasksModule = join(__dirname, 'fixtures', 'durable', 'tasks.cjs')

function freePort (): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo
      server.close(() => resolve(port))
    })
  })
}

class Sink extends Writable {
  text = ''
  override _write (chunk: Buffer, _encoding: string, done: () => void): void {
    this.text += chunk.toString()
    done()
  }
}

function io (extra: Partial<WorkerIo> = {}): { stdout: Sink, stderr: Sink, signals: EventEmitter } {
  return { stdout: new Sink(), stderr: new Sink(), signals: new EventEmitter(), ...extra } as never
}

test('worker --help prints the usage', async (t) => {
  const out = io()
  t.equal(await runWorker(['--help'], out), 0)
  t.equal(out.stdout.text, WORKER_USAGE)
  t.match(WORKER_USAGE, /--redis <url>[\s\S]*--lock-duration/)
})

test('the command line dispatches `worker` to the worker', async (t) => {
  const child = spawn(process.execPath, [...process.execArgv, join(__dirname, '..', 'lib', 'cli.ts'), 'worker', '--help'])
  let stdout = ''
  child.stdout.on('data', (chunk) => { stdout += chunk })
  const [code] = await once(child, 'exit')
  t.equal(code, 0)
  t.equal(stdout, WORKER_USAGE)
})

test('worker usage errors exit 2 with a message and a hint', async (t) => {
  const cases: Array<[string[], string]> = [
    [['--redis', 'redis://x'], 'give one tasks module, instead got 0'],
    [[tasksModule], 'give one of --sqlite <file>, --redis <url> and --redis-cluster <host:port>'],
    [[tasksModule, '--redis', 'redis://x', '--sqlite', 'jobs.db'], 'give one of --sqlite <file>, --redis <url> and --redis-cluster <host:port>'],
    [[tasksModule, '--redis', 'redis://x', '--synchronous', 'full'], '--synchronous is an option of --sqlite'],
    [[tasksModule, '--sqlite', 'jobs.db', '--prefix', 'bull'], '--prefix is an option of --redis and --redis-cluster'],
    [[tasksModule, '--sqlite', 'jobs.db', '--stalled-interval', '100'], '--stalled-interval is an option of --redis and --redis-cluster'],
    [[tasksModule, '--redis', 'redis://x', '--concurrency', 'many'], "--concurrency should be a whole number, instead got 'many'"],
    [[tasksModule, '--redis', 'redis://x', '--verbose'], "Unknown option '--verbose'"],
    [[join(__dirname, 'fixtures', 'durable', 'empty.cjs'), '--redis', 'redis://x'], 'exports no task made by defineTask()']
  ]
  for (const [args, message] of cases) {
    const out = io()
    t.equal(await runWorker(args, out), 2, message)
    t.match(out.stderr.text, message)
    t.match(out.stderr.text, 'Run "fastify-send-and-continue worker --help" for the options.')
  }
})

test('worker: a module that cannot load, or a worker that cannot start, exits 1', async (t) => {
  const missing = io()
  t.equal(await runWorker([join(__dirname, 'no-such-module.cjs'), '--redis', 'redis://x'], missing), 1)
  t.match(missing.stderr.text, /^fastify-send-and-continue worker: Cannot find module/)
  t.notMatch(missing.stderr.text, '--help')

  // on a TCP port this time, to give a redis:// URL
  const port = await freePort()
  await startRedis(t, { maxmemoryPolicy: 'allkeys-lru', args: ['--port', String(port), '--bind', '127.0.0.1'] })
  const evicting = io()
  t.equal(await runWorker([tasksModule, '--redis', `redis://127.0.0.1:${port}`], evicting), 1)
  t.match(evicting.stderr.text, "fastify-send-and-continue worker: createWorker(): Redis maxmemory-policy should be 'noeviction'")
})

test('worker: runs the module\'s tasks until SIGTERM or SIGINT, then closes gracefully', async (t) => {
  const redis = await startRedis(t)
  const queue = inspect(t, redis, 'jobs')
  await addJobs(queue, 'record', 2, () => ({ ms: 1 }))
  for (const signal of ['SIGTERM', 'SIGINT']) {
    const logs = new LogCollector()
    const out = io({ stdout: logs })
    const exit = runWorker([tasksModule, '--redis', redis.path, '--name', 'jobs', '--prefix', 'bull', '--concurrency', '2',
      '--drain-timeout', '1000', '--lock-duration', '5000', '--stalled-interval', '5000'], out)
    await logs.until((lines) => lines.some((line) => line.msg === 'durable worker started'))
    if (signal === 'SIGTERM') await logs.untilOutcomes(2)
    out.signals.emit(signal)
    t.equal(await exit, 0)
    t.match(logs.lines.at(-1), { deferredShutdown: { drained: true, drainTimeout: 1000 } })
    t.equal(out.signals.listenerCount('SIGTERM') + out.signals.listenerCount('SIGINT'), 0)
  }
  t.match((await queue.getJobCounts('completed')), { completed: 2 })
})

test('the tasks of a module: named exports, and a default export that is a task, an array or an object of them', async (t) => {
  const a = defineTask('a', () => {})
  const b = defineTask('b', () => {})
  t.same(tasksOf({ a, other: 1, fn: () => {} }), [a])
  t.same(tasksOf({ default: a }), [a])
  t.same(tasksOf({ default: [a, b] }), [a, b])
  t.same(tasksOf({ default: { a, b, x: null }, a }), [a, b])
  t.same(tasksOf({ default: null }), [])
})
