'use strict'

// Half of saturation: the same steady open-loop rate on a few variants (bench/load/paced.js),
// p99 latency at equal load and the dispatch latency the probe variant records.

const { measure, rotate, fmt } = require('./wallclock')
const { spread, percentiles, paired } = require('../stats')

const FIXED_RATE_VARIANTS = ['plain', 'sac-50ms', 'sac-50ms-probe', 'setimmediate-50ms', 'onresponse-50ms']

async function runFixedRate ({ byName, rate, rounds, seconds, probe, log }) {
  const fixed = []
  for (let r = 0; r < rounds; r++) {
    const round = {}
    for (const name of rotate(FIXED_RATE_VARIANTS, r)) {
      const result = await measure(byName.get(name), 'paced', { seconds, rate, dispatch: name === probe.name })
      round[name] = result
      log(`fixed rate ${rate} req/s ${name.padEnd(18)} ${fmt(result.rps).padStart(6)} req/s  p50 ${fmt(result.latencyP50, 3)} ms  p99 ${fmt(result.latencyP99, 3)} ms`)
    }
    fixed.push(round)
  }
  const summary = { rate }
  const p99Of = (name) => fixed.map((round) => round[name].latencyP99)
  for (const name of FIXED_RATE_VARIANTS) {
    const runs = fixed.map((round) => round[name])
    summary[name] = {
      latencyP50: spread(runs.map((run) => run.latencyP50)),
      latencyP99: spread(p99Of(name)),
      rps: spread(runs.map((run) => run.rps)),
      cpuMicrosPerRequest: spread(runs.map((run) => run.cpuMicrosPerRequest)),
      tasksPerRequest: spread(runs.map((run) => run.tasksPerRequest)),
      ratioLatencyP99: spread(paired(p99Of(name), p99Of('plain'))),
      ratioLatencyP99VsSetImmediate: spread(paired(p99Of(name), p99Of('setimmediate-50ms')))
    }
  }
  const samples = fixed.flatMap((round) => round[probe.name].dispatchMs)
  const dispatch = percentiles(samples.filter((ms) => Number.isFinite(ms)).map((ms) => ms * 1000))
  summary.dispatchMicros = { ...dispatch, missing: samples.filter((ms) => !Number.isFinite(ms)).length }
  log(`dispatch latency: p50 ${fmt(summary.dispatchMicros.p50, 1)} us, p99 ${fmt(summary.dispatchMicros.p99, 1)} us over ${summary.dispatchMicros.count} tasks`)
  return summary
}

module.exports = { runFixedRate, FIXED_RATE_VARIANTS }
