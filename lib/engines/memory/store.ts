import type { Engine, JobRecord, JobStore, LeasedJob } from '../types'

// The memory engine: jobs in a Map of this process, leased by the app's own worker loop
// (lib/jobs/memory-loop.ts) under the SQLite engine's rules, with the same retention and key
// rules. Nothing survives the process: for development, tests, and apps that want retries without
// a store. The JobStore calls answer at once; the loop uses their synchronous forms (`…Now`).

type State = 'waiting' | 'active' | 'finished'

interface Row {
  readonly record: JobRecord
  /** The job's data as stored (JSON): each attempt gets its own copy, as from the other engines' stores. */
  readonly data: string
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

export class MemoryStore implements Engine, JobStore {
  readonly name = 'memory'
  readonly queue: string
  // every job by id; a finished job with a key only keeps its id here (null), for its key, not its data
  readonly #rows = new Map<string, Row | null>()
  // finished jobs in the order they finished, per retention class; pruned from the front
  readonly #completed = new Finished()
  readonly #failed = new Finished()
  // the waiting jobs: those due when they began waiting, in that order, and the delayed ones by due time
  readonly #due = new Fifo<Row | null>(null)
  readonly #delayed = new RowHeap()
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
    this.enqueueNow(jobs)
  }

  enqueueNow (jobs: readonly JobRecord[]): void {
    // The data as it is now, through JSON, as the other engines store it: a change made to it after
    // `with()` arrives as JSON makes it, and one an attempt makes is not seen by the next. Every
    // job of the call first: one whose data JSON refuses now (a BigInt added since) refuses them all.
    const data: string[] = []
    for (const record of jobs) data.push(JSON.stringify(record.payload.data))
    const now = Date.now()
    for (let i = 0; i < jobs.length; i++) {
      const record = jobs[i]
      // a job with this key pending, or finished within the retention, is the same job
      if (this.#rows.has(record.jobId)) continue
      const row: Row = { record, data: data[i], state: 'waiting', attemptsMade: 0, runAt: now + record.delay, owner: null, seq: this.#seq++ }
      this.#rows.set(record.jobId, row)
      this.#wait(row, now)
      this.#unfinished++
    }
    this.onAdded()
  }

  async take (owner: string, max: number): Promise<LeasedJob[]> {
    return this.takeNow(owner, max)
  }

  // The app's own loop (lib/jobs/memory-loop.ts) calls these directly: a store in this process's
  // memory answers at once, and a promise per call would cost more than the call itself.

  takeNow (owner: string, max: number): LeasedJob[] {
    const now = Date.now()
    const taken: LeasedJob[] = []
    while (taken.length < max) {
      const row = this.#nextWaiting(now)
      if (row === null) break
      row.state = 'active'
      row.owner = owner
      taken.push(leased(row))
    }
    return taken
  }

  // one process holds every lease: nothing to renew, nothing expires
  async renew (): Promise<string[]> {
    return []
  }

  async finish (owner: string, id: string, outcome: 'completed' | 'failed' | 'timeout' | 'cancelled'): Promise<boolean> {
    return this.finishNow(owner, id, outcome)
  }

  finishNow (owner: string, id: string, outcome: 'completed' | 'failed' | 'timeout' | 'cancelled'): boolean {
    const row = this.#held(owner, id)
    if (row === null) return false
    row.state = 'finished'
    row.owner = null
    // a job without a key has a unique id: nothing can be enqueued under it again, so nothing is kept
    const keyed = row.record.keyed
    if (keyed) this.#rows.set(id, null)
    else this.#rows.delete(id)
    this.#unfinished--
    const now = Date.now()
    // it still takes its place in the count, as it does in BullMQ's
    if (outcome === 'completed') this.#keep(this.#completed, KEEP_COMPLETED, keyed ? id : null, now)
    else this.#keep(this.#failed, KEEP_FAILED, keyed ? id : null, now)
    return true
  }

  async retry (owner: string, id: string, delayMs: number): Promise<boolean> {
    return this.retryNow(owner, id, delayMs)
  }

  retryNow (owner: string, id: string, delayMs: number): boolean {
    const row = this.#held(owner, id)
    if (row === null) return false
    const now = Date.now()
    row.attemptsMade++
    row.state = 'waiting'
    row.owner = null
    row.runAt = now + delayMs
    this.#wait(row, now)
    return true
  }

  async release (owner: string, id: string): Promise<boolean> {
    const row = this.#held(owner, id)
    if (row === null) return false
    const now = Date.now()
    row.state = 'waiting'
    row.owner = null
    row.runAt = now
    this.#wait(row, now)
    return true
  }

  // no other process: no lease is ever lost
  async recover (): Promise<LeasedJob[]> {
    return []
  }

  async nextDue (): Promise<number | null> {
    return this.dueIn()
  }

  /** `nextDue()`, at once. */
  dueIn (): number | null {
    const next = Math.min(this.#due.peek()?.runAt ?? Infinity, this.#delayed.peek()?.runAt ?? Infinity)
    return next === Infinity ? null : Math.max(0, next - Date.now())
  }

  /** The app closes and its drain ran out: every job still waiting is taken out, for its `cancelled` line. */
  takeWaiting (): LeasedJob[] {
    const taken: LeasedJob[] = []
    for (let row = this.#nextWaiting(Infinity); row !== null; row = this.#nextWaiting(Infinity)) {
      row.state = 'finished'
      this.#unfinished--
      taken.push(leased(row))
    }
    return taken
  }

  async close (): Promise<void> {}

  // A waiting job goes to the due list when it is due already (the usual case: no delay), else to
  // the heap of delayed ones: a take or nextDue() looks at the front of each, never at every job.
  #wait (row: Row, now: number): void {
    if (row.runAt <= now) this.#due.push(row)
    else this.#delayed.push(row)
  }

  // The waiting job due first by `now`, out of the due list or the heap, oldest first; `null` when none is.
  #nextWaiting (now: number): Row | null {
    const head = this.#due.peek() ?? null
    const delayed = this.#delayed.peek()
    if (delayed !== undefined && delayed.runAt <= now && (head === null || before(delayed, head))) return this.#delayed.pop() as Row
    return this.#due.shift() ?? null
  }

  #held (owner: string, id: string): Row | null {
    const row = this.#rows.get(id)
    return row?.state === 'active' && row.owner === owner ? row : null
  }

  #keep (list: Finished, bounds: { ageMs: number, count: number }, id: string | null, now: number): void {
    list.push(id, now)
    while (list.size > bounds.count || now - list.oldestAt() > bounds.ageMs) {
      const oldest = list.shift()
      if (oldest !== null) this.#rows.delete(oldest)
    }
  }
}

/**
 * Finished jobs, oldest first: their ids (`null` for a job without a key) and finish times in two
 * lists, so a kept job costs no object of its own (10,000 of them would outlive every
 * young-generation collection). Never read empty: the job just finished is in it.
 */
class Finished {
  readonly #ids = new Fifo<string | null>(null)
  readonly #at = new Fifo<number>(0)

  get size (): number { return this.#ids.size }

  oldestAt (): number {
    return this.#at.peek() as number
  }

  push (id: string | null, at: number): void {
    this.#ids.push(id)
    this.#at.push(at)
  }

  /** Drops the oldest and returns its id. */
  shift (): string | null {
    this.#at.shift()
    return this.#ids.shift() as string | null
  }
}

/**
 * A first-in first-out list: an array read from a moving front, its taken part dropped now and
 * then, not on every shift. A taken slot is overwritten with `blank` (of the items' own kind, so
 * an array of numbers stays one of unboxed numbers): the array must not keep a taken job alive
 * until the next compaction, which would make every job outlive young-generation collections.
 */
class Fifo<T> {
  #items: T[] = []
  #head = 0
  readonly #blank: T

  constructor (blank: T) {
    this.#blank = blank
  }

  get size (): number { return this.#items.length - this.#head }

  peek (): T | undefined {
    return this.#items[this.#head]
  }

  push (item: T): void {
    this.#items.push(item)
  }

  shift (): T | undefined {
    if (this.#head === this.#items.length) return undefined
    const item = this.#items[this.#head]
    this.#items[this.#head++] = this.#blank
    if (this.#head === this.#items.length) {
      this.#items = []
      this.#head = 0
    } else if (this.#head >= 1024 && this.#head * 2 >= this.#items.length) {
      this.#items = this.#items.slice(this.#head)
      this.#head = 0
    }
    return item
  }
}

/** Whether `a` is taken before `b`: due first, then added first. */
function before (a: Row, b: Row): boolean {
  return a.runAt < b.runAt || (a.runAt === b.runAt && a.seq < b.seq)
}

/** A binary min-heap of rows, first due at the top. */
class RowHeap {
  readonly #rows: Row[] = []

  peek (): Row | undefined {
    return this.#rows[0]
  }

  push (row: Row): void {
    const rows = this.#rows
    let at = rows.push(row) - 1
    while (at > 0) {
      const parent = (at - 1) >> 1
      if (!before(row, rows[parent])) break
      rows[at] = rows[parent]
      at = parent
    }
    rows[at] = row
  }

  pop (): Row | undefined {
    const rows = this.#rows
    const top = rows[0]
    // never called on an empty heap: `last` is a row
    const last = rows.pop() as Row
    if (rows.length === 0) return top
    let at = 0
    for (;;) {
      let child = 2 * at + 1
      if (child >= rows.length) break
      if (child + 1 < rows.length && before(rows[child + 1], rows[child])) child++
      if (!before(rows[child], last)) break
      rows[at] = rows[child]
      at = child
    }
    rows[at] = last
    return top
  }
}

function leased (row: Row): LeasedJob {
  const { record } = row
  const { payload } = record
  return {
    id: record.jobId,
    name: record.task,
    payload: { data: JSON.parse(row.data), request: payload.request, route: payload.route, connection: payload.connection, statusCode: payload.statusCode, enqueuedAt: payload.enqueuedAt, token: payload.token, trace: payload.trace },
    attempt: row.attemptsMade + 1,
    attempts: record.attempts,
    backoff: record.backoff,
    delay: record.delay
  }
}

function noop (): void {}
