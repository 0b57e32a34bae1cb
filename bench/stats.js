'use strict'

/** Quantile of an ascending array, linear between neighbours. */
function quantile (sorted, q) {
  if (sorted.length === 0) return NaN
  const at = (sorted.length - 1) * q
  const lo = Math.floor(at)
  const hi = Math.ceil(at)
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (at - lo)
}

function ascending (values) {
  return values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b)
}

/** Median, quartiles and range of a series (one value per round). */
function spread (values) {
  const sorted = ascending(values)
  return {
    n: sorted.length,
    median: quantile(sorted, 0.5),
    p25: quantile(sorted, 0.25),
    p75: quantile(sorted, 0.75),
    min: sorted.length === 0 ? NaN : sorted[0],
    max: sorted.length === 0 ? NaN : sorted[sorted.length - 1]
  }
}

/** p50/p99 of raw samples. */
function percentiles (samples) {
  const sorted = ascending(samples)
  return {
    count: sorted.length,
    p50: quantile(sorted, 0.5),
    p99: quantile(sorted, 0.99),
    max: sorted.length === 0 ? NaN : sorted[sorted.length - 1]
  }
}

/** Round-by-round ratio of two series of the same length. */
function paired (numerators, denominators) {
  return numerators.map((value, i) => value / denominators[i])
}

module.exports = { quantile, spread, percentiles, paired }
