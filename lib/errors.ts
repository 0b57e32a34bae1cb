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
    '%s: task should be a function or a non-empty array of functions, instead got %s',
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
  )
}

export const {
  FST_SAC_INVALID_OPTION,
  FST_SAC_UNKNOWN_OPTION,
  FST_SAC_INVALID_TASK,
  FST_SAC_NOT_ENABLED,
  FST_SAC_ALREADY_SENT,
  FST_SAC_HIJACKED
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
