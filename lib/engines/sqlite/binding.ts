import { FST_SAC_MISSING_DRIVER } from '../../errors'

// The SQLite engine runs on a synchronous binding: better-sqlite3 when installed, else Node's own
// node:sqlite (Node 22.13+). Both are loaded only when a store opens, so the plugin imports
// neither, and both already share the shape below: the store needs nothing else.

/** SQLite values as both bindings pass and return them (integers stay below 2^53 here). */
export type SqliteValue = string | number | null

export interface SqliteStatement {
  run (...params: SqliteValue[]): { changes: number | bigint }
  get (...params: SqliteValue[]): unknown
  all (...params: SqliteValue[]): unknown[]
}

export interface SqliteConnection {
  exec (sql: string): unknown
  prepare (sql: string): SqliteStatement
  close (): unknown
}

/** Opens (or creates) a database file. */
export type OpenSqlite = (path: string) => SqliteConnection

type Constructor = new (path: string, options?: object) => SqliteConnection

/** A `require`-like function: the loader takes one so tests can hide a binding. */
export type Load = (id: string) => unknown

/**
 * The first binding found: better-sqlite3, then node:sqlite, else a coded error saying what to
 * install. A binding that is present but broken (built for another Node version) throws its own
 * error rather than being skipped: falling back would hide an install that needs a rebuild.
 * `readOnly`: connections that never write, to an existing file only (the `status` command).
 */
export function loadSqlite (where: string, load: Load = require, readOnly = false): OpenSqlite {
  try {
    return opener(load('better-sqlite3') as Constructor, readOnly ? { readonly: true, fileMustExist: true } : undefined)
  } catch (err) {
    // only better-sqlite3 itself missing: a missing dependency of it is a broken install
    const { code, message } = err as NodeJS.ErrnoException
    if (code !== 'MODULE_NOT_FOUND' || !message.includes("'better-sqlite3'")) throw err
  }
  try {
    return opener((load('node:sqlite') as { DatabaseSync: Constructor }).DatabaseSync, readOnly ? { readOnly: true } : undefined)
  } catch (err) {
    // Node 20, and Node 22 before 22.13 without --experimental-sqlite
    if ((err as NodeJS.ErrnoException).code !== 'ERR_UNKNOWN_BUILTIN_MODULE') throw err
  }
  throw new FST_SAC_MISSING_DRIVER(where, 'sqlite', 'better-sqlite3', 'npm install better-sqlite3@12')
}

function opener (Database: Constructor, options: object | undefined): OpenSqlite {
  return options === undefined ? (path) => new Database(path) : (path) => new Database(path, options)
}
