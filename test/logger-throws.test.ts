import { test } from 'tap'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Fastify from 'fastify'
import sendAndContinue, { defineTask } from '../lib/index'

// A logger whose destination throws on write loses its lines, not the process and not the
// bookkeeping: each task and job still ends once, is counted, and lets drain() and app.close()
// end. In a file of its own: the warning is emitted once per process.

function throwingOnTaskLines (): { write: (line: string) => void, written: string[] } {
  const written: string[] = []
  return {
    written,
    write (line: string) {
      if (/"outcome":"(completed|failed|retrying)"/.test(line)) throw new Error('destination down')
      written.push(line)
    }
  }
}

test('a logger that throws on task lines: in-process tasks and durable jobs end, are counted, and the app closes; one process warning', async (t) => {
  const warnings: Error[] = []
  const onWarning = (warning: Error): void => { warnings.push(warning) }
  process.on('warning', onWarning)
  t.teardown(() => { process.off('warning', onWarning) })
  const dir = await mkdtemp(join(tmpdir(), 'sac-logger-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  for (const engine of ['memory', 'sqlite'] as const) {
    const flaky = defineTask('flaky', (data, { attempt }) => {
      if (attempt === 1) throw new Error('first attempt fails')
    }, { attempts: 2, backoff: 5 })
    const quick = defineTask('quick', async () => { await null })
    const stream = throwingOnTaskLines()
    const app = Fastify({ logger: { level: 'info', stream } })
    const queue = engine === 'memory' ? { engine, tasks: [flaky, quick] } : { engine, path: join(dir, 'jobs.db'), tasks: [flaky, quick] }
    await app.register(sendAndContinue, { queue })
    app.post('/', (request, reply) => reply.sendAndContinue('ok', [
      function sync () {},
      async function later () { await null },
      function fails () { throw new Error('task fails') },
      flaky.with(null),
      quick.with(null)
    ]))
    t.equal((await app.inject({ method: 'POST', url: '/' })).statusCode, 200, engine)
    await app.sendAndContinue.drain()
    t.match(app.sendAndContinue.stats(), { completed: 4, failed: 1, running: 0, queued: 0 }, `${engine}: every task and job counted once`)
    await app.close()
    t.ok(stream.written.some((line) => line.includes('"deferredShutdown"')), `${engine}: the app closed and said so`)
  }
  t.equal(warnings.filter((w) => (w as { code?: string }).code === 'FST_SAC_LOGGER_FAILED').length, 1, 'one warning for the process')
  t.match(warnings[0].message, /the logger threw while writing a task's line .*destination down/)
})
