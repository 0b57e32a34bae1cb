import { test } from 'tap'
import diagnostics from 'node:diagnostics_channel'
import { mock } from 'node:test'
import { setImmediate as nextTurn } from 'node:timers/promises'
import { build, deferred } from './helpers'
import type { LogLine } from './helpers'
import type { DeferOptions, TaskContext, TaskMessage, TaskOutcome } from '../lib/index'

// Retries of in-process tasks: `attempts` and `backoff` on reply.defer() and reply.sendAndContinue().

function fields (lines: LogLine[]): Array<Record<string, unknown>> {
  return lines.map((line) => ({ level: line.level, msg: line.msg, ...line.deferred, err: line.err?.message }))
}

test('fails twice then succeeds: two retrying lines, one completed line with attempt 3', async (t) => {
  const { app, logs } = await build(t)
  const seen: number[] = []
  app.get('/', (req, reply) => reply.sendAndContinue('ok', async function flaky (ctx) {
    seen.push(ctx.attempt)
    if (ctx.attempt < 3) throw new Error(`attempt ${ctx.attempt} failed`)
  }, { attempts: 3, backoff: 5 }))
  await app.inject('/')
  await app.sendAndContinue.drain()
  t.same(seen, [1, 2, 3], 'ctx.attempt counts the attempts from 1')
  t.match(fields(logs.outcomes), [
    { level: 40, msg: 'deferred job attempt failed, retrying', task: 'flaky', outcome: 'retrying', attempt: 1, delayMs: 5, err: 'attempt 1 failed', connection: 'finished', statusCode: 200, route: '/' },
    { level: 40, outcome: 'retrying', attempt: 2, delayMs: 5, err: 'attempt 2 failed' },
    { level: 30, msg: 'deferred task completed', outcome: 'completed', attempt: 3, err: undefined }
  ])
  t.equal(logs.outcomes.length, 3)
  t.notOk('timeoutMs' in (logs.outcomes[0].deferred as object), 'a failed attempt has no timeoutMs')
  const stats = app.sendAndContinue.stats()
  t.match(stats, { completed: 1, failed: 0, retrying: 0, running: 0 }, 'stats count the task once, by its final outcome')
})

test('attempts used up: one failed line, after one retrying line per earlier attempt', async (t) => {
  const { app, logs } = await build(t)
  // a synchronous throw fails an attempt as a rejection does
  app.get('/', (req, reply) => reply.defer(function broken ({ attempt }) { throw new Error(`no ${attempt}`) }, { attempts: 2 }).send('ok'))
  await app.inject('/')
  await app.sendAndContinue.drain()
  t.match(fields(logs.outcomes), [
    { outcome: 'retrying', attempt: 1, delayMs: 0, err: 'no 1' },
    { level: 50, outcome: 'failed', attempt: 2, err: 'no 2' }
  ])
  t.equal(logs.outcomes.length, 2)
  t.match(app.sendAndContinue.stats(), { failed: 1, completed: 0 })
})

test('timed-out attempts are retried, each with a fresh signal; the last one ends timeout', async (t) => {
  const { app, logs } = await build(t, { timeout: 20 })
  const contexts: TaskContext[] = []
  const signals: AbortSignal[] = []
  app.get('/', (req, reply) => reply.sendAndContinue('ok', function slow (ctx) {
    contexts.push(ctx)
    signals.push(ctx.signal)
    // honours its signal: rejects once aborted, after the plugin moved on
    return new Promise((resolve, reject) => {
      ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason), { once: true })
    })
  }, { attempts: 2 }))
  await app.inject('/')
  await app.sendAndContinue.drain()
  await nextTurn()
  t.match(fields(logs.outcomes), [
    { level: 40, outcome: 'retrying', attempt: 1, timeoutMs: 20, delayMs: 0, err: undefined },
    { level: 40, msg: 'deferred task timed out', outcome: 'timeout', attempt: 2, timeoutMs: 20 }
  ])
  t.equal(logs.outcomes.length, 2, 'the rejections after the timeouts log nothing more')
  t.not(signals[0], signals[1], 'each attempt has its own signal')
  t.ok(signals.every((signal) => signal.aborted && (signal.reason as DOMException).name === 'TimeoutError'))
  t.same(contexts.map((ctx) => [ctx.attempt, ctx.signal === signals[contexts.indexOf(ctx)]]), [[1, true], [2, true]],
    'an earlier attempt\'s context keeps its attempt and its signal')
  t.match(app.sendAndContinue.stats(), { timeout: 1, failed: 0 })
})

test('a timed-out attempt that settles later changes nothing; a signal read late is the attempt\'s own', async (t) => {
  const { app, logs } = await build(t, { timeout: 200 })
  const first = deferred()
  const second = deferred()
  const started = [deferred<TaskContext>(), deferred<TaskContext>()]
  app.get('/', (req, reply) => reply.sendAndContinue('ok', function late (ctx) {
    started[ctx.attempt - 1].resolve(ctx)
    // the first attempt ignores its signal
    return ctx.attempt === 1 ? first.promise : second.promise
  }, { attempts: 2 }))
  await app.inject('/')
  const ctx1 = await started[0].promise
  const ctx2 = await started[1].promise
  t.equal(ctx1.signal.aborted, true, 'the first attempt\'s signal, never read before its timeout, reads aborted')
  t.equal(ctx2.signal.aborted, false, 'the running attempt\'s is live')
  first.resolve()
  await nextTurn()
  t.same(logs.outcomes.map((line) => line.deferred?.outcome), ['retrying'], 'the first attempt resolving does not end the task')
  second.resolve()
  await app.sendAndContinue.drain()
  t.match(fields(logs.outcomes), [{ outcome: 'retrying', attempt: 1, timeoutMs: 200 }, { outcome: 'completed', attempt: 2 }])
})

test('a failed attempt\'s signal stays unaborted and its own; non-promise results end attempts at once', async (t) => {
  const { app, logs } = await build(t)
  const contexts: TaskContext[] = []
  const results: unknown[] = [{ then: 'not a function' }]
  app.get('/', (req, reply) => reply.defer(function sync (ctx) {
    contexts.push(ctx)
    const signal = ctx.attempt === 1 ? ctx.signal : null
    if (ctx.attempt < 3) throw new Error('again')
    return signal ?? results[0]
  }, { attempts: 3 }).defer(() => null, { attempts: 2, name: 'returnsNull' }).send('ok'))
  await app.inject('/')
  await app.sendAndContinue.drain()
  t.equal(contexts[0].signal, contexts[0].signal, 'read during the attempt, the same signal after it')
  t.equal(contexts[0].signal.aborted, false)
  t.equal(contexts[1].signal.aborted, false, 'a signal first read after a failed attempt is not aborted')
  t.not(contexts[1].signal, contexts[2].signal)
  t.same(logs.outcomes.map((line) => `${line.deferred?.task}:${line.deferred?.outcome}:${line.deferred?.attempt}`).sort(),
    ['returnsNull:completed:1', 'sync:completed:3', 'sync:retrying:1', 'sync:retrying:2'])
})

test('backoff: a number, fixed and exponential delays, as logged', async (t) => {
  const { app, logs } = await build(t)
  const fail = async (): Promise<void> => { throw new Error('down') }
  app.get('/', (req, reply) => reply
    .defer(fail, { name: 'number', attempts: 4, backoff: 2 })
    .defer(fail, { name: 'fixed', attempts: 4, backoff: { type: 'fixed', delay: 3 } })
    .defer(fail, { name: 'exponential', attempts: 4, backoff: { type: 'exponential', delay: 1 } })
    .defer(fail, { name: 'none', attempts: 2 })
    .send('ok'))
  await app.inject('/')
  await app.sendAndContinue.drain()
  const delays = (name: string): unknown[] => logs.outcomes
    .filter((line) => line.deferred?.task === name && line.deferred.outcome === 'retrying')
    .map((line) => line.deferred?.delayMs)
  t.same(delays('number'), [2, 2, 2])
  t.same(delays('fixed'), [3, 3, 3])
  t.same(delays('exponential'), [1, 2, 4])
  t.same(delays('none'), [0])
  t.equal(logs.outcomes.filter((line) => line.deferred?.outcome === 'failed').length, 4)
})

test('the backoff object is copied: changing it after the call changes nothing', async (t) => {
  const { app, logs } = await build(t)
  const backoff = { type: 'fixed' as const, delay: 1 }
  app.get('/', (req, reply) => {
    reply.defer(async () => { throw new Error('x') }, { attempts: 2, backoff })
    backoff.delay = 1_000_000
    return 'ok'
  })
  await app.inject('/')
  await app.sendAndContinue.drain()
  t.equal(logs.outcomes[0].deferred?.delayMs, 1)
})

test('the slot is released during the backoff: with concurrency 1 another task runs meanwhile', async (t) => {
  const { app, logs } = await build(t, { concurrency: 1 })
  const events: string[] = []
  const inBackoff = deferred<ReturnType<typeof app.sendAndContinue.stats>>()
  app.get('/', (req, reply) => reply.sendAndContinue('ok', [
    async function first ({ attempt }) {
      events.push(`first:${attempt}`)
      if (attempt === 1) throw new Error('once')
    },
    function second () {
      events.push('second')
      inBackoff.resolve(app.sendAndContinue.stats())
    }
  ], { attempts: 2, backoff: 10 }))
  await app.inject('/')
  t.match(await inBackoff.promise, { running: 1, retrying: 1, queued: 0 }, 'stats().retrying counts the task waiting out its backoff')
  await app.sendAndContinue.drain()
  t.same(events, ['first:1', 'second', 'first:2'])
  t.match(app.sendAndContinue.stats(), { retrying: 0, completed: 2 })
  t.equal(logs.outcomes.length, 3)
})

test('a retry is never dropped for a full queue: it goes back in past maxQueued', async (t) => {
  const { app, logs } = await build(t, { concurrency: 1, maxQueued: 1, timeout: 0 })
  // only the backoff's timer is faked: the time limit is 0, and inject() needs no timer
  mock.timers.enable({ apis: ['setTimeout'] })
  t.teardown(() => mock.timers.reset())
  const holdB = deferred()
  const ran: string[] = []
  app.get('/first', (req, reply) => reply.sendAndContinue('ok', [
    async function a ({ attempt }) {
      ran.push(`a:${attempt}`)
      if (attempt === 1) throw new Error('once')
    },
    async function b () {
      ran.push('b')
      await holdB.promise
    }
  ], { attempts: 2, backoff: 1000 }))
  app.get('/second', (req, reply) => reply.sendAndContinue('ok', function c () { ran.push('c') }))
  await app.inject('/first')
  t.same(ran, ['a:1', 'b'], 'b took the slot a freed')
  await app.inject('/second')
  t.match(app.sendAndContinue.stats(), { running: 1, queued: 1, retrying: 1, saturated: true }, 'c filled the queue')
  mock.timers.tick(1000)
  t.match(app.sendAndContinue.stats(), { running: 1, queued: 2, retrying: 0, dropped: 0 }, 'a is queued past maxQueued')
  holdB.resolve()
  await app.sendAndContinue.drain()
  t.same(ran, ['a:1', 'b', 'c', 'a:2'])
  t.equal(logs.outcomes.filter((line) => line.deferred?.outcome === 'dropped').length, 0)
  t.match(fields(logs.outcomes.filter((line) => line.deferred?.task === 'a')), [{ outcome: 'retrying' }, { outcome: 'completed', attempt: 2 }])
})

test('drain() waits for a task in backoff', async (t) => {
  const { app, logs } = await build(t)
  app.get('/', (req, reply) => reply.sendAndContinue('ok', async ({ attempt }) => {
    if (attempt === 1) throw new Error('once')
  }, { attempts: 2, backoff: 30, name: 'patient' }))
  await app.inject('/')
  await logs.until(() => logs.outcomes.length === 1)
  t.match(app.sendAndContinue.stats(), { retrying: 1, running: 0, queued: 0, pending: 0 })
  await app.sendAndContinue.drain()
  t.match(fields(logs.outcomes), [{ outcome: 'retrying' }, { outcome: 'completed', attempt: 2 }])
})

test('app.close() waits for a backoff that fits in drainTimeout', async (t) => {
  const { app, logs } = await build(t, { drainTimeout: 5000 })
  app.get('/', (req, reply) => reply.sendAndContinue('ok', async ({ attempt }) => {
    if (attempt === 1) throw new Error('once')
  }, { attempts: 2, backoff: 20, name: 'closing' }))
  await app.inject('/')
  await app.close()
  t.match(fields(logs.outcomes), [{ outcome: 'retrying' }, { outcome: 'completed', attempt: 2 }])
  t.match(logs.lines.find((line) => line.deferredShutdown !== undefined), { deferredShutdown: { drained: true, completed: 1 } })
})

test('app.close() with a short drainTimeout cancels a task waiting a backoff: one cancelled line', async (t) => {
  const { app, logs } = await build(t, { drainTimeout: 20 })
  let runs = 0
  app.get('/', (req, reply) => reply.sendAndContinue('ok', async function stuck () {
    runs++
    throw new Error('down')
  }, { attempts: 3, backoff: 60_000 }))
  await app.inject('/')
  await logs.until(() => logs.outcomes.length === 1)
  await app.close()
  t.equal(runs, 1, 'the next attempt never ran')
  t.match(fields(logs.outcomes), [
    { outcome: 'retrying', attempt: 1, delayMs: 60_000 },
    { level: 40, outcome: 'cancelled', attempt: 1, durationMs: 0, connection: 'finished' }
  ])
  t.equal(logs.outcomes.length, 2)
  t.ok((logs.outcomes[1].deferred?.queuedMs as number) >= 15, 'its queue time is the backoff it waited')
  t.match(app.sendAndContinue.stats(), { cancelled: 1, retrying: 0, failed: 0 })
  t.match(logs.lines.find((line) => line.deferredShutdown !== undefined), { deferredShutdown: { drained: false, cancelled: 1 } })
})

test('always tasks run once the others ended, after their retries, and see the final outcomes', async (t) => {
  const { app, logs } = await build(t)
  const seen = deferred<{ outcomes: readonly TaskOutcome[] | undefined, attempt: number }>()
  app.get('/', (req, reply) => {
    reply.defer(({ outcomes, attempt }) => { seen.resolve({ outcomes, attempt }) }, { always: true, name: 'report' })
    reply.defer(async function flaky ({ attempt }) {
      if (attempt === 1) throw new Error('once')
    }, { attempts: 2, backoff: 5 })
    return 'ok'
  })
  await app.inject('/')
  const { outcomes, attempt } = await seen.promise
  t.same(outcomes, [{ name: 'flaky', outcome: 'completed' }])
  t.equal(attempt, 1)
  await app.sendAndContinue.drain()
  t.same(logs.outcomes.map((line) => `${line.deferred?.task}:${line.deferred?.outcome}`), ['flaky:retrying', 'flaky:completed', 'report:completed'])
})

test('an always task may retry too', async (t) => {
  const { app, logs } = await build(t)
  app.get('/', (req, reply) => reply.defer(async function last ({ attempt, outcomes }) {
    if (attempt === 1) throw new Error(`seen ${outcomes?.length}`)
  }, { always: true, attempts: 2 }).send('ok'))
  await app.inject('/')
  await app.sendAndContinue.drain()
  t.match(fields(logs.outcomes), [{ outcome: 'retrying', err: 'seen 0' }, { outcome: 'completed', attempt: 2 }])
})

test('a dropped task with attempts: onDropped gets its own function; its line says attempt 1', async (t) => {
  const dropped: unknown[] = []
  const { app, logs } = await build(t, { concurrency: 1, maxQueued: 0, onDropped (info) { dropped.push(info.task) } })
  const hold = deferred()
  function holder (): Promise<void> { return hold.promise }
  function extra (): void {}
  app.get('/', (req, reply) => reply.sendAndContinue('ok', [holder, extra], { attempts: 2 }))
  await app.inject('/')
  t.same(dropped, [extra])
  hold.resolve()
  await app.sendAndContinue.drain()
  t.match(fields(logs.outcomes), [{ task: 'extra', outcome: 'dropped', attempt: 1 }, { task: 'holder', outcome: 'completed', attempt: 1 }])
})

test('with onClientAbort: skip, a skipped task with attempts never runs', async (t) => {
  const { app, logs } = await build(t, { onClientAbort: 'skip' })
  let ran = false
  app.get('/', async (req, reply) => {
    reply.raw.destroy()
    reply.defer(() => { ran = true }, { attempts: 3 })
    return reply
  })
  await app.inject('/').catch(() => {})
  await app.sendAndContinue.drain()
  t.equal(ran, false)
  t.match(fields(logs.outcomes), [{ outcome: 'skipped', attempt: 1 }])
})

test('the task channel publishes every attempt with its number; a task cancelled in its backoff goes to the outcome channel', async (t) => {
  const { app } = await build(t, { drainTimeout: 10 })
  const events: string[] = []
  const handlers = {
    start (message: TaskMessage) { events.push(`start:${message.attempt}`) },
    end () {},
    asyncStart () {},
    asyncEnd (message: TaskMessage) { events.push(`asyncEnd:${message.attempt}:${message.outcome}`) },
    error (message: TaskMessage) { events.push(`error:${message.attempt}`) }
  }
  const onOutcome = (message: unknown): void => {
    const { attempt, outcome } = message as TaskMessage
    events.push(`outcome:${attempt}:${outcome}`)
  }
  const channel = diagnostics.tracingChannel<unknown, TaskMessage>('fastify-send-and-continue:task')
  channel.subscribe(handlers)
  diagnostics.subscribe('fastify-send-and-continue:task:outcome', onOutcome)
  t.teardown(() => {
    channel.unsubscribe(handlers)
    diagnostics.unsubscribe('fastify-send-and-continue:task:outcome', onOutcome)
  })
  app.get('/', (req, reply) => reply.sendAndContinue('ok', async () => { throw new Error('down') }, { attempts: 3, backoff: 60_000 }))
  await app.inject('/')
  await new Promise((resolve) => setImmediate(resolve))
  await app.close()
  t.same(events, ['start:1', 'error:1', 'asyncEnd:1:failed', 'outcome:1:cancelled'])
})

test('bad attempts and backoff values: FST_SAC_INVALID_OPTION saying what was expected and what was given', async (t) => {
  const { app } = await build(t)
  const cases: Array<[DeferOptions, RegExp]> = [
    [{ attempts: 0 }, /attempts should be a whole number of at least 1, instead got 0/],
    [{ attempts: 1.5 }, /attempts should be a whole number of at least 1, instead got 1\.5/],
    [{ attempts: '2' as unknown as number }, /attempts should be a whole number of at least 1, instead got '2'/],
    [{ attempts: Infinity }, /attempts should be a whole number of at least 1, instead got Infinity/],
    [{ backoff: -1 }, /backoff should be a whole number of milliseconds from 0 to 2147483647, or \{ type: 'fixed' \| 'exponential', delay \}, instead got -1/],
    [{ backoff: { type: 'linear', delay: 1 } as never }, /backoff should be .*, instead got/],
    [{ backoff: { type: 'fixed' } as never }, /backoff should be/],
    [{ backoff: { type: 'fixed', delay: 1, jitter: 1 } as never }, /backoff should be/]
  ]
  const errors: Array<{ code?: string, message: string }> = []
  app.get('/:i', (req, reply) => {
    const [options] = cases[Number((req.params as { i: string }).i)]
    try {
      reply.defer(() => {}, options)
    } catch (err) {
      errors.push(err as Error & { code: string })
    }
    try {
      reply.sendAndContinue('ok', () => {}, options)
    } catch (err) {
      errors.push(err as Error & { code: string })
      return 'refused'
    }
    return reply
  })
  for (let i = 0; i < cases.length; i++) await app.inject(`/${i}`)
  t.equal(errors.length, cases.length * 2)
  cases.forEach(([, expected], i) => {
    for (const [err, where] of [[errors[2 * i], 'reply.defer()'], [errors[2 * i + 1], 'reply.sendAndContinue()']] as const) {
      t.equal(err.code, 'FST_SAC_INVALID_OPTION')
      t.match(err.message, expected)
      t.match(err.message, where)
    }
  })
  t.same(app.sendAndContinue.stats().completed, 0, 'nothing was registered')
})

test('tasks without attempts, or with attempts: 1, log exactly as before', async (t) => {
  const { app, logs } = await build(t)
  const attempts: number[] = []
  app.get('/', (req, reply) => reply
    .defer(function plain ({ attempt }) { attempts.push(attempt) })
    .defer(function once ({ attempt }) { attempts.push(attempt); throw new Error('no') }, { attempts: 1, backoff: 100 })
    .send('ok'))
  await app.inject('/')
  await app.sendAndContinue.drain()
  t.same(attempts, [1, 1], 'ctx.attempt is 1 for every task')
  const keys = ['task', 'outcome', 'connection', 'method', 'route', 'statusCode', 'durationMs', 'queuedMs']
  t.same(logs.outcomes.map((line) => Object.keys(line.deferred as object)), [keys, keys])
  t.same(logs.outcomes.map((line) => line.deferred?.outcome), ['completed', 'failed'])
})

test('an attempt\'s context exposes the documented fields and nothing more', async (t) => {
  const { app } = await build(t)
  const seen = deferred<Record<string, unknown>>()
  app.get('/', (req, reply) => reply.sendAndContinue('ok', (ctx) => {
    if (ctx.attempt === 1) throw new Error('once')
    const proto = Object.getPrototypeOf(ctx)
    const names = (object: object): string[] => Object.getOwnPropertyNames(object).filter((key) => key !== 'constructor').sort()
    seen.resolve({ own: Reflect.ownKeys(ctx), proto: names(proto), parent: names(Object.getPrototypeOf(proto)), attempt: ctx.attempt, name: ctx.name })
  }, { attempts: 2, name: 'inspects' }))
  await app.inject('/')
  t.same(await seen.promise, {
    own: [],
    proto: ['attempt', 'signal'],
    parent: ['attempt', 'connection', 'log', 'name', 'outcomes', 'request', 'signal', 'statusCode'],
    attempt: 2,
    name: 'inspects'
  })
})
