// Durable work survives a crash: 300 requests each enqueue a job, a worker is killed with
// SIGKILL in the middle of the batch, a second worker starts, and every job completes.
// On SQLite by default (a file in a temp dir: nothing to start); with --engine bullmq it starts
// its own redis-server (no daemon, no persistence, in a temp dir).
//
// Run: npm run demo:durable
// (on Redis: npm run demo:durable -- --engine bullmq)
import { spawn, spawnSync } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { parseArgs } from 'node:util'
import Fastify from 'fastify'
import sendAndContinue, { defineTask } from 'fastify-send-and-continue'

const JOBS = 300

function step (text: string): void {
  console.log(`\n${text}`)
}

async function startRedis (dir: string): Promise<{ url: string, stop: () => void }> {
  if (spawnSync('redis-server', ['--version']).error !== undefined) {
    console.error('redis-server is not installed: apt-get install redis-server (Debian, Ubuntu) or brew install redis (macOS)')
    process.exit(1)
  }
  const port = 20000 + Math.floor(Math.random() * 20000)
  const redis = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
    '--maxmemory-policy', 'noeviction', '--daemonize', 'no', '--dir', dir], { stdio: 'ignore' })
  await sleep(300)
  return { url: `redis://127.0.0.1:${port}`, stop: () => { redis.kill('SIGTERM') } }
}

/** Where the jobs are: the queue option of the web app, and how a worker finds them. */
interface Store {
  describe: string
  queue: Record<string, unknown>
  env: Record<string, string>
  lost: string
  stop: () => void
}

async function openStore (engine: string, dir: string): Promise<Store> {
  if (engine === 'sqlite') {
    const path = join(dir, 'deferred.db')
    return {
      describe: `in the SQLite file ${path}`,
      // the app only enqueues: the demo's workers run the jobs
      queue: { engine: 'sqlite', path, work: false },
      env: { SQLITE_PATH: path },
      lost: 'its running jobs are leased to a dead process',
      stop: () => {}
    }
  }
  const redis = await startRedis(dir)
  return {
    describe: 'in Redis',
    queue: { connection: redis.url },
    env: { REDIS_URL: redis.url },
    lost: 'its running jobs are now stalled in Redis',
    stop: redis.stop
  }
}

/** A worker process running examples/durable/demo-worker.ts; counts the jobs it completed. */
function startWorker (env: Record<string, string>, name: string): { child: ChildProcess, completed: Set<string> } {
  const child = spawn(process.execPath, [...process.execArgv, join(__dirname, 'demo-worker.ts')], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit']
  })
  const completed = new Set<string>()
  let rest = ''
  child.stdout?.on('data', (chunk: Buffer) => {
    const lines = (rest + chunk.toString()).split('\n')
    rest = lines.pop() as string
    for (const line of lines) {
      const match = /^completed (\S+)$/.exec(line)
      if (match !== null) completed.add(match[1])
    }
  })
  console.log(`  ${name} started (pid ${child.pid})`)
  return { child, completed }
}

async function until (check: () => boolean): Promise<void> {
  while (!check()) await sleep(20)
}

async function main (): Promise<void> {
  const { values } = parseArgs({ options: { engine: { type: 'string', default: 'sqlite' } } })
  const engine = values.engine as string
  if (engine !== 'sqlite' && engine !== 'bullmq') throw new Error(`--engine should be sqlite or bullmq, instead got '${engine}'`)
  const dir = mkdtempSync(join(tmpdir(), 'sac-durable-demo-'))
  const store = await openStore(engine, dir)
  try {
    step(`1. The web app answers ${JOBS} requests; each response goes out once its job is ${store.describe}.`)
    // the web side only names the task; the worker process holds the code that runs it
    const record = defineTask('record', () => {})
    const app = Fastify()
    await app.register(sendAndContinue, { queue: { ...store.queue, tasks: [record] } as never })
    app.post<{ Params: { id: string } }>('/orders/:id', (request, reply) =>
      reply.code(202).sendAndContinue({ accepted: true }, record.with({ order: request.params.id }, { key: `order-${request.params.id}` })))
    for (let i = 0; i < JOBS; i++) await app.inject({ method: 'POST', url: `/orders/${i}` })
    console.log(`  ${app.sendAndContinue.stats().durable?.enqueued} jobs enqueued, ${JOBS} clients answered 202`)
    await app.close()

    step('2. A worker takes the jobs (10 at a time, 20 ms each) and is killed with SIGKILL mid-batch.')
    const first = startWorker(store.env, 'worker A')
    await until(() => first.completed.size >= JOBS / 3)
    first.child.kill('SIGKILL')
    await new Promise((resolve) => first.child.once('exit', resolve))
    console.log(`  worker A killed after completing ${first.completed.size} jobs; ${store.lost}`)

    step(engine === 'sqlite'
      ? '3. A second worker starts: it sees worker A is dead (same machine, pid gone), takes its jobs back at once, and finishes the rest.'
      : '3. A second worker starts: it finishes the rest, and re-runs the stalled jobs once their lock expires (1 s here).')
    const second = startWorker(store.env, 'worker B')
    const all = (): Set<string> => new Set([...first.completed, ...second.completed])
    await until(() => all().size === JOBS)
    second.child.kill('SIGTERM')
    await new Promise((resolve) => second.child.once('exit', resolve))
    const duplicates = first.completed.size + second.completed.size - JOBS
    console.log(`  worker B completed ${second.completed.size} jobs`)

    step(`Result: ${all().size} of ${JOBS} jobs completed, 0 lost; ${duplicates} ran twice (at-least-once: tasks must be idempotent).`)
  } finally {
    store.stop()
    rmSync(dir, { recursive: true, force: true })
  }
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
})
