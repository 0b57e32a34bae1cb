'use strict'

// Wall-clock phase: every variant's server started at once and idle while another is loaded;
// rounds interleave the variants (A B C … then B C … A), each load measured with the server's
// CPU time and request and task counts around it.

const { runAutocannon } = require('../load/autocannon')
const { runWrk } = require('../load/wrk')
const { runPaced } = require('../load/paced')
const { spread, paired } = require('../stats')

const CONNECTIONS = 50

/** One load on one server, with the server's CPU time and request and task counts around it. */
async function measure (server, tool, { seconds, rate, dispatch = false }) {
  const before = await server.snapshot()
  const load = tool === 'wrk'
    ? await runWrk(server.port, { seconds, connections: CONNECTIONS })
    : tool === 'paced'
      ? await runPaced(server.port, rate, seconds, CONNECTIONS)
      : await runAutocannon(server.port, { seconds, connections: CONNECTIONS })
  const after = await server.snapshot({ settle: true, dispatch })
  const handled = after.handled - before.handled
  const result = {
    ...load,
    handled,
    cpuMicrosPerRequest: (after.cpuMicros - before.cpuMicros) / handled,
    tasksPerRequest: (after.completed - before.completed) / handled,
    dropped: after.stats === null ? 0 : after.stats.dropped - before.stats.dropped
  }
  if (after.dispatchMs !== undefined) result.dispatchMs = after.dispatchMs
  return result
}

function rotate (list, by) {
  const at = by % list.length
  return [...list.slice(at), ...list.slice(0, at)]
}

function fmt (value, digits = 0) {
  return Number.isFinite(value) ? value.toFixed(digits) : '-'
}

async function warmUp (servers, seconds, probe) {
  for (const server of servers) {
    // the probe is only loaded in the fixed-rate phase: give it the JIT warm-up the others get from the rounds
    await runAutocannon(server.port, { seconds: server.variant === probe ? 4 * seconds : seconds, connections: CONNECTIONS })
    await server.snapshot({ settle: true, dispatch: server.variant === probe })
  }
}

async function runRounds ({ servers, tools, seconds, rounds, log }) {
  const results = []
  for (let r = 0; r < rounds; r++) {
    const round = Object.fromEntries(tools.map((tool) => [tool, {}]))
    for (const server of rotate(servers, r)) {
      for (const tool of tools) {
        const result = await measure(server, tool, { seconds: seconds[tool] })
        round[tool][server.variant.name] = result
        log(`round ${r + 1}/${rounds} ${tool.padEnd(10)} ${server.variant.name.padEnd(26)} ${fmt(result.rps).padStart(6)} req/s  p99 ${fmt(result.latencyP99, 2).padStart(6)} ms  ${fmt(result.cpuMicrosPerRequest, 1).padStart(6)} us CPU/req  ${fmt(result.tasksPerRequest, 2)} tasks/req`)
      }
    }
    results.push(round)
  }
  return results
}

function summarize (rounds, tools, variants) {
  const summary = {}
  for (const tool of tools) {
    summary[tool] = {}
    const of = (name, metric) => rounds.map((round) => round[tool][name][metric])
    for (const variant of variants) {
      const pair = variant.pair ?? 'plain'
      summary[tool][variant.name] = {
        pair,
        rps: spread(of(variant.name, 'rps')),
        latencyP50: spread(of(variant.name, 'latencyP50')),
        latencyP99: spread(of(variant.name, 'latencyP99')),
        cpuMicrosPerRequest: spread(of(variant.name, 'cpuMicrosPerRequest')),
        tasksPerRequest: spread(of(variant.name, 'tasksPerRequest')),
        ratio: {
          rps: spread(paired(of(variant.name, 'rps'), of(pair, 'rps'))),
          latencyP99: spread(paired(of(variant.name, 'latencyP99'), of(pair, 'latencyP99'))),
          cpuMicrosPerRequest: spread(paired(of(variant.name, 'cpuMicrosPerRequest'), of(pair, 'cpuMicrosPerRequest')))
        },
        errors: of(variant.name, 'errors').reduce((a, b) => a + b, 0),
        dropped: of(variant.name, 'dropped').reduce((a, b) => a + b, 0)
      }
    }
    const ratioOf = (a, b, metric) => spread(paired(of(a, metric), of(b, metric)))
    summary[tool].comparisons = {
      sacVsSetImmediateCpu: ratioOf('sac-50ms', 'setimmediate-50ms', 'cpuMicrosPerRequest'),
      sacVsSetImmediateP99: ratioOf('sac-50ms', 'setimmediate-50ms', 'latencyP99'),
      sacVsOnResponseCpu: ratioOf('sac-50ms', 'onresponse-50ms', 'cpuMicrosPerRequest'),
      onResponseVsSetImmediateCpu: ratioOf('onresponse-50ms', 'setimmediate-50ms', 'cpuMicrosPerRequest'),
      sacPinoVsSetImmediateLogCpu: ratioOf('sac-50ms-pino', 'setimmediate-log-50ms-pino', 'cpuMicrosPerRequest')
    }
  }
  return summary
}

/** Strips the raw dispatch samples from the per-round table. */
function compactRounds (rounds) {
  return rounds.map((round) => Object.fromEntries(Object.entries(round).map(([tool, byVariant]) => [tool, Object.fromEntries(
    Object.entries(byVariant).map(([name, m]) => [name, {
      rps: m.rps, latencyP50: m.latencyP50, latencyP99: m.latencyP99, cpuMicrosPerRequest: m.cpuMicrosPerRequest, tasksPerRequest: m.tasksPerRequest, handled: m.handled, errors: m.errors, dropped: m.dropped
    }]))])))
}

module.exports = { CONNECTIONS, measure, rotate, fmt, warmUp, runRounds, summarize, compactRounds }
