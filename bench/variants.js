'use strict'

// The servers under load. Every variant answers GET / with the same small JSON body. What a
// variant does is data: `handler` names how the route answers (bench/handlers.js builds it),
// `task` what the deferred work is, `plugin` and `logger` how the app is set up. `pair` names
// the variant each one is compared with round by round.

/** The wall-clock task: the same module-level `async` function everywhere, awaiting a timer. */
const TASK_MS = 50

/** Options the plugin is registered with in every plugin variant: nothing waits, nothing is dropped. */
const pluginOptions = { concurrency: Infinity, maxQueued: Infinity }

const timed = { ms: TASK_MS }

// Wall-clock phase (bench/phases/wallclock.js): interleaved rounds under autocannon and wrk.
const variants = [
  {
    name: 'plain',
    label: 'plain `reply.send()`',
    summary: 'Fastify alone: the reference every ratio is taken against.',
    handler: 'send'
  },
  {
    name: 'plain-control',
    label: 'plain `reply.send()` (noise control)',
    summary: 'A second, identical plain server: its ratio to `plain` shows how noisy the run was.',
    handler: 'send'
  },
  {
    name: 'plugin-idle',
    label: 'plugin registered, route does not defer',
    summary: 'The plugin registered (it adds its hooks to every route); the route calls `reply.send()` only.',
    handler: 'send',
    plugin: true
  },
  {
    name: 'sac-noop',
    label: '`sendAndContinue` + no-op task',
    summary: '`reply.sendAndContinue(body, noop)`, `noop` a synchronous empty function.',
    handler: 'sac-noop',
    plugin: true
  },
  {
    name: 'sac-50ms',
    label: '`sendAndContinue` + 50 ms task',
    summary: '`reply.sendAndContinue(body, task)`, `task` awaits a 50 ms timer.',
    handler: 'sac',
    plugin: true,
    task: timed
  },
  {
    name: 'setimmediate-50ms',
    label: '`send` + `setImmediate(task)`',
    summary: '`reply.send(body); setImmediate(task)`: no bound, no timeout, no log, no abort signal.',
    handler: 'setimmediate',
    task: timed
  },
  {
    name: 'onresponse-50ms',
    label: 'route `onResponse` hook awaiting the task',
    summary: 'A route-level `async onResponse () { await task() }`.',
    handler: 'onresponse',
    task: timed
  },
  {
    name: 'inline-50ms',
    label: 'task awaited inline',
    summary: '`await task()` in the handler, then the answer: 50 connections cap it near 1000 requests/s.',
    handler: 'inline',
    task: timed
  },
  {
    name: 'plain-pino',
    label: 'plain `reply.send()`, pino to a file',
    summary: 'Fastify with `logger: { level: \'info\', file }`: the pair of the pino rows.',
    handler: 'send',
    logger: true
  },
  {
    name: 'setimmediate-log-50ms-pino',
    label: '`send` + `setImmediate(task)` logging one line per task, pino to a file',
    summary: 'What a careful user writes: `setImmediate` runs the task, then one `request.log.info` line with its name and duration (or an error line); compared with `plain-pino`.',
    handler: 'setimmediate-log',
    task: timed,
    logger: true,
    pair: 'plain-pino'
  },
  {
    name: 'sac-50ms-pino',
    label: '`sendAndContinue` + 50 ms task, pino to a file',
    summary: 'As `sac-50ms` with `logger: { level: \'info\', file }`; compared with `plain-pino`.',
    handler: 'sac',
    plugin: true,
    task: timed,
    logger: true,
    pair: 'plain-pino'
  }
]

// Only used by the fixed-rate phase: sac-50ms plus a 'finish' listener that times the dispatch.
const probe = {
  name: 'sac-50ms-probe',
  label: '`sendAndContinue` + 50 ms task, dispatch probe',
  summary: 'As `sac-50ms`, plus a `finish` listener and a timestamp at task start.',
  handler: 'probe',
  plugin: true,
  task: timed
}

// Enqueue phase (bench/phases/enqueue.js, `--only enqueue`): what awaiting a durable job's
// enqueue before the answer costs, next to the in-process task and to plain `send`. The durable
// variant's server gets the redis-server socket the phase started (BENCH_REDIS_SOCKET).
const enqueueVariants = [
  {
    name: 'enqueue-plain',
    label: 'plain `reply.send()`',
    summary: 'Fastify alone: the reference.',
    handler: 'send'
  },
  {
    name: 'enqueue-in-process',
    label: '`sendAndContinue` + in-process no-op task',
    summary: '`reply.sendAndContinue(body, noop)`: the in-process scheduler.',
    handler: 'sac-noop',
    plugin: true
  },
  {
    name: 'enqueue-durable',
    label: '`sendAndContinue` + durable job (`defineTask(...).with(...)`, `queue` option)',
    summary: '`reply.sendAndContinue(body, task.with({ n }))`: the job is added to Redis (unix socket, no persistence) before the answer goes out.',
    handler: 'sac-durable',
    plugin: true,
    queue: true
  }
]

// Engines phase (bench/phases/engines.js, `--only engines`): every engine's web-side cost, each
// next to what a user would write instead. POST with a small JSON body, 20 connections. The
// BullMQ variants (`redis: true`) get the phase's redis-server socket (BENCH_REDIS_SOCKET), the
// SQLite ones a file in the phase's temp dir (BENCH_SQLITE_DIR). `pair` is the row each one is
// compared with, round by round; `floor` a second such row: for `eng-bullmq`, the same add written
// by hand, which shows what the job itself costs apart from the plugin.
const BULL = { engine: 'bullmq' }
const engineVariants = [
  { name: 'eng-plain', label: 'plain `reply.send()`', handler: 'send', method: 'POST' },
  { name: 'eng-in-process', label: '`sendAndContinue` + in-process no-op task', handler: 'sac-noop', method: 'POST', plugin: true, pair: 'eng-plain' },
  {
    name: 'eng-handwritten',
    label: 'hand-written `await queue.add()`, then send',
    summary: 'A BullMQ `Queue` of its own (ioredis defaults) and `await queue.add(name, { n }, { attempts: 1, removeOnComplete, removeOnFail })` with the plugin\'s bounds, then the answer.',
    handler: 'handwritten-bullmq',
    method: 'POST',
    redis: true,
    pair: 'eng-plain'
  },
  {
    name: 'eng-handwritten-job',
    label: 'hand-written `await queue.add()` of the plugin\'s own job (its data and a `<task>~<UUID>` id), then send',
    handler: 'handwritten-bullmq-job',
    method: 'POST',
    redis: true,
    pair: 'eng-handwritten'
  },
  { name: 'eng-bullmq', label: '`sendAndContinue` + durable job, `bullmq` engine', handler: 'sac-durable', method: 'POST', plugin: true, queue: BULL, redis: true, pair: 'eng-handwritten', floor: 'eng-handwritten-job' },
  { name: 'eng-sqlite', label: '`sendAndContinue` + durable job, `sqlite` engine, `work: false`', handler: 'sac-durable', method: 'POST', plugin: true, queue: { engine: 'sqlite', work: false }, pair: 'eng-in-process' },
  { name: 'eng-memory', label: '`sendAndContinue` + durable job, `memory` engine', handler: 'sac-durable', method: 'POST', plugin: true, queue: { engine: 'memory' }, pair: 'eng-in-process' },
  { name: 'eng-plain-pino', label: 'plain `reply.send()`, pino', handler: 'send', method: 'POST', logger: true },
  { name: 'eng-in-process-pino', label: '`sendAndContinue` + in-process no-op task, pino', handler: 'sac-noop', method: 'POST', plugin: true, logger: true, pair: 'eng-plain-pino' },
  {
    name: 'eng-handwritten-log-pino',
    label: 'hand-written `await queue.add()` + one `request.log.info` line per job, then send, pino',
    handler: 'handwritten-bullmq-log',
    method: 'POST',
    redis: true,
    logger: true,
    pair: 'eng-plain-pino'
  },
  { name: 'eng-bullmq-pino', label: '`sendAndContinue` + durable job, `bullmq` engine, pino', handler: 'sac-durable', method: 'POST', plugin: true, queue: BULL, redis: true, logger: true, pair: 'eng-handwritten-log-pino' }
]

// The engines phase's end-to-end rows: the app answers and runs its own jobs (`work: true`).
const sqliteEndToEndVariants = [
  { name: 'e2e-sqlite-normal', label: '`sqlite` engine, `work: true`, `synchronous: \'normal\'` (default: survives a process crash)', handler: 'sac-durable', method: 'POST', plugin: true, queue: { engine: 'sqlite', work: true, synchronous: 'normal' } },
  { name: 'e2e-sqlite-full', label: '`sqlite` engine, `work: true`, `synchronous: \'full\'` (survives a power loss)', handler: 'sac-durable', method: 'POST', plugin: true, queue: { engine: 'sqlite', work: true, synchronous: 'full' } }
]

// Instruction-count phase (bench/phases/callgrind.js). A task here ends when the `pending`-th
// later task starts, so exactly that many are pending whatever the server's speed under
// valgrind (about 20 times slower than natively): 100 pending is what a 50 ms task leaves at
// 2,000 requests/s, 2,500 what a 1.7 s task leaves at 1,500 requests/s.
const LIGHT = 100
const HEAVY = 2500

const BASES = {
  plain: { label: 'plain `reply.send()`', handler: 'send' },
  setimmediate: { label: '`send` + `setImmediate(task)`', handler: 'setimmediate', deferring: true },
  'setimmediate-log': { label: '`send` + `setImmediate(task)`, one `request.log` line per task', handler: 'setimmediate-log', deferring: true },
  'plugin-idle': { label: 'plugin registered, route does not defer', handler: 'send', plugin: true },
  sac: { label: '`sendAndContinue` + task', handler: 'sac', plugin: true, deferring: true },
  // the close line of a finished response at debug (pino at info: not written), with pino on only
  'sac-quiet': { label: '`sendAndContinue` + task, `responseLogLevel: \'debug\'`', handler: 'sac', plugin: true, deferring: true, responseLogLevel: 'debug' },
  // The tracing rows (when the built plugin has tracing, see bench/tracing.js), 100 pending with
  // the logger off, compared with `sac` (tracing on by default, no tracer provider registered,
  // the diagnostics channels without subscribers).
  // These two, and `sac-metrics-off`, have no target: not part of a full run (`optional`), run
  // with `npm run bench -- --only callgrind --variants sac-100,sac-otel-100,sac-untraced-100,sac-metrics-off-100`.
  'sac-otel': { label: '`sendAndContinue` + task, OTel SDK registered (in-memory exporter): a span per task', handler: 'sac', plugin: true, deferring: true, tracing: 'otel', optional: true },
  'sac-untraced': { label: '`sendAndContinue` + task, `tracing: false` (diagnostics channels without subscribers only)', handler: 'sac', plugin: true, deferring: true, tracing: 'off', optional: true },
  // The metrics rows (when the built plugin has metrics, see bench/metrics.js), 100 pending with the
  // logger off, compared with `sac` (metrics on by default, no meter provider registered).
  'sac-metrics': { label: '`sendAndContinue` + task, OTel metrics SDK registered (in-memory reader)', handler: 'sac', plugin: true, deferring: true, metrics: 'sdk' },
  'sac-metrics-off': { label: '`sendAndContinue` + task, OTel metrics SDK registered, `metrics: false`', handler: 'sac', plugin: true, deferring: true, metrics: 'off', optional: true },
  // `--before <ref>` (bench/before.js): the plugin built at that commit, the same row as `sac`:
  // `sac` against it is what this tree's changes cost with nothing registered
  'sac-before': { label: '`sendAndContinue` + task, the plugin built at the `--before` commit', handler: 'sac', plugin: true, deferring: true, before: true }
}

function instructionVariant (base, pending, logger) {
  const spec = BASES[base]
  const name = [base, pending === null ? null : `${pending}`, logger ? 'pino' : null].filter(Boolean).join('-')
  return {
    name,
    base,
    label: spec.label,
    handler: spec.handler,
    plugin: spec.plugin === true,
    tracing: spec.tracing,
    metrics: spec.metrics,
    before: spec.before === true,
    optional: spec.optional === true,
    responseLogLevel: spec.responseLogLevel,
    logger,
    // pino writes to /dev/null here: serialisation is the cost; the write is a syscall callgrind does
    // not count. Synchronously: pino's default destination (sonic-boom, asynchronous) measures the
    // lines waiting for the write in flight again at every write (`Buffer.byteLength` of its whole
    // pending chunk), a cost set by how long that write lasts, and under valgrind, which runs one
    // thread at a time, that moved `setimmediate-log-100-pino` by 8% between runs of the same code
    loggerFile: logger ? '/dev/null' : undefined,
    loggerSync: logger,
    pending,
    task: pending === null ? undefined : { pending }
  }
}

/**
 * The instruction-count matrix: every base at light load, the deferring ones at heavy load too,
 * logger off and pino on. With pino the hand-written variant to compare with is `setimmediate-log`
 * (with the logger off it would be `setimmediate`), so `setimmediate` runs with the logger off only.
 */
function instructionVariants ({ tracing = false, metrics = false, before = false } = {}) {
  const list = []
  for (const logger of [false, true]) {
    for (const [base, spec] of Object.entries(BASES)) {
      if ((base === 'setimmediate-log' && !logger) || (base === 'setimmediate' && logger)) continue
      if (spec.tracing !== undefined && (!tracing || logger)) continue
      if (spec.metrics !== undefined && (!metrics || logger)) continue
      if (spec.before === true && (!before || logger)) continue
      if (spec.responseLogLevel !== undefined && !logger) continue
      const extra = spec.tracing !== undefined || spec.metrics !== undefined || spec.before === true
      if (!spec.deferring) list.push(instructionVariant(base, null, logger))
      else for (const pending of extra ? [LIGHT] : [LIGHT, HEAVY]) list.push(instructionVariant(base, pending, logger))
    }
  }
  return list
}

function byName (name) {
  const found = name === probe.name
    ? probe
    : [...variants, ...enqueueVariants, ...engineVariants, ...sqliteEndToEndVariants].find((v) => v.name === name) ?? instructionVariants({ tracing: true, metrics: true, before: true }).find((v) => v.name === name)
  if (found === undefined) throw new Error(`unknown variant ${name}`)
  return found
}

module.exports = { variants, enqueueVariants, engineVariants, sqliteEndToEndVariants, probe, pluginOptions, byName, instructionVariants, BASES, LIGHT, HEAVY, TASK_MS }
