import { test } from 'tap'
import { spawn } from 'node:child_process'
import { createReadStream } from 'node:fs'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { envWithoutCoverage } from './child-env'
import { readLines } from '../lib/report/read'
import { Summary } from '../lib/report/summary'

const root = join(__dirname, '..')

/** Milliseconds of the demo's "+ N ms  <text>" step that starts with `text`. */
function at (stdout: string, text: string): number {
  const match = new RegExp(`\\+\\s*(\\d+) ms  ${text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`).exec(stdout)
  if (match === null) throw new Error(`no step "${text}" in the demo's output`)
  return Number(match[1])
}

test('npm run demo builds once, then runs the demo', async (t) => {
  const pkg = JSON.parse(await readFile(join(root, 'package.json'), 'utf8'))
  t.equal(pkg.scripts.demo, 'npm run build && tsx examples/demo.ts', 'one build: dist, which the demo and its report run')
  t.equal(pkg.scripts.prepare, undefined, 'npm install builds nothing, so the demo\'s build is the only one')
  t.ok(pkg.devDependencies.tsx !== undefined && pkg.devDependencies.fastify !== undefined, 'what the demo needs comes with npm install')
})

test('the demo tells the whole story, then reports on its own log', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sac-demo-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const log = join(dir, 'demo.log')
  // what `npm run demo` runs once the build is done (the suite builds first; building here would
  // rewrite dist under the other test files)
  // the demo and its report run the built package: proof that they work, not coverage of lib/
  const child = spawn('npx', ['tsx', 'examples/demo.ts', log], { cwd: root, env: envWithoutCoverage() })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk) => { stdout += chunk })
  child.stderr.on('data', (chunk) => { stderr += chunk })
  const code = await new Promise((resolve) => child.on('close', resolve))
  t.equal(code, 0, stderr)

  for (const title of ['1. A fast answer, a slow e-mail', '2. A client that hangs up mid-stream', '3. A failing task',
    '4. A task past its timeout', '5. A burst past the queue', '6. A shutdown: what ends within the drain completes, the rest is cancelled']) {
    t.match(stdout, title)
  }
  const signup = stdout.slice(stdout.indexOf('1. A fast answer'), stdout.indexOf('2. A client'))
  t.ok(at(signup, 'client has the whole answer: 201') < at(signup, 'sendWelcomeEmail: completed'), 'the answer came before the e-mail was sent')
  const failing = stdout.slice(stdout.indexOf('3. A failing task'), stdout.indexOf('4. A task'))
  t.match(failing, /client has the whole answer: 200[\s\S]*syncCrm: failed: CRM unavailable: 503/)
  const timeout = stdout.slice(stdout.indexOf('4. A task'), stdout.indexOf('5. A burst'))
  t.ok(at(timeout, 'resizeImage: timeout') >= 200, 'the timeout ended the task at its limit, not before')
  const hangUp = stdout.slice(stdout.indexOf('2. A client'), stdout.indexOf('3. A failing'))
  t.match(hangUp, /client hung up[\s\S]*emailExportLink: skipped[\s\S]*recordExport: completed \(always: true/)
  const burst = stdout.slice(stdout.indexOf('5. A burst'), stdout.indexOf('6. A shutdown'))
  t.equal(burst.match(/importRow: completed/g)?.length, 4, 'two slots and two queue places')
  t.match(burst, 'importRow: dropped (two running, two waiting: no room for a fifth)')
  const shutdown = stdout.slice(stdout.indexOf('6. A shutdown'), stdout.indexOf('The report of this log:'))
  t.ok(at(shutdown, 'app.close() called') < at(shutdown, 'processUpload: completed'), 'close waited for the task')
  t.ok(at(shutdown, 'processUpload: completed') < at(shutdown, 'rebuildSearchIndex: cancelled'), 'and cancelled the one the drain could not wait for')
  t.match(shutdown, 'the drain ran out after')

  const report = stdout.slice(stdout.indexOf('The report of this log:'))
  t.match(report, `$ npx fastify-send-and-continue report ${log}`)
  t.match(report, '12 tasks: 7 completed, 1 failed, 1 timeout, 1 skipped, 1 cancelled, 1 dropped.', 'all six outcomes')
  t.match(report, /│ \/orders\s+│ failed\s+│\s+1 │ CRM unavailable: 503 Service\s+│ order-1\s+│\n│ syncCrm\s+│\s+│\s+│ Unavailable\s+│/)

  const summary = new Summary()
  await readLines(createReadStream(log), (line) => summary.add(line))
  const result = summary.result()
  t.same(result.totals.outcomes, { completed: 7, failed: 1, timeout: 1, skipped: 1, cancelled: 1, dropped: 1 })
  t.same(result.routes.map((route) => [route.route, route.responses, route.aborted]),
    [['/export', 1, 1], ['/import', 1, 0], ['/orders', 1, 0], ['/signup', 1, 0], ['/thumbnail', 1, 0], ['/upload', 1, 0]])
  t.match(result.shutdowns, { count: 1, undrained: 1 })
})
