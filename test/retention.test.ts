import { test } from 'tap'
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { build, deferred, listen } from './helpers'
import { Readable } from 'node:stream'
import { abortMidStream, collectUntil, exposeGc, failOnCrash, getBody } from './reliability-helpers'
import { envWithoutCoverage } from './child-env'

failOnCrash()

const gc = exposeGc()
const run = promisify(execFile)
const fixture = join(__dirname, 'fixtures', 'retention-heap.cjs')

interface Round { waiting: number, start: number, loaded: number, drained: number, perTask: number, residue: number }
interface Measure { mode: string, count: number, first: Round, second: Round, completed: number, dropped: number }

const COUNT = 1000
// Interpreter only: the optimizing compilers allocate code and deoptimization data on the heap at
// times of their own, noise of tens of bytes per task. Object layouts do not depend on the tier (with
// them on, 5,000 tasks measure the same per-task sizes, give or take 20 B).
const NODE_FLAGS = ['--expose-gc', '--no-opt', '--no-sparkplug', '--no-maglev']

/** Runs the fixture in a fresh `node --expose-gc` (it loads ../../dist, built by `npm test`). */
async function measure (mode: 'plugin' | 'hook', options: object = {}): Promise<Measure> {
  // untracked by tap: its coverage of dist/ would be mapped back onto lib/ as a second, partial run
  // tap adds its coverage hooks to every child it sees spawned unless told not to; this child's
  // coverage of dist/ would otherwise be mapped back onto lib/ as a second, misaligned run
  const env = envWithoutCoverage()
  const { stdout } = await run(process.execPath, [...NODE_FLAGS, fixture, mode, String(COUNT), JSON.stringify(options)], { env })
  return JSON.parse(stdout)
}

const kb = (bytes: number): string => `${(bytes / 1024).toFixed(2)} KB`

test('heap per pending task: under 1 KB queued or running, a fraction of an awaiting onResponse hook', async (t) => {
  if (!t.ok(existsSync(join(__dirname, '..', 'dist', 'index.js')), 'dist/ is built (`npm test` builds it before tap)')) return
  // One child at a time: together they would compete for the cores with the other test files.
  const queued = await measure('plugin')
  // every task runs at once (Infinity does not survive JSON)
  const running = await measure('plugin', { concurrency: 1e9 })
  const hook = await measure('hook')
  t.comment(`per pending task: ${kb(queued.second.perTask)} queued (default options), ${kb(running.second.perTask)} running, ` +
    `baseline onResponse hook ${kb(hook.second.perTask)}; after drain: ${queued.second.residue} B, ${running.second.residue} B`)

  for (const m of [queued, running, hook]) {
    t.equal(m.first.waiting, COUNT, `${m.mode}: all ${COUNT} tasks were pending at the measurement`)
    t.equal(m.second.waiting, COUNT)
  }
  t.equal(queued.completed, 2 * COUNT, 'every task completed once released')
  t.equal(queued.dropped, 0)
  t.equal(running.completed, 2 * COUNT)

  // Default options: 100 run, the rest wait in the queue. Measured about 770 B, of which ~150 B
  // is the request's child logger.
  t.ok(queued.second.perTask < 1024, `queued: ${kb(queued.second.perTask)} per task < 1 KB`)
  // Running adds the entry in the running set and the promise reaction that ends the task (the
  // time limit is a node in a shared timer list, not a timer of its own). Measured about 960 B.
  t.ok(running.second.perTask < 1024, `running: ${kb(running.second.perTask)} per task < 1 KB`)
  // An awaiting onResponse hook keeps the whole request and reply: measured about 10 KB.
  t.ok(queued.second.perTask * 4 < hook.second.perTask, 'a pending task costs under a quarter of the baseline')
  t.ok(running.second.perTask * 4 < hook.second.perTask)

  // Once drained, the heap is back where the round started: measured under 5 B per task, where
  // keeping even the smallest object of a task would leave 50 B. (The first round's residue is
  // compiled code and the queue's backing array, sized by the peak and reused.)
  t.ok(queued.second.residue < COUNT * 16, `queued: ${queued.second.residue} B left after drain`)
  t.ok(running.second.residue < COUNT * 16, `running: ${running.second.residue} B left after drain`)
})

interface Refs { request: WeakRef<object>, reply: WeakRef<object>, raw: WeakRef<object> }

function refsOf (req: { raw: object }, reply: { raw: object }): Refs {
  return { request: new WeakRef(req), reply: new WeakRef(reply), raw: new WeakRef(reply.raw) }
}

function collected (refs: Refs[]): boolean {
  return refs.every((r) => r.request.deref() === undefined && r.reply.deref() === undefined && r.raw.deref() === undefined)
}

test('no retention: request and reply are collected after the response closed, while the task is still pending', async (t) => {
  const { app, logs } = await build(t)
  const gate = deferred()
  const refs: Refs[] = []
  let started = 0
  // declared outside the handler: the task's closure holds the gate, not the request
  const task = async () => {
    started++
    await gate.promise
  }
  app.get('/', (req, reply) => {
    refs.push(refsOf(req, reply))
    return reply.sendAndContinue('ok', task)
  })
  const { port } = await listen(app)
  t.equal(await getBody(port, '/'), 'ok')
  t.equal((await app.inject('/')).body, 'ok')
  await logs.until(() => logs.closes.length === 2)

  t.equal(started, 2, 'both tasks are running')
  t.ok(await collectUntil(gc, () => collected(refs)), 'request, reply and raw response of both requests were collected')
  t.equal(logs.outcomes.length, 0, 'while the tasks were still pending')

  gate.resolve()
  await app.sendAndContinue.drain()
  t.equal(logs.outcomes.length, 2)
})

test('no retention after a timeout whose task never settles', async (t) => {
  const { app, logs } = await build(t, { timeout: 20 })
  const refs: Refs[] = []
  const contexts: Array<WeakRef<object>> = []
  app.get('/', (req, reply) => {
    refs.push(refsOf(req, reply))
    return reply.sendAndContinue('ok', function ignoresItsSignal (ctx) {
      contexts.push(new WeakRef(ctx))
      return new Promise(() => {})
    })
  })
  const { port } = await listen(app)
  t.equal(await getBody(port, '/'), 'ok')
  await logs.untilOutcomes(1)
  t.equal(logs.outcomes[0].deferred?.outcome, 'timeout')
  t.match(app.sendAndContinue.stats(), { running: 0, timeout: 1 }, 'the slot was released')

  t.ok(await collectUntil(gc, () => collected(refs)), 'request, reply and raw response were collected')
  t.equal(contexts.length, 1)
  t.ok(await collectUntil(gc, () => contexts[0].deref() === undefined),
    'once its promise is unreachable, the plugin holds nothing of the timed-out task either')
})

test('no retention when the client aborted mid-stream and the task is pending', async (t) => {
  const { app, logs } = await build(t)
  const gate = deferred()
  const refs: Refs[] = []
  const task = () => gate.promise
  app.get('/', (req, reply) => {
    refs.push(refsOf(req, reply))
    const body = new Readable({ read () {} })
    body.push('first')
    return reply.sendAndContinue(body, task)
  })
  const { port } = await listen(app)
  await abortMidStream(port, '/')
  await logs.until(() => logs.closes.length === 1)
  t.equal(logs.closes[0].deferred?.connection, 'aborted')
  t.equal(app.sendAndContinue.stats().running, 1)
  t.ok(await collectUntil(gc, () => collected(refs)), 'request, reply and raw response were collected')
  gate.resolve()
})
