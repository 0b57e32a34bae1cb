import type {
  FastifyInstance,
  FastifyReply,
  FastifyRequest,
  HookHandlerDoneFunction,
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
  RouteSettings,
  SendAndContinueOptions
} from './options'
import { logRefused } from './log'
import { Scheduler } from './scheduler'
import { enableTracing } from './tracing'
import type { TaskMessage } from './channels'
import { kWork } from './symbols'
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

declare module 'fastify' {
  interface FastifyReply {
    /**
     * Sends `payload` exactly like `reply.send()`, then runs `task` after the response closed.
     * @example
     * return reply.sendAndContinue({ ok: true }, async ({ signal }) => mailer.send(welcome, { signal }))
     */
    sendAndContinue(payload?: unknown, task?: DeferredTask | DeferredTask[], options?: DeferOptions): FastifyReply
    /** Registers work that runs after whatever response this request ends with. */
    defer(task: DeferredTask | DeferredTask[], options?: DeferOptions): FastifyReply
  }
  interface FastifyInstance {
    sendAndContinue: SendAndContinueNamespace
  }
  interface FastifyContextConfig {
    /** `false` turns deferred work off on this route; `true` or an object turns it on (needed with `global: false`). */
    sendAndContinue?: boolean | RouteSendAndContinueOptions
  }
}

interface ReplyWithWork extends FastifyReply { [kWork]: Work | null }

type RouteConfig = { sendAndContinue?: unknown, url?: string, method?: string | string[] }

const NOT_FOUND_ROUTE = '(not found)'

function routeName (method: unknown, url: unknown): string {
  return `${Array.isArray(method) ? method.join(',') : String(method)} ${url === undefined ? NOT_FOUND_ROUTE : String(url)}`
}

function toTasks (where: string, task: unknown): DeferredTask[] {
  if (typeof task === 'function') return [task as DeferredTask]
  if (Array.isArray(task) && task.length > 0 && task.every((fn) => typeof fn === 'function')) {
    return task as DeferredTask[]
  }
  throw new FST_SAC_INVALID_TASK(where, describe(task))
}

// Whether the whole response reached the client. Each server flavour needs its own reading:
// - HTTP/1.x: Node emits 'finish' and reports `writableFinished` even when the socket died before
//   the data was flushed, so a destroyed socket that had not finished writing counts as aborted;
// - HTTP/2 compatibility API: a reset stream also emits 'finish' and reports `writableFinished`,
//   so an ended response whose stream was reset (rstCode > 0) counts as aborted;
// - inject(): light-my-request's Response has no socket to flush, so ended is as finished as it gets.
function connectionOf (reply: FastifyReply): ConnectionStatus {
  const raw = reply.raw
  // rstCode stays undefined until the stream closed, and undefined > 0 is false
  const stream = (raw as { stream?: { rstCode: number } }).stream
  if (stream !== undefined) return stream.rstCode > 0 || !raw.writableEnded ? 'aborted' : 'finished'
  if (!raw.writableEnded) return 'aborted'
  if ('_lightMyRequest' in raw) return 'finished'
  const socket = reply.request.raw.socket
  return socket.destroyed && !socket.writableFinished ? 'aborted' : 'finished'
}

// True once the response emitted (or is about to emit) 'close', so a listener added now would never run.
function isClosed (raw: FastifyReply['raw']): boolean {
  const stream = (raw as { stream?: { closed?: boolean } }).stream
  return raw.destroyed || (raw as { closed?: boolean }).closed === true || stream?.closed === true
}

// Hands the request's work over once its response closed; whichever of onResponse, 'close' or a
// late registration comes first does it, the others find it done.
function dispatch (work: Work, reply: FastifyReply): void {
  if (work.connection === null) work.close(reply, connectionOf(reply))
}

function onResponse (this: FastifyInstance, request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void {
  const work = (reply as ReplyWithWork)[kWork]
  if (work !== null) dispatch(work, reply)
  done()
}

function appendHook<T> (hooks: T | T[] | undefined, hook: T, first: boolean): T[] {
  const list = hooks === undefined ? [] : Array.isArray(hooks) ? hooks : [hooks]
  return first ? [hook, ...list] : [...list, hook]
}

async function fastifySendAndContinue (fastify: FastifyInstance, options: SendAndContinueOptions): Promise<void> {
  const plugin: PluginSettings = resolvePluginOptions(options)
  enableTracing(plugin.tracing) // TRACING: loads @opentelemetry/api when installed
  const scheduler = new Scheduler(plugin.concurrency, plugin.maxQueued, plugin.onDropped)
  // Route configs are fixed once the route exists: resolve each once, on first use.
  const routeSettings = new WeakMap<object, RouteSettings>()

  function settingsOf (config: RouteConfig): RouteSettings {
    let settings = routeSettings.get(config)
    if (settings === undefined) {
      settings = resolveRouteSettings(plugin, config.sendAndContinue, routeName(config.method, config.url))
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
      scheduler.rejected++
      logRefused(request.log, { method: request.method, route, retryAfter })
      reply.code(503).header('retry-after', header).send(body)
    }
  }

  fastify.addHook('onRoute', function onRoute (routeOptions: RouteOptions) {
    const config = routeOptions.config as RouteConfig | undefined
    const settings = resolveRouteSettings(plugin, config?.sendAndContinue, routeName(routeOptions.method, routeOptions.url))
    if (!settings.enabled) return
    routeOptions.onResponse = appendHook(routeOptions.onResponse, onResponse as onResponseHookHandler, false)
    if (settings.rejectWhenSaturated) {
      routeOptions.onRequest = appendHook(routeOptions.onRequest, rejectWhenSaturated(settings.retryAfter, routeOptions.url ?? NOT_FOUND_ROUTE), true)
    }
  })

  function createWork (reply: FastifyReply): Work {
    const config = reply.routeOptions.config as RouteConfig
    const settings = settingsOf(config)
    const route = config.url ?? NOT_FOUND_ROUTE
    if (!settings.enabled) {
      const why = config.sendAndContinue === false
        ? 'the route sets config.sendAndContinue: false'
        : 'the plugin is registered with global: false and the route does not set config.sendAndContinue'
      throw new FST_SAC_NOT_ENABLED(routeName(config.method, config.url), why)
    }
    const request = reply.request
    const snapshot: RequestSnapshot = {
      id: String(request.id),
      method: request.method,
      url: request.url,
      routeUrl: config.url
    }
    const work = new Work(scheduler, request.log, snapshot, route, settings)
    ;(reply as ReplyWithWork)[kWork] = work
    const raw = reply.raw
    // onResponse never runs when the client hangs up mid-response: 'close' always comes.
    raw.once('close', () => { dispatch(work, reply) })
    if (settings.closeConnection && request.raw.httpVersionMajor === 1 && !raw.headersSent) {
      reply.header('connection', 'close')
    }
    return work
  }

  function register (reply: FastifyReply, tasks: DeferredTask[], options: DeferOptions): void {
    const work = (reply as ReplyWithWork)[kWork] ?? createWork(reply)
    const timeout = options.timeout ?? work.settings.timeout
    const always = options.always ?? false
    const many = tasks.length > 1
    for (let i = 0; i < tasks.length; i++) {
      const fn = tasks[i]
      const name = options.name === undefined
        ? fn.name || (many ? `anonymous[${i}]` : 'anonymous')
        : many ? `${options.name}[${i}]` : options.name
      work.add(fn, name, timeout, always)
    }
    // the response may have closed before this call: the 'close' listener came too late
    if (isClosed(reply.raw)) dispatch(work, reply)
  }

  function defer (this: FastifyReply, task: DeferredTask | DeferredTask[], options?: DeferOptions): FastifyReply {
    const tasks = toTasks('reply.defer()', task)
    register(this, tasks, validateCallOptions('reply.defer()', options))
    return this
  }

  function sendAndContinue (this: FastifyReply, payload?: unknown, task?: DeferredTask | DeferredTask[], options?: DeferOptions): FastifyReply {
    if (this.sent) {
      const config = this.routeOptions.config as RouteConfig
      const route = routeName(config.method, config.url)
      throw this.raw.writableEnded ? new FST_SAC_ALREADY_SENT(route) : new FST_SAC_HIJACKED(route)
    }
    const callOptions = validateCallOptions('reply.sendAndContinue()', options)
    if (task !== undefined) {
      register(this, toTasks('reply.sendAndContinue()', task), callOptions)
    }
    return this.send(payload)
  }

  fastify.decorateReply(kWork, null)
  fastify.decorateReply('defer', defer)
  fastify.decorateReply('sendAndContinue', sendAndContinue)
  fastify.decorate('sendAndContinue', {
    drain: () => scheduler.drain(),
    stats: () => scheduler.stats()
  })
  fastify.addHook('onClose', function onClose (instance) {
    return scheduler.close(plugin.drainTimeout, instance.log)
  })
}

fp(fastifySendAndContinue, {
  fastify: '5.x',
  name: 'fastify-send-and-continue'
})

// merges the types into the CommonJS export
declare namespace fastifySendAndContinue {
  export type {
    ClientAbortPolicy,
    ConnectionStatus,
    DeferOptions,
    DeferredTask,
    DropReason,
    DroppedTaskInfo,
    Outcome,
    RequestSnapshot,
    RouteSendAndContinueOptions,
    SendAndContinueError,
    SendAndContinueErrorCode,
    SendAndContinueNamespace,
    SendAndContinueOptions,
    SendAndContinueStats,
    TaskContext,
    TaskMessage,
    TaskOutcome
  }
  export { fastifySendAndContinue as default, fastifySendAndContinue }
  export const isSendAndContinueError: (error: unknown) => error is SendAndContinueError
}

// `require()` returns the plugin itself; these lines give `import x from`, `import { fastifySendAndContinue }`
// and `import { isSendAndContinueError }` to ES modules, whose loader only sees exports written this way.
// (`export =` below assigns module.exports only after these lines, hence the first one)
module.exports = fastifySendAndContinue
module.exports.default = fastifySendAndContinue
module.exports.fastifySendAndContinue = fastifySendAndContinue
module.exports.isSendAndContinueError = isSendAndContinueError
export = fastifySendAndContinue
