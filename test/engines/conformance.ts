import { test } from 'tap'
import type { Test } from 'tap'
import Fastify from 'fastify'
import type { FastifyInstance } from 'fastify'
import pino from 'pino'
import sendAndContinue, { defineTask } from '../../lib/index'
import type { DurableTask, DurableTaskContext, DurableWorker, EngineName, SendAndContinueOptions, WorkerStats } from '../../lib/index'
import { Summary } from '../../lib/report/summary'
import { OUTCOMES } from '../../lib/types'
import { LogCollector } from '../helpers'
import type { LogLine } from '../helpers'
import { buildTraced, parentOf, spanNamed, spans } from '../tracing-helpers'

// One suite every engine passes unchanged (abstract-level's idea): a new engine is done when it
// passes this, not when it looks done. Each engine's test file gives a harness that starts its
// store for real (a redis-server, a file in a temp dir, nothing) and, where the engine's jobs run
// in other processes, a worker.

export interface EngineSetup {
  /** The `queue` option without `tasks`. */
  queue: Record<string, unknown>
  /** Starts a worker on the same store (engines whose jobs the app does not run itself). */
  worker?: (tasks: Array<DurableTask<any>>, logger: pino.Logger, concurrency: number) => Promise<DurableWorker>
}

export interface EngineHarness {
  engine: EngineName
  /** Starts what the engine needs for one test, stopped at the test's teardown. */
  setup: (t: Test, options: { concurrency: number }) => Promise<EngineSetup>
}

interface Started {
  app: FastifyInstance
  logs: LogCollector
  /** The counts of the process that ran the jobs (the app, or the worker). */
  stats: () => Pick<WorkerStats, typeof OUTCOMES[number]>
}

const FINAL = new Set<string>(OUTCOMES)

export function finals (lines: LogLine[]): LogLine[] {
  return lines.filter((line) => FINAL.has(line.deferred?.outcome as string))
}

function byOutcome (lines: LogLine[], outcome: string): LogLine[] {
  return lines.filter((line) => line.deferred?.outcome === outcome)
}

export function conformance (harness: EngineHarness): void {
  const { engine } = harness

  async function start (t: Test, tasks: Array<DurableTask<any>>, options: { concurrency?: number, plugin?: SendAndContinueOptions, app?: FastifyInstance, logs?: LogCollector } = {}): Promise<Started> {
    const concurrency = options.concurrency ?? 10
    const setup = await harness.setup(t, { concurrency })
    const logs = options.logs ?? new LogCollector()
    let app = options.app
    if (app === undefined) {
      app = Fastify({ logger: { level: 'info', stream: logs } })
      t.teardown(() => (app as FastifyInstance).close())
    }
    await app.register(sendAndContinue, { concurrency, ...options.plugin, queue: { ...setup.queue, tasks } as never })
    if (setup.worker === undefined) {
      const ready = app
      return { app, logs, stats: () => ready.sendAndContinue.stats() }
    }
    const worker = await setup.worker(tasks, pino({}, logs), concurrency)
    t.teardown(() => worker.close())
    return { app, logs, stats: () => worker.stats() }
  }

  async function settled (logs: LogCollector, count: number): Promise<LogLine[]> {
    await logs.until((lines) => finals(lines).length >= count)
    return finals(logs.lines)
  }

  test(`${engine}: the job runs after the answer, with its data and the documented ctx`, async (t) => {
    let seen: { data: unknown, ctx: Record<string, unknown> } | null = null
    const notify = defineTask('notify', (data, ctx: DurableTaskContext) => {
      seen = {
        data,
        ctx: {
          signal: ctx.signal instanceof AbortSignal && !ctx.signal.aborted,
          log: typeof ctx.log.info,
          request: ctx.request,
          name: ctx.name,
          jobId: ctx.jobId,
          attempt: ctx.attempt,
          connection: ctx.connection,
          statusCode: ctx.statusCode
        }
      }
      ctx.log.info('from the task')
    })
    const { app, logs, stats } = await start(t, [notify])
    app.post('/orders/:id', (request, reply) => reply.code(201).sendAndContinue({ ok: true }, notify.with({ order: 7, tags: ['a'] })))
    const response = await app.inject({ method: 'POST', url: '/orders/7?x=1' })
    t.equal(response.statusCode, 201)
    t.same(response.json(), { ok: true })
    const [line] = await settled(logs, 1)
    t.same(seen, {
      data: { order: 7, tags: ['a'] },
      ctx: {
        signal: true,
        log: 'function',
        request: { id: 'req-1', method: 'POST', url: '/orders/7?x=1', routeUrl: '/orders/:id' },
        name: 'notify',
        jobId: line.deferred?.jobId,
        attempt: 1,
        connection: null,
        statusCode: 201
      }
    })
    t.match(line, { reqId: 'req-1', deferred: { task: 'notify', outcome: 'completed', method: 'POST', route: '/orders/:id', statusCode: 201, attempt: 1, queue: 'fastify-send-and-continue', jobId: /^notify~[0-9a-f-]{36}$/ } })
    const enqueued = byOutcome(logs.lines, 'enqueued')
    t.equal(enqueued.length, 1, 'one enqueued line')
    t.equal(enqueued[0].deferred?.jobId, line.deferred?.jobId)
    t.ok(logs.lines.some((l) => l.msg === 'from the task' && l.reqId === 'req-1'), 'ctx.log is bound to the request id')
    t.equal(stats().completed, 1)
  })

  test(`${engine}: a job that fails twice then succeeds with attempts: 3 logs two retrying lines and one completed`, async (t) => {
    const attempts: number[] = []
    const flaky = defineTask('flaky', (data, { attempt }) => {
      attempts.push(attempt)
      if (attempt < 3) throw new Error(`attempt ${attempt} fails`)
    }, { attempts: 3, backoff: { type: 'exponential', delay: 20 } })
    const doomed = defineTask('doomed', () => { throw new Error('never works') }, { attempts: 2, backoff: 10 })
    const { app, logs, stats } = await start(t, [flaky, doomed])
    app.post('/flaky', (request, reply) => reply.sendAndContinue('ok', flaky.with(null)))
    app.post('/doomed', (request, reply) => reply.sendAndContinue('ok', doomed.with(null)))
    await app.inject({ method: 'POST', url: '/flaky' })
    await app.inject({ method: 'POST', url: '/doomed' })
    const lines = await settled(logs, 2)
    t.same(attempts, [1, 2, 3])
    const retrying = byOutcome(logs.lines, 'retrying')
    t.same(retrying.filter((l) => l.deferred?.task === 'flaky').map((l) => [l.deferred?.attempt, l.deferred?.delayMs, l.err?.message, l.level]),
      [[1, 20, 'attempt 1 fails', 40], [2, 40, 'attempt 2 fails', 40]])
    t.same(retrying.filter((l) => l.deferred?.task === 'doomed').map((l) => [l.deferred?.attempt, l.deferred?.delayMs]), [[1, 10]])
    t.match(lines.find((l) => l.deferred?.task === 'flaky'), { deferred: { outcome: 'completed', attempt: 3 } })
    t.match(lines.find((l) => l.deferred?.task === 'doomed'), { level: 50, deferred: { outcome: 'failed', attempt: 2 }, err: { message: 'never works' } })
    t.equal(lines.length, 2, 'one final line per job')
    t.match(stats(), { completed: 1, failed: 1 })
  })

  test(`${engine}: each attempt gets the data as stored when the response went out: a change made after with() as JSON makes it, none an earlier attempt made`, async (t) => {
    const seen: unknown[] = []
    const edit = defineTask<{ n: number, list: string[], at?: string }>('edit', (data, { attempt }) => {
      seen.push(JSON.parse(JSON.stringify(data)))
      data.n = 99
      data.list.push(`attempt ${attempt}`)
      if (attempt === 1) throw new Error('first attempt fails')
    }, { attempts: 2, backoff: 10 })
    const big = defineTask<{ n: number }>('big', () => {})
    const { app, logs } = await start(t, [edit, big])
    app.post('/', (request, reply) => {
      const data: { n: number, list: string[], at?: unknown } = { n: 1, list: [] }
      reply.defer(edit.with(data as never))
      // after with(), before the response: stored as JSON makes it
      data.at = new Date(0)
      return reply.send('ok')
    })
    app.post('/big', (request, reply) => {
      const data = { n: 1 }
      reply.defer(big.with(data))
      data.n = 10n as never
      return reply.send('ok')
    })
    t.equal((await app.inject({ method: 'POST', url: '/' })).statusCode, 200)
    await settled(logs, 1)
    const stored = { n: 1, list: [], at: '1970-01-01T00:00:00.000Z' }
    t.same(seen, [stored, stored], 'the second attempt saw none of the first one\'s changes')
    // JSON refuses it now: the response fails as for a store that fails
    t.equal((await app.inject({ method: 'POST', url: '/big' })).statusCode, 503)
    t.match(byOutcome(logs.lines, 'dropped'), [{ deferred: { task: 'big', reason: 'enqueue-failed', statusCode: 503 }, err: { message: /BigInt/ } }])
  })

  test(`${engine}: whatever a task throws, its job ends with one failed line and runs once; ctx.request cannot be changed`, async (t) => {
    const revoked = Proxy.revocable(new Error('revoked'), {})
    revoked.revoke()
    const numbered = new Error('x')
    ;(numbered as unknown as { message: number }).message = 42
    class Getter extends Error {
      override get message (): string { throw new Error('message getter') }
    }
    const thrown: Record<string, () => unknown> = {
      revokedThrown: () => { throw revoked.proxy },
      revokedRejected: () => Promise.reject(revoked.proxy),
      trappedPrototype: () => { throw new Proxy(new Error('p'), { getPrototypeOf () { throw new Error('trap') } }) },
      // not a Proxy itself: its prototype chain is, and reading it throws
      revokedPrototype: () => { throw Object.create(revoked.proxy) },
      numberMessage: () => { throw numbered },
      getterMessage: () => { throw new Getter() }
    }
    const runs: string[] = []
    const tasks = Object.entries(thrown).map(([name, fn]) => defineTask(name, () => {
      runs.push(name)
      return fn()
    }))
    const forge = defineTask('forge', (data, ctx) => {
      runs.push('forge')
      try {
        (ctx.request as { id: string }).id = 'forged'
      } catch {}
    })
    const { app, logs, stats } = await start(t, [...tasks, forge])
    app.post('/', (request, reply) => reply.sendAndContinue('ok', [...tasks.map((task) => task.with(null)), forge.with(null)]))
    t.equal((await app.inject({ method: 'POST', url: '/' })).statusCode, 200)
    const lines = await settled(logs, tasks.length + 1)
    // a job run again (its lease never settled) would add a run and a line
    await new Promise((resolve) => setTimeout(resolve, 100))
    t.same(runs.sort(), [...Object.keys(thrown), 'forge'].sort(), 'each ran once')
    t.equal(finals(logs.lines).length, tasks.length + 1, 'one final line each')
    for (const name of Object.keys(thrown)) {
      t.match(lines.find((line) => line.deferred?.task === name), { level: 50, reqId: 'req-1', deferred: { outcome: 'failed', attempt: 1 } }, name)
    }
    t.match(lines.find((line) => line.deferred?.task === 'forge'), { reqId: 'req-1', deferred: { outcome: 'completed', method: 'POST' } })
    t.match(stats(), { failed: tasks.length, completed: 1 })
  })

  test(`${engine}: an attempt past its timeout is aborted and ends as timeout`, async (t) => {
    let reason: unknown
    const slow = defineTask('slow', async (data, { signal }) => {
      await new Promise((resolve) => signal.addEventListener('abort', resolve))
      reason = signal.reason
    }, { timeout: 50 })
    const { app, logs, stats } = await start(t, [slow])
    app.post('/', (request, reply) => reply.sendAndContinue('ok', slow.with(null)))
    await app.inject({ method: 'POST', url: '/' })
    const [line] = await settled(logs, 1)
    t.match(line, { level: 40, deferred: { task: 'slow', outcome: 'timeout', timeoutMs: 50, attempt: 1 } })
    t.equal((reason as DOMException).name, 'TimeoutError')
    t.equal(stats().timeout, 1)
  })

  test(`${engine}: a job with the key of one already stored is not run again`, async (t) => {
    const runs: string[] = []
    const welcome = defineTask<{ n: number }>('welcome', (data) => { runs.push(`welcome ${data.n}`) })
    const sentinel = defineTask('sentinel', () => { runs.push('sentinel') })
    // one job at a time, in order: had the second welcome been added, it would run before the sentinel
    const { app, logs } = await start(t, [welcome, sentinel], { concurrency: 1 })
    app.post('/:n', (request, reply) => {
      const n = Number((request.params as { n: string }).n)
      return reply.sendAndContinue('ok', n === 0 ? sentinel.with(null) : welcome.with({ n }, { key: 'user-1' }))
    })
    await app.inject({ method: 'POST', url: '/1' })
    await settled(logs, 1)
    await app.inject({ method: 'POST', url: '/2' })
    await app.inject({ method: 'POST', url: '/0' })
    await settled(logs, 2)
    t.same(runs, ['welcome 1', 'sentinel'])
    t.same(finals(logs.lines).map((l) => l.deferred?.task), ['welcome', 'sentinel'])
    t.equal(finals(logs.lines)[0].deferred?.jobId, 'welcome~user-1', 'the job id is made from the task and the key')
  })

  test(`${engine}: a delayed job does not run before its delay`, async (t) => {
    let ranAt = 0
    const later = defineTask('later', () => { ranAt = Date.now() })
    const { app, logs } = await start(t, [later])
    app.post('/', (request, reply) => reply.sendAndContinue('ok', later.with(null, { delay: 300 })))
    const sentAt = Date.now()
    await app.inject({ method: 'POST', url: '/' })
    await settled(logs, 1)
    t.ok(ranAt - sentAt >= 290, `ran ${ranAt - sentAt} ms after the request, delay 300 ms`)
  })

  test(`${engine}: JSON-unsafe data and a task the queue was not given are refused at registration`, async (t) => {
    const known = defineTask('known', () => {})
    const stranger = defineTask('stranger', () => {})
    const { app, logs } = await start(t, [known])
    app.post('/date', (request, reply) => reply.sendAndContinue('ok', known.with({ at: new Date(0) } as never)))
    app.post('/stranger', (request, reply) => reply.sendAndContinue('ok', stranger.with(null)))
    const date = await app.inject({ method: 'POST', url: '/date' })
    t.equal(date.statusCode, 500)
    t.match(date.json(), { code: 'FST_SAC_INVALID_JOB_DATA', message: /data\.at should be a JSON value .* instead got 1970-01-01T00:00:00\.000Z/ })
    const unknown = await app.inject({ method: 'POST', url: '/stranger' })
    t.equal(unknown.statusCode, 500)
    t.match(unknown.json(), { code: 'FST_SAC_UNKNOWN_TASK', message: "reply.sendAndContinue(): the task should be one of the tasks given to the queue (known), instead got 'stranger'" })
    t.equal(byOutcome(logs.lines, 'enqueued').length, 0, 'nothing was enqueued')
  })

  test(`${engine}: the lines, the stats and the report agree`, async (t) => {
    const tasks = [
      defineTask('ok', () => {}),
      defineTask('bad', () => { throw new Error('bad') }),
      defineTask('late', (data, { signal }) => new Promise((resolve) => signal.addEventListener('abort', resolve)), { timeout: 30 })
    ]
    const { app, logs, stats } = await start(t, tasks)
    app.post('/:task', (request, reply) => {
      const task = tasks.find((one) => one.name === (request.params as { task: string }).task) as DurableTask
      return reply.code(202).sendAndContinue('ok', task.with(null))
    })
    const plan = ['ok', 'ok', 'bad', 'late', 'ok', 'bad']
    for (const name of plan) await app.inject({ method: 'POST', url: `/${name}` })
    const lines = await settled(logs, plan.length)
    const summary = new Summary()
    for (const line of logs.lines) summary.add(JSON.stringify(line))
    const report = summary.result()
    const counted = { completed: 3, failed: 2, timeout: 1, skipped: 0, cancelled: 0, dropped: 0 }
    t.same(report.totals.outcomes, counted, 'the report counts each job once by its final line')
    t.same(Object.fromEntries(OUTCOMES.map((outcome) => [outcome, stats()[outcome]])), counted, 'stats() counts the same')
    t.same(Object.fromEntries(OUTCOMES.map((outcome) => [outcome, byOutcome(lines, outcome).length])), counted, 'one final line per job')
  })

  test(`${engine}: each attempt's span joins the request's trace, child of the span active at registration`, async (t) => {
    const traced = defineTask('traced', () => {})
    const setup = await harness.setup(t, { concurrency: 10 })
    const built = await buildTraced(t, { queue: { ...setup.queue, tasks: [traced] } as never })
    if (setup.worker !== undefined) {
      const worker = await setup.worker([traced], pino({}, built.logs), 10)
      t.teardown(() => worker.close())
    }
    built.app.post('/orders', (request, reply) => reply.code(202).sendAndContinue({ ok: true }, traced.with({ order: 42 })))
    t.equal((await built.app.inject({ method: 'POST', url: '/orders' })).statusCode, 202)
    await built.logs.until((lines) => finals(lines).length >= 1)
    const handler = spans().find((span) => span.name.startsWith('handler'))
    const attempt = spanNamed('deferred traced')
    t.equal(attempt.spanContext().traceId, spanNamed('request').spanContext().traceId, "the attempt's span is in the request's trace")
    t.equal(parentOf(attempt), handler?.spanContext().spanId, 'its parent is the span active at registration')
    t.match(attempt.attributes, { 'deferred.task': 'traced', 'deferred.attempt': 1, 'deferred.outcome': 'completed', 'http.route': '/orders' })
  })
}
