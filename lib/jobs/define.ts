import { describe, FST_SAC_INVALID_OPTION, FST_SAC_UNKNOWN_OPTION } from '../errors'
import { checkAttempts, checkBackoff } from '../backoff'
import { MAX_TIMEOUT } from '../limits'
import { assertJsonSafe } from './json'
import { keyedJobId, uniqueJobId } from './job-id'
import { kDurableJob } from './types'
import type { DurableHandler, DurableJob, DurableTask, DurableTaskOptions, JobOptions, JsonValue } from './types'

// in a `u` pattern a surrogate pair is one code point: only a lone surrogate matches
const LONE_SURROGATE = /\p{Cs}/u
const WELL_FORMED = 'a well-formed string (no lone UTF-16 surrogate, as a string cut inside an emoji has)'

/** Time limit of one attempt when `defineTask()` is given none, as for in-process tasks. */
export const DEFAULT_TASK_TIMEOUT = 30_000

function isMs (value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= MAX_TIMEOUT
}

const MS = `a whole number of milliseconds from 0 to ${MAX_TIMEOUT}`

function isObject (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function checkKeys (where: string, given: Record<string, unknown>, known: string[]): void {
  for (const key of Object.keys(given)) {
    if (!known.includes(key)) throw new FST_SAC_UNKNOWN_OPTION(where, describe(key), known.join(', '))
  }
}

/**
 * Defines a durable task: a named handler that runs in a worker process, from a job enqueued in
 * Redis before the response is sent. Load the same module of tasks in the web app (the plugin's
 * `queue.tasks`) and in the worker.
 * @example
 * export const sendWelcome = defineTask('sendWelcome', async ({ userId }, { signal }) => mailer.welcome(userId, { signal }), { attempts: 3 })
 */
export function defineTask<Data extends JsonValue = JsonValue> (
  name: string,
  handler: DurableHandler<Data>,
  options: DurableTaskOptions = {}
): DurableTask<Data> {
  const where = 'defineTask()'
  if (typeof name !== 'string' || name.length === 0) {
    throw new FST_SAC_INVALID_OPTION(where, 'name', 'a non-empty string', describe(name))
  }
  // a lone UTF-16 surrogate has no encoding in a job id (and no UTF-8 form in a line or a store)
  if (LONE_SURROGATE.test(name)) throw new FST_SAC_INVALID_OPTION(where, 'name', WELL_FORMED, describe(name))
  const named = `defineTask(${JSON.stringify(name)})`
  if (typeof handler !== 'function') {
    throw new FST_SAC_INVALID_OPTION(named, 'handler', 'a function', describe(handler))
  }
  if (!isObject(options)) throw new FST_SAC_INVALID_OPTION(named, 'the options', 'an object', describe(options))
  checkKeys(named, options, ['attempts', 'backoff', 'timeout'])
  const { timeout = DEFAULT_TASK_TIMEOUT } = options
  const attempts = checkAttempts(named, options.attempts ?? 1)
  if (!isMs(timeout)) throw new FST_SAC_INVALID_OPTION(named, 'timeout', MS, describe(timeout))
  const backoff = checkBackoff(named, options.backoff)

  const task: DurableTask<Data> = {
    name,
    handler,
    attempts,
    backoff,
    timeout,
    with: function withData (data: Data, jobOptions?: JobOptions): DurableJob<Data> {
      return describeJob(task, data, jobOptions)
    }
  }
  return Object.freeze(task)
}

function describeJob<Data extends JsonValue> (task: DurableTask<Data>, data: Data, options: JobOptions = {}): DurableJob<Data> {
  const where = `${task.name}.with()`
  assertJsonSafe(where, data)
  if (!isObject(options)) throw new FST_SAC_INVALID_OPTION(where, 'the options', 'an object', describe(options))
  checkKeys(where, options, ['key', 'delay'])
  const { key, delay = 0 } = options
  if (key !== undefined && (typeof key !== 'string' || key.length === 0)) {
    throw new FST_SAC_INVALID_OPTION(where, 'key', 'a non-empty string', describe(key))
  }
  if (key !== undefined && LONE_SURROGATE.test(key)) throw new FST_SAC_INVALID_OPTION(where, 'key', WELL_FORMED, describe(key))
  if (!isMs(delay)) throw new FST_SAC_INVALID_OPTION(where, 'delay', MS, describe(delay))
  return {
    [kDurableJob]: true,
    task,
    data,
    jobId: key === undefined ? uniqueJobId(task.name) : keyedJobId(task.name, key),
    keyed: key !== undefined,
    delay
  }
}
