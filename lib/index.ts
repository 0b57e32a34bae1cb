import type {
  FastifyInstance,
  FastifyReply,
  FastifyRequest,
  HookHandlerDoneFunction,
  onErrorHookHandler,
  onRequestHookHandler,
  onResponseHookHandler,
  RouteOptions
} from 'fastify'
import fp from 'fastify-plugin'
import { httpErrors } from '@fastify/sensible'
import {
  describe,
  FST_SAC_ALREADY_SENT,
  FST_SAC_HIJACKED,
  FST_SAC_INVALID_TASK,
  FST_SAC_NOT_ENABLED,
  isSendAndContinueError
} from './errors'
import type { SendAndContinueError, SendAndContinueErrorCode } from './errors'
import { resolvePluginOptions, resolveRouteSettings, validateCallOptions } from './options'
import type {
  ClientAbortPolicy,
  DeferOptions,
  PluginSettings,
  RouteSendAndContinueOptions,
  SendAndContinueOptions
} from './options'
import { randomUUID } from 'node:crypto'
import { isNullLogger, logRefused, logStart } from './log'
import { Scheduler } from './scheduler'
import { kWork } from './symbols'
import { Task } from './task'
import { enableTracing } from './tracing'
import { lookUpMeters } from './metrics'
import type { Meters } from './metrics'
import type { TaskMessage } from './channels'
import { OUTCOMES } from './types'
import type {
  ConnectionStatus,
  DeferredTask,
  DropReason,
  DroppedTaskInfo,
  Outcome,
  RequestSnapshot,
  SendAndContinueNamespace,
  SendAndContinueStats,
  TaskContext,
  TaskOutcome
} from './types'
import { Work } from './work'
import { followConnection, handOver, isClosed } from './connection'
import { isDefaultChild, pinoSymbolsOf } from './request-log'
import type { RouteWork } from './work'
// durable work: the job model and the web side live in lib/jobs, the engines in lib/engines
import { createWorker } from './jobs/worker'
import type { BullWorkerOptions, DurableWorker, SqliteWorkerOptions, WorkerOptions, WorkerStats } from './jobs/worker'
import { defineTask } from './jobs/define'
import { isDurableJob } from './jobs/types'
import type { DurableJob, DurableStats, DurableTask, DurableTaskContext, DurableTaskOptions, JobOptions, JsonValue } from './jobs/types'
import type {
  BullQueueOptions,
  EnqueueErrorPolicy,
  MemoryQueueOptions,
  QueueOptions,
  RedisClusterConnection,
  RedisClusterNode,
  RedisConnection,
  RedisConnectionOptions,
  SqliteQueueOptions,
  SqliteSynchronous
} from './jobs/options'
import type { EngineName } from './engines/types'
import type { Backoff } from './backoff'
import type { ResponseLogLevel } from './log'
import { DurableWeb, jobsOf, takeDurableJobs } from './jobs/web'

/** What `reply.defer()` and `reply.sendAndContinue()` accept: a function, or a durable job from `task.with()`. */
type DeferrableTask = DeferredTask | DurableJob<any>

/**
 * `reply.sendAndContinue()`'s arguments: the payload as the route's `reply.send()` takes it (typed
 * by the route's `Reply` generic, its schema and its type provider), then the task and options.
 */
type SendAndContinueArgs<Send extends unknown[]> = Send extends [unknown]
  ? [payload: Send[0], task?: DeferrableTask | DeferrableTask[], options?: DeferOptions]
  : [payload?: Send[0], task?: DeferrableTask | DeferrableTask[], options?: DeferOptions]

declare module 'fastify' {
  interface FastifyReply<RouteGeneric, RawServer, RawRequest, RawReply, ContextConfig, SchemaCompiler, TypeProvider, ReplyType> {
    /**
     * Sends `payload` exactly like `reply.send()`, then runs `task` after the response closed.
     * @example
     * return reply.sendAndContinue({ ok: true }, async ({ signal }) => mailer.send(welcome, { signal }))
     */
    sendAndContinue(...args: SendAndContinueArgs<Parameters<FastifyReply<RouteGeneric, RawServer, RawRequest, RawReply, ContextConfig, SchemaCompiler, TypeProvider, ReplyType>['send']>>):
    FastifyReply<RouteGeneric, RawServer, RawRequest, RawReply, ContextConfig, SchemaCompiler, TypeProvider>
    /** Registers work that runs after whatever response this request ends with. */
    defer(task: DeferrableTask | DeferrableTask[], options?: DeferOptions): FastifyReply
  }
  interface FastifyInstance {
    sendAndContinue: SendAndContinueNamespace
  }
  interface FastifyContextConfig {
    /** `false` turns deferred work off on this route; `true` or an object turns it on (needed with `global: false`). */
    sendAndContinue?: boolean | RouteSendAndContinueOptions
  }
}

// What the plugin keeps on a reply, in one decoration (Fastify sets each value decoration on
// every reply it makes, of every route): the request's work, or SENT when sendAndContinue() sent
// a response without registering work, or null.
const SENT: unique symbol = Symbol('fastify-send-and-continue.sent')

interface ReplyState extends FastifyReply {
  [kWork]: Work | typeof SENT | null
}

type RouteConfig = { sendAndContinue?: unknown, url?: string, method?: string | string[] }

const NOT_FOUND_ROUTE = '(not found)'

async function fastifySendAndContinue (fastify: FastifyInstance, options: SendAndContinueOptions): Promise<void> {
  const plugin: PluginSettings = resolvePluginOptions(options)
  enableTracing(plugin.tracing) // TRACING: loads @opentelemetry/api when installed
  // METRICS: the provider registered now, for good (the metrics API has no proxy); null: nothing records
  const meters: Meters | null = plugin.metrics ? lookUpMeters() : null
  const scheduler = new Scheduler(plugin.concurrency, plugin.maxQueued, plugin.onDropped)
  const durable = options.queue === undefined
    ? null
    : await DurableWeb.register(fastify, options.queue, plugin.retryAfter, runLocal, plugin.tracing, plugin, meters)
  const inProcess = meters === null ? null : meters.engine('in-process')
  // the current counts, read when the SDK collects
  const unwatch = meters === null
    ? null
    : meters.watch((observe) => {
      const stats = scheduler.stats()
      observe('in-process', 'pending', stats.pending)
      observe('in-process', 'queued', stats.queued)
      observe('in-process', 'running', stats.running)
      observe('in-process', 'retrying', stats.retrying)
      if (durable !== null) durable.observe(observe)
    })
  const routeSettings = new WeakMap<object, RouteWork>()
  // A route onResponse hook makes Fastify time and follow every response of the route, deferring
  // or not; with a logger it does that anyway. Without one, the response's 'close' event, which
  // the work follows in any case, hands the work over (a tick after onResponse would have).
  const handOverOnResponse = !isNullLogger(fastify.log)

  fastify.decorateReply(kWork, null)
  fastify.decorateReply('defer', defer)
  fastify.decorateReply('sendAndContinue', sendAndContinue)
  fastify.decorate('sendAndContinue', {
    drain: durable === null ? () => scheduler.drain() : () => drainBoth(scheduler, durable),
    stats: durable === null ? () => scheduler.stats() : () => statsWithJobs(scheduler, durable)
  })
  fastify.addHook('onRoute', onRoute)
  // where this instance's lines begin: the report tells runs apart by it, pid 1 on one hostname or not
  logStart(fastify.log, {
    instance: randomUUID(),
    concurrency: plugin.concurrency,
    maxQueued: plugin.maxQueued,
    timeout: plugin.timeout,
    drainTimeout: plugin.drainTimeout,
    onClientAbort: plugin.onClientAbort,
    closeConnection: plugin.closeConnection,
    rejectWhenSaturated: plugin.rejectWhenSaturated,
    retryAfter: plugin.retryAfter,
    global: plugin.global,
    tracing: plugin.tracing,
    responseLogLevel: plugin.responseLogLevel,
    metrics: meters !== null,
    queue: durable === null ? null : durable.settings.name
  })
  fastify.addHook('onClose', async function onClose (instance) {
    // enqueues in flight first: a failed one may still run here ('run-local'); then the jobs this
    // process runs (memory, sqlite) drain beside the in-process tasks, in one line
    if (durable !== null) await durable.settle()
    if (durable === null) await scheduler.shutdown(plugin.drainTimeout, instance.log)
    else await scheduler.shutdown(plugin.drainTimeout, instance.log, { close: () => durable.close(), counts: () => durable.counts() })
    if (unwatch !== null) unwatch()
  })

  function onRoute (routeOptions: RouteOptions): void {
    const config = routeOptions.config as RouteConfig | undefined
    const route = routeName(routeOptions.method, routeOptions.url)
    const settings = resolveRouteSettings(plugin, config?.sendAndContinue, route)
    if (!settings.enabled) return
    if (handOverOnResponse) routeOptions.onResponse = appendHook(routeOptions.onResponse, onResponse as onResponseHookHandler, false)
    routeOptions.onError = appendHook(routeOptions.onError, onError as onErrorHookHandler, true)
    if (settings.rejectWhenSaturated) {
      routeOptions.onRequest = appendHook(routeOptions.onRequest, rejectWhenSaturated(settings.retryAfter, routeOptions.url), true)
    }
  }

  function sendAndContinue (this: FastifyReply, payload?: unknown, task?: DeferrableTask | DeferrableTask[], options?: DeferOptions): FastifyReply {
    const reply = this as ReplyState
    // `reply.sent` stays false while async onSend hooks run: the plugin's own flag says send was called
    const state = reply[kWork]
    if ((state !== null && (state === SENT || state.sendCalled)) || reply.sent) {
      const config = reply.routeOptions.config as RouteConfig
      const route = routeName(config.method, config.url)
      const err = reply.raw.writableEnded || !reply.sent ? new FST_SAC_ALREADY_SENT(route) : new FST_SAC_HIJACKED(route)
      // Fastify turns a throw after the reply went out into its own "Reply was already sent"
      // warning, which does not say why: the request's log says it here
      if (reply.sent) reply.log.error({ err }, err.message)
      throw err
    }
    const callOptions = validateCallOptions('reply.sendAndContinue()', options)
    if (task !== undefined) {
      checkTask('reply.sendAndContinue()', task)
      addTasks(reply, task, callOptions, 'reply.sendAndContinue()')
    }
    const work = reply[kWork]
    if (work === null) reply[kWork] = SENT
    else if (work !== SENT) work.sendCalled = true
    return reply.send(payload)
  }

  function defer (this: FastifyReply, task: DeferrableTask | DeferrableTask[], options?: DeferOptions): FastifyReply {
    checkTask('reply.defer()', task)
    addTasks(this as ReplyState, task, validateCallOptions('reply.defer()', options), 'reply.defer()')
    return this
  }

  // a durable job that could not be enqueued, run here instead (queue.onEnqueueError: 'run-local')
  function runLocal (reply: FastifyReply, task: DeferredTask, name: string, timeout: number): void {
    addTasks(reply as ReplyState, task, { name, timeout }, 'queue.onEnqueueError')
  }

  // `given` was checked: a function or a durable job, or a non-empty array of them
  function addTasks (reply: ReplyState, given: DeferrableTask | DeferrableTask[], options: DeferOptions, where: string): void {
    const state = reply[kWork]
    const work = state === null || state === SENT ? createWork(reply, state === SENT) : state
    // durable jobs go to the queue (lib/jobs/web.ts); the functions stay in this process
    const task = typeof given === 'function' ? given : takeDurableJobs(durable, reply, work, given, options.always ?? false, where)
    if (task === null) {
      // only durable jobs: a response that closed before them hands them over now, as admit() does
      // for tasks (its 'close' came before anything listened; a hijacked reply never sends)
      if (work.connection === null && isClosed(reply)) handOver(work, reply)
      return
    }
    const timeout = options.timeout ?? work.settings.timeout
    const always = options.always ?? false
    // only tasks with more than one attempt carry a retry state
    const attempts = options.attempts
    const retries = attempts !== undefined && attempts > 1
    // each task captures the async context (AsyncLocalStorage) it is registered in, and runs in it
    // a lone function, the common case, without an array
    if (typeof task === 'function') {
      const one = new Task(work, task, options.name, timeout, always)
      if (retries) one.retries(attempts, options.backoff)
      admit(work, reply, 1)
      work.add(one)
      return
    }
    const tasks: Task[] = []
    for (let i = 0; i < task.length; i++) {
      const fn = task[i]
      const name = options.name === undefined ? fn.name || `anonymous[${i}]` : `${options.name}[${i}]`
      const one = new Task(work, fn, name, timeout, always)
      if (retries) one.retries(attempts, options.backoff)
      tasks.push(one)
    }
    admit(work, reply, tasks.length)
    for (const one of tasks) work.add(one)
  }

  function createWork (reply: ReplyState, sendCalled: boolean): Work {
    const config = reply.routeOptions.config as RouteConfig
    const settings = settingsOf(config, reply)
    if (!settings.enabled) {
      const why = config.sendAndContinue === false
        ? 'the route sets config.sendAndContinue: false'
        : 'the plugin is registered with global: false and the route does not set config.sendAndContinue'
      throw new FST_SAC_NOT_ENABLED(routeName(config.method, config.url), why)
    }
    const request = reply.request
    const log = request.log
    const id = request.id
    const bare = settings.pino !== null && isDefaultChild(log, settings.parentLog, id, settings.pino, settings.idBinding)
    const work = new Work(settings, bare ? null : log, typeof id === 'string' ? id : String(id), request.method, request.url)
    if (sendCalled) work.sendCalled = true
    reply[kWork] = work
    followConnection(work, reply)
    if (settings.closeConnection && request.raw.httpVersionMajor === 1 && !reply.raw.headersSent) {
      reply.header('connection', 'close')
    }
    return work
  }

  // Route configs are fixed once the route exists: each is resolved once, on first use.
  function settingsOf (config: RouteConfig, reply: FastifyReply): RouteWork {
    let settings = routeSettings.get(config)
    if (settings === undefined) {
      const parentLog = reply.server.log
      settings = {
        ...resolveRouteSettings(plugin, config.sendAndContinue, routeName(config.method, config.url)),
        scheduler,
        parentLog,
        pino: pinoSymbolsOf(parentLog),
        idBinding: { prefix: null, label: null },
        route: config.url ?? NOT_FOUND_ROUTE,
        routeUrl: config.url,
        jobsOf: durable === null ? null : jobsOf,
        jobsClosed: durable === null ? null : durable.closed,
        metrics: inProcess === null ? null : inProcess.route(config.url)
      }
      routeSettings.set(config, settings)
    }
    return settings
  }

  // The refusal is an expected answer, not an error: one warn line without a stack, counted, and
  // sent from here so Fastify's error handler does not log it again at error level.
  function rejectWhenSaturated (retryAfter: number, route: string): onRequestHookHandler {
    const header = String(retryAfter)
    const error = httpErrors.serviceUnavailable('deferred work is saturated, retry later')
    const body = { statusCode: error.statusCode, error: 'Service Unavailable', message: error.message }
    return function rejectWhenSaturated (request, reply, done) {
      if (!scheduler.saturated) return done()
      scheduler.refused()
      logRefused(request.log, { method: request.method, route, retryAfter })
      reply.code(503).header('retry-after', header).send(body)
    }
  }
}

// Until both are idle at once: a job run here may register nothing, but an enqueue in flight adds jobs.
async function drainBoth (scheduler: Scheduler, durable: DurableWeb): Promise<void> {
  do {
    await scheduler.drain()
    await durable.whenIdle()
  } while (!scheduler.idle)
}

// The counts of the final lines this process wrote: its in-process tasks and its jobs.
function statsWithJobs (scheduler: Scheduler, durable: DurableWeb): SendAndContinueStats {
  const stats = scheduler.stats()
  const counts = durable.counts()
  for (const outcome of OUTCOMES) stats[outcome] += counts[outcome]
  stats.running += durable.running
  stats.durable = durable.stats()
  return stats
}

function onResponse (this: FastifyInstance, request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void {
  const work = (reply as ReplyState)[kWork]
  if (work !== null && work !== SENT) handOver(work, reply)
  done()
}

// Sending failed (serialization, an onSend hook) and the error handler will send the error
// response: a sendAndContinue() from the error handler is a first send, not a second.
function onError (this: FastifyInstance, request: FastifyRequest, reply: FastifyReply, error: Error, done: HookHandlerDoneFunction): void {
  const state = (reply as ReplyState)[kWork]
  if (state === SENT) (reply as ReplyState)[kWork] = null
  else if (state !== null) state.sendCalled = false
  done()
}

// Counts `count` tasks about to be added, first, so the response's one close line says how many it
// carried; when the response closed before this registration, its listeners came too late and the
// work is handed over now.
function admit (work: Work, reply: FastifyReply, count: number): void {
  work.registering(count)
  if (work.connection === null && isClosed(reply)) handOver(work, reply)
}

function routeName (method: unknown, url: unknown): string {
  return `${Array.isArray(method) ? method.join(',') : String(method)} ${url === undefined ? NOT_FOUND_ROUTE : String(url)}`
}

function isTask (task: unknown): boolean {
  return typeof task === 'function' || isDurableJob(task)
}

function checkTask (where: string, task: unknown): asserts task is DeferrableTask | DeferrableTask[] {
  if (isTask(task)) return
  if (Array.isArray(task) && task.length > 0 && everyIndex(task, isTask)) return
  throw new FST_SAC_INVALID_TASK(where, describe(task))
}

/** `every()` over each index, holes included (`every()` skips a sparse array's holes). */
function everyIndex (list: readonly unknown[], check: (item: unknown) => boolean): boolean {
  for (let i = 0; i < list.length; i++) {
    if (!check(list[i])) return false
  }
  return true
}

function appendHook<T> (hooks: T | T[] | undefined, hook: T, first: boolean): T[] {
  const list = hooks === undefined ? [] : Array.isArray(hooks) ? hooks : [hooks]
  return first ? [hook, ...list] : [...list, hook]
}

fp(fastifySendAndContinue, {
  fastify: '5.x',
  name: 'fastify-send-and-continue'
})

// merges the types into the CommonJS export
declare namespace fastifySendAndContinue {
  export type {
    Backoff,
    BullQueueOptions,
    BullWorkerOptions,
    ClientAbortPolicy,
    ConnectionStatus,
    DeferOptions,
    DeferredTask,
    DropReason,
    DroppedTaskInfo,
    DurableJob,
    DurableStats,
    DurableTask,
    DurableTaskContext,
    DurableTaskOptions,
    DurableWorker,
    EngineName,
    EnqueueErrorPolicy,
    JobOptions,
    JsonValue,
    MemoryQueueOptions,
    Outcome,
    QueueOptions,
    RedisClusterConnection,
    RedisClusterNode,
    RedisConnection,
    RedisConnectionOptions,
    ResponseLogLevel,
    RequestSnapshot,
    RouteSendAndContinueOptions,
    SendAndContinueError,
    SendAndContinueErrorCode,
    SendAndContinueNamespace,
    SendAndContinueOptions,
    SendAndContinueStats,
    SqliteQueueOptions,
    SqliteSynchronous,
    SqliteWorkerOptions,
    TaskContext,
    TaskMessage,
    TaskOutcome,
    WorkerOptions,
    WorkerStats
  }
  export { fastifySendAndContinue as default, fastifySendAndContinue }
  export const isSendAndContinueError: (error: unknown) => error is SendAndContinueError
  export const defineTask: typeof import('./jobs/define').defineTask
  export const createWorker: typeof import('./jobs/worker').createWorker
}

// `require()` returns the plugin itself; these lines give `import x from`, `import { fastifySendAndContinue }`
// and `import { isSendAndContinueError }` to ES modules, whose loader only sees exports written this way.
// (`export =` below assigns module.exports only after these lines, hence the first one)
module.exports = fastifySendAndContinue
module.exports.default = fastifySendAndContinue
module.exports.fastifySendAndContinue = fastifySendAndContinue
module.exports.isSendAndContinueError = isSendAndContinueError
module.exports.defineTask = defineTask
module.exports.createWorker = createWorker
export = fastifySendAndContinue
