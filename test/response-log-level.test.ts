import { test } from 'tap'
import { once } from 'node:events'
import { request } from 'node:http'
import { Readable } from 'node:stream'
import Fastify from 'fastify'
import sendAndContinue from '../lib/index'
import type { SendAndContinueOptions } from '../lib/index'
import { Summary } from '../lib/report/summary'
import { renderText } from '../lib/report/text'
import { renderHtml } from '../lib/report/html'
import type { Report } from '../lib/report/types'
import { build, deferred, listen, LogCollector } from './helpers'
import type { Built } from './helpers'

// responseLogLevel: the close line of a finished response at the level the user picks, one line
// fewer per deferring response when it is below the logger's; an aborted response keeps its line
// at info, since the abort is the event worth a line.

test('responseLogLevel: \'debug\' drops the finished response\'s close line at info; the task line stays', async (t) => {
  const { app, logs } = await build(t, { responseLogLevel: 'debug' })
  app.get('/', (request, reply) => reply.sendAndContinue('ok', function work () {}))
  await app.inject('/')
  await app.sendAndContinue.drain()
  t.same(logs.closes, [], 'no close line')
  t.match(logs.outcomes, [{ deferred: { task: 'work', outcome: 'completed' } }])
})

test('responseLogLevel: each level writes the close line at that level, \'silent\' at none', async (t) => {
  async function traced (options: SendAndContinueOptions): Promise<Built> {
    const logs = new LogCollector()
    const app = Fastify({ logger: { level: 'trace', stream: logs } })
    t.teardown(() => app.close())
    await app.register(sendAndContinue, options)
    return { app, logs }
  }
  for (const [level, value] of [['debug', 20], ['warn', 40], ['info', 30]] as const) {
    const { app, logs } = await traced({ responseLogLevel: level })
    app.get('/', (request, reply) => reply.sendAndContinue('ok', () => {}))
    await app.inject('/')
    await app.sendAndContinue.drain()
    t.match(logs.closes, [{ level: value, msg: 'response finished, running deferred work' }], level)
  }
  const silent = await traced({ responseLogLevel: 'silent' })
  silent.app.get('/', (request, reply) => reply.sendAndContinue('ok', () => {}))
  await silent.app.inject('/')
  await silent.app.sendAndContinue.drain()
  t.same(silent.logs.closes, [])
})

test('responseLogLevel: an aborted response keeps its close line at info (a real socket, the client hangs up mid-response)', async (t) => {
  const { app, logs } = await build(t, { responseLogLevel: 'silent' })
  const ran = deferred()
  app.get('/', (request, reply) => {
    const stream = new Readable({ read () {} })
    stream.push('first chunk')
    return reply.sendAndContinue(stream, () => { ran.resolve() })
  })
  const { port } = await listen(app)
  const req = request({ port, host: '127.0.0.1', path: '/' })
  req.on('error', () => {})
  req.end()
  const [res] = await once(req, 'response')
  await once(res, 'data')
  req.destroy()
  await ran.promise
  t.match(logs.closes, [{ level: 30, msg: 'response aborted, running deferred work', deferred: { connection: 'aborted' } }])
})

test('responseLogLevel: anything but a pino level or \'silent\' is refused', async (t) => {
  const app = Fastify()
  await t.rejects(async () => await app.register(sendAndContinue, { responseLogLevel: 'verbose' as never }).ready(), {
    code: 'FST_SAC_INVALID_OPTION',
    message: "fastify-send-and-continue: responseLogLevel should be 'fatal', 'error', 'warn', 'info', 'debug', 'trace' or 'silent', instead got 'verbose'"
  })
})

// the report reads what the plugin really wrote: its deferredStart line names the level
function reportOf (logs: LogCollector): Report {
  const summary = new Summary()
  for (const line of logs.lines) summary.add(JSON.stringify(line), 'app.log')
  return summary.result()
}

test('responseLogLevel: the report says finished responses could not be checked when their close lines were not written', async (t) => {
  const { app, logs } = await build(t, { responseLogLevel: 'debug' })
  app.get('/', (request, reply) => reply.sendAndContinue('ok', function work () {}))
  await app.inject('/')
  await app.sendAndContinue.drain()
  t.match(logs.lines.find((line) => line.deferredStart !== undefined), { deferredStart: { responseLogLevel: 'debug' } })
  const report = reportOf(logs)
  t.same(report.unaccounted.unchecked, [{ responseLogLevel: 'debug', instances: 1 }])
  t.match(renderText(report).replace(/\s+/g, ' '), /Finished responses not checked: plugin instances with responseLogLevel below 'info' logged no close line for them \(1 at 'debug'\)/)
  t.match(renderHtml(report), /<p class="muted" id="unchecked" data-unchecked="1">Finished responses not checked/)
})

test('responseLogLevel: the report checks finished responses when their close lines were written after all (the logger at debug), or at info', async (t) => {
  for (const options of [{ responseLogLevel: 'debug' as const }, {}]) {
    const logs = new LogCollector()
    const app = Fastify({ logger: { level: 'debug', stream: logs } })
    t.teardown(() => app.close())
    await app.register(sendAndContinue, options)
    app.get('/', (request, reply) => reply.sendAndContinue('ok', function work () {}))
    await app.inject('/')
    await app.sendAndContinue.drain()
    const report = reportOf(logs)
    t.same(report.unaccounted.unchecked, [], JSON.stringify(options))
    t.notMatch(renderText(report), /not checked/)
    t.notMatch(renderHtml(report), /id="unchecked"/)
  }
})
