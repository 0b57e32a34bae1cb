import { test } from 'tap'
import type { Test } from 'tap'
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { commandOf, root, runCommand } from './commands'
import type { Ran } from './commands'

// the examples load the package's source through tsx (tsconfig paths): they are run to prove they
// work, not to cover lib/
const env = { PORT: '0' }

function logLines (stdout: string): Array<Record<string, any>> {
  return stdout.split('\n').filter((line) => line.startsWith('{')).map((line) => JSON.parse(line))
}

/** What each example must print; its command comes from its own header. */
const expectations: Record<string, (t: Test, ran: Ran) => void> = {
  'examples/basic.ts' (t, { stdout }) {
    // by position, not adjacency: the server's own log lines may land between the two under load
    const answered = stdout.indexOf('client got 201 {"ok":true}: the e-mail is still on its way')
    t.ok(answered !== -1 && answered < stdout.indexOf('e-mail sent to ada@example.com'), 'the answer comes first')
    t.match(logLines(stdout).find((line) => line.deferred?.outcome !== undefined), { deferred: { task: 'sendWelcomeEmail', outcome: 'completed' } })
    t.match(logLines(stdout).find((line) => line.deferredShutdown !== undefined), { deferredShutdown: { drained: true, completed: 1 } })
  },
  'examples/route-opt-in.ts' (t, { stdout }) {
    t.match(stdout, 'POST /reports -> 202')
    t.match(stdout, 'report built')
    t.match(stdout, 'invoice e-mailed')
    t.match(stdout, '/health: FST_SAC_NOT_ENABLED: deferred work is not enabled on route GET /health')
    t.match(stdout, 'GET /health -> 500')
    t.notMatch(stdout, 'never runs')
  },
  'examples/php-port.ts' (t, { stdout }) {
    t.match(stdout, 'client got 200 {"ok":true} with connection: close, content-length: 11')
    t.match(stdout, /welcome e-mail sent\nshutdown function: connection finished, tasks: sendWelcomeEmail completed/, 'the shutdown function runs last')
  },
  'examples/tracing.ts' (t, { stdout }) {
    t.match(stdout, 'client got 202 {"ok":true}')
    // the console exporter prints each span as an object: name, id, traceId, parentSpanContext
    const spans = stdout.split(/^\{$/m).slice(1).map((block) => ({
      name: /^ {2}name: '(.+)',$/m.exec(block)?.[1],
      id: /^ {2}id: '(\w+)',$/m.exec(block)?.[1],
      traceId: /^ {2}traceId: '(\w+)',$/m.exec(block)?.[1],
      parentId: /^ {4}spanId: '(\w+)',$/m.exec(block)?.[1]
    }))
    const request = spans.find((span) => span.name === 'request')
    const task = spans.find((span) => span.name === 'deferred sendReceipt')
    const inside = spans.find((span) => span.name === 'render receipt')
    t.ok(request !== undefined && task !== undefined && inside !== undefined, 'request, task and user spans printed')
    t.equal(task?.traceId, request?.traceId, 'the task span is in the request\'s trace')
    t.equal(inside?.parentId, task?.id, 'the user\'s span is the task span\'s child')
  },
  'examples/testing/app.test.ts' (t, { stdout }) {
    t.match(stdout, /^# pass 2$/m)
    t.match(stdout, /^# fail 0$/m)
  }
}

test('every example has a header command, is in the README, and is run here', async (t) => {
  const readme = await readFile(join(root, 'README.md'), 'utf8')
  const files = (await readdir(join(root, 'examples'), { recursive: true }))
    .map((file) => `examples/${file}`)
    .filter((file) => file.endsWith('.ts') && (!file.startsWith('examples/testing/') || file.endsWith('.test.ts')))
    .sort()
  const durable = ['app.ts', 'demo-worker.ts', 'demo.ts', 'tasks.ts', 'worker.ts'].map((file) => `examples/durable/${file}`)
  t.same(files, [...Object.keys(expectations), 'examples/demo.ts', 'examples/graceful-shutdown.ts', ...durable].sort(),
    'an example without a test here fails this line (demo.ts: test/demo.test.ts; durable/: test/durable-examples.test.ts)')
  for (const file of files) {
    const command = await commandOf(file)
    t.ok(readme.includes(command), `the README shows "${command}"`)
  }
})

for (const [file, check] of Object.entries(expectations)) {
  test(`${file} runs with the command in its header`, async (t) => {
    const ran = await runCommand(await commandOf(file), env)
    t.equal(ran.code, 0, ran.stderr)
    check(t, ran)
  })
}

test('examples/graceful-shutdown.ts: a SIGTERM waits for the deferred work', async (t) => {
  let requested = false
  const ran = await runCommand(await commandOf('examples/graceful-shutdown.ts'), env, (stdout, stop) => {
    const url = /Server listening at (http:\/\/[^"]+)"/.exec(stdout)?.[1]
    if (url === undefined || requested) return
    requested = true
    fetch(`${url}/exports`, { method: 'POST' }).then(async (response) => {
      t.equal(response.status, 202)
      await response.text()
      stop()
    }, (err) => t.error(err))
  })
  const lines = logLines(ran.stdout)
  const messages = lines.map((line) => line.msg)
  t.ok(messages.indexOf('SIGTERM received, closing') < messages.indexOf('export ready'), 'the signal came while the export ran')
  t.match(lines.find((line) => line.deferred?.outcome !== undefined), { deferred: { task: 'buildExport', outcome: 'completed' } })
  t.match(lines.find((line) => line.deferredShutdown !== undefined), { deferredShutdown: { drained: true, completed: 1 } })
})
