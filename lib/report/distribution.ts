import { build } from 'hdr-histogram-js'
import type { Histogram } from 'hdr-histogram-js'
import type { HistogramBucket, Percentiles } from './types'

/** Upper bounds, in ms, of the duration histogram's bars; one more bar holds everything slower. */
export const BUCKET_BOUNDS_MS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 30_000, 60_000]

function toMs (microseconds: number): number {
  return Math.round(microseconds) / 1000
}

/**
 * Millisecond values in constant memory: an HdrHistogram over whole microseconds (the log rounds
 * to 3 decimals of a millisecond) for the percentiles, the exact maximum, and optional fixed buckets.
 */
export class Distribution {
  count = 0
  #histogram: Histogram | null = null
  #max = 0
  #buckets: number[] | null

  constructor (withBuckets: boolean) {
    this.#buckets = withBuckets ? new Array<number>(BUCKET_BOUNDS_MS.length + 1).fill(0) : null
  }

  record (ms: number): void {
    const microseconds = Math.round(ms * 1000)
    // 'packed' keeps a group that saw few distinct values at a few hundred bytes
    this.#histogram ??= build({ bitBucketSize: 'packed', numberOfSignificantValueDigits: 3 })
    this.#histogram.recordValue(microseconds)
    this.count++
    if (microseconds > this.#max) this.#max = microseconds
    if (this.#buckets !== null) {
      let i = 0
      while (i < BUCKET_BOUNDS_MS.length && ms > BUCKET_BOUNDS_MS[i]) i++
      this.#buckets[i]++
    }
  }

  percentiles (): Percentiles {
    const histogram = this.#histogram
    if (histogram === null) return { count: 0, p50: null, p95: null, p99: null, max: null }
    // the histogram answers with the top of a value's bucket, which can pass the real maximum
    const at = (percentile: number): number => toMs(Math.min(histogram.getValueAtPercentile(percentile), this.#max))
    return { count: this.count, p50: at(50), p95: at(95), p99: at(99), max: toMs(this.#max) }
  }

  buckets (): HistogramBucket[] {
    const counts = this.#buckets ?? []
    return counts.map((count, i) => ({ le: i < BUCKET_BOUNDS_MS.length ? BUCKET_BOUNDS_MS[i] : null, count }))
  }
}
