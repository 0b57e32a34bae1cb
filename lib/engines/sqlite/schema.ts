// The job database's layout. `application_id` marks a file as ours (so the engine never writes
// into someone else's database), `user_version` is the schema's version (a newer package may
// change the layout; an older one then refuses the file rather than misreading it).

/** 'FSAC' in ASCII, stored in the file header's application_id. */
export const APPLICATION_ID = 0x46534143
export const SCHEMA_VERSION = 3

// The table's columns. The state's CHECK is written as comparisons, not `state IN (...)`: SQLite
// evaluates an IN list of more than two values through an ephemeral table it builds on every
// statement that writes `state` (an insert, a lease, a settlement), which cost about a tenth of
// the CPU of a job end to end. [name, definition], in the order version 3 creates them.
const COLUMN_DEFINITIONS: ReadonlyArray<readonly [string, string]> = [
  ['queue', 'TEXT NOT NULL'],
  ['id', 'TEXT NOT NULL'],
  ['task', 'TEXT NOT NULL'],
  ['payload', 'TEXT NOT NULL'],
  ['attempts', 'INTEGER NOT NULL'],
  ['backoff', 'TEXT'],
  ['delay', 'INTEGER NOT NULL'],
  ['state', "TEXT NOT NULL CHECK (state = 'waiting' OR state = 'active' OR state = 'completed' OR state = 'failed')"],
  ['attempts_made', 'INTEGER NOT NULL DEFAULT 0'],
  ['stalled', 'INTEGER NOT NULL DEFAULT 0'],
  ['run_at', 'INTEGER NOT NULL'],
  ['owner', 'TEXT'],
  ['lock_until', 'INTEGER'],
  ['finished_at', 'INTEGER'],
  ['outcome', 'TEXT'],
  ['error', 'TEXT'],
  ['created_at', 'INTEGER NOT NULL']
]
const COLUMNS = `(
${COLUMN_DEFINITIONS.map(([name, definition]) => `  ${name} ${definition},`).join('\n')}
  PRIMARY KEY (queue, id)
)`
// every column, by name (the copy names them: a file migrated from version 1 has `error` last)
const NAMES = COLUMN_DEFINITIONS.map(([name]) => name).join(', ')

/** What brings a file of an older version to this one, by the version it has: run before SCHEMA. */
export const MIGRATIONS: Readonly<Record<number, string>> = {
  // version 2 keeps a failed job's error message and indexes each state apart (SCHEMA then
  // creates the new indexes)
  1: `ALTER TABLE jobs ADD COLUMN error TEXT;
DROP INDEX IF EXISTS jobs_due;
DROP INDEX IF EXISTS jobs_finished;`,
  // version 3 writes the state's CHECK as comparisons: SQLite cannot change a constraint in
  // place, so the table is copied into one of the new layout (rowids kept: they order jobs due in
  // the same millisecond) and renamed; dropping the old table drops its indexes, which SCHEMA then
  // creates again
  2: `CREATE TABLE jobs_v3 ${COLUMNS};
INSERT INTO jobs_v3 (rowid, ${NAMES}) SELECT rowid, ${NAMES} FROM jobs;
DROP TABLE jobs;
ALTER TABLE jobs_v3 RENAME TO jobs;`
}

// Several queues may share one file, hence the (queue, id) key. Times are epoch ms. `run_at`
// orders and gates the waiting jobs; `attempts_made` counts failed attempts, `stalled` runs lost
// with their process. `outcome` keeps why a failed job failed ('failed', 'timeout', 'stalled'),
// `error` the message of its last attempt's error, for the status command.
// A rowid table (not WITHOUT ROWID): rows carry a payload of any size, and the rowid breaks ties
// between jobs due in the same millisecond in the order they were added.
// One partial index per state, so a job changing state moves between two of them and an insert
// touches one (version 1's two indexes on (queue, state, ...) changed two entries of each on
// every state change). Queries name their state as a literal: SQLite uses a partial index only
// when the query's WHERE implies the index's.
export const SCHEMA = `
CREATE TABLE IF NOT EXISTS jobs ${COLUMNS};
CREATE INDEX IF NOT EXISTS jobs_waiting ON jobs (queue, run_at) WHERE state = 'waiting';
CREATE INDEX IF NOT EXISTS jobs_active ON jobs (queue) WHERE state = 'active';
CREATE INDEX IF NOT EXISTS jobs_completed ON jobs (queue, finished_at) WHERE state = 'completed';
CREATE INDEX IF NOT EXISTS jobs_failed ON jobs (queue, finished_at) WHERE state = 'failed';
PRAGMA application_id = ${APPLICATION_ID};
PRAGMA user_version = ${SCHEMA_VERSION};
`
