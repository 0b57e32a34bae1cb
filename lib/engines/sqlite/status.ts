import { describe, FST_SAC_INVALID_OPTION, FST_SAC_SQLITE_FOREIGN, FST_SAC_SQLITE_SCHEMA } from '../../errors'
import { tally } from '../status'
import type { QueueStatus, StatusState } from '../status'
import { loadSqlite } from './binding'
import type { OpenSqlite, SqliteConnection } from './binding'
import { APPLICATION_ID, SCHEMA_VERSION } from './schema'

// The `status` command on a SQLite file: a read-only connection (nothing is created, migrated or
// written; a file that is not this engine's is refused), a few indexed queries, closed at once.

export interface SqliteStatusOptions {
  path: string
  queue: string
  /** How many failed jobs to list, newest first. */
  failed: number
  /** Names the caller in errors. */
  where: string
  /** Opens a read-only connection; the binding's when absent (tests hide a binding). */
  open?: OpenSqlite
}

const COUNTS = `SELECT task, CASE WHEN state = 'waiting' AND run_at > ? THEN 'delayed' ELSE state END AS state, count(*) AS n
  FROM jobs WHERE queue = ? GROUP BY 1, 2`
const OLDEST = `SELECT id, task, created_at AS enqueuedAt FROM jobs
  WHERE queue = ? AND state = 'waiting' AND run_at <= ? ORDER BY run_at, rowid LIMIT 1`
// a stalled job's runs were lost without counting an attempt: its line named the next one
// a file of version 1 (before the error column) is read as it is: this command never writes
const failedQuery = (version: number): string => `SELECT id, task, ${version < 2 ? 'NULL AS error' : 'error'}, attempts_made + (outcome = 'stalled') AS attempts, finished_at AS failedAt FROM jobs
  WHERE queue = ? AND state = 'failed' ORDER BY finished_at DESC, rowid DESC LIMIT ?`

export function readSqliteStatus (options: SqliteStatusOptions): QueueStatus {
  const { path, queue, where } = options
  const open = options.open ?? loadSqlite(where, require, true)
  let db: SqliteConnection
  try {
    db = open(path)
  } catch (err) {
    throw new FST_SAC_INVALID_OPTION(where, '--sqlite', 'an existing database file of the sqlite engine', `${describe(path)} (${(err as Error).message})`)
  }
  try {
    let id: number
    try {
      id = pragma(db, 'application_id')
    } catch (err) {
      throw new FST_SAC_SQLITE_FOREIGN(where, describe(path), (err as Error).message.includes('file is not a database') ? 'a file that is not a SQLite database' : (err as Error).message)
    }
    const version = pragma(db, 'user_version')
    if (id !== APPLICATION_ID) throw new FST_SAC_SQLITE_FOREIGN(where, describe(path), `a SQLite database of something else (application_id ${id}, user_version ${version})`)
    if (version > SCHEMA_VERSION) throw new FST_SAC_SQLITE_SCHEMA(where, describe(path), SCHEMA_VERSION, version)
    const now = Date.now()
    const rows = db.prepare(COUNTS).all(now, queue) as Array<{ task: string, state: StatusState, n: number }>
    const oldest = db.prepare(OLDEST).get(queue, now) as NonNullable<QueueStatus['oldestWaiting']> | undefined
    const failed = db.prepare(failedQuery(version)).all(queue, options.failed) as QueueStatus['failed']
    return {
      ...tally(rows.map((row) => [row.task, row.state, row.n] as const)),
      oldestWaiting: oldest === undefined ? null : { ...oldest },
      failed: failed.map((job) => ({ ...job }))
    }
  } finally {
    db.close()
  }
}

function pragma (db: SqliteConnection, name: string): number {
  return (db.prepare(`PRAGMA ${name}`).get() as Record<string, number>)[name]
}
