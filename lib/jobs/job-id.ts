import { createHash, randomUUID } from 'node:crypto'

// BullMQ job ids are Redis key parts: an id with ':' breaks its key layout, and an all-digit id
// collides with the counter BullMQ uses for ids it makes itself, so both are refused. Ids are
// made here, never taken as given: `<task>~<key>`, percent-encoded (':' becomes '%3A', '~' '%7E').
// The separator keeps them from ever being all digits.

const MAX_KEY_LENGTH = 128

function encode (text: string): string {
  return encodeURIComponent(text).replace(/~/g, '%7E')
}

/** The id of a job with a key: the same task and key always give the same id. */
export function keyedJobId (task: string, key: string): string {
  const encoded = encode(key)
  // long keys (whole URLs with query strings, JSON) are hashed so Redis keys stay short
  const part = encoded.length <= MAX_KEY_LENGTH
    ? encoded
    : `sha256-${createHash('sha256').update(key).digest('base64url')}`
  return `${encode(task)}~${part}`
}

/**
 * The id of a job without a key: unique across processes and restarts. (A request id such as
 * Fastify's `req-1` restarts at 1 in every process, so it must never be one.)
 */
export function uniqueJobId (task: string): string {
  let prefix = prefixes.get(task)
  if (prefix === undefined) {
    prefix = `${encode(task)}~`
    prefixes.set(task, prefix)
  }
  return prefix + randomUUID()
}

// the id prefix of each task name (only the names of defined tasks come here: a bounded set)
const prefixes = new Map<string, string>()
