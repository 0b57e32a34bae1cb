import { test } from 'tap'
import Fastify from 'fastify'
import type { FastifyServerOptions } from 'fastify'
import pino from 'pino'
import plugin from '../lib/index'
import { LogCollector } from './helpers'
import type { LogLine } from './helpers'

// A pending task does not keep Fastify's default child logger: the plugin writes its lines through
// the parent with the request id first, and makes `ctx.log` again when a task asks for it. These
// tests hold the lines to the request's own: the same fields before the plugin's, in the same order,
// whatever the app's logger setup (the plugin falls back to the request's logger where it must).

/** The fields pino wrote before `key`, in order, without the time and level. */
function fieldsBefore (line: LogLine, key: string): Array<[string, unknown]> {
  const entries = Object.entries(line)
  return entries.slice(0, entries.findIndex(([name]) => name === key)).filter(([name]) => name !== 'time' && name !== 'level')
}

interface Setup {
  name: string
  options: (stream: LogCollector) => FastifyServerOptions
  route?: Record<string, unknown>
  rechild?: boolean
}

const setups: Setup[] = [
  { name: 'the default logger', options: (stream) => ({ logger: { level: 'info', stream } }) },
  { name: 'a custom id label', options: (stream) => ({ logger: { level: 'info', stream }, requestIdLogLabel: 'rid' }) },
  { name: 'ids that JSON escapes', options: (stream) => ({ logger: { level: 'info', stream }, genReqId: (() => { let n = 0; return () => `a"b\\${++n}` })() }) },
  { name: 'base bindings and a loggerInstance', options: (stream) => ({ loggerInstance: pino({ base: { service: 'shop' } }, stream) }) },
  { name: 'a route logLevel', options: (stream) => ({ logger: { level: 'info', stream } }), route: { logLevel: 'warn' } },
  { name: 'route logSerializers', options: (stream) => ({ logger: { level: 'info', stream } }), route: { logSerializers: { res: () => 'r' } } },
  { name: 'a request logger the handler re-childed', options: (stream) => ({ logger: { level: 'info', stream } }), rechild: true },
  { name: 'a formatters.log hook', options: (stream) => ({ loggerInstance: pino({ formatters: { log: (object) => ({ ...object, formatted: true }) } }, stream) }) },
  { name: 'a mixin', options: (stream) => ({ loggerInstance: pino({ mixin: () => ({ mixed: 1 }) }, stream) }) },
  { name: 'a child logger factory that adds a binding', options: (stream) => ({ logger: { level: 'info', stream }, childLoggerFactory: (logger, bindings, options) => logger.child({ ...bindings, tenant: 't' }, options) }) },
  { name: 'a child logger factory that binds no id', options: (stream) => ({ logger: { level: 'info', stream }, childLoggerFactory: (logger, bindings, options) => logger.child({ tenant: 't' }, options) }) },
  { name: 'a nestedKey', options: (stream) => ({ loggerInstance: pino({ nestedKey: 'payload' }, stream) }) }
]

for (const setup of setups) {
  test(`the plugin's lines carry the request logger's bindings: ${setup.name}`, async (t) => {
    const stream = new LogCollector()
    const app = Fastify(setup.options(stream))
    await app.register(plugin)
    t.teardown(() => app.close())
    app.get('/', setup.route ?? {}, (request, reply) => {
      if (setup.rechild === true) request.log = request.log.child({ extra: 1 })
      // the reference: a line of the request's own logger
      request.log.warn({ marker: true }, 'from the handler')
      return reply.sendAndContinue('ok', [
        function first (ctx) { ctx.log.warn({ marker: true }, 'from the task') },
        function second () {}
      ])
    })
    for (let i = 0; i < 2; i++) {
      const response = await app.inject('/')
      t.equal(response.statusCode, 200)
    }
    await app.sendAndContinue.drain()
    const nested = setup.name === 'a nestedKey'
    const markers = stream.lines.filter((line) => line.msg === 'from the handler').map((line) => JSON.stringify(fieldsBefore(line, nested ? 'payload' : 'marker')))
    t.equal(new Set(markers).size, setup.name.endsWith('binds no id') ? 1 : 2, 'the requests\' bindings')
    const messages = new Set(['response finished, running deferred work', 'deferred task completed', 'from the task'])
    const ours = stream.lines.filter((line) => messages.has(line.msg))
    // a close line, two task lines and the task's own line per request (the route logLevel hides info)
    t.equal(ours.length, setup.route?.logLevel === 'warn' ? 2 : 8)
    for (const line of ours) {
      const key = nested ? 'payload' : line.msg === 'from the task' ? 'marker' : 'deferred'
      const bindings = JSON.stringify(fieldsBefore(line, key))
      t.ok(markers.includes(bindings), `${line.msg}: the request's bindings, in order (${bindings})`)
    }
  })
}

test('a logger that is not pino: the plugin keeps the request logger', async (t) => {
  const written: unknown[][] = []
  function write (...args: unknown[]): void { written.push(args) }
  const logger = { level: 'info', info: write, warn: write, error: write, fatal: write, debug: write, trace: write, child () { return logger } }
  const app = Fastify({ loggerInstance: logger as never })
  await app.register(plugin)
  t.teardown(() => app.close())
  app.get('/', (request, reply) => reply.sendAndContinue('ok', function only () {}))
  await app.inject('/')
  await app.sendAndContinue.drain()
  t.ok(written.some(([fields]) => (fields as LogLine).deferred?.outcome === 'completed'))
})
