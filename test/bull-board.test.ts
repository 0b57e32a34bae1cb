import { test } from 'tap'
import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import Fastify from 'fastify'
import sendAndContinue, { createWorker, defineTask } from '../lib/index'
import { inspect, workerLogger } from './durable-helpers'
import { startRedis } from './redis'
import { queueBoard } from './fixtures/bull-board/board'

// The README's bull-board snippet, run as it is: a Fastify app with the plugin on BullMQ enqueues
// jobs of two tasks, a worker completes some, the rest wait; bull-board, mounted by the snippet,
// is rendered in headless Chromium (its UI fetches its /api routes from JavaScript), and the
// rendered page must show the task names and the job counts Redis holds.

const run = promisify(execFile)
const BOARD = join(__dirname, 'fixtures', 'bull-board', 'board.ts')

// a fresh profile each time, and nothing that reaches out to the network on its own
function chromiumFlags (profile: string): string[] {
  return ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', `--user-data-dir=${profile}`]
}

/** The page once bull-board's script loaded its data: virtual time runs until the network is idle. */
async function render (url: string, profile: string): Promise<string> {
  const { stdout } = await run('chromium', [...chromiumFlags(profile), '--virtual-time-budget=15000', '--dump-dom', url],
    { maxBuffer: 64 * 1024 * 1024, timeout: 60_000 })
  return stdout
}

/** The number on a status tab: `<span data-text="WAITING">WAITING</span><span class="badge-...">3</span>`. */
function badge (dom: string, status: string): number | undefined {
  const match = new RegExp(`data-text="${status}">${status}</span><span class="badge-[^"]*">(\\d+)</span>`).exec(dom)
  return match === null ? undefined : Number(match[1])
}

/** The job cards' names, sorted. */
function jobNames (dom: string): string[] {
  return [...dom.matchAll(/<h5 class="jobName-[^"]*">([^<]+)<\/h5>/g)].map((match) => match[1]).sort()
}

test('the README\'s bull-board snippet is the file this test mounts', async (t) => {
  const readme = await readFile(join(__dirname, '..', 'README.md'), 'utf8')
  const snippet = (await readFile(BOARD, 'utf8')).trimEnd()
  t.ok(readme.includes('```ts\n' + snippet + '\n```'), 'README.md shows test/fixtures/bull-board/board.ts verbatim')
})

test('bull-board on the plugin\'s queue, rendered in headless Chromium: the task names and the job counts', async (t) => {
  const which = await run('sh', ['-c', 'command -v chromium']).catch(() => null)
  if (which === null) {
    t.fail('chromium is not installed: apt-get install -y chromium (.ci/run does it)')
    return
  }
  const dir = await mkdtemp(join(tmpdir(), 'sac-board-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const redis = await startRedis(t)
  const sendWelcome = defineTask('sendWelcome', () => {})
  const chargeCard = defineTask('chargeCard', () => {})
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(sendAndContinue, { queue: { connection: redis.connection, tasks: [sendWelcome, chargeCard] } })
  await queueBoard(app, { connection: redis.connection })
  app.post('/signup', (request, reply) => reply.code(201).sendAndContinue('ok', sendWelcome.with({})))
  app.post('/orders', (request, reply) => reply.code(201).sendAndContinue('ok', chargeCard.with({})))
  async function post (url: string, times: number): Promise<void> {
    for (let i = 0; i < times; i++) t.equal((await app.inject({ method: 'POST', url })).statusCode, 201)
  }

  // three welcomes and one charge run in a worker; then two charges and one welcome wait
  await post('/signup', 3)
  await post('/orders', 1)
  const { logger, logs } = workerLogger()
  const worker = await createWorker({ connection: redis.connection, tasks: [sendWelcome, chargeCard], logger })
  await logs.untilOutcomes(4)
  await worker.close()
  await post('/orders', 2)
  await post('/signup', 1)
  t.same(await inspect(t, redis).getJobCounts('waiting', 'completed', 'failed'), { waiting: 3, completed: 4, failed: 0 }, 'what Redis holds')

  const url = await app.listen({ port: 0, host: '127.0.0.1' })
  const overview = await render(`${url}/admin/queues`, join(dir, 'profile-1'))
  t.match(overview, 'title="fastify-send-and-continue"', 'the overview lists the plugin\'s queue')
  t.equal(badge(overview, 'WAITING'), 3)
  t.equal(badge(overview, 'COMPLETED'), 4)
  t.equal(badge(overview, 'FAILED'), undefined, 'no failed jobs, no number')

  const waiting = await render(`${url}/admin/queues/queue/fastify-send-and-continue?status=waiting`, join(dir, 'profile-2'))
  t.same(jobNames(waiting), ['chargeCard', 'chargeCard', 'sendWelcome'], 'the waiting jobs, named after their tasks')
  const completed = await render(`${url}/admin/queues/queue/fastify-send-and-continue?status=completed`, join(dir, 'profile-3'))
  t.same(jobNames(completed), ['chargeCard', 'sendWelcome', 'sendWelcome', 'sendWelcome'], 'the completed jobs, named after their tasks')
  t.match(completed, 'data-text="WAITING">WAITING</span><span class="badge-', 'the queue page shows the counts too')
  t.equal(badge(completed, 'WAITING'), 3)
  t.equal(badge(completed, 'COMPLETED'), 4)
})
