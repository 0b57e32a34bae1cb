import { test } from 'tap'
import { Agent, request } from 'node:http'
import { connect } from 'node:net'
import { build, deferred, listen } from './helpers'

test('the response and Fastify\'s own timings never wait for the deferred work', async (t) => {
  const { app, logs } = await build(t)
  const gate = deferred()
  const hookSaw = deferred<{ elapsed: number, outcomes: number }>()
  app.get('/', (req, reply) => reply.sendAndContinue('ok', function heldOpen () { return gate.promise }))
  // registered after the plugin: it runs after the plugin's onResponse hook returned
  app.addHook('onResponse', async (req, reply) => {
    hookSaw.resolve({ elapsed: reply.elapsedTime, outcomes: logs.outcomes.length })
  })
  const { port } = await listen(app)
  const agent = new Agent({ keepAlive: true })
  t.teardown(() => agent.destroy())

  const body = await new Promise<string>((resolve, reject) => {
    request({ port, host: '127.0.0.1', path: '/', agent }, (res) => {
      let text = ''
      res.on('data', (chunk) => { text += chunk })
      res.on('end', () => resolve(text))
    }).on('error', reject).end()
  })
  t.equal(body, 'ok', 'the keep-alive client has the whole response')

  const { elapsed, outcomes } = await hookSaw.promise
  t.equal(outcomes, 0, 'later onResponse hooks run while the task is still running')
  t.type(elapsed, 'number')
  await logs.until((lines) => lines.some((line) => line.msg === 'request completed'))
  const completed = logs.lines.find((line) => line.msg === 'request completed')
  t.type(completed?.responseTime, 'number')
  t.equal(logs.outcomes.length, 0, 'Fastify logged "request completed" while the task was still running')

  gate.resolve()
  await logs.untilOutcomes(1)
  t.equal(logs.outcomes[0].deferred?.outcome, 'completed')
  const completedAt = logs.lines.indexOf(completed as never)
  const outcomeAt = logs.lines.indexOf(logs.outcomes[0])
  t.ok(completedAt < outcomeAt, 'the outcome line comes after Fastify\'s own line')
})

test('an HTTP/1.0 client gets the whole response, with Content-Length, while the task runs', async (t) => {
  const { app, logs } = await build(t)
  const gate = deferred()
  app.get('/', (req, reply) => reply.sendAndContinue({ queued: true }, () => gate.promise))
  const { port } = await listen(app)

  const raw = await new Promise<string>((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => {
      socket.write('GET / HTTP/1.0\r\nHost: localhost\r\n\r\n')
    })
    let text = ''
    socket.setEncoding('utf8')
    socket.on('data', (chunk) => { text += chunk })
    socket.on('end', () => resolve(text))
    socket.on('error', reject)
  })
  t.match(raw, /^HTTP\/1\.1 200 OK\r\n/)
  t.match(raw, /\r\ncontent-length: 15\r\n/i)
  t.match(raw, /\r\nconnection: close\r\n/i, 'HTTP/1.0 without keep-alive closes the connection')
  t.ok(raw.endsWith('\r\n\r\n{"queued":true}'), 'the body arrived whole and the server closed the socket')
  t.equal(logs.outcomes.length, 0, 'the task is still running')
  gate.resolve()
  await logs.untilOutcomes(1)
  t.match(logs.outcomes[0], { deferred: { outcome: 'completed', connection: 'finished' } })
  t.match(logs.closes[0], { deferred: { connection: 'finished', tasks: 1 } })
})
