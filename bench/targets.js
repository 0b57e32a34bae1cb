'use strict'

// The performance targets, checked against a run's results. A missed target is reported, never
// fatal: these are goals for the code in lib/, not tests. `met` is null when the phase that
// measures a target did not run.

const { LIGHT, HEAVY } = require('./variants')
const { beyond } = require('./phases/heap')

/** Instruction-count ratios: each deferring variant against its hand-written pair, idle against plain. */
function instructionRatios (callgrind) {
  if (callgrind === undefined || callgrind.variants === undefined) return []
  const kinstr = (name) => callgrind.variants.find((v) => v.name === name)?.kinstrPerRequest ?? NaN
  const pairs = [
    ['sac', 'setimmediate', LIGHT, false],
    ['sac', 'setimmediate', HEAVY, false],
    ['sac', 'setimmediate-log', LIGHT, true],
    ['sac', 'setimmediate-log', HEAVY, true],
    ['sac-quiet', 'setimmediate-log', LIGHT, true],
    ['sac-quiet', 'setimmediate-log', HEAVY, true],
    ['plugin-idle', 'plain', null, false],
    ['plugin-idle', 'plain', null, true],
    ['setimmediate-log', 'plain', LIGHT, true]
  ]
  // every tracing and metrics row against the same variant without them; `sac` against the plugin built before (`--before`)
  for (const v of callgrind.variants) {
    if (v.tracing !== undefined || v.metrics !== undefined) pairs.push([v.base, 'sac', v.pending, v.logger])
    if (v.before === true) pairs.push(['sac', v.base, v.pending, v.logger])
  }
  return pairs.map(([base, reference, pending, logger]) => {
    const name = (b) => [b, pending === null ? null : `${pending}`, logger ? 'pino' : null].filter(Boolean).join('-')
    return { id: `${name(base)}/${name(reference)}`, name: name(base), reference: name(reference), pending, logger, ratio: kinstr(name(base)) / kinstr(name(reference)) }
  }).filter((r) => Number.isFinite(r.ratio))
}

function check (id, goal, value, unit, limit) {
  return { id, goal, measured: { median: value }, unit, limit, met: Number.isFinite(value) ? value <= limit : null }
}

function targets ({ callgrind, heap, fixedRate }) {
  const ratios = new Map(instructionRatios(callgrind).map((r) => [r.id, r.ratio]))
  const r = (id) => ratios.get(id) ?? NaN
  const heapBeyond = (name, reference) => heap === undefined ? NaN : beyond(heap, name, reference)
  return [
    check('instr-light', `instructions per request, \`sendAndContinue\` + task / \`send\` + \`setImmediate\`, ${LIGHT} pending, logger off: at most 1.07x`, r(`sac-${LIGHT}/setimmediate-${LIGHT}`), 'x', 1.07),
    check('instr-heavy', `the same with ${HEAVY.toLocaleString('en-US')} pending: at most 1.12x`, r(`sac-${HEAVY}/setimmediate-${HEAVY}`), 'x', 1.12),
    check('instr-pino-light', `with pino on, against \`setImmediate\` logging one line per task through \`request.log\`, ${LIGHT} pending: at most 1.12x`, r(`sac-${LIGHT}-pino/setimmediate-log-${LIGHT}-pino`), 'x', 1.12),
    check('instr-pino-heavy', `the same with ${HEAVY.toLocaleString('en-US')} pending: at most 1.12x`, r(`sac-${HEAVY}-pino/setimmediate-log-${HEAVY}-pino`), 'x', 1.12),
    check('instr-quiet-light', `with pino on and \`responseLogLevel: 'debug'\`, against \`setImmediate\` logging one line per task, ${LIGHT} pending: at most 1.12x`, r(`sac-quiet-${LIGHT}-pino/setimmediate-log-${LIGHT}-pino`), 'x', 1.12),
    check('instr-quiet-heavy', `the same with ${HEAVY.toLocaleString('en-US')} pending: at most 1.20x`, r(`sac-quiet-${HEAVY}-pino/setimmediate-log-${HEAVY}-pino`), 'x', 1.20),
    check('instr-metrics', `metrics: instructions per request with the OpenTelemetry metrics SDK registered (in-memory reader) / none registered, ${LIGHT} pending, logger off: at most 1.25x`, r(`sac-metrics-${LIGHT}/sac-${LIGHT}`), 'x', 1.25),
    check('instr-metrics-absent', `metrics: instructions per request with no meter provider registered / the plugin before metrics (\`--before\`), ${LIGHT} pending, logger off: 1.00x`, r(`sac-${LIGHT}/sac-before-${LIGHT}`), 'x', 1.005),
    check('instr-idle', 'instructions per request, plugin registered and route not deferring / plain, logger off: at most 1.02x', r('plugin-idle/plain'), 'x', 1.02),
    check('instr-idle-pino', 'the same with pino on: at most 1.02x', r('plugin-idle-pino/plain-pino'), 'x', 1.02),
    check('heap', 'heap per pending task beyond `send` + `setImmediate`, logger off: at most 400 B', heapBeyond('sac', 'setimmediate'), 'B', 400),
    check('heap-pino', 'the same with pino on (beyond `setImmediate` with pino on): at most 400 B', heapBeyond('sac-pino', 'setimmediate-pino'), 'B', 400),
    check('p99-same-load', 'wall clock: p99 latency of `sendAndContinue` + 50 ms task at most 1.15x `send` + `setImmediate` at the same load (half of saturation)', fixedRate?.['sac-50ms']?.ratioLatencyP99VsSetImmediate.median ?? NaN, 'x', 1.15),
    check('dispatch', 'wall clock: dispatch latency p99 under 1 ms at half of saturation', fixedRate?.dispatchMicros.p99 ?? NaN, 'us', 1000)
  ]
}

module.exports = { targets, instructionRatios }
