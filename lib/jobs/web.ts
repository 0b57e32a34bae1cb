import { randomUUID } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import type { FastifyBaseLogger, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { describe, FST_SAC_INVALID_OPTION, FST_SAC_NO_QUEUE, FST_SAC_UNKNOWN_TASK } from '../errors'
import { isLevelEnabled, logFallback, logTask, round, TASK_LEVELS } from '../log'
import type { TaskLine } from '../log'
import { injectTraceContext, traceSendEnded, traceSendStarted } from '../tracing'
import type { Destination, TaskSpan } from '../tracing'
import type { EngineMetrics, Meters, Observe } from '../metrics'
import type { ConnectionStatus, DeferredTask, RequestSnapshot, TaskContext } from '../types'
import type { Engine, JobRecord } from '../engines/types'
import { zeroOutcomes } from '../types'
import type { Outcome } from '../types'
import { startEngine } from './engines'
import type { AppBounds, AppWorker } from './engines'
import { resolveQueueOptions } from './options'
import type { QueueSettings } from './options'
import { isDurableJob } from './types'
import type { DurableJob, DurableStats, DurableTask, DurableTaskContext, JobPayload } from './types'

// The web side of durable work: jobs registered during a request are collected and added to the
// queue in one batch from an onSend hook, so the headers (and the 2xx) go out only once Redis
// has them. Jobs registered after that point are added at once, without holding anything up.

/** What the request's deferred work tells about it (the core's Work has these). */
export interface RequestInfo {
  readonly request: RequestSnapshot
  readonly route: string
  readonly log: FastifyBaseLogger
}

/** Runs a function as an in-process task of `reply`'s request (the core's registration). */
export type RunLocal = (reply: FastifyReply, task: DeferredTask, name: string, timeout: number) => void

const kPending = Symbol('fastify-send-and-continue.durable-jobs')

// between tries to cancel a given-up enqueue while the store does not answer
const CANCEL_RETRY_MS = 500

/** A job taken from a request, with the trace context active when it was registered. */
interface Taken {
  readonly job: DurableJob
  /** What `injectTraceContext()` gave at registration; the worker's span joins that trace. */
  readonly trace: Record<string, string> | undefined
}

interface Pending {
  info: RequestInfo
  jobs: Taken[]
  /** Set once the onSend hook took the jobs: later ones are added at once. */
  flushed: boolean
  /** Durable jobs registered on the request, for its close line (`jobs`). */
  count: number
}

type OnSendDone = (err: Error | null, payload: unknown) => void

type ReplyWithJobs = FastifyReply & { [kPending]: Pending | null }

const SERVICE_UNAVAILABLE = JSON.stringify({
  statusCode: 503,
  error: 'Service Unavailable',
  message: 'deferred work could not be enqueued, retry later'
})

// What is known of the response when a job is enqueued: usually nothing yet (null), as the
// usual enqueue happens before the headers go out; a job registered later sees how it ended.
function connectionOf (reply: FastifyReply): ConnectionStatus | null {
  const raw = reply.raw
  if (raw.writableEnded) return 'finished'
  return raw.destroyed ? 'aborted' : null
}

/** Runs a durable job's handler as an in-process task (`onEnqueueError: 'run-local'`). */
function localTask (job: DurableJob): DeferredTask {
  return function runLocal (ctx: TaskContext): unknown {
    return job.task.handler(job.data, new LocalContext(job, ctx))
  }
}

/** A durable job's context over the in-process task's: a class for one shape (see DurableContext, lib/jobs/attempt.ts). */
class LocalContext implements DurableTaskContext {
  readonly log: FastifyBaseLogger
  readonly request: DurableTaskContext['request']
  readonly name: string
  readonly jobId: string
  readonly attempt = 1
  readonly connection: DurableTaskContext['connection']
  readonly statusCode: number
  readonly #ctx: TaskContext

  constructor (job: DurableJob, ctx: TaskContext) {
    this.log = ctx.log
    this.request = ctx.request
    this.name = job.task.name
    this.jobId = job.jobId
    this.connection = ctx.connection
    this.statusCode = ctx.statusCode
    this.#ctx = ctx
  }

  get signal (): AbortSignal { return this.#ctx.signal }
}

export class DurableWeb {
  readonly settings: QueueSettings
  readonly #engine: Engine
  /** The jobs this process runs itself (memory; sqlite with `work: true`). */
  readonly worker: AppWorker | null
  readonly #retryAfter: string
  readonly #runLocal: RunLocal
  readonly #tracing: boolean
  // the enqueue spans' messaging.system and messaging.destination.name
  readonly #destination: Destination
  /** The engine's metrics (lib/metrics.ts); `null` when nothing records them. */
  readonly #metrics: EngineMetrics | null
  // enqueues the store has not answered yet, and what waits for them all to be answered
  #inFlight = 0
  #settleWaiters: Array<() => void> = []
  #enqueued = 0
  #enqueueing = 0
  #enqueueFailed = 0
  // final lines written here: jobs the memory engine had no room for, jobs not enqueued
  #dropped = 0
  #closed = false
  // responses whose jobs wait for their onSend (or their close): what app.close() looks at
  readonly #waiting = new Set<FastifyReply>()
  // enqueues given up on whose cancellation the store has not confirmed yet: token → jobs
  readonly #uncertain = new Map<string, { jobs: number, statusCode: number }>()
  #retryTimer: NodeJS.Timeout | null = null

  constructor (settings: QueueSettings, engine: Engine, worker: AppWorker | null, retryAfter: number, runLocal: RunLocal, tracing: boolean, metrics: EngineMetrics | null = null) {
    this.settings = settings
    this.#engine = engine
    this.worker = worker
    this.#retryAfter = String(retryAfter)
    this.#runLocal = runLocal
    this.#tracing = tracing
    this.#destination = { system: engine.name, name: engine.queue }
    this.#metrics = metrics
  }

  /** Validates the `queue` option, starts its engine (checks the store), and adds the onSend hook that enqueues. */
  static async register (fastify: FastifyInstance, options: object, retryAfter: number, runLocal: RunLocal, tracing: boolean, bounds: AppBounds, meters: Meters | null): Promise<DurableWeb> {
    const settings = resolveQueueOptions(options)
    const metrics = meters === null ? null : meters.engine(settings.engine)
    const { engine, worker } = await startEngine(settings, bounds, fastify.log, tracing, metrics)
    const durable = new DurableWeb(settings, engine, worker, retryAfter, runLocal, tracing, metrics)
    fastify.decorateReply(kPending, null)
    // Returns the enqueue's promise when the response waits for one (Fastify takes the payload it
    // resolves to), so a tracing instrumentation's span of this hook lasts as long as the wait.
    fastify.addHook('onSend', function enqueueDurableJobs (request: FastifyRequest, reply: FastifyReply, payload: unknown, done: OnSendDone) {
      const pending = (reply as ReplyWithJobs)[kPending]
      if (pending === null || pending.flushed) return done(null, payload)
      const answer = durable.#flush(reply, pending, payload)
      // the memory engine stored the jobs already: the response goes on in this turn
      if (answer instanceof Promise) return answer
      done(null, answer)
    })
    return durable
  }

  /** Takes the request's durable jobs; returns the rest (functions), which stay in-process. */
  take (reply: FastifyReply, info: RequestInfo, tasks: ReadonlyArray<DeferredTask | DurableJob>, where: string): DeferredTask[] {
    const jobs: Taken[] = []
    const local: DeferredTask[] = []
    // read here, at registration: the request's span is active now, not when the jobs are added
    const trace = this.#tracing ? injectTraceContext() : undefined
    for (const task of tasks) {
      if (isDurableJob(task)) {
        this.#assertKnown(where, task.task)
        jobs.push({ job: task, trace })
      } else {
        local.push(task)
      }
    }
    const pending = (reply as ReplyWithJobs)[kPending]
    if (pending !== null) pending.count += jobs.length
    if (pending === null && reply.sent) {
      // after the headers: added at once; counted for the close line should the response still be open
      ;(reply as ReplyWithJobs)[kPending] = { info, jobs: [], flushed: true, count: jobs.length }
      this.#enqueueNow(reply, info, jobs)
    } else if (pending === null) {
      // added by the onSend hook, or by closed() when the response is never sent
      ;(reply as ReplyWithJobs)[kPending] = { info, jobs, flushed: false, count: jobs.length }
      this.#waiting.add(reply)
    } else if (pending !== null && !pending.flushed) {
      pending.jobs.push(...jobs)
    } else {
      this.#enqueueNow(reply, info, jobs)
    }
    return local
  }

  /**
   * The response closed (the core follows it: lib/connection.ts). onSend never runs for a response
   * never sent (the client left, a hook hijacked it): its jobs are added now, as if registered late.
   */
  readonly closed = (reply: FastifyReply): void => {
    const pending = (reply as ReplyWithJobs)[kPending]
    if (pending === null || pending.flushed) return
    pending.flushed = true
    this.#waiting.delete(reply)
    this.#enqueueNow(reply, pending.info, pending.jobs)
  }

  #assertKnown (where: string, task: DurableTask): void {
    if (this.settings.tasks.get(task.name) !== task) {
      throw new FST_SAC_UNKNOWN_TASK(where, [...this.settings.tasks.keys()].join(', '), describe(task.name))
    }
  }

  #records (reply: FastifyReply, info: RequestInfo, jobs: Taken[]): JobRecord[] {
    const connection = connectionOf(reply)
    const statusCode = reply.statusCode
    const enqueuedAt = Date.now()
    // only engines that can store a job after failing its enqueue need one
    const token = this.#engine.cancel === undefined ? undefined : randomUUID()
    return jobs.map(({ job, trace }) => {
      const payload: JobPayload = { data: job.data, request: info.request, route: info.route, connection, statusCode, enqueuedAt }
      if (token !== undefined) payload.token = token
      if (trace !== undefined) payload.trace = trace
      return { task: job.task.name, jobId: job.jobId, keyed: job.keyed, attempts: job.task.attempts, backoff: job.task.backoff, delay: job.delay, payload }
    })
  }

  /**
   * Enqueues the jobs the response waits for; gives the payload to send, or a promise of it when
   * the store answers later.
   */
  #flush (reply: FastifyReply, pending: Pending, payload: unknown): unknown {
    pending.flushed = true
    this.#waiting.delete(reply)
    const records = this.#records(reply, pending.info, pending.jobs)
    const started = this.#metrics === null ? 0 : performance.now()
    const answer = (err: unknown): unknown => {
      // METRICS: how long the enqueue held the response, taken or not
      if (this.#metrics !== null) this.#metrics.route(pending.info.request.routeUrl).enqueueHeld(performance.now() - started)
      if (err === null) return payload
      this.#giveUp(records, this.settings.onEnqueueError === 'run-local' ? reply.statusCode : 503)
      if (this.settings.onEnqueueError === 'run-local') {
        this.#fallBack(reply, pending.info, pending.jobs, records, err)
        return payload
      }
      // the line carries the status the client gets
      this.#drop(pending.info, records, 'enqueue-failed', err, 503)
      // the answer becomes a 503: what the handler had prepared is not sent
      const stream = payload as { destroy?: () => void } | null
      if (typeof stream?.destroy === 'function') stream.destroy()
      reply.removeHeader('content-length')
      reply.removeHeader('content-encoding')
      reply.code(503).header('retry-after', this.#retryAfter).header('content-type', 'application/json; charset=utf-8')
      return SERVICE_UNAVAILABLE
    }
    const enqueued = this.#enqueue(pending.info, records, true)
    if (!(enqueued instanceof Promise)) return answer(enqueued)
    // what the enqueue's own bookkeeping threw (a logger or an SDK that throws) is the response's
    return this.#afterStore(enqueued, answer, rethrow)
  }

  // Registered after the headers went out: nothing waits for it, a failure is only logged.
  #enqueueNow (reply: FastifyReply, info: RequestInfo, jobs: Taken[]): void {
    const records = this.#records(reply, info, jobs)
    const ended = (err: unknown): void => {
      if (err === null) return
      this.#giveUp(records, reply.statusCode)
      if (this.settings.onEnqueueError === 'run-local') this.#fallBack(reply, info, jobs, records, err)
      else this.#drop(info, records, 'enqueue-failed', err)
    }
    const enqueued = this.#enqueue(info, records, false)
    if (!(enqueued instanceof Promise)) return ended(enqueued)
    // nothing awaits a late enqueue: what its own bookkeeping threw, or the lines of its failure
    // (a logger that throws), is logged, never rethrown (a rejection no one handles ends the process)
    const failed = (err: unknown): void => {
      try {
        info.log.error({ err }, 'deferred job bookkeeping failed')
      } catch {}
    }
    this.#afterStore(enqueued, (err) => {
      try {
        ended(err)
      } catch (thrown) {
        failed(thrown)
      }
    }, failed)
  }

  // The enqueue failed or timed out, and the client is told so (or its jobs run here): none of
  // its jobs may run in a worker, should its add still reach the store. Only this enqueue's token
  // is cancelled: an earlier job with the same key, which its own client was promised, is untouched.
  #giveUp (records: JobRecord[], statusCode: number): void {
    const token = records[0].payload.token
    if (token === undefined) return
    this.#uncertain.set(token, { jobs: records.length, statusCode })
    this.#cancel(token, statusCode)
  }

  #cancel (token: string, statusCode: number): void {
    const engine = this.#engine as Required<Engine>
    engine.cancel(token, statusCode, this.settings.enqueueTimeout).then(() => { this.#uncertain.delete(token) }, () => {
      // the store is unreachable: try again until it answers, or until the app closes
      if (this.#closed) return
      this.#retryTimer ??= setTimeout(() => {
        this.#retryTimer = null
        for (const [pending, { statusCode }] of this.#uncertain) this.#cancel(pending, statusCode)
      }, CANCEL_RETRY_MS)
    })
  }

  /**
   * Runs `next` with the enqueue's error (`null`: stored) once the store answered, or `thrown`
   * with what the enqueue's own bookkeeping threw; in flight for settle() until then.
   */
  #afterStore<T> (enqueued: Promise<unknown>, next: (err: unknown) => T, thrown: (err: unknown) => T): Promise<T> {
    this.#inFlight++
    return enqueued.then((err) => {
      try {
        return next(err)
      } finally {
        this.#landed()
      }
    }, (err: unknown) => {
      this.#landed()
      return thrown(err)
    })
  }

  // an enqueue was answered and what follows it done: settle() resolves with the last one
  #landed (): void {
    if (--this.#inFlight > 0) return
    const waiters = this.#settleWaiters
    this.#settleWaiters = []
    for (const resolve of waiters) resolve()
  }

  /**
   * Adds the jobs; gives the error (`null`: stored) instead of throwing, or for an engine that
   * answers later, a promise of it. `waited`: the response waits for it (it gets a span, child of
   * the span active in the onSend hook).
   */
  #enqueue (info: RequestInfo, given: JobRecord[], waited: boolean): Promise<unknown> | unknown {
    let records = given
    const room = this.worker === null ? Infinity : this.worker.room() - this.#enqueueing
    if (room < records.length) {
      // the memory engine is bounded like in-process tasks: past maxQueued a job is dropped
      const over = records.slice(Math.max(0, room))
      records = records.slice(0, Math.max(0, room))
      this.#drop(info, over, 'queue-full')
      if (records.length === 0) return null
    }
    this.#enqueueing += records.length
    const span = waited && this.#tracing ? traceSendStarted(this.#destination, records.map(jobIdOf)) : null
    const started = performance.now()
    const engine = this.#engine
    // after app.close() closed the connection, a request still running has no queue
    if (this.#closed) return this.#failed(info, records, span, new Error('the queue is closed: the app is closing'))
    if (engine.enqueueNow !== undefined) {
      try {
        engine.enqueueNow(records)
      } catch (err) {
        // data JSON refuses now (changed since with()): the store took none of them
        return this.#failed(info, records, span, err)
      }
      return this.#stored(info, records, span, started)
    }
    return engine.enqueue(records, this.settings.enqueueTimeout).then(
      () => this.#stored(info, records, span, started),
      (err: unknown) => this.#failed(info, records, span, err))
  }

  #stored (info: RequestInfo, records: JobRecord[], span: TaskSpan | null, started: number): null {
    if (span !== null) traceSendEnded(span, false)
    this.#enqueueing -= records.length
    this.#enqueued += records.length
    this.#countEnqueued(info, records, true)
    this.worker?.wake()
    if (isLevelEnabled(info.log, TASK_LEVELS.enqueued)) {
      const durationMs = round(performance.now() - started)
      for (const record of records) logTask(info.log, this.#line(info, record, 'enqueued', durationMs))
    }
    return null
  }

  #failed (info: RequestInfo, records: JobRecord[], span: TaskSpan | null, err: unknown): unknown {
    this.#enqueueing -= records.length
    this.#enqueueFailed += records.length
    if (span !== null) traceSendEnded(span, true, err)
    this.#countEnqueued(info, records, false)
    return err
  }

  // METRICS: jobs enqueued or not, counted as stats().durable counts them
  #countEnqueued (info: RequestInfo, records: JobRecord[], taken: boolean): void {
    if (this.#metrics === null) return
    const route = this.#metrics.route(info.request.routeUrl)
    for (const record of records) route.enqueued(record.task, taken)
  }

  #line (info: RequestInfo, record: JobRecord, outcome: 'enqueued' | 'dropped', durationMs: number): TaskLine {
    return {
      task: record.task,
      outcome,
      connection: record.payload.connection,
      method: info.request.method,
      route: info.route,
      statusCode: record.payload.statusCode,
      durationMs,
      queuedMs: 0,
      jobId: record.jobId,
      queue: this.#engine.queue
    }
  }

  #drop (info: RequestInfo, records: JobRecord[], reason: 'enqueue-failed' | 'queue-full' | 'closing', err?: unknown, statusCode?: number): void {
    this.#dropped += records.length
    if (this.#metrics !== null) {
      const route = this.#metrics.route(info.request.routeUrl)
      for (const record of records) route.ended(record.task, 'dropped', -1)
    }
    if (!isLevelEnabled(info.log, TASK_LEVELS.dropped)) return
    for (const record of records) {
      const line = this.#line(info, record, 'dropped', 0)
      line.reason = reason
      if (statusCode !== undefined) line.statusCode = statusCode
      logTask(info.log, line, err)
    }
  }

  #fallBack (reply: FastifyReply, info: RequestInfo, jobs: Taken[], records: JobRecord[], err: unknown): void {
    for (let i = 0; i < jobs.length; i++) {
      const job = jobs[i].job
      logFallback(info.log, { task: job.task.name, jobId: job.jobId, queue: this.#engine.queue, method: info.request.method, route: info.route }, err)
      this.#runLocal(reply, localTask(job), job.task.name, job.task.timeout)
    }
  }

  stats (): DurableStats {
    return { enqueued: this.#enqueued, enqueueing: this.#enqueueing, enqueueFailed: this.#enqueueFailed }
  }

  /** The final lines this process wrote for jobs: those its own worker ran, and those dropped here. */
  counts (): Record<Outcome, number> {
    const counts = this.worker === null ? zeroOutcomes() : { ...this.worker.counts() }
    counts.dropped += this.#dropped
    return counts
  }

  /** Jobs this process runs, running now. */
  get running (): number { return this.worker === null ? 0 : this.worker.running() }

  /** METRICS: the engine's current counts: jobs being enqueued, and those this process runs or holds. */
  observe (observe: Observe): void {
    const engine = this.settings.engine
    observe(engine, 'enqueueing', this.#enqueueing)
    if (this.worker === null) return
    observe(engine, 'running', this.worker.running())
    const waiting = this.worker.waiting
    if (waiting !== undefined) observe(engine, 'queued', waiting())
  }

  /** Resolves once no enqueue is in flight. */
  async settle (): Promise<void> {
    if (this.#inFlight === 0) return
    await new Promise<void>((resolve) => { this.#settleWaiters.push(resolve) })
  }

  /** Resolves once no enqueue is in flight and the app's own worker has nothing left to run. */
  async whenIdle (): Promise<void> {
    await this.settle()
    if (this.worker !== null) await this.worker.whenIdle()
  }

  /**
   * `app.close()`: waits for the enqueues in flight, then drains the app's own worker (up to the
   * drain timeout), then closes the store. Resolves with whether the worker drained in time.
   */
  async close (): Promise<{ drained: boolean, mayStillRun: number }> {
    await this.settle()
    this.#closed = true
    // A response hijacked and never ended holds jobs that neither its onSend nor its close will
    // add: they are dropped now, with their line. (One still being answered is left to its
    // onSend, which finds the queue closed: its client gets the 503.)
    for (const reply of this.#waiting) {
      if (!reply.sent) continue
      const pending = (reply as ReplyWithJobs)[kPending] as Pending
      pending.flushed = true
      this.#drop(pending.info, this.#records(reply, pending.info, pending.jobs), 'closing')
    }
    this.#waiting.clear()
    const drained = this.worker === null ? true : await this.worker.close()
    // a last try for the cancellations the store has not confirmed: what is left may still run
    if (this.#retryTimer !== null) clearTimeout(this.#retryTimer)
    const engine = this.#engine as Required<Engine>
    await Promise.allSettled([...this.#uncertain].map(([token, { statusCode }]) =>
      engine.cancel(token, statusCode, this.settings.enqueueTimeout).then(() => { this.#uncertain.delete(token) })))
    let mayStillRun = 0
    for (const { jobs } of this.#uncertain.values()) mayStillRun += jobs
    await this.#engine.close()
    return { drained, mayStillRun }
  }
}

function rethrow (err: unknown): never {
  throw err
}

function jobIdOf (record: JobRecord): string {
  return record.jobId
}

/** How many durable jobs the request of `reply` registered (its close line's `jobs`). */
export function jobsOf (reply: FastifyReply): number {
  const pending = (reply as ReplyWithJobs)[kPending]
  return pending === null ? 0 : pending.count
}

/**
 * The call site in the core's registration: hands the durable jobs among `given` to the queue and
 * returns what stays in this process: `given` itself when it holds no job, the functions of a
 * mixed array, or `null` when only jobs were given.
 */
export function takeDurableJobs (
  durable: DurableWeb | null,
  reply: FastifyReply,
  info: RequestInfo,
  given: DurableJob | ReadonlyArray<DeferredTask | DurableJob>,
  always: boolean,
  where: string
): DeferredTask[] | null {
  const tasks = isDurableJob(given) ? [given] : given
  if (!tasks.some(isDurableJob)) return tasks as DeferredTask[]
  if (durable === null) throw new FST_SAC_NO_QUEUE(where)
  if (always) {
    throw new FST_SAC_INVALID_OPTION(where, 'always', 'false for a durable job (always tasks run in this process)', 'true')
  }
  const local = durable.take(reply, info, tasks, where)
  return local.length === 0 ? null : local
}
