import { test } from 'tap'
import { connect as http2Connect } from 'node:http2'
import { Agent, request } from 'node:http'
import { build, deferred, listen } from './helpers'

function get (port: number, path: string, agent: Agent): Promise<{ headers: Record<string, unknown>, body: string, reused: boolean }> {
  return new Promise((resolve, reject) => {
    const req = request({ port, host: '127.0.0.1', path, agent }, (res) => {
      let body = ''
      res.on('data', (chunk) => { body += chunk })
      res.on('end', () => resolve({ headers: res.headers, body, reused: req.reusedSocket }))
    })
    req.on('error', reject)
    req.end()
  })
}

test('closeConnection sends Connection: close on HTTP/1.1 responses that carry deferred work', async (t) => {
  const { app, logs } = await build(t, { closeConnection: true })
  app.get('/deferring', (req, reply) => reply.sendAndContinue('bye', () => {}))
  app.get('/plain', (req, reply) => reply.send('stay'))
  app.get('/route-off', { config: { sendAndContinue: { closeConnection: false } } }, (req, reply) => reply.sendAndContinue('stay', () => {}))
  const { port } = await listen(app)
  const agent = new Agent({ keepAlive: true, maxSockets: 1 })
  t.teardown(() => agent.destroy())

  const plain = await get(port, '/plain', agent)
  t.equal(plain.headers.connection, 'keep-alive')
  const routeOff = await get(port, '/route-off', agent)
  t.equal(routeOff.headers.connection, 'keep-alive', 'the route turned it off')
  t.equal(routeOff.reused, true)
  const deferring = await get(port, '/deferring', agent)
  t.equal(deferring.headers.connection, 'close')
  t.equal(deferring.headers['content-length'], '3')
  t.equal(deferring.body, 'bye')
  const after = await get(port, '/plain', agent)
  t.equal(after.reused, false, 'the server closed the connection: the next request opened a new one')
  await logs.untilOutcomes(2)
})

test('closeConnection is never sent on HTTP/2, where the header is forbidden', async (t) => {
  const warnings: Error[] = []
  const onWarning = (warning: Error): void => { warnings.push(warning) }
  process.on('warning', onWarning)
  t.teardown(() => process.off('warning', onWarning))
  const { app, logs } = await build(t, { closeConnection: true }, { http2: true } as never)
  const ran = deferred<string>()
  app.get('/', (req, reply) => reply.sendAndContinue('over h2', (ctx) => { ran.resolve(ctx.connection) }))
  const { url } = await listen(app)
  const session = http2Connect(url)
  t.teardown(() => session.close())
  const { headers, body } = await new Promise<{ headers: Record<string, unknown>, body: string }>((resolve, reject) => {
    const stream = session.request({ ':path': '/' })
    let headers: Record<string, unknown> = {}
    let body = ''
    stream.on('response', (h) => { headers = h })
    stream.setEncoding('utf8')
    stream.on('data', (chunk) => { body += chunk })
    stream.on('end', () => resolve({ headers, body }))
    stream.on('error', reject)
    stream.end()
  })
  t.equal(headers[':status'], 200)
  t.equal(body, 'over h2')
  t.equal(headers.connection, undefined)
  t.equal(await ran.promise, 'finished')
  await logs.untilOutcomes(1)
  t.match(logs.closes[0], { deferred: { connection: 'finished', tasks: 1 } })
  t.same(warnings.map((w) => w.message), [], 'Node warned about no forbidden header')
})

test('HTTP/2: a stream reset mid-response is "aborted", the task runs once', async (t) => {
  const { app, logs } = await build(t, {}, { http2: true } as never)
  const { Readable } = await import('node:stream')
  let runs = 0
  app.get('/', (req, reply) => reply.sendAndContinue(new Readable({ read () { if (!this.readableLength) this.push('chunk') } }), () => { runs++ }))
  const { url } = await listen(app)
  const session = http2Connect(url)
  t.teardown(() => session.close())
  await new Promise<void>((resolve) => {
    const stream = session.request({ ':path': '/' })
    stream.once('data', () => {
      stream.close(0x8) // CANCEL
      resolve()
    })
    stream.on('error', () => {})
    stream.end()
  })
  await logs.untilOutcomes(1)
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(runs, 1)
  t.equal(logs.closes.length, 1)
  t.match(logs.closes[0], { deferred: { connection: 'aborted' } })
  t.match(logs.outcomes[0], { deferred: { outcome: 'completed', connection: 'aborted' } })
})
