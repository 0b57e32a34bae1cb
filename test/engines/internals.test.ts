import { test } from 'tap'
import type { Test } from 'tap'
import { EventEmitter, once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import Fastify from 'fastify'
import pino from 'pino'
import sendAndContinue, { createWorker, defineTask } from '../../lib/index'
import { MemoryStore } from '../../lib/engines/memory/store'
import type { JobRecord, JobStore, LeasedJob } from '../../lib/engines/types'
import type { DurableTaskContext } from '../../lib/jobs/types'
import { AttemptRunner } from '../../lib/jobs/attempt'
import { LeaseLoop, STALLED_MESSAGE } from '../../lib/jobs/lease-loop'
import { MemoryLoop } from '../../lib/jobs/memory-loop'
import { runWorker } from '../../lib/jobs/cli'
import { deferred, LogCollector } from '../helpers'
import { collectUntil, exposeGc } from '../reliability-helpers'
import { finals } from './conformance'

// The pieces under the engines, where the suites above do not reach: the memory store's leases
// and retention, the memory engine's loop, the lease loop when its store fails, and the SQLite
// worker in this process.

function record (jobId: string, delay = 0): JobRecord {
  return {
    task: 't',
    jobId,
    keyed: true,
    attempts: 1,
    backoff: undefined,
    delay,
    payload: { data: null, request: { id: 'req-1', method: 'POST', url: '/', routeUrl: '/' }, route: '/', connection: null, statusCode: 202, enqueuedAt: Date.now() }
  }
}

async function tempFile (t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'sac-internals-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  return join(dir, 'deferred.db')
}

test('memory store: only the lease holder settles a job; nothing to renew or recover', async (t) => {
  const store = new MemoryStore('q')
  await store.enqueue([record('a'), record('b', 60_000)])
  t.equal(await store.nextDue(), 0)
  const [a] = await store.take('me', 10)
  t.equal(a.id, 'a', 'only the due job is taken')
  t.ok((await store.nextDue() as number) > 59_000, 'the delayed one is due later')
  t.same(await store.renew(), [])
  t.same(await store.recover(), [])
  t.equal(await store.release('someone else', 'a'), false)
  t.equal(await store.retry('someone else', 'a', 0), false)
  t.equal(await store.finish('someone else', 'a', 'completed'), false)
  t.equal(await store.release('me', 'a'), true, 'given back, due now')
  const [again] = await store.take('me', 10)
  t.equal(again.attempt, 1, 'the same attempt')
  t.equal(await store.retry('me', 'a', 0), true)
  const [third] = await store.take('me', 10)
  t.equal(third.attempt, 2, 'a retry is the next attempt')
  t.equal(await store.finish('me', 'a', 'failed'), true)
  t.equal(store.unfinished, 1)
  t.same(store.takeWaiting().map((job) => job.id), ['b'])
  t.equal(store.unfinished, 0)
  await store.check()
  await store.close()
})

test('memory store: finished jobs are kept for their keys, up to 10,000 completed or one hour', async (t) => {
  const store = new MemoryStore('q')
  const ids = Array.from({ length: 10_001 }, (_, i) => `t~${i}`)
  await store.enqueue(ids.map((id) => record(id)))
  for (const job of await store.take('me', ids.length)) await store.finish('me', job.id, 'completed')
  await store.enqueue([record('t~0'), record('t~1')])
  t.same((await store.take('me', 10)).map((job) => job.id), ['t~0'], 'the oldest was pruned past 10,000: its key is new again; the next is still kept')

  const realNow = Date.now
  t.teardown(() => { Date.now = realNow })
  await store.enqueue([record('late')])
  const [late] = await store.take('me', 1)
  Date.now = () => realNow() + 3600_001
  await store.finish('me', late.id, 'completed')
  Date.now = realNow
  await store.enqueue([record('t~2')])
  t.same((await store.take('me', 10)).map((job) => job.id), ['t~2'], 'older than an hour: pruned at the next finish')
})

test('memory store: a finished job without a key keeps nothing, yet takes its place among the 10,000 kept', async (t) => {
  const store = new MemoryStore('q')
  await store.enqueue([record('keyed')])
  for (const job of await store.take('me', 1)) await store.finish('me', job.id, 'completed')
  const once = { ...record('unique'), keyed: false }
  await store.enqueue([once])
  for (const job of await store.take('me', 1)) await store.finish('me', job.id, 'failed')
  await store.enqueue([once, record('keyed')])
  t.same((await store.take('me', 10)).map((job) => job.id), ['unique'], 'its id is forgotten once it finished; the keyed one is kept')
  await store.finish('me', 'unique', 'completed')

  // 20,000 more without a key: the keyed job is pruned past 10,000 (and the list compacted on the way)
  for (let i = 0; i < 20_000; i++) {
    await store.enqueue([{ ...record(`u${i}`), keyed: false }])
    for (const job of await store.take('me', 1)) await store.finish('me', job.id, 'completed')
  }
  await store.enqueue([record('keyed')])
  t.same((await store.take('me', 10)).map((job) => job.id), ['keyed'], 'its key is new again')
})

// three jobs without a key enqueued, nothing of them kept here but a weak reference to the first one's payload
async function enqueueThree (store: MemoryStore): Promise<WeakRef<object>> {
  const jobs = ['a', 'b', 'c'].map((id) => ({ ...record(id), keyed: false }))
  await store.enqueue(jobs)
  return new WeakRef(jobs[0].payload)
}

test('memory store: a job taken from the waiting list is not held there: once finished, it can be collected', async (t) => {
  const gc = exposeGc()
  const store = new MemoryStore('q')
  const first = await enqueueThree(store)
  const [id] = (await store.take('me', 1)).map((job) => job.id)
  t.equal(await store.finish('me', id, 'completed'), true)
  t.ok(await collectUntil(gc, () => first.deref() === undefined), 'collected while the two after it still wait')
  t.equal(store.unfinished, 2)
})

test('memory store: due jobs are taken oldest first, delayed ones once due among them, without looking at every job', async (t) => {
  const realNow = Date.now
  t.teardown(() => { Date.now = realNow })
  let now = 1_000_000
  Date.now = () => now
  const store = new MemoryStore('q')
  await store.enqueue([record('d30', 30), record('d10', 10), record('d20', 20)])
  t.equal(await store.nextDue(), 10, 'the first delayed job is due in 10 ms')
  await store.enqueue([record('a')])
  now += 10
  await store.enqueue([record('b')])
  t.equal(await store.nextDue(), 0)
  t.same((await store.take('me', 2)).map((job) => job.id), ['a', 'd10'], 'by due time, then by arrival')
  now += 15
  t.same((await store.take('me', 10)).map((job) => job.id), ['b', 'd20'], 'a due job added before a delayed one became due goes first')
  t.equal(await store.nextDue(), 5)
  now += 5
  await store.enqueue([record('c')])
  t.same((await store.take('me', 10)).map((job) => job.id), ['d30', 'c'], 'the delayed job due at the same time was added first')
  t.equal(await store.nextDue(), null, 'nothing waits')
  t.equal(await store.retry('me', 'a', 50), true)
  t.equal(await store.retry('me', 'b', 0), true)
  t.same((await store.take('me', 10)).map((job) => job.id), ['b'], 'a retry without backoff is due at once, one in backoff later')
  now += 50
  t.same((await store.take('me', 10)).map((job) => job.id), ['a'])
  const delays = [70, 10, 50, 30, 60, 20, 40, 80, 90]
  await store.enqueue(delays.map((delay) => record(`e${delay}`, delay)))
  now += 100
  t.same((await store.take('me', 10)).map((job) => job.id), [...delays].sort((x, y) => x - y).map((delay) => `e${delay}`), 'delayed jobs by due time')

  const many = Array.from({ length: 3000 }, (_, i) => `m~${i}`)
  await store.enqueue(many.map((id) => record(id)))
  const taken: string[] = []
  for (let i = 0; i < 6; i++) taken.push(...(await store.take('me', 400)).map((job) => job.id))
  t.same(taken, many.slice(0, 2400), 'taken in order while the front of the list is dropped')
  t.same(store.takeWaiting().map((job) => job.id), many.slice(2400), 'the rest, in order')
})

/** A memory loop over `store` running task `t`, which records the ids of the jobs it ran. */
function memoryLoop (store: MemoryStore): { loop: MemoryLoop, ran: string[] } {
  const ran: string[] = []
  const tasks = new Map([['t', defineTask('t', (data: unknown, ctx: DurableTaskContext) => { ran.push(ctx.jobId) })]])
  const runner = new AttemptRunner({ tasks, queue: 'q', engine: 'memory', logger: pino({ level: 'silent' }), durable: false })
  const loop = new MemoryLoop(store, runner, 1, pino({ level: 'silent' }))
  store.onAdded = () => { loop.wake() }
  return { loop, ran }
}

test('memory loop: an attempt that cannot start is logged, never thrown; its slot is free again', async (t) => {
  const logs = new LogCollector()
  const logger = pino({}, logs)
  const store = new MemoryStore('q')
  const runner = new AttemptRunner({ tasks: new Map(), queue: 'q', engine: 'memory', logger, durable: false })
  runner.start = () => { throw new Error('no span') }
  const loop = new MemoryLoop(store, runner, 1, logger)
  store.onAdded = () => { loop.wake() }
  store.enqueueNow([record('a'), record('b')])
  await logs.until((lines) => lines.length === 2)
  t.match(logs.lines, [{ msg: 'durable worker error', err: { message: 'no span' } }, { msg: 'durable worker error', err: { message: 'no span' } }])
  t.equal(loop.running, 0, 'both slots given back: the second job was tried in the first one\'s slot')
  await loop.close()
})

test('memory loop: delayed jobs run in due order, the look timed for the first one due', async (t) => {
  const store = new MemoryStore('q')
  const { loop, ran } = memoryLoop(store)
  // each look finds nothing due: the first sets the timer, an earlier job replaces it, a later one keeps it
  // (two enqueues in one turn: one look for both)
  store.enqueueNow([record('second', 90)])
  store.enqueueNow([record('fourth', 200)])
  await store.enqueue([record('first', 30)])
  await store.enqueue([record('third', 150)])
  t.same(ran, [], 'nothing is due yet')
  await loop.whenIdle()
  t.same(ran, ['first', 'second', 'third', 'fourth'])
  await loop.close()
})

test('memory loop: a look queued before close() takes nothing, nor does a wake after it', async (t) => {
  const store = new MemoryStore('q')
  const { loop, ran } = memoryLoop(store)
  // the look this enqueue queued runs after close() began
  store.enqueueNow([record('a')])
  await loop.close()
  loop.wake()
  await new Promise((resolve) => setImmediate(resolve))
  t.same(ran, [])
  t.equal(store.unfinished, 1, 'still waiting: the app cancels it when its drain runs out (memory-bounds.test.ts)')
})

test('lease loop: whenIdle() waits for a job delayed in its store', async (t) => {
  const ran: string[] = []
  const logger = pino({ level: 'silent' })
  const tasks = new Map([['t', defineTask('t', (data: unknown, ctx: DurableTaskContext) => { ran.push(ctx.jobId) })]])
  const store = new MemoryStore('q')
  await store.enqueue([record('later', 50)])
  const runner = new AttemptRunner({ tasks, queue: 'q', engine: 'memory', logger, durable: true })
  const loop = new LeaseLoop({ store, runner, logger, owner: 'me', isDead: () => false, concurrency: 1, lockDuration: 60_000, pollInterval: 60_000, recoverInterval: 60_000 })
  loop.start()
  await loop.whenIdle()
  t.same(ran, ['later'])
  t.equal(await loop.close(0), true)
})

/** A store whose recovery hands over the jobs a dead owner left (the SQLite store's second lost run). */
class StallingStore extends MemoryStore implements JobStore {
  lost: LeasedJob[] = []
  override async recover (): Promise<LeasedJob[]> { return this.lost.splice(0) }
}

test('lease loop: a job its store failed as stalled gets its failed line (reason stalled, nothing run here), then the loop takes the rest', async (t) => {
  const logs = new LogCollector()
  const logger = pino({}, logs)
  const ran: string[] = []
  const tasks = new Map([['t', defineTask('t', (data: unknown, ctx: DurableTaskContext) => { ran.push(ctx.jobId) })]])
  const store = new StallingStore('q')
  await store.enqueue([record('a'), record('b')])
  store.lost = await store.take('dead', 1)
  const runner = new AttemptRunner({ tasks, queue: 'q', engine: 'memory', logger, durable: true })
  const loop = new LeaseLoop({ store, runner, logger, owner: 'me', isDead: () => true, concurrency: 2, lockDuration: 60_000, pollInterval: 60_000, recoverInterval: 60_000 })
  loop.start()
  await logs.until(() => ran.length === 1)
  await loop.whenIdle()
  t.same(ran, ['b'], 'the lost job is not run here; the waiting one is taken after the recovery')
  t.match(finals(logs.lines), [
    { reqId: 'req-1', deferred: { jobId: 'a', outcome: 'failed', reason: 'stalled', durationMs: 0 }, err: { message: STALLED_MESSAGE } },
    { reqId: 'req-1', deferred: { jobId: 'b', outcome: 'completed' } }
  ])
  t.same({ failed: runner.counts.failed, completed: runner.counts.completed }, { failed: 1, completed: 1 })
  t.equal(await loop.close(0), true)
})

/** A store whose every call fails: the loop logs and goes on. */
class BrokenStore extends MemoryStore implements JobStore {
  failing = true
  override async take (owner: string, max: number): Promise<LeasedJob[]> {
    if (this.failing) throw new Error('take failed')
    return await super.take(owner, max)
  }

  override async renew (): Promise<string[]> { throw new Error('renew failed') }
  override async recover (): Promise<LeasedJob[]> { throw new Error('recover failed') }
  override async nextDue (): Promise<number | null> {
    if (this.failing) throw new Error('nextDue failed')
    return await super.nextDue()
  }
}

test('lease loop: a store that fails is logged, never thrown; renewals go on while jobs run', async (t) => {
  const logs = new LogCollector()
  const logger = pino({}, logs)
  const gate = deferred()
  const tasks = new Map([['t', defineTask('t', () => gate.promise)]])
  const store = new BrokenStore('q')
  const runner = new AttemptRunner({ tasks, queue: 'q', engine: 'memory', logger, durable: true })
  const loop = new LeaseLoop({ store, runner, logger, owner: 'me', isDead: () => false, concurrency: 2, lockDuration: 20, pollInterval: 10, recoverInterval: 10 })
  loop.start()
  await store.enqueue([record('a')])
  loop.wake()
  await logs.until((lines) => ['take failed', 'recover failed'].every((message) => lines.some((line) => line.err?.message === message)))
  store.failing = false
  loop.wake()
  await logs.until(() => loop.running === 1)
  await logs.until((lines) => lines.some((line) => line.err?.message === 'renew failed'))
  t.ok(logs.lines.every((line) => line.msg === 'durable worker error'), 'one kind of line for every store failure')
  gate.resolve()
  await loop.whenIdle()
  t.equal(runner.counts.completed, 1, 'the job ran once the store answered')
  t.equal(await loop.close(0), true)
})

// A store whose take() and nextDue() answer when the test says: the loop's look and its schedule
// can then be made to cross in every order
class GatedStore extends MemoryStore implements JobStore {
  takes = 0
  renewals = 0
  recoveries = 0
  takeGate: Promise<void> | null = null
  dues: Array<ReturnType<typeof deferred<void>>> = []
  readonly asked = new EventEmitter()
  override async take (owner: string, max: number): Promise<LeasedJob[]> {
    this.takes++
    if (this.takeGate !== null) await this.takeGate
    return await super.take(owner, max)
  }

  override async renew (): Promise<string[]> {
    this.renewals++
    return []
  }

  override async recover (): Promise<LeasedJob[]> {
    this.recoveries++
    this.asked.emit('recover')
    return []
  }

  override async nextDue (): Promise<number | null> {
    const due = deferred<void>()
    this.dues.push(due)
    this.asked.emit('nextDue')
    await due.promise
    return null
  }
}

function gatedLoop (store: GatedStore, recoverInterval = 60_000): LeaseLoop {
  const logger = pino({ level: 'silent' })
  const runner = new AttemptRunner({ tasks: new Map(), queue: 'q', engine: 'memory', logger, durable: true })
  return new LeaseLoop({ store, runner, logger, owner: 'me', isDead: () => false, concurrency: 1, lockDuration: 2, pollInterval: POLL, recoverInterval })
}

async function nextDueAsked (store: GatedStore, count: number): Promise<void> {
  while (store.dues.length < count) await once(store.asked, 'nextDue')
}

// the loop's look timers not cleared yet: the only timers set with the poll interval
const POLL = 54_321

function lookTimers (t: Test): Set<unknown> {
  const pending = new Set<unknown>()
  const { setTimeout: realSet, clearTimeout: realClear } = globalThis
  globalThis.setTimeout = ((fn: () => void, ms?: number) => {
    const timer = realSet(fn, ms)
    if (ms === POLL) pending.add(timer)
    return timer
  }) as typeof setTimeout
  globalThis.clearTimeout = ((timer?: NodeJS.Timeout) => {
    pending.delete(timer)
    realClear(timer)
  }) as typeof clearTimeout
  t.teardown(() => {
    globalThis.setTimeout = realSet
    globalThis.clearTimeout = realClear
  })
  return pending
}

function settled (): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve))
}

test('lease loop: the next due time arriving after close() schedules nothing', async (t) => {
  const pending = lookTimers(t)
  const store = new GatedStore('q')
  const loop = gatedLoop(store)
  loop.start()
  await nextDueAsked(store, 1)
  t.equal(await loop.close(0), true)
  store.dues[0].resolve()
  await settled()
  t.equal(pending.size, 0, 'no look timer left behind')
})

test('lease loop: a due time arriving during a look is ignored, and one arriving after a newer one replaces its timer', async (t) => {
  const pending = lookTimers(t)
  const store = new GatedStore('q')
  const loop = gatedLoop(store)
  t.teardown(() => loop.close(0))
  loop.start()
  await nextDueAsked(store, 1)
  // a look in progress (its take held): the first due time sets no timer, the look schedules anew
  const held = deferred<void>()
  store.takeGate = held.promise
  loop.wake()
  store.dues[0].resolve()
  await settled()
  t.equal(store.takes, 2)
  t.equal(pending.size, 0, 'no timer while the look runs')
  store.takeGate = null
  held.resolve()
  await nextDueAsked(store, 2)
  // a second schedule while the second due time is pending: each answer sets the one look timer
  loop.wake()
  await nextDueAsked(store, 3)
  store.dues[1].resolve()
  await settled()
  t.equal(pending.size, 1, 'the look timer')
  store.dues[2].resolve()
  await settled()
  t.equal(pending.size, 1, 'still one: the later answer replaced it')
})

test('lease loop: with nothing running, the renewal timer renews nothing', async (t) => {
  const store = new GatedStore('q')
  const loop = gatedLoop(store, 5)
  t.teardown(() => loop.close(0))
  loop.start()
  // the renewal timer fires every millisecond (lockDuration 2): a few recoveries later it has fired often
  while (store.recoveries < 4) await once(store.asked, 'recover')
  t.equal(store.renewals, 0)
})

test('attempt runner: a cancelled job below the logger\'s level is counted without a line', async (t) => {
  const logs = new LogCollector()
  const runner = new AttemptRunner({ tasks: new Map(), queue: 'q', engine: 'memory', logger: pino({ level: 'error' }, logs), durable: false })
  const store = new MemoryStore('q')
  await store.enqueue([record('a')])
  runner.cancelled(store.takeWaiting()[0])
  t.equal(runner.counts.cancelled, 1)
  t.same(logs.lines, [])
})

test('attempt runner: a signal first read after its attempt timed out or was interrupted reads aborted, with the reason', async (t) => {
  const contexts: DurableTaskContext[] = []
  function hang (data: unknown, ctx: DurableTaskContext): Promise<never> {
    contexts.push(ctx)
    return new Promise(() => {})
  }
  const never = defineTask('never', hang, { timeout: 20 })
  const forever = defineTask('forever', hang, { timeout: 0 })
  const runner = new AttemptRunner({ tasks: new Map([['never', never], ['forever', forever]]), queue: 'q', engine: 'memory', logger: pino({ level: 'silent' }), durable: true })
  const store = new MemoryStore('q')
  await store.enqueue([{ ...record('a'), task: 'never' }, { ...record('b'), task: 'forever' }])
  const [a, b] = await store.take('me', 2)
  const timedOut = runner.run(a)
  const interrupted = runner.run(b)
  t.match(await timedOut, { kind: 'failed', outcome: 'timeout' })
  runner.interruptAll()
  t.match(await interrupted, { kind: 'shutdown' })
  t.equal(contexts[0].signal.aborted, true)
  t.equal(contexts[0].signal.reason.name, 'TimeoutError')
  t.equal(contexts[0].signal, contexts[0].signal, 'the same signal on every read')
  t.equal(contexts[1].signal.reason.name, 'AbortError')
  t.match(contexts[1].signal.reason.message, 'the worker is closing')
})
test('createWorker({ engine: \'sqlite\' }) in this process: runs the file\'s jobs, gives an unfinished one back at close', async (t) => {
  const path = await tempFile(t)
  const started = deferred()
  const restarted = deferred<number>()
  let starts = 0
  const quick = defineTask('quick', () => {})
  const hold = defineTask('hold', (data, { signal, attempt }) => {
    if (++starts === 1) started.resolve()
    else restarted.resolve(attempt)
    return new Promise((resolve) => signal.addEventListener('abort', resolve))
  }, { timeout: 0 })
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(sendAndContinue, { queue: { engine: 'sqlite', path, work: false, synchronous: 'full', tasks: [quick, hold] } })
  app.post('/', (request, reply) => reply.sendAndContinue('ok', [quick.with(null), hold.with(null)]))
  await app.inject({ method: 'POST', url: '/' })

  const logs = new LogCollector()
  const worker = await createWorker({ engine: 'sqlite', path, tasks: [quick, hold], logger: pino({}, logs), drainTimeout: 0, lockDuration: 40, synchronous: 'full' })
  await started.promise
  await logs.until((lines) => finals(lines).length === 1)
  // leases of 40 ms are renewed every 20 ms while the job runs: no other worker could take it
  await new Promise((resolve) => setTimeout(resolve, 100))
  t.match(worker.stats(), { completed: 1, running: 1 })
  await worker.close()
  t.match(logs.lines.find((line) => line.deferred?.outcome === 'retrying'), { deferred: { task: 'hold', reason: 'worker-closing', attempt: 1 } })
  t.match(logs.lines.at(-1), { deferredShutdown: { drained: false, completed: 1, cancelled: 1 } })
  t.equal(await worker.close().then(() => 'closed once'), 'closed once', 'close() twice is one close')

  // the job was given back: the next worker runs it
  const next = new LogCollector()
  const second = await createWorker({ engine: 'sqlite', path, tasks: [quick, hold], logger: pino({}, next), drainTimeout: 0 })
  t.equal(await restarted.promise, 1, 'the next worker runs it, as the same attempt')
  await second.close()
})

test('the worker command with --sqlite runs the file\'s jobs in this process until SIGTERM, with and without --synchronous', async (t) => {
  for (const extra of [['--synchronous', 'full'], []]) {
    const path = await tempFile(t)
    const record = defineTask('record', () => {})
    const app = Fastify()
    t.teardown(() => app.close())
    await app.register(sendAndContinue, { queue: { engine: 'sqlite', path, work: false, tasks: [record] } })
    app.post('/', (request, reply) => reply.sendAndContinue('ok', record.with({ ms: 1 })))
    await app.inject({ method: 'POST', url: '/' })

    const logs = new LogCollector()
    const signals = new EventEmitter()
    const stderr = new Writable({ write (chunk, encoding, callback) { callback() } })
    const exit = runWorker([join(__dirname, '..', 'fixtures', 'durable', 'tasks.cjs'), '--sqlite', path, ...extra, '--concurrency', '2'], { stdout: logs, stderr, signals })
    await logs.until((lines) => finals(lines).length === 1)
    t.match(logs.lines.find((line) => line.msg === 'durable worker started'), { engine: 'sqlite', queue: 'fastify-send-and-continue' })
    signals.emit('SIGTERM')
    t.equal(await exit, 0)
    t.match(logs.lines.at(-1), { deferredShutdown: { drained: true, completed: 1 } }, extra.join(' ') || 'no --synchronous')
  }
})

test('sqlite: a file locked past enqueueTimeout answers 503, logs the jobs dropped, and stores nothing (no token to cancel)', async (t) => {
  const path = await tempFile(t)
  const record = defineTask('record', () => {})
  const logs = new LogCollector()
  const app = Fastify({ logger: { stream: logs } })
  t.teardown(() => app.close())
  await app.register(sendAndContinue, { queue: { engine: 'sqlite', path, work: false, enqueueTimeout: 100, tasks: [record] } })
  app.post('/', (request, reply) => reply.code(202).sendAndContinue('ok', record.with({ n: 1 })))
  await app.ready()
  const { default: Database } = await import('better-sqlite3')
  const other = new Database(path)
  t.teardown(() => other.close())
  other.exec('BEGIN IMMEDIATE')
  const response = await app.inject({ method: 'POST', url: '/' })
  other.exec('COMMIT')
  t.equal(response.statusCode, 503)
  t.match(finals(logs.lines), [{ deferred: { task: 'record', outcome: 'dropped', reason: 'enqueue-failed', statusCode: 503 } }])
  t.same(other.prepare('SELECT count(*) AS n FROM jobs').get(), { n: 0 }, 'the transaction rolled back: no job to run')
  await app.close()
  const shutdown = logs.lines.find((line) => line.deferredShutdown !== undefined)
  t.match(shutdown, { deferredShutdown: { drained: true, dropped: 1 } })
  t.equal(shutdown?.deferredShutdown?.mayStillRun, undefined, 'nothing may still run')
})

test('sqlite: a late job whose enqueue fails, with a logger that throws on its dropped line, is logged as bookkeeping failed and the process lives on', async (t) => {
  const path = await tempFile(t)
  const record = defineTask('record', () => {})
  const written: string[] = []
  const stream = {
    write (line: string) {
      if (line.includes('"outcome":"dropped"')) throw new Error('log down')
      written.push(line)
    }
  }
  const app = Fastify({ logger: { level: 'info', stream } })
  t.teardown(() => app.close())
  await app.register(sendAndContinue, { queue: { engine: 'sqlite', path, work: false, enqueueTimeout: 100, tasks: [record] } })
  app.post('/late', { onResponse: async (request, reply) => { reply.defer(record.with(null)) } }, (request, reply) => reply.send('ok'))
  await app.ready()
  const { default: Database } = await import('better-sqlite3')
  const other = new Database(path)
  t.teardown(() => other.close())
  other.exec('BEGIN IMMEDIATE')
  t.equal((await app.inject({ method: 'POST', url: '/late' })).statusCode, 200)
  // the late enqueue times out while the file is locked; its dropped line throws
  await app.sendAndContinue.drain()
  other.exec('COMMIT')
  t.ok(written.some((line) => line.includes('deferred job bookkeeping failed') && line.includes('log down')), 'the failure of its line is logged')
  t.same(other.prepare('SELECT count(*) AS n FROM jobs').get(), { n: 0 }, 'nothing was stored')
  await app.close()
})

test('an onSend hook that runs after the plugin\'s (route level) and throws: the client gets 500, the job stored before stays stored and runs with its status', async (t) => {
  const path = await tempFile(t)
  const statuses: number[] = []
  const record = defineTask('record', (data, ctx) => { statuses.push(ctx.statusCode) })
  const logs = new LogCollector()
  const app = Fastify({ logger: { stream: logs } })
  t.teardown(() => app.close())
  await app.register(sendAndContinue, { queue: { engine: 'sqlite', path, tasks: [record] } })
  app.post('/', { onSend: async () => { throw new Error('late hook') } }, (request, reply) => reply.code(201).sendAndContinue('ok', record.with(null)))
  t.equal((await app.inject({ method: 'POST', url: '/' })).statusCode, 500)
  await app.sendAndContinue.drain()
  t.same(statuses, [201], 'it ran once, with the status it was stored with')
  t.match(finals(logs.lines), [{ deferred: { task: 'record', outcome: 'completed', statusCode: 201 } }])
})

test('a job registered in an onSend hook added after the plugin is a late one: the answer does not wait for it, its failed enqueue is its dropped line', async (t) => {
  const path = await tempFile(t)
  const record = defineTask('record', () => {})
  const logs = new LogCollector()
  const app = Fastify({ logger: { stream: logs } })
  t.teardown(() => app.close())
  await app.register(sendAndContinue, { queue: { engine: 'sqlite', path, work: false, enqueueTimeout: 100, tasks: [record] } })
  app.addHook('onSend', async (request, reply, payload) => {
    reply.defer(record.with(null))
    return payload
  })
  app.post('/', (request, reply) => reply.code(201).send('ok'))
  await app.ready()
  const { default: Database } = await import('better-sqlite3')
  const other = new Database(path)
  t.teardown(() => other.close())
  other.exec('BEGIN IMMEDIATE')
  t.equal((await app.inject({ method: 'POST', url: '/' })).statusCode, 201, 'the file is locked, yet the answer went out')
  await app.sendAndContinue.drain()
  other.exec('COMMIT')
  t.match(finals(logs.lines), [{ deferred: { task: 'record', outcome: 'dropped', reason: 'enqueue-failed', statusCode: 201 } }])
})

test('a response hijacked and never ended: app.close() drops its durable jobs with their line, beside its cancelled in-process task', async (t) => {
  for (const engine of ['memory', 'sqlite'] as const) {
    const record = defineTask('record', () => {})
    const logs = new LogCollector()
    const app = Fastify({ logger: { stream: logs } })
    const queue = engine === 'memory' ? { engine, tasks: [record] } : { engine, path: await tempFile(t), tasks: [record] }
    await app.register(sendAndContinue, { drainTimeout: 50, queue })
    let hijacked: () => void = () => {}
    const ready = new Promise<void>((resolve) => { hijacked = resolve })
    app.get('/', (request, reply) => {
      reply.defer([record.with(null), function local () {}])
      reply.hijack()
      reply.raw.write('partial')
      hijacked()
    })
    // a job registered before close() by a request answered after it
    const gate = deferred()
    let registered: () => void = () => {}
    const waiting = new Promise<void>((resolve) => { registered = resolve })
    app.get('/slow', async (request, reply) => {
      reply.defer(record.with(null))
      registered()
      await gate.promise
      return 'ok'
    })
    // never answered: the inject stays pending
    app.inject({ method: 'GET', url: '/' }).catch(() => {})
    const slow = app.inject({ method: 'GET', url: '/slow' })
    await Promise.all([ready, waiting])
    const closed = app.close()
    // the drain ran out (the hijacked request's task was cancelled): the plugin's close is under way
    await logs.until((lines) => lines.some((line) => line.deferred?.outcome === 'cancelled'))
    gate.resolve()
    t.equal((await slow).statusCode, 503, `${engine}: the one still answering finds the queue closed`)
    await closed
    t.match(finals(logs.lines).map((line) => [line.deferred?.task, line.deferred?.outcome, line.deferred?.reason]).sort(),
      [['local', 'cancelled', undefined], ['record', 'dropped', 'closing'], ['record', 'dropped', 'enqueue-failed']], engine)
    // the hijacked response's job is in the shutdown line (the one refused as the app closes may come after it)
    const shutdown = logs.lines.find((line) => line.deferredShutdown !== undefined)?.deferredShutdown as { cancelled: number, dropped: number }
    t.equal(shutdown.cancelled, 1, `${engine}: the shutdown line counts the cancelled task`)
    t.ok(shutdown.dropped >= 1, `${engine}: and the dropped job`)
  }
})

test('sqlite with work: true: drain() resolves once the app\'s own worker ran the jobs', async (t) => {
  const path = await tempFile(t)
  const gate = deferred<void>()
  let ran = 0
  const record = defineTask('record', async () => {
    await gate.promise
    ran++
  })
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(sendAndContinue, { queue: { engine: 'sqlite', path, tasks: [record] } })
  app.post('/', (request, reply) => reply.code(202).sendAndContinue('ok', [record.with({ n: 1 }), record.with({ n: 2 })]))
  t.equal((await app.inject({ method: 'POST', url: '/' })).statusCode, 202)
  let drained = false
  const drain = app.sendAndContinue.drain().then(() => { drained = true })
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(drained, false, 'the jobs wait on the gate')
  gate.resolve()
  await drain
  t.equal(ran, 2)
  t.match(app.sendAndContinue.stats(), { completed: 2, running: 0 })
})

test('sqlite with work: true: app.close() gives a running job back to the file: its line is retrying (worker-closing), stats() and the shutdown line count it cancelled, the line\'s drainTimeout is the plugin\'s', async (t) => {
  const path = await tempFile(t)
  const started = deferred<void>()
  const restarted = deferred<void>()
  const attempts: number[] = []
  const hold = defineTask('hold', (data, { signal, attempt }) => {
    attempts.push(attempt)
    if (attempts.length === 1) started.resolve()
    else restarted.resolve()
    return new Promise((resolve) => signal.addEventListener('abort', resolve))
  }, { timeout: 0 })
  const logs = new LogCollector()
  const app = Fastify({ logger: { stream: logs } })
  t.teardown(() => app.close())
  // the plugin's drain (1234 ms) has nothing to wait for; the queue's own drain (0) gives the job up at once
  await app.register(sendAndContinue, { drainTimeout: 1234, queue: { engine: 'sqlite', path, drainTimeout: 0, tasks: [hold] } })
  app.post('/', (request, reply) => reply.sendAndContinue('ok', hold.with(null)))
  t.equal((await app.inject({ method: 'POST', url: '/' })).statusCode, 200)
  await started.promise
  await app.close()
  t.same(finals(logs.lines), [], 'no final line: the job is not over')
  t.match(logs.lines.filter((line) => line.deferred?.outcome === 'retrying'), [{ deferred: { task: 'hold', reason: 'worker-closing', attempt: 1 } }])
  t.match(app.sendAndContinue.stats(), { cancelled: 1, completed: 0, running: 0 })
  t.match(logs.lines.find((line) => line.deferredShutdown !== undefined), { deferredShutdown: { drainTimeout: 1234, cancelled: 1 } })

  // it is in the file still: the next worker runs it, as the same attempt
  const next = new LogCollector()
  const worker = await createWorker({ engine: 'sqlite', path, tasks: [hold], logger: pino({}, next), drainTimeout: 0 })
  t.teardown(() => worker.close())
  await restarted.promise
  t.same(attempts, [1, 1])
})

test('createWorker(): a logger that is not a pino logger is refused at the start (it would fail only once a job ended)', async (t) => {
  const path = await tempFile(t)
  const tasks = [defineTask('t', () => {})]
  const expected = 'a pino logger (an object with info, warn, error, debug and child methods)'
  for (const [logger, shown] of [['pino', "'pino'"], [{}, '{}'], [{ info: 'x' }, "{ info: 'x' }"], [null, 'null']] as Array<[unknown, string]>) {
    await t.rejects(createWorker({ engine: 'sqlite', path, tasks, logger: logger as never }), { code: 'FST_SAC_INVALID_OPTION', message: `createWorker(): logger should be ${expected}, instead got ${shown}` })
  }
  // a pino logger starts (no logger at all is the default, pino() to standard output)
  const worker = await createWorker({ engine: 'sqlite', path, tasks, logger: pino({ level: 'silent' }) })
  await worker.close()
})

test('durable web: a logger that throws on the enqueued line fails that response (a late job: logged), and app.close() still ends', async (t) => {
  const path = await tempFile(t)
  const job = defineTask('t', () => {})
  const written: string[] = []
  let strict = false
  const stream = {
    write (line: string) {
      if (line.includes('"outcome":"enqueued"') || (strict && line.includes('bookkeeping failed'))) throw new Error('log down')
      written.push(line)
    }
  }
  const app = Fastify({ logger: { level: 'info', stream } })
  await app.register(sendAndContinue, { queue: { engine: 'sqlite', path, work: false, tasks: [job] } })
  app.post('/', (request, reply) => reply.sendAndContinue('ok', job.with(null)))
  app.post('/late', { onResponse: async (request, reply) => { reply.defer(job.with(null)) } }, (request, reply) => reply.sendAndContinue('ok'))
  const response = await app.inject({ method: 'POST', url: '/' })
  t.equal(response.statusCode, 500, 'the enqueue\'s own bookkeeping threw: Fastify answers its error')
  t.ok(written.some((line) => line.includes('log down')), 'Fastify logged the error')
  // a job registered after the response: nothing to answer, the failure is logged
  t.equal((await app.inject({ method: 'POST', url: '/late' })).statusCode, 200)
  await app.sendAndContinue.drain()
  t.ok(written.some((line) => line.includes('deferred job bookkeeping failed') && line.includes('log down')), 'the late one is logged')
  // and when that line cannot be written either, nothing is thrown (the process would die of it)
  strict = true
  t.equal((await app.inject({ method: 'POST', url: '/late' })).statusCode, 200)
  await app.sendAndContinue.drain()
  t.equal(written.filter((line) => line.includes('bookkeeping failed')).length, 1, 'the second one could not be logged')
  // would wait forever if an enqueue that threw were still counted in flight
  await app.close()
  t.equal(app.sendAndContinue.stats().durable?.enqueued, 3, 'every job was stored before its line failed')
})
