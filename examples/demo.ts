// The whole story on a real server: the client has its answer long before the deferred work
// ends, and the log tells what happened to each task: all six outcomes, completed, failed,
// timeout, skipped, cancelled and dropped.
//
// Run: npm run demo
// (it builds once, then runs npx tsx examples/demo.ts [log-file]; the log goes to the temp directory by default)
import Fastify from 'fastify'
import pino from 'pino'
import { spawnSync } from 'node:child_process'
import { request } from 'node:http'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { Readable, Writable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import sendAndContinue from 'fastify-send-and-continue'

const logFile = resolve(process.argv[2] ?? join(tmpdir(), 'fastify-send-and-continue-demo.log'))

interface Line { reqId?: string, msg: string, deferred?: Record<string, unknown>, err?: { message: string }, deferredShutdown?: Record<string, unknown> }

/** Watches the app's own log lines, to print each task's end the moment it is logged. */
class LogWatcher extends Writable {
  #listeners = new Set<(line: Line) => void>()

  override _write (chunk: Buffer, _encoding: string, done: () => void): void {
    for (const text of chunk.toString().split('\n')) {
      if (text === '') continue
      const line = JSON.parse(text) as Line
      for (const listener of this.#listeners) listener(line)
    }
    done()
  }

  /** Resolves once `count` lines matched, calling `each` for every one as it arrives. */
  until (count: number, match: (line: Line) => boolean, each: (line: Line) => void): Promise<void> {
    return new Promise((resolve) => {
      let seen = 0
      const listener = (line: Line): void => {
        if (!match(line)) return
        each(line)
        if (++seen === count) {
          this.#listeners.delete(listener)
          resolve()
        }
      }
      this.#listeners.add(listener)
    })
  }
}

const watcher = new LogWatcher()
const app = Fastify({
  loggerInstance: pino({ level: 'info' }, pino.multistream([
    { stream: pino.destination({ dest: logFile, append: false, sync: true }) },
    { stream: watcher }
  ])),
  // the demo names its requests, so the report's sample reqIds say which one they were
  requestIdHeader: 'x-request-id'
})

function abortable (ms: number, signal: AbortSignal): Promise<void> {
  return sleep(ms, undefined, { signal })
}

async function start (): Promise<string> {
  // small numbers, so a burst fills the queue and a slow task outlasts the shutdown drain
  await app.register(sendAndContinue, { timeout: 1000, drainTimeout: 1000, concurrency: 2, maxQueued: 2 })

  app.post('/signup', (req, reply) => {
    return reply.code(201).sendAndContinue({ welcome: true }, async function sendWelcomeEmail ({ signal }) {
      await abortable(300, signal) // an SMTP round trip
    })
  })

  app.get('/export', { config: { sendAndContinue: { onClientAbort: 'skip' } } }, (req, reply) => {
    let row = 0
    const csv = new Readable({
      async read () {
        await sleep(20)
        this.push(row++ < 100 ? `${row},row ${row}\n` : null)
      }
    })
    reply.defer(async function recordExport ({ connection, outcomes, log }) {
      log.info({ connection, others: outcomes }, 'export recorded')
    }, { always: true })
    return reply.type('text/csv').sendAndContinue(csv, function emailExportLink () {})
  })

  app.post('/orders', (req, reply) => {
    return reply.sendAndContinue({ accepted: true }, async function syncCrm ({ signal }) {
      await abortable(50, signal) // the CRM takes its time, then says no
      throw new Error('CRM unavailable: 503 Service Unavailable')
    })
  })

  app.get('/thumbnail', (req, reply) => {
    return reply.code(202).sendAndContinue({ queued: true }, async function resizeImage ({ signal }) {
      await abortable(5000, signal) // honours its signal, so the timeout really stops it
    }, { timeout: 200 })
  })

  app.post('/import', (req, reply) => {
    // five rows, two slots, two queue places: the fifth has no room
    const rows = [1, 2, 3, 4, 5].map(() => async function importRow ({ signal }: { signal: AbortSignal }) {
      await abortable(100, signal)
    })
    return reply.code(202).sendAndContinue({ rows: rows.length }, rows)
  })

  app.post('/upload', (req, reply) => {
    return reply.code(202).sendAndContinue({ stored: true }, [
      async function processUpload ({ signal }) {
        await abortable(400, signal)
      },
      // longer than the drain: the shutdown aborts its signal and logs it cancelled
      async function rebuildSearchIndex ({ signal }) {
        await abortable(30_000, signal)
      }
    ], { timeout: 0 })
  })

  app.get('/health', () => 'ok')
  return app.listen({ port: 0, host: '127.0.0.1' })
}

let t0 = 0
function step (text: string): void {
  const ms = String(Math.round(performance.now() - t0)).padStart(5)
  console.log(`    +${ms} ms  ${text}`)
}

function taskEnded (line: Line): void {
  const { task, outcome, timeoutMs, connection } = line.deferred as { task: string, outcome: string, timeoutMs?: number, connection: string }
  const why = outcome === 'failed'
    ? `: ${line.err?.message}`
    : outcome === 'timeout'
      ? ` (its limit is ${timeoutMs} ms: its signal aborted)`
      : outcome === 'skipped'
        ? ' (this route skips its tasks when the client aborts)'
        : outcome === 'dropped'
          ? ' (two running, two waiting: no room for a fifth)'
          : outcome === 'cancelled'
            ? ' (the drain ran out: its signal aborted)'
            : connection === 'aborted' ? ' (always: true, so it ran after the others, client gone or not)' : ''
  step(`${task}: ${outcome}${why}`)
}

function isTaskOf (reqId: string): (line: Line) => boolean {
  return (line) => line.reqId === reqId && typeof line.deferred?.outcome === 'string'
}

/** One request; resolves once the client has the answer and every task of the request ended. */
async function scenario (title: string, url: string, method: string, reqId: string, tasks: number): Promise<void> {
  console.log(`\n  ${title}\n  ${method} ${new URL(url).pathname} (reqId ${reqId})`)
  t0 = performance.now()
  const ended = watcher.until(tasks, isTaskOf(reqId), taskEnded)
  const response = await fetch(url, { method, headers: { 'x-request-id': reqId, 'content-type': 'application/json' }, body: method === 'POST' ? '{}' : undefined })
  const body = await response.text()
  step(`client has the whole answer: ${response.status} ${body}`)
  await ended
}

/** GETs `url` and hangs up as soon as the first rows arrive. */
function hangUp (url: string, reqId: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers: { 'x-request-id': reqId } }, (res) => {
      res.once('data', (chunk: Buffer) => {
        req.destroy()
        step(`client hung up after ${chunk.length} bytes of a long CSV`)
        resolve()
      })
    })
    req.on('error', reject)
    req.end()
  })
}

async function main (): Promise<void> {
  const url = await start()
  console.log(`An app on ${url} logs to ${logFile}; every step shows the time since its request started.`)
  await fetch(`${url}/health`) // the HTTP client's first request pays for its own set-up: not part of the story

  await scenario('1. A fast answer, a slow e-mail', `${url}/signup`, 'POST', 'signup-1', 1)

  console.log('\n  2. A client that hangs up mid-stream\n  GET /export (reqId export-1)')
  t0 = performance.now()
  const exportEnded = watcher.until(2, isTaskOf('export-1'), taskEnded)
  await hangUp(`${url}/export`, 'export-1')
  await exportEnded

  await scenario('3. A failing task', `${url}/orders`, 'POST', 'order-1', 1)
  await scenario('4. A task past its timeout', `${url}/thumbnail`, 'GET', 'thumb-1', 1)

  await scenario('5. A burst past the queue', `${url}/import`, 'POST', 'import-1', 5)

  console.log('\n  6. A shutdown: what ends within the drain completes, the rest is cancelled\n  POST /upload (reqId upload-1), then app.close() at once')
  t0 = performance.now()
  const uploadEnded = watcher.until(2, isTaskOf('upload-1'), taskEnded)
  const drained = watcher.until(1, (line) => line.deferredShutdown !== undefined, (line) => {
    const { drained, durationMs } = line.deferredShutdown as { drained: boolean, durationMs: number }
    step(`the drain ${drained ? 'finished' : 'ran out'} after ${durationMs} ms: app.close() can resolve`)
  })
  const response = await fetch(`${url}/upload`, { method: 'POST', headers: { 'x-request-id': 'upload-1' } })
  step(`client has the whole answer: ${response.status} ${await response.text()}`)
  step('app.close() called: no new connections; the deferred work drains')
  await app.close()
  await Promise.all([uploadEnded, drained])

  const cli = join(__dirname, '..', 'dist', 'cli.js')
  console.log(`\nThe report of this log:\n$ npx fastify-send-and-continue report ${logFile}\n`)
  const report = spawnSync(process.execPath, [cli, 'report', logFile], { stdio: 'inherit' })
  console.log(`For the charts: npx fastify-send-and-continue report ${logFile} --html report.html`)
  process.exitCode = report.status ?? 1
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
})
