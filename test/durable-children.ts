import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { join } from 'node:path'
import type { Test } from 'tap'
import { envWithoutCoverage } from './child-env'
import type { LogLine } from './helpers'

// Workers in child processes, as deployed: the built CLI with a tasks module, killed or stopped
// with signals. They run the built package, so their coverage does not count (see child-env).

const root = join(__dirname, '..')
export const tasksModule = join(__dirname, 'fixtures', 'durable', 'tasks.cjs')

export interface Child {
  process: ChildProcess
  /** Complete lines so far (a kill -9 may cut the last one). */
  lines: LogLine[]
  until (check: (lines: LogLine[]) => boolean): Promise<void>
  exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
}

/** `fastify-send-and-continue worker <fixtures/durable/tasks.cjs> --redis <socket> ...args`, killed at teardown. */
export function startWorker (t: Test, socket: string, args: string[] = []): Child {
  return startChild(t, [join(root, 'dist', 'cli.js'), 'worker', tasksModule, '--redis', socket, ...args])
}

/** `fastify-send-and-continue worker <fixtures/durable/tasks.cjs> --sqlite <file> ...args`, killed at teardown. */
export function startSqliteWorker (t: Test, file: string, args: string[] = []): Child {
  return startChild(t, [join(root, 'dist', 'cli.js'), 'worker', tasksModule, '--sqlite', file, ...args])
}

/** `node <args>` writing pino lines to standard output, killed at teardown. */
export function startChild (t: Test, args: string[], env: NodeJS.ProcessEnv = {}): Child {
  const child = spawn(process.execPath, args, {
    env: envWithoutCoverage(env),
    stdio: ['ignore', 'pipe', 'inherit']
  })
  const lines: LogLine[] = []
  let rest = ''
  const waiters: Array<{ check: (lines: LogLine[]) => boolean, resolve: () => void }> = []
  child.stdout?.on('data', (chunk: Buffer) => {
    const parts = (rest + chunk.toString()).split('\n')
    rest = parts.pop() as string
    for (const part of parts) if (part !== '') lines.push(JSON.parse(part))
    for (const waiter of [...waiters]) {
      if (waiter.check(lines)) {
        waiters.splice(waiters.indexOf(waiter), 1)
        waiter.resolve()
      }
    }
  })
  const exited = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>((resolve) => {
    child.on('exit', (code, signal) => resolve({ code, signal }))
  })
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    await exited
  })
  return {
    process: child,
    lines,
    exited,
    until (check) {
      if (check(lines)) return Promise.resolve()
      return new Promise((resolve) => { waiters.push({ check, resolve }) })
    }
  }
}
