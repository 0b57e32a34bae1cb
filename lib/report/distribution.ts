import { build } from 'hdr-histogram-js'
import type { Histogram } from 'hdr-histogram-js'
import { RAN_OUTCOMES } from './types'
import type { HistogramBucket, Percentiles, RanOutcome } from './types'

// Renard's R20 series: twenty steps per decade, each about 12% above the previous one. Fine
// enough that tasks ending at 200-214 ms land in one bar (200-224 ms), not among "up to 500 ms".
const R20 = [1, 1.12, 1.25, 1.4, 1.6, 1.8, 2, 2.24, 2.5, 2.8, 3.15, 3.55, 4, 4.5, 5, 5.6, 6.3, 7.1, 8, 9]

function r20Bounds (fromMs: number, toMs: number): number[] {
  const bounds: number[] = []
  for (let decade = fromMs; decade < toMs; decade *= 10) {
    // rounded to the microsecond: 0.1 * 1.12 is not 0.112 in floating point
    for (const step of R20) bounds.push(Math.round(decade * step * 1000) / 1000)
  }
  bounds.push(toMs)
  return bounds
}

/** Upper bounds, in ms, of the duration histogram's bars, 0.1 ms to 1,000 s; one more bar holds everything slower. */
export const BUCKET_BOUNDS_MS = r20Bounds(0.1, 1_000_000)

/** Fewest bars `buckets()` returns when there are values: one decade. */
export const MIN_BARS = 20

function toMs (microseconds: number): number {
  return Math.round(microseconds) / 1000
}

/** Index of the bar of `ms`: the first bound at or above it. */
function bucketOf (ms: number): number {
  let low = 0
  let high = BUCKET_BOUNDS_MS.length
  while (low < high) {
    const middle = (low + high) >>> 1
    if (BUCKET_BOUNDS_MS[middle] < ms) low = middle + 1
    else high = middle
  }
  return low
}

/**
 * Millisecond values in constant memory: an HdrHistogram over whole microseconds (the log rounds
 * to 3 decimals of a millisecond) for the percentiles, the exact maximum, and optional bars by outcome.
 */
export class Distribution {
  count = 0
  #histogram: Histogram | null = null
  #max = 0
  /** Per bar, one counter per outcome in RAN_OUTCOMES order; `null` without bars. */
  #buckets: Uint32Array | null

  constructor (withBuckets: boolean) {
    this.#buckets = withBuckets ? new Uint32Array((BUCKET_BOUNDS_MS.length + 1) * RAN_OUTCOMES.length) : null
  }

  record (ms: number, outcome: RanOutcome = 'completed'): void {
    const microseconds = Math.round(ms * 1000)
    // 'packed' keeps a group that saw few distinct values at a few hundred bytes
    this.#histogram ??= build({ bitBucketSize: 'packed', numberOfSignificantValueDigits: 3 })
    this.#histogram.recordValue(microseconds)
    this.count++
    if (microseconds > this.#max) this.#max = microseconds
    if (this.#buckets !== null) this.#buckets[bucketOf(ms) * RAN_OUTCOMES.length + RAN_OUTCOMES.indexOf(outcome)]++
  }

  percentiles (): Percentiles {
    const histogram = this.#histogram
    if (histogram === null) return { count: 0, p50: null, p95: null, p99: null, max: null }
    // the histogram answers with the top of a value's bucket, which can pass the real maximum
    const at = (percentile: number): number => toMs(Math.min(histogram.getValueAtPercentile(percentile), this.#max))
    return { count: this.count, p50: at(50), p95: at(95), p99: at(99), max: toMs(this.#max) }
  }

  /** The bars from the first to the last that holds a value (the empty ones between included); none without values. */
  buckets (): HistogramBucket[] {
    const counts = this.#buckets
    if (counts === null) return []
    const width = RAN_OUTCOMES.length
    const bars: HistogramBucket[] = []
    for (let i = 0; i <= BUCKET_BOUNDS_MS.length; i++) {
      const outcomes = {} as Record<RanOutcome, number>
      let count = 0
      RAN_OUTCOMES.forEach((outcome, j) => {
        outcomes[outcome] = counts[i * width + j]
        count += outcomes[outcome]
      })
      bars.push({ gt: i === 0 ? null : BUCKET_BOUNDS_MS[i - 1], le: i < BUCKET_BOUNDS_MS.length ? BUCKET_BOUNDS_MS[i] : null, count, outcomes })
    }
    let first = bars.findIndex((bar) => bar.count > 0)
    if (first === -1) return []
    let last = bars.length - 1
    while (bars[last].count === 0) last--
    // at least a decade of bars around the values: one lone bar drawn across a whole chart says little
    while (last - first + 1 < MIN_BARS) {
      if (first > 0) first--
      if (last - first + 1 < MIN_BARS && last < bars.length - 1) last++
    }
    return bars.slice(first, last + 1)
  }
}
