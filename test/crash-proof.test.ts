import { test } from 'tap'
import { execFile } from 'node:child_process'
import { join } from 'node:path'
import { envWithoutCoverage } from './child-env'

test('nothing a task throws, returns or rejects with crashes the process (a real server in a child process)', async (t) => {
  const fixture = join(__dirname, 'fixtures', 'hostile-tasks.cjs')
  const { code, stdout, stderr } = await new Promise<{ code: number | null, stdout: string, stderr: string }>((resolve) => {
    execFile(process.execPath, [fixture], { env: envWithoutCoverage(), timeout: 30_000 }, (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : (error as { code?: number }).code ?? null, stdout, stderr })
    })
  })
  t.equal(code, 0, `the process exited normally: ${stderr}`)
  t.equal(stderr, '', 'nothing went to stderr')
  const { counts, stats } = JSON.parse(stdout)
  // per request, 10 hostile tasks: 7 fail, 1 completes, 2 time out; 4 requests; 2 `always` tasks complete
  t.same(counts, { failed: 28, completed: 6, timeout: 8 })
  t.match(stats, { pending: 0, queued: 0, running: 0, failed: 28, completed: 6, timeout: 8, cancelled: 0, dropped: 0 })
})
