import { FST_SAC_INVALID_OPTION, FST_SAC_UNKNOWN_OPTION, describe } from './errors'
import type { DroppedTaskInfo } from './types'
import { RESPONSE_LOG_LEVELS } from './log'
import type { ResponseLogLevel } from './log'
import type { QueueOptions } from './jobs/options'
import { checkAttempts, checkBackoff } from './backoff'
import type { Backoff } from './backoff'

import { MAX_TIMEOUT } from './limits'

export type ClientAbortPolicy = 'run' | 'skip'

/** Plugin options, all optional. */
export interface SendAndContinueOptions {
  /**
   * Time limit of each task in milliseconds (PHP's `set_time_limit`). On expiry the task's
   * `signal` aborts, its outcome is `timeout` and its concurrency slot is released.
   * `0` means no limit.
   * @default 30000
   */
  timeout?: number
  /**
   * Whether tasks run when the client went away before the whole response reached it
   * (PHP's `ignore_user_abort`). `always` tasks run regardless.
   * @default 'run'
   */
  onClientAbort?: ClientAbortPolicy
  /**
   * Send `Connection: close` on responses that carry deferred work (HTTP/1.x only;
   * HTTP/2 forbids the header).
   * @default false
   */
  closeConnection?: boolean
  /**
   * How long `app.close()` waits for deferred work before aborting what is left, in milliseconds.
   * @default 10000
   */
  drainTimeout?: number
  /**
   * When `false`, only routes that set `config.sendAndContinue` may defer work.
   * @default true
   */
  global?: boolean
  /**
   * Tasks that run at once, process-wide for this Fastify instance. `Infinity` lifts the bound.
   * @default 100
   */
  concurrency?: number
  /**
   * Tasks that may wait for a free slot. A task past this bound is `dropped`. `Infinity` lifts the bound.
   * @default 10000
   */
  maxQueued?: number
  /**
   * Called with every task that is dropped (queue full, or registered while the app closes),
   * so the application can persist it elsewhere.
   * @example
   * onDropped (info) { outbox.save({ task: info.name, reqId: info.reqId }) }
   */
  onDropped?: (info: DroppedTaskInfo) => void
  /**
   * Answer `503 Service Unavailable` with `Retry-After` from an `onRequest` hook, before the
   * handler runs, while the scheduler is saturated (the next task would be dropped).
   * @default false
   */
  rejectWhenSaturated?: boolean
  /**
   * Seconds sent in `Retry-After` by `rejectWhenSaturated`.
   * @default 5
   */
  retryAfter?: number
  /**
   * Whether each task gets an OpenTelemetry span (when `@opentelemetry/api` is installed and a
   * tracer provider registered). `false` turns spans off; the diagnostics channels are published either way.
   * @default true
   */
  tracing?: boolean
  /**
   * Whether the plugin records OpenTelemetry metrics (when `@opentelemetry/api` is installed and
   * a meter provider was registered before the plugin). `false` records nothing, at no cost.
   * @default true
   */
  metrics?: boolean
  /**
   * Level of the line a response that carried deferred work logs when it finished normally (its
   * close line); an aborted response's stays at `info`. Lowering it saves one line per deferring
   * response, and costs the report its check of finished responses' work (a crash's lost tasks).
   * @default 'info'
   */
  responseLogLevel?: ResponseLogLevel
  /**
   * Durable work: jobs from `task.with()` are added to this BullMQ queue on Redis before the
   * response is sent, and run in worker processes (`createWorker()`). See lib/jobs/options.ts.
   */
  queue?: QueueOptions
}

/** Route-level overrides, set as `config: { sendAndContinue: { ... } }`. */
export interface RouteSendAndContinueOptions {
  /** @default the plugin's `timeout` */
  timeout?: number
  /** @default the plugin's `onClientAbort` */
  onClientAbort?: ClientAbortPolicy
  /** @default the plugin's `closeConnection` */
  closeConnection?: boolean
  /** @default the plugin's `rejectWhenSaturated` */
  rejectWhenSaturated?: boolean
  /** @default the plugin's `retryAfter` */
  retryAfter?: number
}

/** Options of one `reply.defer()` or `reply.sendAndContinue()` call. */
export interface DeferOptions {
  /**
   * Task name in the logs and in `ctx.name`.
   * @default the function's name, or `'anonymous'`
   */
  name?: string
  /** Time limit in milliseconds for this call's tasks; `0` means no limit. @default the route's `timeout` */
  timeout?: number
  /**
   * Run after the request's other tasks settle, even when the client aborted, and receive
   * their outcomes in `ctx.outcomes` (PHP's shutdown function reading `connection_status()`).
   * @default false
   */
  always?: boolean
  /**
   * Runs of each task before it ends `failed` (or `timeout`), the first included: a failed or
   * timed-out attempt is run again after `backoff`, each attempt with its own time limit and signal.
   * @default 1
   */
  attempts?: number
  /**
   * Wait before each retry: milliseconds, or `{ type: 'fixed' | 'exponential', delay }`
   * (exponential waits `delay`, `2 × delay`, `4 × delay`...).
   * @default 0
   * @example
   * reply.defer(notifyCrm, { attempts: 3, backoff: { type: 'exponential', delay: 500 } })
   */
  backoff?: Backoff
}

/** What a route resolves to once plugin and route options are merged. */
export interface RouteSettings {
  enabled: boolean
  timeout: number
  onClientAbort: ClientAbortPolicy
  closeConnection: boolean
  rejectWhenSaturated: boolean
  retryAfter: number
  /** Plugin-wide: spans on or off. */
  tracing: boolean
  /** Plugin-wide: the level of a finished response's close line. */
  responseLogLevel: ResponseLogLevel
}

export interface PluginSettings extends RouteSettings {
  drainTimeout: number
  global: boolean
  concurrency: number
  maxQueued: number
  onDropped: ((info: DroppedTaskInfo) => void) | null
  /** Metrics on or off (recorded only when a meter provider is registered too). */
  metrics: boolean
}

export const defaults = {
  timeout: 30_000,
  onClientAbort: 'run' as ClientAbortPolicy,
  closeConnection: false,
  drainTimeout: 10_000,
  global: true,
  concurrency: 100,
  maxQueued: 10_000,
  onDropped: null,
  rejectWhenSaturated: false,
  retryAfter: 5,
  tracing: true,
  metrics: true,
  responseLogLevel: 'info' as ResponseLogLevel
}

type Check = (value: unknown) => boolean
interface Rule { check: Check, expected: string }

const milliseconds: Rule = {
  check: (v) => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= MAX_TIMEOUT,
  expected: `a whole number of milliseconds from 0 to ${MAX_TIMEOUT}`
}
const boolean: Rule = { check: (v) => typeof v === 'boolean', expected: 'a boolean' }
const policy: Rule = { check: (v) => v === 'run' || v === 'skip', expected: "'run' or 'skip'" }
// Retry-After is written as a plain integer: larger values would print in exponent notation
const seconds: Rule = {
  check: (v) => typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= MAX_TIMEOUT,
  expected: `a whole number of seconds from 1 to ${MAX_TIMEOUT}`
}

const routeRules: Record<keyof RouteSendAndContinueOptions, Rule> = {
  timeout: milliseconds,
  onClientAbort: policy,
  closeConnection: boolean,
  rejectWhenSaturated: boolean,
  retryAfter: seconds
}

const pluginRules: Record<keyof SendAndContinueOptions, Rule> = {
  ...routeRules,
  drainTimeout: milliseconds,
  global: boolean,
  concurrency: {
    check: (v) => v === Infinity || (typeof v === 'number' && Number.isInteger(v) && v >= 1),
    expected: 'a whole number of at least 1, or Infinity'
  },
  maxQueued: {
    check: (v) => v === Infinity || (typeof v === 'number' && Number.isInteger(v) && v >= 0),
    expected: 'a whole number of at least 0, or Infinity'
  },
  onDropped: { check: (v) => typeof v === 'function', expected: 'a function' },
  tracing: boolean,
  metrics: boolean,
  responseLogLevel: {
    check: (v) => (RESPONSE_LOG_LEVELS as readonly unknown[]).includes(v),
    expected: RESPONSE_LOG_LEVELS.map((level) => `'${level}'`).join(', ').replace(/, ([^,]+)$/, ' or $1')
  },
  // its fields are checked by lib/jobs/options.ts
  queue: { check: isPlainObject, expected: 'an object' }
}

// `attempts` and `backoff` are checked by lib/backoff.ts, as for durable tasks: their rules only let the keys in
const checkedApart: Rule = { check: () => true, expected: '' }

const callRules: Record<keyof DeferOptions, Rule> = {
  name: { check: (v) => typeof v === 'string' && v.length > 0, expected: 'a non-empty string' },
  timeout: milliseconds,
  always: boolean,
  attempts: checkedApart,
  backoff: checkedApart
}

// Options Fastify itself reads from every register() call.
const registerOptions = new Set(['prefix', 'logLevel', 'logSerializers'])

function isPlainObject (value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return false
  const proto = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

function validate<T> (where: string, value: unknown, rules: Record<string, Rule>, ignored?: Set<string>): Partial<T> {
  if (!isPlainObject(value)) {
    throw new FST_SAC_INVALID_OPTION(where, 'the options', 'an object', describe(value))
  }
  for (const key of Object.keys(value)) {
    const rule = rules[key]
    if (rule === undefined) {
      if (ignored?.has(key)) continue
      throw new FST_SAC_UNKNOWN_OPTION(where, describe(key), Object.keys(rules).join(', '))
    }
    const given = value[key]
    // undefined means "not set": it falls back to the default, as a missing key does
    if (given !== undefined && !rule.check(given)) {
      throw new FST_SAC_INVALID_OPTION(where, key, rule.expected, describe(given))
    }
  }
  return value as Partial<T>
}

function pick<T> (given: T | undefined, fallback: T): T {
  return given === undefined ? fallback : given
}

export function resolvePluginOptions (options: unknown): PluginSettings {
  const given = validate<SendAndContinueOptions>('fastify-send-and-continue', options, pluginRules, registerOptions)
  return {
    enabled: true,
    timeout: pick(given.timeout, defaults.timeout),
    onClientAbort: pick(given.onClientAbort, defaults.onClientAbort),
    closeConnection: pick(given.closeConnection, defaults.closeConnection),
    drainTimeout: pick(given.drainTimeout, defaults.drainTimeout),
    global: pick(given.global, defaults.global),
    concurrency: pick(given.concurrency, defaults.concurrency),
    maxQueued: pick(given.maxQueued, defaults.maxQueued),
    onDropped: pick(given.onDropped, defaults.onDropped),
    rejectWhenSaturated: pick(given.rejectWhenSaturated, defaults.rejectWhenSaturated),
    retryAfter: pick(given.retryAfter, defaults.retryAfter),
    tracing: pick(given.tracing, defaults.tracing),
    metrics: pick(given.metrics, defaults.metrics),
    responseLogLevel: pick(given.responseLogLevel, defaults.responseLogLevel)
  }
}

/**
 * Merges a route's `config.sendAndContinue` over the plugin settings.
 * `route` names the route in error messages ("GET /users/:id").
 */
export function resolveRouteSettings (plugin: PluginSettings, config: unknown, route: string): RouteSettings {
  if (config === undefined) {
    return plugin.global ? plugin : { ...plugin, enabled: false }
  }
  if (typeof config === 'boolean') {
    return config ? plugin : { ...plugin, enabled: false }
  }
  const where = `route ${route} config.sendAndContinue`
  if (!isPlainObject(config)) {
    throw new FST_SAC_INVALID_OPTION(where, 'the value', 'false, true or an object', describe(config))
  }
  const given = validate<RouteSendAndContinueOptions>(where, config, routeRules)
  return {
    enabled: true,
    timeout: pick(given.timeout, plugin.timeout),
    onClientAbort: pick(given.onClientAbort, plugin.onClientAbort),
    closeConnection: pick(given.closeConnection, plugin.closeConnection),
    rejectWhenSaturated: pick(given.rejectWhenSaturated, plugin.rejectWhenSaturated),
    retryAfter: pick(given.retryAfter, plugin.retryAfter),
    tracing: plugin.tracing,
    responseLogLevel: plugin.responseLogLevel
  }
}

const NO_OPTIONS: DeferOptions = Object.freeze({})

export function validateCallOptions (where: string, options: unknown): DeferOptions {
  if (options === undefined) return NO_OPTIONS
  const given = validate<DeferOptions>(where, options, callRules)
  if (given.attempts !== undefined) checkAttempts(where, given.attempts)
  // a copy of its own: the caller may change the object it passed after the call
  if (given.backoff !== undefined) return { ...given, backoff: checkBackoff(where, given.backoff) }
  return given
}
