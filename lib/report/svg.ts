import { OUTCOMES, RAN_OUTCOMES } from './types'
import type { HistogramBucket, TimelineBucket } from './types'
import { formatCount, formatMs } from './text'

// Charts as inline SVG, drawn on the server side: they show with JavaScript off, load nothing,
// and each bar carries its numbers (data-*) and a tooltip (<title>).

export function escapeHtml (text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;')
}

const WIDTH = 1000
const HEIGHT = 180
const TOP = 10
const BOTTOM = 26
const LEFT = 44

interface Segment { key: string, count: number }

function stackedBars (bars: Array<{ attributes: string, title: string, segments: Segment[] }>, labels: Array<{ at: number, text: string }>, label: string): string {
  const top = Math.max(1, ...bars.map((bar) => bar.segments.reduce((sum, segment) => sum + segment.count, 0)))
  const plot = HEIGHT - TOP - BOTTOM
  const slot = (WIDTH - LEFT) / Math.max(1, bars.length)
  const gap = Math.min(2, slot * 0.15)
  const out: string[] = [
    `<svg class="chart" viewBox="0 0 ${WIDTH} ${HEIGHT}" role="img" aria-label="${escapeHtml(label)}" preserveAspectRatio="none">`,
    `<line x1="${LEFT}" y1="${TOP + plot}" x2="${WIDTH}" y2="${TOP + plot}" class="axis"/>`,
    `<text x="${LEFT - 6}" y="${TOP + 4}" class="tick" text-anchor="end">${formatCount(top)}</text>`,
    `<text x="${LEFT - 6}" y="${TOP + plot}" class="tick" text-anchor="end">0</text>`
  ]
  bars.forEach((bar, i) => {
    const x = LEFT + i * slot + gap / 2
    let y = TOP + plot
    out.push(`<g ${bar.attributes}><title>${escapeHtml(bar.title)}</title>`)
    // an invisible full-height rectangle: the tooltip shows over the whole column, not only its bar
    out.push(`<rect x="${x.toFixed(2)}" y="${TOP}" width="${(slot - gap).toFixed(2)}" height="${plot}" class="hit"/>`)
    for (const segment of bar.segments) {
      if (segment.count === 0) continue
      const height = segment.count / top * plot
      y -= height
      out.push(`<rect x="${x.toFixed(2)}" y="${y.toFixed(2)}" width="${(slot - gap).toFixed(2)}" height="${height.toFixed(2)}" class="fill-${segment.key}"/>`)
    }
    out.push('</g>')
  })
  for (const tick of labels) {
    const x = LEFT + tick.at * slot
    out.push(`<text x="${x.toFixed(2)}" y="${HEIGHT - 8}" class="tick" text-anchor="${tick.at === 0 ? 'start' : tick.at >= bars.length ? 'end' : 'middle'}">${escapeHtml(tick.text)}</text>`)
  }
  out.push('</svg>')
  return out.join('')
}

function clock (iso: string, bucketMs: number): string {
  const time = iso.slice(11, bucketMs < 1000 ? 23 : 19)
  return bucketMs >= 86_400_000 ? iso.slice(0, 10) : time
}

/** Final outcomes (and refused requests) over the log's period, one stacked bar per step. */
export function timelineChart (buckets: TimelineBucket[], bucketMs: number): string {
  const bars = buckets.map((bucket) => {
    const segments: Segment[] = [...OUTCOMES.map((outcome) => ({ key: outcome, count: bucket.outcomes[outcome] })), { key: 'refused', count: bucket.refused }]
    const parts = segments.filter((segment) => segment.count > 0).map((segment) => `${formatCount(segment.count)} ${segment.key}`)
    return {
      attributes: `data-time="${bucket.start}" ${OUTCOMES.map((outcome) => `data-${outcome}="${bucket.outcomes[outcome]}"`).join(' ')} data-refused="${bucket.refused}"`,
      title: `${bucket.start.replace('T', ' ').replace('Z', ' UTC')}: ${parts.join(', ') || 'nothing'}`,
      segments
    }
  })
  const ticks = [0, Math.floor(buckets.length / 2), buckets.length - 1]
    .filter((at, i, all) => all.indexOf(at) === i)
    .map((at) => ({ at, text: clock(buckets[at].start, bucketMs) }))
  return stackedBars(bars, ticks, 'Task outcomes over time')
}

/** How long the tasks of a group ran, one bar per duration range, stacked by outcome. */
export function histogramChart (buckets: HistogramBucket[]): string {
  const bars = buckets.map((bucket) => {
    const range = bucket.gt === null ? `up to ${formatMs(bucket.le)}` : bucket.le === null ? `over ${formatMs(bucket.gt)}` : `${formatMs(bucket.gt)} to ${formatMs(bucket.le)}`
    const parts = RAN_OUTCOMES.filter((outcome) => bucket.outcomes[outcome] > 0).map((outcome) => `${formatCount(bucket.outcomes[outcome])} ${outcome}`)
    return {
      attributes: `data-le="${bucket.le ?? 'inf'}" data-count="${bucket.count}" ${RAN_OUTCOMES.map((outcome) => `data-${outcome}="${bucket.outcomes[outcome]}"`).join(' ')}`,
      title: `${range}: ${parts.join(', ') || 'no task'}`,
      segments: RAN_OUTCOMES.map((outcome) => ({ key: outcome, count: bucket.outcomes[outcome] }))
    }
  })
  const bound = (bucket: HistogramBucket): string => bucket.le === null ? `> ${formatMs(bucket.gt)}` : formatMs(bucket.le)
  const ticks = [{ at: 0, text: buckets[0].gt === null ? '0' : formatMs(buckets[0].gt) }]
  if (buckets.length > 2) ticks.push({ at: Math.floor(buckets.length / 2), text: formatMs(buckets[Math.floor(buckets.length / 2)].gt) })
  ticks.push({ at: buckets.length, text: bound(buckets[buckets.length - 1]) })
  return stackedBars(bars, ticks, 'Duration histogram, by outcome')
}
