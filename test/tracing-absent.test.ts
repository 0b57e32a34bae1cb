import { test } from 'tap'
import { spawn } from 'node:child_process'
import { join } from 'node:path'

const fixtures = join(__dirname, 'fixtures', 'tracing')

test('without @opentelemetry/api installed the plugin works unchanged and the channels are published', async (t) => {
  // the same loaders as this test (TypeScript, coverage), plus a resolver that hides the package
  const child = spawn(process.execPath, [
    ...process.execArgv,
    '--require', join(fixtures, 'hide-otel.cjs'),
    join(fixtures, 'without-otel.ts')
  ])
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk) => { stdout += chunk })
  child.stderr.on('data', (chunk) => { stderr += chunk })
  const code = await new Promise((resolve) => child.on('close', resolve))
  t.equal(code, 0, stderr)
  t.same(JSON.parse(stdout), {
    apiResolvable: false,
    statusCode: 200,
    body: 'ok',
    completed: 1,
    failed: 1,
    events: ['start:sendMail', 'end:sendMail:null', 'start:fails', 'end:fails:failed', 'asyncEnd:sendMail:completed'],
    injected: null,
    extracted: null,
    jobTrace: null
  })
})
