import type { Engine, JobRecord, JobStore, LeasedJob } from '../types'

// The memory engine: jobs in a Map of this process, leased by the app's own worker loop as the
// SQLite engine's are (lib/jobs/lease-loop.ts), with the same retention and key rules. Nothing
// survives the process: for development, tests, and apps that want retries without a store.

type State = 'waiting' | 'active' | 'finished'

interface Row {
  readonly record: JobRecord
  state: State
  attemptsMade: number
  /** `Date.now()` when due. */
  runAt: number
  owner: string | null
  /** Order of arrival, to take due jobs oldest first. */
  readonly seq: number
}

// the BullMQ engine's retention (lib/engines/bullmq/engine.ts): while kept, a key is the same job
const KEEP_COMPLETED = { ageMs: 3600_000, count: 10_000 }
const KEEP_FAILED = { ageMs: 7 * 24 * 3600_000, count: 100_000 }

interface Kept { readonly id: string, readonly at: number }

export class MemoryStore implements Engine, JobStore {
  readonly name = 'memory'
  readonly queue: string
  readonly #rows = new Map<string, Row>()
  // finished jobs in the order they finished, per retention class; pruned from the front
  readonly #completed: Kept[] = []
  readonly #failed: Kept[] = []
  #seq = 0
  #unfinished = 0
  /** Called after jobs were added: the app's loop looks at once. */
  onAdded: () => void = noop

  constructor (queue: string) {
    this.queue = queue
  }

  /** Jobs added and not finished: waiting (delayed and in backoff included) or running. */
  get unfinished (): number { return this.#unfinished }

  async check (): Promise<void> {}

  async enqueue (jobs: readonly JobRecord[]): Promise<void> {
    const now = Date.now()
    for (const record of jobs) {
      // a job with this key pending, or finished within the retention, is the same job
      if (this.#rows.has(record.jobId)) continue
      this.#rows.set(record.jobId, { record, state: 'waiting', attemptsMade: 0, runAt: now + record.delay, owner: null, seq: this.#seq++ })
      this.#unfinished++
    }
    this.onAdded()
  }

  async take (owner: string, max: number): Promise<LeasedJob[]> {
    const now = Date.now()
    const due: Row[] = []
    for (const row of this.#rows.values()) {
      if (row.state === 'waiting' && row.runAt <= now) due.push(row)
    }
    due.sort((a, b) => a.runAt - b.runAt || a.seq - b.seq)
    return due.slice(0, max).map((row) => {
      row.state = 'active'
      row.owner = owner
      return leased(row)
    })
  }

  // one process holds every lease: nothing to renew, nothing expires
  async renew (): Promise<string[]> {
    return []
  }

  async finish (owner: string, id: string, outcome: 'completed' | 'failed' | 'timeout' | 'cancelled'): Promise<boolean> {
    const row = this.#held(owner, id)
    if (row === null) return false
    row.state = 'finished'
    row.owner = null
    this.#unfinished--
    const now = Date.now()
    if (outcome === 'completed') this.#keep(this.#completed, KEEP_COMPLETED, id, now)
    else this.#keep(this.#failed, KEEP_FAILED, id, now)
    return true
  }

  async retry (owner: string, id: string, delayMs: number): Promise<boolean> {
    const row = this.#held(owner, id)
    if (row === null) return false
    row.attemptsMade++
    row.state = 'waiting'
    row.owner = null
    row.runAt = Date.now() + delayMs
    return true
  }

  async release (owner: string, id: string): Promise<boolean> {
    const row = this.#held(owner, id)
    if (row === null) return false
    row.state = 'waiting'
    row.owner = null
    row.runAt = Date.now()
    return true
  }

  // no other process: no lease is ever lost
  async recover (): Promise<LeasedJob[]> {
    return []
  }

  async nextDue (): Promise<number | null> {
    let next = Infinity
    for (const row of this.#rows.values()) if (row.state === 'waiting' && row.runAt < next) next = row.runAt
    return next === Infinity ? null : Math.max(0, next - Date.now())
  }

  /** The app closes and its drain ran out: every job still waiting is taken out, for its `cancelled` line. */
  takeWaiting (): LeasedJob[] {
    const taken: LeasedJob[] = []
    for (const row of this.#rows.values()) {
      if (row.state !== 'waiting') continue
      row.state = 'finished'
      this.#unfinished--
      taken.push(leased(row))
    }
    return taken
  }

  async close (): Promise<void> {}

  #held (owner: string, id: string): Row | null {
    const row = this.#rows.get(id)
    return row !== undefined && row.state === 'active' && row.owner === owner ? row : null
  }

  #keep (list: Kept[], bounds: { ageMs: number, count: number }, id: string, now: number): void {
    list.push({ id, at: now })
    let drop = 0
    while (drop < list.length && (list.length - drop > bounds.count || now - list[drop].at > bounds.ageMs)) {
      this.#rows.delete(list[drop].id)
      drop++
    }
    if (drop > 0) list.splice(0, drop)
  }
}

function leased (row: Row): LeasedJob {
  const { record } = row
  return {
    id: record.jobId,
    name: record.task,
    payload: record.payload,
    attempt: row.attemptsMade + 1,
    attempts: record.attempts,
    backoff: record.backoff,
    delay: record.delay
  }
}

function noop (): void {}
