import { zeroOutcomes } from '../types'
import { OUTCOMES } from './types'
import type { OutcomeCounts, ReportOutcome, TimelineBucket } from './types'

/** Most bars the timeline keeps: past it, the step widens and neighbouring bars merge. */
export const MAX_BARS = 120

const SECOND = 1000
const MINUTE = 60 * SECOND
const HOUR = 60 * MINUTE
const DAY = 24 * HOUR
// each step divides the next, so widening merges whole bars and the counts stay exact
export const STEPS_MS = [100, 200, SECOND, 2 * SECOND, 10 * SECOND, 30 * SECOND, MINUTE, 5 * MINUTE, 10 * MINUTE,
  30 * MINUTE, HOUR, 2 * HOUR, 6 * HOUR, 12 * HOUR, DAY, 2 * DAY, 4 * DAY, 8 * DAY, 16 * DAY, 32 * DAY]

interface Bar { outcomes: OutcomeCounts, refused: number }

/**
 * Counts over time in bounded memory, whatever the order of the lines (several files, each in
 * order, are not in order together): bars keyed by their start, at most MAX_BARS of them.
 */
export class Timeline {
  #step = 0
  #bars = new Map<number, Bar>()
  #first = Infinity
  #last = -Infinity

  get bucketMs (): number {
    return STEPS_MS[this.#step]
  }

  add (time: number, outcome: ReportOutcome | 'refused'): void {
    const bar = this.#bar(time)
    if (outcome === 'refused') bar.refused++
    else bar.outcomes[outcome]++
  }

  #bar (time: number): Bar {
    let index = Math.floor(time / this.bucketMs)
    this.#first = Math.min(this.#first, index)
    this.#last = Math.max(this.#last, index)
    while (this.#last - this.#first + 1 > MAX_BARS && this.#step < STEPS_MS.length - 1) {
      this.#widen()
      index = Math.floor(time / this.bucketMs)
    }
    let bar = this.#bars.get(index)
    if (bar === undefined) {
      bar = { outcomes: zeroOutcomes(), refused: 0 }
      this.#bars.set(index, bar)
    }
    return bar
  }

  #widen (): void {
    const from = this.bucketMs
    this.#step++
    const ratio = this.bucketMs / from
    const merged = new Map<number, Bar>()
    for (const [index, bar] of this.#bars) {
      const into = Math.floor(index / ratio)
      const target = merged.get(into)
      if (target === undefined) merged.set(into, bar)
      else {
        for (const outcome of OUTCOMES) target.outcomes[outcome] += bar.outcomes[outcome]
        target.refused += bar.refused
      }
    }
    this.#bars = merged
    this.#first = Math.floor(this.#first / ratio)
    this.#last = Math.floor(this.#last / ratio)
  }

  /** Every bar from the first to the last, the empty ones included, so the axis is even. */
  buckets (): TimelineBucket[] {
    const buckets: TimelineBucket[] = []
    if (this.#bars.size === 0) return buckets
    for (let index = this.#first; index <= this.#last; index++) {
      const bar = this.#bars.get(index)
      buckets.push({
        start: new Date(index * this.bucketMs).toISOString(),
        outcomes: bar === undefined ? zeroOutcomes() : { ...bar.outcomes },
        refused: bar?.refused ?? 0
      })
    }
    return buckets
  }
}
