import { describe, FST_SAC_INVALID_OPTION } from './errors'
import { MAX_TIMEOUT } from './limits'

/** Delay between attempts in ms, or `{ type, delay }`: `'fixed'` waits `delay` each time, `'exponential'` `delay × 2^(attempt − 1)`. */
export type Backoff = number | { type: 'fixed' | 'exponential', delay: number }

function isMs (value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= MAX_TIMEOUT
}

/** `backoff` as given, or a coded error saying what was expected. */
export function checkBackoff (where: string, backoff: unknown): Backoff | undefined {
  if (backoff === undefined || isMs(backoff)) return backoff
  if (typeof backoff === 'object' && backoff !== null && !Array.isArray(backoff)) {
    const given = backoff as Record<string, unknown>
    if ((given.type === 'fixed' || given.type === 'exponential') && isMs(given.delay) && Object.keys(given).length === 2) {
      return { type: given.type, delay: given.delay }
    }
  }
  throw new FST_SAC_INVALID_OPTION(where, 'backoff', `a whole number of milliseconds from 0 to ${MAX_TIMEOUT}, or { type: 'fixed' | 'exponential', delay }`, describe(backoff))
}

/** `attempts` as given (a whole number of at least 1), or a coded error. */
export function checkAttempts (where: string, attempts: unknown): number {
  if (typeof attempts === 'number' && Number.isInteger(attempts) && attempts >= 1) return attempts
  throw new FST_SAC_INVALID_OPTION(where, 'attempts', 'a whole number of at least 1', describe(attempts))
}

/** The delay before attempt `attempt + 1`, as BullMQ's built-in backoffs compute it (every engine uses this). */
export function backoffDelay (backoff: Backoff | undefined, attempt: number): number {
  if (backoff === undefined) return 0
  if (typeof backoff === 'number') return backoff
  return backoff.type === 'fixed' ? backoff.delay : Math.round(Math.pow(2, attempt - 1) * backoff.delay)
}
