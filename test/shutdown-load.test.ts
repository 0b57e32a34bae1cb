import { test } from 'tap'
import { Agent, request } from 'node:http'
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { build, listen } from './helpers'
import type { LogLine } from './helpers'
import { countBy, duplicates, failOnCrash, inBatches } from './reliability-helpers'
import type { DroppedTaskInfo, TaskContext } from '../lib/index'

failOnCrash()

const DRAIN = 150
/** Generous: this asserts behaviour (close does not wait for hung tasks), not speed. */
const MARGIN = 2000

/** Task kinds of the burst, picked by request number. */
const kinds: Record<string, (ctx: TaskContext) => unknown> = {
  quick: () => {},
  short: (ctx) => sleep(5, undefined, { signal: ctx.signal }),
  // honours its signal: rejects once aborted (too late to change its outcome)
  hangs: (ctx) => new Promise((resolve, reject) => {
    ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason), { once: true })
  }),
  // never settles and never looks at its signal
  ignoresSignal: () => new Promise(() => {})
}
/** Mostly quick work; one request in five hangs, so the slots fill up one by one. */
function kindOf (n: number): string {
  return ['quick', 'short', 'hangs', 'short', 'quick', 'quick', 'short', 'ignoresSignal', 'quick', 'short'][n % 10]
}

function taskKey (line: LogLine): string {
  return `${line.reqId} ${line.deferred?.task}`
}

test('close during a burst: every task completes or is cancelled, once, and close ends at drainTimeout', async (t) => {
  const requests = 300
  const { app, logs } = await build(t, { drainTimeout: DRAIN, concurrency: 8, timeout: 0 })
  const started = new Set<string>()
  const aborted: string[] = []
  app.get('/:n', (req, reply) => {
    const kind = kindOf(Number((req.params as { n: string }).n))
    return reply.sendAndContinue('ok', (ctx) => {
      started.add(ctx.request.id)
      ctx.signal.addEventListener('abort', () => { aborted.push(`${ctx.request.id} ${(ctx.signal.reason as Error).name}`) })
      return kinds[kind](ctx)
    }, { name: kind })
  })

  const responses = await Promise.all(Array.from({ length: requests }, (_, n) => app.inject(`/${n}`)))
  t.ok(responses.every((r) => r.statusCode === 200))
  await logs.until(() => logs.closes.length === requests)
  const before = app.sendAndContinue.stats()
  t.equal(before.running, 8, 'the burst fills every slot...')
  t.ok(before.queued > 0, '...and the queue')

  const startedAt = performance.now()
  await app.close()
  const took = performance.now() - startedAt

  t.ok(took >= DRAIN - 1, `close waited for the drain (${Math.round(took)} ms)`)
  t.ok(took < DRAIN + MARGIN, `close resolved within drainTimeout + ${MARGIN} ms (${Math.round(took)} ms)`)

  const outcomes = logs.outcomes
  t.equal(outcomes.length, requests, 'one outcome line per task')
  t.same(duplicates(outcomes, taskKey), [])
  const byOutcome = countBy(outcomes, (l) => l.deferred?.outcome)
  t.same([...byOutcome.keys()].sort(), ['cancelled', 'completed'], 'every task completed or was cancelled')
  t.ok(outcomes.filter((l) => l.deferred?.task === 'hangs' || l.deferred?.task === 'ignoresSignal')
    .every((l) => l.deferred?.outcome === 'cancelled'), 'hung tasks were cancelled')
  t.ok(outcomes.filter((l) => l.deferred?.outcome === 'cancelled').every((l) => l.level === 40))

  const cancelled = byOutcome.get('cancelled') as number
  const cancelledRunning = outcomes.filter((l) => l.deferred?.outcome === 'cancelled' && started.has(l.reqId as string))
  t.equal(cancelledRunning.length, before.running, 'the tasks holding the slots were cancelled while running...')
  t.same(aborted.map((a) => a.split(' ')[0]).sort(), cancelledRunning.map((l) => l.reqId).sort(),
    '...and each had its signal aborted, once')
  t.ok(aborted.every((a) => a.endsWith(' AbortError')))
  t.equal(started.size, requests - cancelled + cancelledRunning.length, 'the queued tasks were cancelled without running')

  const [summary] = logs.lines.filter((l) => l.deferredShutdown !== undefined)
  t.match(summary, {
    level: 40,
    msg: 'deferred work cancelled: the shutdown drain ran out',
    deferredShutdown: { drained: false, drainTimeout: DRAIN, completed: byOutcome.get('completed'), cancelled, dropped: 0, failed: 0 }
  })
  t.match(app.sendAndContinue.stats(), { pending: 0, queued: 0, running: 0, completed: byOutcome.get('completed'), cancelled })
})

test('close while clients are still sending: nothing is lost or counted twice', async (t) => {
  const requests = 200
  const dropped: DroppedTaskInfo[] = []
  const { app, logs } = await build(t, {
    drainTimeout: DRAIN, concurrency: 4, maxQueued: 50, timeout: 0, onDropped (info) { dropped.push(info) }
  })
  const registered: string[] = []
  app.get('/:n', (req, reply) => {
    const kind = kindOf(Number((req.params as { n: string }).n))
    registered.push(`${req.id} ${kind}`)
    return reply.sendAndContinue('ok', kinds[kind], { name: kind })
  })
  const { port } = await listen(app)
  const agent = new Agent({ keepAlive: true, maxSockets: 16 })
  t.teardown(() => agent.destroy())

  let answered = 0
  let closing: Promise<void> | null = null
  let closedIn = 0
  const statuses = await inBatches(requests, 32, (n) => new Promise<number | string>((resolve) => {
    request({ host: '127.0.0.1', port, path: `/${n}`, agent }, (res) => {
      res.resume()
      res.on('end', () => {
        if (++answered === 60) {
          const startedAt = performance.now()
          closing = app.close().then(() => { closedIn = performance.now() - startedAt })
        }
        resolve(res.statusCode as number)
      })
    }).on('error', (err: NodeJS.ErrnoException) => resolve(err.code as string)).end()
  }))
  t.not(closing, null)
  await closing

  t.ok(closedIn < DRAIN + MARGIN, `close resolved within drainTimeout + ${MARGIN} ms (${Math.round(closedIn)} ms)`)
  t.ok(statuses.filter((s) => s === 200).length >= 60)
  t.ok(statuses.every((s) => s === 200 || s === 503 || s === 'ECONNREFUSED' || s === 'ECONNRESET'),
    `later requests are refused, never half-handled: ${[...new Set(statuses)].join(', ')}`)
  t.equal(registered.length, statuses.filter((s) => s === 200).length, 'a task for each request that was answered 200')

  const outcomes = logs.outcomes
  t.equal(outcomes.length, registered.length, 'one outcome line per task registered')
  t.same(duplicates(outcomes, taskKey), [])
  t.same(new Set(outcomes.map(taskKey)), new Set(registered))
  const byOutcome = countBy(outcomes, (l) => l.deferred?.outcome)
  for (const outcome of byOutcome.keys()) {
    t.ok(['completed', 'cancelled', 'dropped'].includes(outcome as string), `outcome ${outcome}`)
  }
  t.equal(dropped.length, byOutcome.get('dropped') ?? 0, 'one onDropped call per dropped task')
  const stats = app.sendAndContinue.stats()
  t.match(stats, { pending: 0, queued: 0, running: 0 })
  for (const [outcome, n] of byOutcome) t.equal(stats[outcome as 'completed'], n, `stats().${outcome} equals the ${outcome} lines`)
  const [summary] = logs.lines.filter((l) => l.deferredShutdown !== undefined)
  t.equal(summary.deferredShutdown?.cancelled, byOutcome.get('cancelled') ?? 0)
  t.equal(summary.deferredShutdown?.completed, byOutcome.get('completed') ?? 0)
})

test('close with only quick work drains it all and says so', async (t) => {
  const { app, logs } = await build(t, { drainTimeout: 5000, concurrency: 2 })
  app.get('/', (req, reply) => reply.sendAndContinue('ok', () => sleep(2)))
  await Promise.all(Array.from({ length: 50 }, () => app.inject('/')))
  const startedAt = performance.now()
  await app.close()
  t.ok(performance.now() - startedAt < 5000, 'close did not wait for drainTimeout')
  t.same(countBy(logs.outcomes, (l) => l.deferred?.outcome), new Map([['completed', 50]]))
  const [summary] = logs.lines.filter((l) => l.deferredShutdown !== undefined)
  t.match(summary, { level: 30, msg: 'deferred work drained', deferredShutdown: { drained: true, completed: 50, cancelled: 0 } })
})
