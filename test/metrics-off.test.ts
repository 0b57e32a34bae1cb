import { test } from 'tap'
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { metrics } from '@opentelemetry/api'
import { lookUpMeters } from '../lib/metrics'
import { build } from './helpers'
import { COUNT, ENDED, RESPONSES, registerSdk, select } from './metrics-helpers'

// What metrics cost when nothing records them: no meter provider registered (the API's no-op
// one), `metrics: false` with one registered, and no @opentelemetry/api installed at all. The
// tests run in order: the provider is registered in the middle of the file.

test('no meter provider registered: nothing is looked up again per task, the app works, the start line says metrics: false', async (t) => {
  t.equal(lookUpMeters(), null, 'the API\'s no-op provider: nothing would record')
  const { app, logs } = await build(t)
  app.get('/', (request, reply) => reply.sendAndContinue('ok', function sendMail () {}))
  t.equal((await app.inject('/')).statusCode, 200)
  await app.sendAndContinue.drain()
  t.match(app.sendAndContinue.stats(), { completed: 1 })
  t.match(logs.lines.find((line) => line.msg === 'deferred work ready'), { deferredStart: { metrics: false } })
})

test('metrics: false with a provider registered records nothing; the default records', async (t) => {
  const sdk = await registerSdk()
  t.teardown(() => sdk.close())
  const off = await build(t, { metrics: false })
  off.app.get('/off', (request, reply) => reply.sendAndContinue('ok', function offTask () {}))
  const on = await build(t)
  on.app.get('/on', (request, reply) => reply.sendAndContinue('ok', function onTask () {}))
  await off.app.inject('/off')
  await on.app.inject('/on')
  await off.app.sendAndContinue.drain()
  await on.app.sendAndContinue.drain()
  const scraped = await sdk.scrape()
  t.same(select(scraped, ENDED, { http_route: '/off' }), [])
  t.same(select(scraped, RESPONSES, { http_route: '/off' }), [])
  t.equal(select(scraped, ENDED, { http_route: '/on' }).length, 1)
  t.equal(select(scraped, COUNT, { engine: 'in-process', state: 'running' }).length, 1, 'the gauges of the app that records')
  t.match(off.logs.lines.find((line) => line.msg === 'deferred work ready'), { deferredStart: { metrics: false } })
  t.match(on.logs.lines.find((line) => line.msg === 'deferred work ready'), { deferredStart: { metrics: true } })
})

test('a provider registered after metrics.disable() gets instruments of its own', async (t) => {
  const first = await registerSdk()
  const meters = lookUpMeters()
  t.not(meters, null)
  await first.close()
  t.equal(lookUpMeters(), null, 'disabled: the no-op provider again')
  const second = await registerSdk()
  t.teardown(() => second.close())
  const again = lookUpMeters()
  t.not(again, null)
  t.not(again, meters)
  t.equal(metrics.getMeterProvider(), second.provider)
})

test('without @opentelemetry/api installed the plugin works and records nothing', async (t) => {
  const child = spawn(process.execPath, [
    ...process.execArgv,
    '--require', join(__dirname, 'fixtures', 'tracing', 'hide-otel.cjs'),
    join(__dirname, 'fixtures', 'metrics', 'without-otel.ts')
  ])
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk) => { stdout += chunk })
  child.stderr.on('data', (chunk) => { stderr += chunk })
  const code = await new Promise((resolve) => child.on('close', resolve))
  t.equal(code, 0, stderr)
  t.match(JSON.parse(stdout), { meters: null, statusCode: 200, completed: 1, started: { metrics: false } })
})
