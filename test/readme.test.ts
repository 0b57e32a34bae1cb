import { test } from 'tap'
import { execFile, spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { request } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { envWithoutCoverage } from './child-env'

// Walks the README as a new user would: the packed package installed into a new project, the
// Usage snippets pasted into files as they are, run, asked for a signup, stopped with SIGTERM; the
// documented log lines must appear, and the README's sample line must be one such line.

const run = promisify(execFile)
const root = join(__dirname, '..')
const readme = readFileSync(join(root, 'README.md'), 'utf8')

/** The code block after `<!-- usage: NAME -->`. */
function snippet (name: string): string {
  const match = new RegExp(`<!-- usage: ${name.replace('.', '\\.')} -->\\n\`\`\`\\w+\\n([\\s\\S]*?)\\n\`\`\``).exec(readme)
  if (match === null) throw new Error(`README has no snippet marked "usage: ${name}"`)
  return match[1]
}

type Line = Record<string, any>

class Server {
  readonly lines: Line[] = []
  readonly child: ChildProcess
  #waiters: Array<() => void> = []

  constructor (command: string, args: string[], cwd: string) {
    // its own process group, as a terminal's foreground job: Ctrl-C signals the whole group
    this.child = spawn(command, args, { cwd, env: envWithoutCoverage({ PORT: '0' }), detached: true })
    let rest = ''
    this.child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      const parts = (rest + chunk).split('\n')
      rest = parts.pop() as string
      for (const part of parts) if (part.startsWith('{')) this.lines.push(JSON.parse(part))
      for (const wake of this.#waiters.splice(0)) wake()
    })
  }

  async until (check: (line: Line) => boolean): Promise<Line> {
    for (;;) {
      const found = this.lines.find(check)
      if (found !== undefined) return found
      await new Promise<void>((resolve) => this.#waiters.push(resolve))
    }
  }

  exited (): Promise<number | null> {
    return new Promise((resolve) => {
      if (this.child.exitCode !== null) resolve(this.child.exitCode)
      else this.child.once('exit', (code) => resolve(code))
    })
  }
}

function signup (url: string, email: string): Promise<{ status: number, body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(`${url}/signup`, { method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
      let body = ''
      res.setEncoding('utf8').on('data', (chunk) => { body += chunk })
      res.on('end', () => resolve({ status: res.statusCode as number, body }))
    })
    req.on('error', reject)
    req.end(JSON.stringify({ email }))
  })
}

test('the README\'s Usage snippets work pasted into a new project that installs the packed package', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sac-readme-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const env = envWithoutCoverage()
  const { stdout: packed } = await run('npm', ['pack', '--silent', '--ignore-scripts', '--pack-destination', dir], { cwd: root, env })
  const tarball = join(dir, packed.trim().split('\n').pop() as string)
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'new-app', version: '1.0.0', private: true }))
  // the registry's packages come from npm's cache when it has them (CI just installed them)
  await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error', tarball, 'fastify', 'tsx'], { cwd: dir, env, timeout: 240_000 })
  writeFileSync(join(dir, 'server.mts'), snippet('server.mts'))
  writeFileSync(join(dir, 'server.js'), snippet('server.js'))

  const sampleLine = JSON.parse(/\n```json\n(\{.*"deferred task completed"\})\n```/.exec(readme)?.[1] ?? 'null') as Line

  for (const [file, command, args] of [
    // the README's run command: one process that drains on Ctrl-C (npx tsx would kill it mid-drain)
    ['server.mts', process.execPath, ['--import', 'tsx', 'server.mts']],
    ['server.js', process.execPath, ['server.js']]
  ] as const) {
    await t.test(file, async (t) => {
      const server = new Server(command, [...args], dir)
      t.teardown(() => { if (server.child.exitCode === null) process.kill(-(server.child.pid as number), 'SIGKILL') })
      const listening = await server.until((line) => /^Server listening at http:\/\/127\.0\.0\.1:/.test(line.msg))
      const url = (listening.msg as string).replace('Server listening at ', '')

      const answer = await signup(url, 'ada@example.com')
      t.equal(answer.status, 201)
      t.same(JSON.parse(answer.body), { id: 42, email: 'ada@example.com' })
      const done = await server.until((line) => line.msg === 'deferred task completed')
      t.match(done, {
        level: 30,
        reqId: 'req-1',
        deferred: { task: 'sendWelcome', outcome: 'completed', connection: 'finished', method: 'POST', route: '/signup', statusCode: 201 }
      })
      t.ok(done.deferred.durationMs >= 150, 'the task ran its 200 ms after the response')
      t.match(await server.until((line) => line.msg === 'welcome e-mail sent'), { reqId: 'req-1', userId: 42 })
      t.match(server.lines.find((line) => line.msg === 'response finished, running deferred work'), {
        reqId: 'req-1', deferred: { connection: 'finished', method: 'POST', route: '/signup', statusCode: 201, tasks: 1 }
      })

      // the README's sample line is a real one: the same fields, the same values but for timings and process
      t.same(Object.keys(sampleLine).sort(), Object.keys(done).sort(), 'the sample line has the fields of a real one')
      t.same(Object.keys(sampleLine.deferred).sort(), Object.keys(done.deferred).sort())
      const { durationMs, queuedMs, ...stable } = done.deferred
      t.match(sampleLine, { level: done.level, reqId: done.reqId, msg: done.msg, deferred: stable })

      // SIGTERM while a task runs: the drain lets it finish and says so
      const second = await signup(url, 'grace@example.com')
      t.equal(second.status, 201)
      server.child.kill('SIGTERM')
      t.equal(await server.exited(), 0)
      t.match(server.lines.find((line) => line.deferredShutdown !== undefined), {
        msg: 'deferred work drained',
        deferredShutdown: { drained: true, completed: 2, cancelled: 0 }
      })
      t.equal(server.lines.filter((line) => line.msg === 'deferred task completed').length, 2)
    })
  }

  await t.test('Ctrl-C to the whole process group while a task runs, with the README\'s run command: the task\'s final line is there', async (t) => {
    const command = /and run `(node --import tsx server\.mts)`/.exec(readme)?.[1]
    t.equal(command, 'node --import tsx server.mts', 'the README runs the snippet so')
    const server = new Server(process.execPath, ['--import', 'tsx', 'server.mts'], dir)
    t.teardown(() => { if (server.child.exitCode === null) process.kill(-(server.child.pid as number), 'SIGKILL') })
    const listening = await server.until((line) => /^Server listening at http:\/\/127\.0\.0\.1:/.test(line.msg))
    const answer = await signup((listening.msg as string).replace('Server listening at ', ''), 'ada@example.com')
    t.equal(answer.status, 201)
    // the close line is written before the task runs: the task is running now (200 ms)
    await server.until((line) => line.deferred?.tasks === 1)
    t.notOk(server.lines.some((line) => line.deferred?.outcome !== undefined), 'the task has not ended yet')
    process.kill(-(server.child.pid as number), 'SIGINT')
    t.equal(await server.exited(), 0)
    t.match(server.lines.find((line) => line.deferred?.outcome !== undefined), { reqId: 'req-1', deferred: { task: 'sendWelcome', outcome: 'completed' } })
    t.match(server.lines.find((line) => line.deferredShutdown !== undefined), { deferredShutdown: { drained: true, completed: 1 } })
  })
})
