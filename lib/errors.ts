import createError from '@fastify/error'
import { inspect } from 'node:util'

/**
 * Renders a value the way the error messages quote it: `'abc'`, `12`, `[Function: f]`. Values
 * come from users and tasks, so one that fights back (a Proxy whose traps throw) is described
 * rather than allowed to throw.
 */
export function describe (value: unknown): string {
  try {
    return inspect(value, { depth: 1, breakLength: Infinity })
  } catch {
    return 'a value that cannot be inspected'
  }
}

// Every error this plugin throws, declared once: the exports, the code union and the set the
// type guard reads are all derived from this object.
const errors = {
  /** An option has a value of the wrong type or range. Arguments: where, option, expected, given. */
  FST_SAC_INVALID_OPTION: createError<'FST_SAC_INVALID_OPTION', [string, string, string, string]>(
    'FST_SAC_INVALID_OPTION',
    '%s: %s should be %s, instead got %s',
    500,
    TypeError
  ),
  /** An option name this plugin does not know (usually a typo). Arguments: where, option, known options. */
  FST_SAC_UNKNOWN_OPTION: createError<'FST_SAC_UNKNOWN_OPTION', [string, string, string]>(
    'FST_SAC_UNKNOWN_OPTION',
    '%s: unknown option %s, expected one of %s',
    500,
    TypeError
  ),
  /** A task is not a function. Arguments: where, given. */
  FST_SAC_INVALID_TASK: createError<'FST_SAC_INVALID_TASK', [string, string]>(
    'FST_SAC_INVALID_TASK',
    '%s: task should be a function, a durable job from task.with() or a non-empty array of them, instead got %s',
    500,
    TypeError
  ),
  /** Deferred work on a route that does not allow it. Arguments: route, reason. */
  FST_SAC_NOT_ENABLED: createError<'FST_SAC_NOT_ENABLED', [string, string]>(
    'FST_SAC_NOT_ENABLED',
    'deferred work is not enabled on route %s: %s',
    500
  ),
  /** `reply.sendAndContinue()` on a reply that was already sent. Argument: route. */
  FST_SAC_ALREADY_SENT: createError<'FST_SAC_ALREADY_SENT', [string]>(
    'FST_SAC_ALREADY_SENT',
    'reply.sendAndContinue() was called on route %s after the reply was sent; use reply.defer() to add work to a sent reply',
    500
  ),
  /** `reply.sendAndContinue()` on a hijacked reply. Argument: route. */
  FST_SAC_HIJACKED: createError<'FST_SAC_HIJACKED', [string]>(
    'FST_SAC_HIJACKED',
    'reply.sendAndContinue() cannot send the hijacked reply of route %s; write the response to reply.raw and register the work with reply.defer()',
    500
  ),
  /** Durable work: a job's data that would not survive JSON unchanged. Arguments: where, path, given. */
  FST_SAC_INVALID_JOB_DATA: createError<'FST_SAC_INVALID_JOB_DATA', [string, string, string]>(
    'FST_SAC_INVALID_JOB_DATA',
    '%s: %s should be a JSON value (a plain object, array, string, finite number, boolean or null), instead got %s',
    500,
    TypeError
  ),
  /** Durable work: two tasks with one name. Arguments: where, name. */
  FST_SAC_DUPLICATE_TASK: createError<'FST_SAC_DUPLICATE_TASK', [string, string]>(
    'FST_SAC_DUPLICATE_TASK',
    '%s: task names should be unique, instead got %s twice',
    500,
    TypeError
  ),
  /** Durable work: a job for a task the queue (or worker) was not given. Arguments: where, name, known names. */
  FST_SAC_UNKNOWN_TASK: createError<'FST_SAC_UNKNOWN_TASK', [string, string, string]>(
    'FST_SAC_UNKNOWN_TASK',
    '%s: the task should be one of the tasks given to the queue (%s), instead got %s',
    500
  ),
  /** Durable work: a durable job while the plugin has no `queue` option. Argument: where. */
  FST_SAC_NO_QUEUE: createError<'FST_SAC_NO_QUEUE', [string]>(
    'FST_SAC_NO_QUEUE',
    '%s: a durable job needs the plugin registered with the queue option, instead got no queue option',
    500
  ),
  /** Durable work: Redis did not answer at startup. Arguments: where, timeout, error message. */
  FST_SAC_REDIS_UNREACHABLE: createError<'FST_SAC_REDIS_UNREACHABLE', [string, number, string]>(
    'FST_SAC_REDIS_UNREACHABLE',
    '%s: Redis should answer within %d ms, instead got %s',
    500
  ),
  /** Durable work: Redis may evict keys, so jobs could vanish. Arguments: where, policy found. */
  FST_SAC_REDIS_EVICTION: createError<'FST_SAC_REDIS_EVICTION', [string, string]>(
    'FST_SAC_REDIS_EVICTION',
    "%s: Redis maxmemory-policy should be 'noeviction' (any other policy may evict jobs), instead got '%s'",
    500
  ),
  /** BullMQ engine: a prefix without a hash tag on a Redis Cluster. Arguments: where, prefix given. */
  FST_SAC_CLUSTER_PREFIX: createError<'FST_SAC_CLUSTER_PREFIX', [string, string]>(
    'FST_SAC_CLUSTER_PREFIX',
    "%s: prefix should contain a hash tag such as '{bull}' on a Redis Cluster (BullMQ keeps every key of a queue in one hash slot), instead got %s",
    500,
    TypeError
  ),
  /** Durable work: an option that belongs to another engine. Arguments: where, option, the engine it belongs to, the engine given. */
  FST_SAC_ENGINE_OPTION: createError<'FST_SAC_ENGINE_OPTION', [string, string, string, string]>(
    'FST_SAC_ENGINE_OPTION',
    "%s: %s is an option of the %s engine, it should not be given with engine '%s'",
    500,
    TypeError
  ),
  /** Durable work: the package an engine needs is not installed. Arguments: where, engine, package, install command. */
  FST_SAC_MISSING_DRIVER: createError<'FST_SAC_MISSING_DRIVER', [string, string, string, string]>(
    'FST_SAC_MISSING_DRIVER',
    "%s: the '%s' engine needs the package %s, which is not installed; install it with: %s",
    500
  ),
  /** Metrics: serving Prometheus text needs the OpenTelemetry metrics SDK, not installed. Arguments: where, option, packages, install command. */
  FST_SAC_MISSING_METRICS_SDK: createError<'FST_SAC_MISSING_METRICS_SDK', [string, string, string, string]>(
    'FST_SAC_MISSING_METRICS_SDK',
    '%s: %s needs the OpenTelemetry metrics SDK, which is not installed (missing: %s); install it with: %s',
    500
  ),
  /** SQLite engine: the database file cannot be created or opened. Arguments: where, path, error message. */
  FST_SAC_SQLITE_PATH: createError<'FST_SAC_SQLITE_PATH', [string, string, string]>(
    'FST_SAC_SQLITE_PATH',
    '%s: path should name a database file this process can create or write, instead got %s (%s)',
    500
  ),
  /** SQLite engine: the file is a database of something else (never modified). Arguments: where, path, what was found. */
  FST_SAC_SQLITE_FOREIGN: createError<'FST_SAC_SQLITE_FOREIGN', [string, string, string]>(
    'FST_SAC_SQLITE_FOREIGN',
    "%s: %s should be this engine's job database or a new file, instead got %s; it was left unchanged",
    500
  ),
  /** SQLite engine: the file was written by a newer version of this package (never modified). Arguments: where, path, version supported, version found. */
  FST_SAC_SQLITE_SCHEMA: createError<'FST_SAC_SQLITE_SCHEMA', [string, string, number, number]>(
    'FST_SAC_SQLITE_SCHEMA',
    '%s: %s should have schema version %d or older, instead got %d (written by a newer fastify-send-and-continue); it was left unchanged',
    500
  )
}

export const {
  FST_SAC_INVALID_OPTION,
  FST_SAC_UNKNOWN_OPTION,
  FST_SAC_INVALID_TASK,
  FST_SAC_NOT_ENABLED,
  FST_SAC_ALREADY_SENT,
  FST_SAC_HIJACKED,
  FST_SAC_INVALID_JOB_DATA,
  FST_SAC_DUPLICATE_TASK,
  FST_SAC_UNKNOWN_TASK,
  FST_SAC_NO_QUEUE,
  FST_SAC_REDIS_UNREACHABLE,
  FST_SAC_REDIS_EVICTION,
  FST_SAC_CLUSTER_PREFIX,
  FST_SAC_ENGINE_OPTION,
  FST_SAC_MISSING_DRIVER,
  FST_SAC_MISSING_METRICS_SDK,
  FST_SAC_SQLITE_PATH,
  FST_SAC_SQLITE_FOREIGN,
  FST_SAC_SQLITE_SCHEMA
} = errors

/** Every error code this plugin throws. */
export type SendAndContinueErrorCode = keyof typeof errors

const codes: ReadonlySet<string> = new Set(Object.keys(errors))

/** An error thrown by this plugin. */
export interface SendAndContinueError extends Error {
  code: SendAndContinueErrorCode
  statusCode: number
}

/**
 * Type guard for this plugin's errors.
 * @example
 * if (isSendAndContinueError(err) && err.code === 'FST_SAC_NOT_ENABLED') { ... }
 */
export function isSendAndContinueError (error: unknown): error is SendAndContinueError {
  return error instanceof Error && codes.has((error as { code?: unknown }).code as string)
}
