import { test } from 'tap'
import { AsyncLocalStorage } from 'node:async_hooks'
import type { FastifyReply } from 'fastify'
import fc from 'fast-check'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { request } from 'node:http'
import { Readable } from 'node:stream'
import { setImmediate as nextTurn } from 'node:timers/promises'
import { build, deferred, listen } from './helpers'
import type { LogLine } from './helpers'
import { abortBeforeResponse, abortMidStream, countBy, failOnCrash, pipelineThenHangUp } from './reliability-helpers'
import type { DroppedTaskInfo, Outcome, TaskContext } from '../lib/index'

failOnCrash()

// The accounting invariant of issue 3: whatever happens to a request and its tasks, every task
// registered ends with exactly one outcome line, and stats() (and the shutdown summary) count
// exactly those lines.

type TaskKind = 'sync' | 'async' | 'throws' | 'rejects' | 'hangs' | 'ignoresSignal' | 'thenGetterThrows' | 'rejectsUnloggable' | 'flaky'
type RequestKind = 'normal' | 'abortMidStream' | 'abortBeforeSend' | 'handlerThrows' | 'deferAfterClose' | 'pipelinedHangUp' | 'hijackedHangUp'

/**
 * `fromHook`: registered from a preHandler hook, in an async context of its own. `attempts` above 1:
 * failed and timed-out attempts are retried after `backoff` ms.
 */
interface TaskSpec { kind: TaskKind, timeout: 0 | 25, always: boolean, fromHook: boolean, attempts?: 1 | 2 | 3, backoff?: 0 | 5 }
interface RequestSpec { kind: RequestKind, tasks: TaskSpec[] }
interface Scenario {
  concurrency: number
  maxQueued: number
  onClientAbort: 'run' | 'skip'
  requests: RequestSpec[]
  /** app.close() starts once this many clients are done: shutdown mid-flight. */
  closeAfter: number
}

const taskKinds: Record<TaskKind, (ctx: TaskContext) => unknown> = {
  sync: () => {},
  async: async () => { await nextTurn() },
  throws: () => { throw new Error('task threw') },
  rejects: async () => { throw new Error('task rejected') },
  // honours its signal: rejects once aborted, whether by its timeout or by the shutdown
  hangs: (ctx) => new Promise((resolve, reject) => {
    ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason), { once: true })
  }),
  ignoresSignal: () => new Promise(() => {}),
  thenGetterThrows: () => ({ get then () { throw new Error('task threw') } }),
  rejectsUnloggable: () => Promise.reject(revoked.proxy),
  // fails its first attempt only
  flaky: async (ctx) => { if (ctx.attempt === 1) throw new Error('task threw') }
}

const revoked = Proxy.revocable({}, {})
revoked.revoke()
// each task is registered inside als.run(its name): it must run in that context
const als = new AsyncLocalStorage<string>()

const scenario: fc.Arbitrary<Scenario> = fc.record({
  concurrency: fc.integer({ min: 1, max: 3 }),
  maxQueued: fc.integer({ min: 0, max: 4 }),
  onClientAbort: fc.constantFrom('run' as const, 'skip' as const),
  requests: fc.array(fc.record({
    kind: fc.constantFrom<RequestKind>('normal', 'normal', 'abortMidStream', 'abortBeforeSend', 'handlerThrows', 'deferAfterClose', 'pipelinedHangUp', 'hijackedHangUp'),
    tasks: fc.array(fc.record({
      kind: fc.constantFrom<TaskKind>('sync', 'async', 'throws', 'rejects', 'hangs', 'ignoresSignal', 'thenGetterThrows', 'rejectsUnloggable', 'flaky'),
      timeout: fc.constantFrom(0 as const, 25 as const),
      always: fc.boolean(),
      fromHook: fc.boolean(),
      attempts: fc.constantFrom(1 as const, 1 as const, 2 as const, 3 as const),
      backoff: fc.constantFrom(0 as const, 5 as const)
    }), { minLength: 1, maxLength: 3 })
  }), { minLength: 1, maxLength: 8 }),
  closeAfter: fc.nat({ max: 8 })
})

interface Registered { name: string, reqId: string, request: RequestSpec, task: TaskSpec }

/** The outcomes a task may end with, given what it does and what happened to its request. */
function allowedOutcomes (entry: Registered, onClientAbort: 'run' | 'skip'): Outcome[] {
  const aborted = expectedConnection[entry.request.kind] === 'aborted'
  if (aborted && onClientAbort === 'skip' && !entry.task.always) return ['skipped']
  const own: Record<TaskKind, Outcome> = {
    sync: 'completed',
    async: 'completed',
    throws: 'failed',
    rejects: 'failed',
    thenGetterThrows: 'failed',
    rejectsUnloggable: 'failed',
    flaky: (entry.task.attempts ?? 1) > 1 ? 'completed' : 'failed',
    hangs: entry.task.timeout > 0 ? 'timeout' : 'cancelled',
    ignoresSignal: entry.task.timeout > 0 ? 'timeout' : 'cancelled'
  }
  // any task may be dropped (queue full) or cancelled (still queued or running when the drain ran out)
  return [own[entry.task.kind], 'dropped', 'cancelled']
}

const expectedConnection: Record<RequestKind, string> = {
  normal: 'finished',
  handlerThrows: 'finished',
  deferAfterClose: 'finished',
  abortMidStream: 'aborted',
  abortBeforeSend: 'aborted',
  pipelinedHangUp: 'aborted',
  hijackedHangUp: 'aborted'
}

let runs = 0

/** Runs one scenario against a fresh app; throws (for fast-check) when the books do not balance. */
async function check (t: Parameters<Parameters<typeof test>[0]>[0], s: Scenario): Promise<Map<unknown, number>> {
  const run = ++runs
  const dropped: DroppedTaskInfo[] = []
  const { app, logs } = await build(t, {
    concurrency: s.concurrency,
    maxQueued: s.maxQueued,
    onClientAbort: s.onClientAbort,
    drainTimeout: 40,
    onDropped (info) { dropped.push(info) }
  })
  const registered: Registered[] = []
  const calls = new Map<string, number>()
  const wrongContext: string[] = []
  const handlerStarted = s.requests.map(() => deferred())

  function register (reply: FastifyReply, reqId: string, i: number, fromHook: boolean): void {
    const spec = s.requests[i]
    spec.tasks.forEach((task, j) => {
      if (task.fromHook !== fromHook) return
      const name = `r${run}-q${i}-t${j}`
      registered.push({ name, reqId, request: spec, task })
      als.run(name, () => reply.defer((ctx) => {
        calls.set(name, (calls.get(name) ?? 0) + 1)
        if (als.getStore() !== name) wrongContext.push(name)
        return taskKinds[task.kind](ctx)
      }, { name, timeout: task.timeout, always: task.always, attempts: task.attempts, backoff: task.backoff }))
    })
  }

  app.addHook('preHandler', (req, reply, done) => {
    const { kind, i } = req.params as { kind: string, i: string }
    if (kind !== 'hold' && kind !== 'deferAfterClose') register(reply, String(req.id), Number(i), true)
    done()
  })

  app.get('/:kind/:i', async (req, reply) => {
    const { kind, i: index } = req.params as { kind: string, i: string }
    if (kind === 'hold') {
      // holds the connection's first response: the next pipelined one queues behind it
      await once(reply.raw, 'close')
      return 'held'
    }
    const i = Number(index)
    const spec = s.requests[i]
    if (spec.kind === 'deferAfterClose') {
      // work registered once the response is gone (and maybe while the app closes)
      reply.send('ok')
      await once(reply.raw, 'close')
      register(reply, String(req.id), i, true)
    }
    register(reply, String(req.id), i, false)
    handlerStarted[i].resolve()
    switch (spec.kind) {
      case 'deferAfterClose':
        return reply
      case 'normal':
      case 'pipelinedHangUp':
        return 'ok'
      case 'handlerThrows':
        throw new Error('handler threw')
      case 'abortMidStream': {
        const body = new Readable({ read () {} })
        body.push('first')
        return reply.send(body)
      }
      case 'hijackedHangUp':
        reply.hijack()
        reply.raw.writeHead(200)
        reply.raw.write('partial, never ended')
        return reply
      case 'abortBeforeSend':
        await once(reply.raw, 'close')
        return reply.send('too late')
    }
  })
  const { port } = await listen(app)

  let done = 0
  let closing: Promise<void> | null = null
  const closeStarted = deferred()
  const startClose = () => {
    closing ??= app.close()
    closeStarted.resolve()
  }
  if (s.closeAfter === 0) startClose()
  await Promise.all(s.requests.map(async (spec, i) => {
    const path = `/${spec.kind}/${i}`
    if (spec.kind === 'abortMidStream') {
      await abortMidStream(port, path).catch(() => {}) // refused once the server closes
    } else if (spec.kind === 'abortBeforeSend' || spec.kind === 'hijackedHangUp') {
      await abortBeforeResponse(port, path, handlerStarted[i].promise)
    } else if (spec.kind === 'pipelinedHangUp') {
      // a request that reaches the server once it closes gets a 503 queued behind the held one:
      // the client gives up then too
      await pipelineThenHangUp(port, [`/hold/${i}`, path], Promise.race([handlerStarted[i].promise, closeStarted.promise]))
    } else {
      await new Promise<void>((resolve) => {
        request({ host: '127.0.0.1', port, path, agent: false }, (res) => {
          res.resume()
          res.on('end', resolve)
        }).on('error', () => resolve()).end()
      })
    }
    if (++done === s.closeAfter) startClose()
  }))
  startClose()
  await closing

  // every line is in: close resolved after the drain, which settles or cancels every task
  const outcomes = logs.outcomes.filter((line) => line.deferred?.outcome !== 'retrying')
  const retries = countBy(logs.outcomes.filter((line) => line.deferred?.outcome === 'retrying'), (line) => line.deferred?.task)
  const byName = new Map<string, LogLine[]>()
  for (const line of outcomes) {
    const name = line.deferred?.task as string
    byName.set(name, [...(byName.get(name) ?? []), line])
  }
  assert.deepEqual([...byName.keys()].sort(), registered.map((r) => r.name).sort(),
    'the outcome lines name exactly the tasks registered')
  for (const entry of registered) {
    const lines = byName.get(entry.name) as LogLine[]
    assert.equal(lines.length, 1, `${entry.name}: exactly one outcome line`)
    const [line] = lines
    const outcome = line.deferred?.outcome as Outcome
    assert.equal(line.reqId, entry.reqId, `${entry.name}: logged with its request's reqId`)
    assert.ok(allowedOutcomes(entry, s.onClientAbort).includes(outcome),
      `${entry.name} (${entry.task.kind}, timeout ${entry.task.timeout}, always ${entry.task.always}, request ${entry.request.kind}) ended ${outcome}`)
    const ran = calls.get(entry.name) ?? 0
    const attempts = entry.task.attempts ?? 1
    const retried = retries.get(entry.name) ?? 0
    assert.ok(ran <= attempts, `${entry.name} ran ${ran} times, for ${attempts} attempts`)
    if (outcome === 'completed' || outcome === 'failed' || outcome === 'timeout') {
      assert.equal(ran, outcome === 'completed' ? (entry.task.kind === 'flaky' ? 2 : 1) : attempts, `${entry.name} ran every attempt it needed`)
      assert.equal(retried, ran - 1, `${entry.name}: one retrying line per attempt before the last`)
    }
    if (outcome === 'skipped' || outcome === 'dropped') assert.equal(ran, 0, `${entry.name} never ran`)
    // cancelled while an attempt ran, or while it waited out the backoff after one
    if (outcome === 'cancelled') assert.ok(retried === ran || retried === ran - 1, `${entry.name}: ${retried} retrying lines for ${ran} runs`)
    if (outcome === 'skipped' || outcome === 'dropped') assert.equal(retried, 0, `${entry.name} never retried`)
    // only tasks with more than one attempt say which attempt ended; a task cancelled while queued
    // for its next attempt names that attempt
    const attempt = line.deferred?.attempt
    if (attempts === 1) assert.equal(attempt, undefined, `${entry.name}: no attempt on its final line`)
    else if (outcome === 'cancelled') assert.ok(attempt === Math.max(ran, 1) || attempt === ran + 1, `${entry.name}: attempt ${attempt} after ${ran} runs`)
    else assert.equal(attempt, Math.max(ran, 1), `${entry.name}: the attempt on its final line`)
    if (outcome === 'failed') assert.match(line.err?.message ?? '', /^task (threw|rejected)$|could not write: <Revoked Proxy>$/)
    if (entry.request.kind === 'handlerThrows') assert.equal(line.deferred?.statusCode, 500)
  }

  assert.deepEqual(wrongContext, [], 'every task ran in the async context of its registration')

  const counts = countBy(outcomes, (l) => l.deferred?.outcome)
  const stats = app.sendAndContinue.stats()
  const [summary] = logs.lines.filter((l) => l.deferredShutdown !== undefined)
  for (const outcome of ['completed', 'failed', 'timeout', 'skipped', 'cancelled', 'dropped'] as const) {
    assert.equal(stats[outcome], counts.get(outcome) ?? 0, `stats().${outcome} equals the ${outcome} lines`)
    assert.equal(summary.deferredShutdown?.[outcome], counts.get(outcome) ?? 0, `the shutdown summary's ${outcome}`)
  }
  assert.deepEqual({ pending: stats.pending, queued: stats.queued, running: stats.running, retrying: stats.retrying }, { pending: 0, queued: 0, running: 0, retrying: 0 })
  assert.deepEqual(dropped.map((d) => d.name).sort(),
    outcomes.filter((l) => l.deferred?.outcome === 'dropped').map((l) => l.deferred?.task).sort(),
    'onDropped was called once for each dropped task')

  // one close line per request that registered work, saying how its response ended
  const closes = logs.closes
  const reqIds = new Set(registered.map((r) => r.reqId))
  assert.deepEqual(closes.map((l) => l.reqId).sort(), [...reqIds].sort(), 'one close line per request with work')
  for (const close of closes) {
    const mine = registered.filter((r) => r.reqId === close.reqId)
    // the line counts the tasks registered when it is written, dropped ones included: for work
    // registered after the response closed, that is the first reply.defer() call (one task here)
    const counted = mine[0].request.kind === 'deferAfterClose' ? mine.slice(0, 1) : mine
    assert.equal(close.deferred?.tasks, counted.length, `${close.reqId}: the tasks count`)
    assert.equal(close.deferred?.connection, expectedConnection[mine[0].request.kind], `${close.reqId}: the connection`)
  }
  return counts
}

test('accounting invariant: one outcome line per task, and stats() counts exactly the lines', async (t) => {
  let seen = 0
  await fc.assert(fc.asyncProperty(scenario, async (s) => {
    await check(t, s)
    seen++
  }), { numRuns: 40 })
  t.equal(seen, 40, 'the invariant held in every generated scenario')
})

test('accounting invariant: a hand-picked scenario with every case at once', async (t) => {
  const all: TaskSpec[] = (Object.keys(taskKinds) as TaskKind[]).flatMap((kind) => [
    { kind, timeout: 25, always: false, fromHook: false },
    { kind, timeout: 0, always: true, fromHook: true }
  ])
  const requests: RequestSpec[] = (['normal', 'abortMidStream', 'abortBeforeSend', 'handlerThrows', 'deferAfterClose', 'pipelinedHangUp', 'hijackedHangUp'] as const)
    .map((kind) => ({ kind, tasks: all }))
  const first = await check(t, { concurrency: 2, maxQueued: 20, onClientAbort: 'run', requests, closeAfter: 7 })
  const second = await check(t, { concurrency: 1, maxQueued: 2, onClientAbort: 'skip', requests, closeAfter: 7 })
  // every kind again, retried: apart, so the scenarios above keep their timing
  const retried: RequestSpec[] = requests.map((request) => ({
    kind: request.kind,
    tasks: request.tasks.map((task) => ({ ...task, attempts: 2 as const, backoff: 5 as const }))
  }))
  await check(t, { concurrency: 2, maxQueued: 20, onClientAbort: 'run', requests: retried, closeAfter: 7 })
  const seen = new Set([...first.keys(), ...second.keys()])
  t.same([...seen].sort(), ['cancelled', 'completed', 'dropped', 'failed', 'skipped', 'timeout'],
    'the books balanced with every outcome in play')
})
