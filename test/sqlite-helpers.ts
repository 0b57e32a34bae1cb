import Database from 'better-sqlite3'
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import type { Test } from 'tap'
import type { OpenSqlite, SqliteConnection } from '../lib/engines/sqlite/binding'
import { SqliteStore } from '../lib/engines/sqlite/store'
import type { SqliteStoreOptions } from '../lib/engines/sqlite/store'
import type { JobRecord } from '../lib/engines/types'
import { envWithoutCoverage } from './child-env'

export const QUEUE = 'q'

export async function tempDir (t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'sac-sqlite-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  return dir
}

/** A store on `path`, closed at teardown. */
export function makeStore (t: Test, path: string, options: Partial<SqliteStoreOptions> = {}): SqliteStore {
  const store = new SqliteStore({ path, queue: QUEUE, synchronous: 'normal', busyTimeout: 5000, where: 'createWorker()', ...options })
  t.teardown(() => store.close())
  return store
}

export function job (jobId: string, extra: Partial<JobRecord> = {}): JobRecord {
  return {
    task: 'send',
    jobId,
    keyed: true,
    payload: {
      data: { n: jobId },
      request: { id: 'req-1', method: 'POST', url: '/x', routeUrl: '/x' } as unknown as JobRecord['payload']['request'],
      route: 'POST /x',
      connection: null,
      statusCode: 202,
      enqueuedAt: 1
    },
    attempts: 3,
    backoff: undefined,
    delay: 0,
    ...extra
  }
}

/** A second, plain connection to look into (and tamper with) the file, closed at teardown. */
export function peek (t: Test, path: string): Database.Database {
  const db = new Database(path)
  t.teardown(() => db.close())
  return db
}

export interface Row {
  id: string
  state: string
  attempts_made: number
  stalled: number
  run_at: number
  owner: string | null
  lock_until: number | null
  finished_at: number | null
  outcome: string | null
  error: string | null
}

export function rowOf (db: Database.Database, id: string): Row | undefined {
  return db.prepare('SELECT * FROM jobs WHERE queue = ? AND id = ?').get(QUEUE, id) as Row | undefined
}

export interface Counting {
  open: OpenSqlite
  /** COMMITs run so far. */
  commits: number
  /** The raw connections opened, to read their settings. */
  connections: SqliteConnection[]
  /** When set, the next COMMIT rolls back and throws this instead, as a failing disk would. */
  failCommit: Error | undefined
}

/** Wraps the real binding to count transactions and fail a commit on demand. */
export function counting (): Counting {
  const state: Counting = {
    commits: 0,
    failCommit: undefined,
    connections: [],
    open: (path) => {
      const db = new Database(path) as unknown as SqliteConnection
      state.connections.push(db)
      return {
        prepare: (sql) => db.prepare(sql),
        close: () => db.close(),
        exec (sql) {
          if (sql === 'COMMIT') {
            state.commits++
            const failure = state.failCommit
            if (failure !== undefined) {
              state.failCommit = undefined
              db.exec('ROLLBACK')
              throw failure
            }
          }
          return db.exec(sql)
        }
      }
    }
  }
  return state
}

const childScript = join(__dirname, 'fixtures', 'sqlite', 'child.ts')

export interface SqliteChild {
  process: ChildProcess
  /** Resolves with the next JSON line the child prints. */
  next (): Promise<Record<string, unknown>>
  exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
}

/** Runs test/fixtures/sqlite/child.ts through the test runner's TypeScript loader, killed at teardown. */
export function startChild (t: Test, args: string[]): SqliteChild {
  const child = spawn(process.execPath, [...process.execArgv, childScript, ...args], {
    env: envWithoutCoverage(),
    stdio: ['pipe', 'pipe', 'inherit']
  })
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream })[Symbol.asyncIterator]()
  const exited = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>((resolve) => {
    child.on('exit', (code, signal) => resolve({ code, signal }))
  })
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    await exited
  })
  return {
    process: child,
    exited,
    async next () {
      const { value, done } = await lines.next()
      if (done === true) throw new Error(`child ${args.join(' ')} ended without a line`)
      return JSON.parse(value)
    }
  }
}

/** A file of schema version 1, as the engine wrote it (no error column, two indexes over (queue, state, ...)): one failed job, `id`, in `queue`. */
export async function versionOne (t: Test, id: string, task = 'send', queue = QUEUE): Promise<string> {
  const path = join(await tempDir(t), 'v1.db')
  const store = makeStore(t, path, { queue })
  await store.enqueue([job(id, { task })], 1000)
  const [leased] = await store.take('me', 1, 60_000)
  await store.finish('me', leased.id, 'failed')
  await store.close()
  const db = new Database(path)
  db.exec(`ALTER TABLE jobs DROP COLUMN error;
    DROP INDEX jobs_waiting; DROP INDEX jobs_active; DROP INDEX jobs_completed; DROP INDEX jobs_failed;
    CREATE INDEX jobs_due ON jobs (queue, state, run_at);
    CREATE INDEX jobs_finished ON jobs (queue, state, finished_at);`)
  db.pragma('user_version = 1')
  db.close()
  return path
}
