'use strict'

// The servers under load. Every variant answers GET / with the same small JSON body; the
// ones with a 50 ms task all run the same module-level `task` (no per-request closure).
// `pair` names the variant each one is compared with round by round.

const variants = [
  {
    name: 'plain',
    label: 'plain `reply.send()`',
    summary: 'Fastify alone: the reference every ratio is taken against.'
  },
  {
    name: 'plain-control',
    label: 'plain `reply.send()` (noise control)',
    summary: 'A second, identical plain server: its ratio to `plain` shows how noisy the run was.'
  },
  {
    name: 'plugin-idle',
    label: 'plugin registered, route does not defer',
    summary: 'The plugin registered (it adds its hooks to every route); the route calls `reply.send()` only.',
    plugin: true
  },
  {
    name: 'sac-noop',
    label: '`sendAndContinue` + no-op task',
    summary: '`reply.sendAndContinue(body, noop)`, `noop` a synchronous empty function.',
    plugin: true
  },
  {
    name: 'sac-50ms',
    label: '`sendAndContinue` + 50 ms task',
    summary: '`reply.sendAndContinue(body, task)`, `task` awaits a 50 ms timer.',
    plugin: true,
    task: true
  },
  {
    name: 'setimmediate-50ms',
    label: '`send` + `setImmediate(task)`',
    summary: '`reply.send(body); setImmediate(task)`: no bound, no timeout, no log, no abort signal.',
    task: true
  },
  {
    name: 'onresponse-50ms',
    label: 'route `onResponse` hook awaiting the task',
    summary: 'A route-level `async onResponse () { await task() }`.',
    task: true
  },
  {
    name: 'inline-50ms',
    label: 'task awaited inline',
    summary: '`await task()` in the handler, then the answer: 50 connections cap it near 1000 requests/s.',
    task: true
  },
  {
    name: 'plain-pino',
    label: 'plain `reply.send()`, pino to a file',
    summary: 'Fastify with `logger: { level: \'info\', file }`: the pair of the next row.',
    logger: true
  },
  {
    name: 'sac-50ms-pino',
    label: '`sendAndContinue` + 50 ms task, pino to a file',
    summary: 'As `sac-50ms` with `logger: { level: \'info\', file }`; compared with `plain-pino`.',
    plugin: true,
    task: true,
    logger: true,
    pair: 'plain-pino'
  }
]

// Only used by the fixed-rate phase: sac-50ms plus a 'finish' listener that times the dispatch.
const probe = {
  name: 'sac-50ms-probe',
  label: '`sendAndContinue` + 50 ms task, dispatch probe',
  summary: 'As `sac-50ms`, plus a `finish` listener and a timestamp at task start.',
  plugin: true,
  task: true
}

/** Options the plugin is registered with in every plugin variant. */
const pluginOptions = { concurrency: Infinity, maxQueued: 10_000 }

const TASK_MS = 50

function byName (name) {
  const found = name === probe.name ? probe : variants.find((v) => v.name === name)
  if (found === undefined) throw new Error(`unknown variant ${name}`)
  return found
}

module.exports = { variants, probe, pluginOptions, byName, TASK_MS }
