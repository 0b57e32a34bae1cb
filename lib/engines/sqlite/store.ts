import { mkdirSync } from 'node:fs'
import { dirname } from 'node:path'
import { describe, FST_SAC_SQLITE_FOREIGN, FST_SAC_SQLITE_PATH, FST_SAC_SQLITE_SCHEMA, isSendAndContinueError } from '../../errors'
import { STALLED_MESSAGE } from '../../jobs/lease-loop'
import type { Engine, JobRecord, JobStore, LeasedJob } from '../types'
import { loadSqlite } from './binding'
import type { OpenSqlite, SqliteConnection, SqliteStatement, SqliteValue } from './binding'
import { APPLICATION_ID, MIGRATIONS, SCHEMA, SCHEMA_VERSION } from './schema'

// How long a finished job is kept, as the BullMQ engine keeps it (seconds, jobs): while it is kept
// a job with the same key is the same job; without a bound the file would grow without end.
export const KEEP_COMPLETED = { age: 3600, count: 10_000 }
export const KEEP_FAILED = { age: 7 * 24 * 3600, count: 100_000 }
// recover() is called on every poll of every worker: pruning that often would only add writes
const PRUNE_EVERY = 5000
// at most this many rows per state and rule in one prune, so its transaction stays short even
// after a long outage; the rest goes on the next prunes
const PRUNE_BATCH = 10_000
// the longest error message kept with a failed job; the log line has it whole
const ERROR_LENGTH = 1000
// commits chained to the one of a turn at most (see #chain)
const MAX_CHAINED = 4
// how much shorter than its own busy timeout the time an enqueue has left must be to cut it
const BUSY_SLACK = 10

export interface SqliteStoreOptions {
  /** The database file; its folder is created when missing. */
  path: string
  /** The queue's name: several queues may share one file. */
  queue: string
  /** `'normal'`: committed jobs survive a crash of the process, a power loss may lose the last transactions. `'full'`: they survive a power loss too. */
  synchronous: 'normal' | 'full'
  /** Milliseconds a statement waits for another process's write lock before it fails. */
  busyTimeout: number
  /** Names the caller in errors: `'fastify-send-and-continue queue'` or `'createWorker()'`. */
  where: string
  /** Opens a connection; the binding found by loadSqlite() when absent (tests wrap it). */
  open?: OpenSqlite
}

export type JobState = 'waiting' | 'active' | 'completed' | 'failed'

interface JobRow {
  id: string
  task: string
  payload: string
  attempts: number
  backoff: string | null
  delay: number
  attempts_made: number
}

interface Pending {
  rows: SqliteValue[][]
  start: number
  timeout: number
  resolve: () => void
  reject: (err: unknown) => void
}

/** A worker's write (take, finish, retry, release), run in the next group commit. */
interface Op {
  run: () => unknown
  resolve: (result: any) => void
  reject: (err: unknown) => void
}

const INSERT = `INSERT OR IGNORE INTO jobs (queue, id, task, payload, attempts, backoff, delay, state, run_at, created_at)
  VALUES (?, ?, ?, ?, ?, ?, ?, 'waiting', ?, ?)`
const COLUMNS = 'id, task, payload, attempts, backoff, delay, attempts_made'
// The limit is written into the statement, one statement per limit (at most `concurrency` of
// them): SQLite re-prepares a statement whose LIMIT is a bound parameter on every run, which
// costs ten times the take itself. The due jobs are read, then leased one by one by rowid, in
// the same write transaction: an UPDATE ... RETURNING over the same subquery costs twice that.
function dueStatement (max: number): string {
  return `SELECT ${COLUMNS}, run_at, rowid AS seq FROM jobs
  WHERE queue = ? AND state = 'waiting' AND run_at <= ? ORDER BY run_at, rowid LIMIT ${max}`
}
const LEASE = "UPDATE jobs SET state = 'active', owner = ?, lock_until = ? WHERE rowid = ?"
const HELD = "queue = ? AND id = ? AND state = 'active' AND owner = ?"
const RENEW = `UPDATE jobs SET lock_until = ? WHERE ${HELD}`
const FINISH = `UPDATE jobs SET state = ?, outcome = ?, error = ?, attempts_made = attempts_made + ?, finished_at = ?, owner = NULL, lock_until = NULL WHERE ${HELD}`
const RETRY = `UPDATE jobs SET state = 'waiting', attempts_made = attempts_made + 1, run_at = ?, owner = NULL, lock_until = NULL WHERE ${HELD}`
// the job keeps its run_at (it was due when taken), hence its place among the due jobs
const RELEASE = `UPDATE jobs SET state = 'waiting', owner = NULL, lock_until = NULL WHERE ${HELD}`
const ACTIVE = "SELECT id, owner, lock_until FROM jobs WHERE queue = ? AND state = 'active'"
// a second lost run fails the job, as BullMQ's maxStalledCount of 1 does; SET reads the old values
const STALL = `UPDATE jobs SET stalled = stalled + 1,
    state = CASE WHEN stalled >= 1 THEN 'failed' ELSE 'waiting' END,
    outcome = CASE WHEN stalled >= 1 THEN 'stalled' END,
    finished_at = CASE WHEN stalled >= 1 THEN ? END,
    error = CASE WHEN stalled >= 1 THEN ? END,
    owner = NULL, lock_until = NULL
  WHERE ${HELD} AND lock_until = ?
  RETURNING ${COLUMNS}, state`
const NEXT_DUE = "SELECT min(run_at) AS at FROM jobs WHERE queue = ? AND state = 'waiting'"
// per state, written in: a bound state would not use the state's partial index
function pruneAge (state: 'completed' | 'failed'): string {
  return `DELETE FROM jobs WHERE rowid IN (SELECT rowid FROM jobs WHERE queue = ? AND state = '${state}' AND finished_at < ? LIMIT ?)`
}
function pruneCount (state: 'completed' | 'failed'): string {
  return `DELETE FROM jobs WHERE rowid IN
  (SELECT rowid FROM jobs WHERE queue = ? AND state = '${state}' ORDER BY finished_at DESC, rowid DESC LIMIT ? OFFSET ?)`
}

/**
 * One queue in a SQLite file, for both sides: the web process enqueues (Engine), workers lease
 * and settle jobs (JobStore). Every write is one short `BEGIN IMMEDIATE` transaction, so several
 * processes may share the file; a lease is changed only by its owner. The enqueues, takes and
 * settlements of one event-loop turn share one transaction (group commit): a settled job is
 * committed as durably as before, one commit (and with `synchronous: 'full'` one fsync) serves
 * them all.
 */
export class SqliteStore implements Engine, JobStore {
  readonly name = 'sqlite'
  readonly queue: string
  readonly #path: string
  readonly #synchronous: 'normal' | 'full'
  readonly #busyTimeout: number
  readonly #where: string
  readonly #open: OpenSqlite | undefined
  #db: SqliteConnection | undefined
  #closed = false
  readonly #statements = new Map<string, SqliteStatement>()
  #pending: Pending[] = []
  #ops: Op[] = []
  // commits chained in this turn (see #chain)
  #chained = 0
  #flushing: NodeJS.Immediate | undefined
  #prunedAt = 0

  constructor (options: SqliteStoreOptions) {
    this.queue = options.queue
    this.#path = options.path
    this.#synchronous = options.synchronous
    this.#busyTimeout = options.busyTimeout
    this.#where = options.where
    this.#open = options.open
  }

  /** Opens the file (creating it and its schema when new) or refuses it with a coded error. */
  async check (timeout: number): Promise<void> {
    this.#connection(Math.min(this.#busyTimeout, timeout))
  }

  /**
   * Group commit: the calls made in one event-loop turn share one transaction, flushed on
   * setImmediate. A microtask would flush after each request's callback (each is its own macrotask
   * with its own microtask queue); setImmediate runs once the poll phase handled every callback
   * that was ready, so all the responses finished in that turn commit together. A synchronous
   * binding cannot be interrupted, so `timeout` is bounded this way: a batch whose callers waited
   * longer than their timeout is refused without a write, and the transaction's wait for another
   * process's lock (the busy timeout) is cut to the smallest time left.
   */
  async enqueue (jobs: readonly JobRecord[], timeout: number): Promise<void> {
    const now = Date.now()
    const rows = jobs.map((job): SqliteValue[] => [
      this.queue, job.jobId, job.task, JSON.stringify(job.payload), job.attempts,
      job.backoff === undefined ? null : JSON.stringify(job.backoff), job.delay, now + job.delay, now
    ])
    await new Promise<void>((resolve, reject) => {
      this.#pending.push({ rows, start: now, timeout, resolve, reject })
      this.#flushing ??= setImmediate(() => { this.#flush() })
    })
  }

  async take (owner: string, max: number, lockDuration: number): Promise<LeasedJob[]> {
    const due = this.#statement(dueStatement(max))
    const lease = this.#statement(LEASE)
    const rows = await this.#batched(() => {
      const now = Date.now()
      const found = due.all(this.queue, now) as Array<JobRow & { seq: number }>
      for (const row of found) lease.run(owner, now + lockDuration, row.seq)
      return found
    })
    return rows.map(leased)
  }

  async renew (owner: string, ids: readonly string[], lockDuration: number): Promise<string[]> {
    const until = Date.now() + lockDuration
    return this.#write(() => ids.filter((id) => changes(this.#statement(RENEW).run(until, this.queue, id, owner)) === 0))
  }

  async finish (owner: string, id: string, outcome: 'completed' | 'failed' | 'timeout', error?: string): Promise<boolean> {
    const failed = outcome === 'completed' ? 0 : 1
    const message = error === undefined ? null : error.slice(0, ERROR_LENGTH)
    return await this.#change(FINISH, failed === 0 ? 'completed' : 'failed', outcome, message, failed, Date.now(), this.queue, id, owner)
  }

  async retry (owner: string, id: string, delayMs: number): Promise<boolean> {
    return await this.#change(RETRY, Date.now() + delayMs, this.queue, id, owner)
  }

  async release (owner: string, id: string): Promise<boolean> {
    return await this.#change(RELEASE, this.queue, id, owner)
  }

  async recover (isDead: (owner: string) => boolean): Promise<LeasedJob[]> {
    const now = Date.now()
    // read first, outside the write lock: isDead() may make system calls
    const active = this.#statement(ACTIVE).all(this.queue) as Array<{ id: string, owner: string, lock_until: number }>
    const dead = new Map<string, boolean>()
    const lost = active.filter((job) => {
      if (job.lock_until < now) return true
      if (!dead.has(job.owner)) dead.set(job.owner, isDead(job.owner))
      return dead.get(job.owner)
    })
    const failed: LeasedJob[] = []
    if (lost.length > 0) {
      this.#write(() => {
        // the lease read above, unchanged (not renewed, settled or taken since), is the one recovered
        for (const job of lost) {
          const row = this.#statement(STALL).get(now, STALLED_MESSAGE, this.queue, job.id, job.owner, job.lock_until) as (JobRow & { state: JobState }) | undefined
          if (row?.state === 'failed') failed.push(leased(row))
        }
      })
    }
    if (now - this.#prunedAt >= PRUNE_EVERY) await this.prune()
    return failed
  }

  async nextDue (): Promise<number | null> {
    const { at } = this.#statement(NEXT_DUE).get(this.queue) as { at: number | null }
    return at === null ? null : Math.max(0, at - Date.now())
  }

  /** Deletes the finished jobs beyond the retention (recover() does it every few seconds); answers how many. */
  async prune (): Promise<number> {
    const now = Date.now()
    this.#prunedAt = now
    return this.#write(() => {
      let deleted = 0
      for (const [state, keep] of [['completed', KEEP_COMPLETED], ['failed', KEEP_FAILED]] as const) {
        deleted += changes(this.#statement(pruneAge(state)).run(this.queue, now - keep.age * 1000, PRUNE_BATCH))
        deleted += changes(this.#statement(pruneCount(state)).run(this.queue, PRUNE_BATCH, keep.count))
      }
      return deleted
    })
  }

  /** Commits the enqueues still waiting for their turn, then closes the file. */
  async close (): Promise<void> {
    if (this.#flushing !== undefined) this.#flush()
    this.#closed = true
    this.#statements.clear()
    this.#db?.close()
    this.#db = undefined
  }

  #flush (): void {
    clearImmediate(this.#flushing)
    this.#flushing = undefined
    this.#chained = 0
    const now = Date.now()
    const batch: Pending[] = []
    for (const caller of this.#pending.splice(0)) {
      const waited = now - caller.start
      if (waited <= caller.timeout) batch.push(caller)
      else caller.reject(new Error(`the jobs waited ${waited} ms for their transaction, longer than the timeout of ${caller.timeout} ms`))
    }
    const ops = this.#ops
    this.#ops = []
    if (batch.length === 0 && ops.length === 0) return
    // The wait for another process's lock: the store's busy timeout, cut to the time its enqueue
    // callers have left. Set only when that is shorter by more than a few ms: two PRAGMAs per
    // batch cost more than the rest of a small one.
    const busy = batch.reduce((least, caller) => Math.min(least, caller.start + caller.timeout - now), this.#busyTimeout)
    const cut = busy < this.#busyTimeout - BUSY_SLACK
    const results: unknown[] = []
    try {
      const db = this.#connection(busy)
      if (cut) db.exec(`PRAGMA busy_timeout = ${busy}`)
      try {
        transaction(db, () => {
          if (batch.length > 0) {
            const insert = this.#statement(INSERT)
            for (const caller of batch) for (const row of caller.rows) insert.run(...row)
          }
          for (const op of ops) results.push(op.run())
        })
      } finally {
        if (cut) db.exec(`PRAGMA busy_timeout = ${this.#busyTimeout}`)
      }
    } catch (err) {
      for (const caller of batch) caller.reject(err)
      for (const op of ops) op.reject(err)
      return
    }
    for (const caller of batch) caller.resolve()
    for (let i = 0; i < ops.length; i++) ops[i].resolve(results[i])
    if (ops.length > 0) this.#chain()
  }

  // A job that ends at once (a no-op) frees its slot within the microtasks of the commit that
  // leased it: its settlement and the slot's next take are committed right after them, in this
  // turn, rather than a whole event-loop turn later, up to MAX_CHAINED times a turn so requests
  // still get their turn. (A nextTick queued from a microtask runs once the microtasks drained.)
  #chain (): void {
    queueMicrotask(() => {
      process.nextTick(() => {
        if (this.#ops.length === 0 || this.#chained >= MAX_CHAINED) return
        const chained = this.#chained + 1
        this.#flush()
        this.#chained = chained
      })
    })
  }

  // A worker's write joins the next group commit. A closed store refuses it at once.
  #batched<T> (run: () => T): Promise<T> {
    this.#connection()
    return new Promise<T>((resolve, reject) => {
      this.#ops.push({ run, resolve, reject })
      this.#flushing ??= setImmediate(() => { this.#flush() })
    })
  }

  #change (sql: string, ...params: SqliteValue[]): Promise<boolean> {
    const statement = this.#statement(sql)
    return this.#batched(() => changes(statement.run(...params)) === 1)
  }

  #write<T> (fn: () => T): T {
    return transaction(this.#connection(), fn)
  }

  #statement (sql: string): SqliteStatement {
    const db = this.#connection()
    let statement = this.#statements.get(sql)
    if (statement === undefined) {
      statement = db.prepare(sql)
      this.#statements.set(sql, statement)
    }
    return statement
  }

  #connection (busy = this.#busyTimeout): SqliteConnection {
    if (this.#closed) throw new Error(`${this.#where}: the SQLite store of queue ${describe(this.queue)} is closed`)
    this.#db ??= this.#openFile(busy)
    return this.#db
  }

  #openFile (busy: number): SqliteConnection {
    const open = this.#open ?? loadSqlite(this.#where)
    let db: SqliteConnection | undefined
    try {
      mkdirSync(dirname(this.#path), { recursive: true })
      db = open(this.#path)
      db.exec(`PRAGMA busy_timeout = ${busy}`)
      // reads only: a file that is not ours is refused before anything is written to it
      this.#inspect(db)
      const { journal_mode: mode } = db.prepare('PRAGMA journal_mode = WAL').get() as { journal_mode: string }
      // ':memory:' stays 'memory': no other process could share it
      if (mode !== 'wal') throw new Error(`its journal mode should become 'wal', instead it stayed '${mode}'`)
      db.exec(`PRAGMA synchronous = ${this.#synchronous.toUpperCase()}`)
      // Again under the write lock: another process may have created the file since. Always
      // written (the statements are idempotent), which also proves the file is writable.
      transaction(db, () => {
        this.#inspect(db as SqliteConnection)
        const version = pragma(db as SqliteConnection, 'user_version')
        for (let from = version; from > 0 && from < SCHEMA_VERSION; from++) (db as SqliteConnection).exec(MIGRATIONS[from])
        ;(db as SqliteConnection).exec(SCHEMA)
      })
      db.exec(`PRAGMA busy_timeout = ${this.#busyTimeout}`)
      return db
    } catch (err) {
      db?.close()
      // better-sqlite3 loads its native part at the first open: one built for another Node
      // version says so itself, and is no fault of the path
      if (isSendAndContinueError(err) || (err as NodeJS.ErrnoException).code === 'ERR_DLOPEN_FAILED') throw err
      const { message } = err as Error
      // both bindings word SQLITE_NOTADB this way
      if (message.includes('file is not a database')) throw new FST_SAC_SQLITE_FOREIGN(this.#where, describe(this.#path), 'a file that is not a SQLite database')
      throw new FST_SAC_SQLITE_PATH(this.#where, describe(this.#path), message)
    }
  }

  #inspect (db: SqliteConnection): void {
    const id = pragma(db, 'application_id')
    const version = pragma(db, 'user_version')
    if (id === APPLICATION_ID) {
      if (version > SCHEMA_VERSION) throw new FST_SAC_SQLITE_SCHEMA(this.#where, describe(this.#path), SCHEMA_VERSION, version)
      return
    }
    const { objects } = db.prepare('SELECT count(*) AS objects FROM sqlite_master').get() as { objects: number }
    if (id === 0 && version === 0 && objects === 0) return
    throw new FST_SAC_SQLITE_FOREIGN(this.#where, describe(this.#path),
      `a SQLite database of something else (application_id ${id}, user_version ${version}, ${objects} tables and indexes)`)
  }
}

function pragma (db: SqliteConnection, name: string): number {
  return (db.prepare(`PRAGMA ${name}`).get() as Record<string, number>)[name]
}

function changes (result: { changes: number | bigint }): number {
  return Number(result.changes)
}

function transaction<T> (db: SqliteConnection, fn: () => T): T {
  db.exec('BEGIN IMMEDIATE')
  try {
    const result = fn()
    db.exec('COMMIT')
    return result
  } catch (err) {
    // after some errors (a failed commit, a full disk) SQLite has rolled back already: report the first error
    try { db.exec('ROLLBACK') } catch {}
    throw err
  }
}

function leased (row: JobRow): LeasedJob {
  return {
    id: row.id,
    name: row.task,
    payload: JSON.parse(row.payload),
    attempt: row.attempts_made + 1,
    attempts: row.attempts,
    backoff: row.backoff === null ? undefined : JSON.parse(row.backoff),
    delay: row.delay
  }
}
