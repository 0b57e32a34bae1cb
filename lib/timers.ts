import { performance } from 'node:perf_hooks'

/** What a timer list holds: an intrusive, doubly linked node; its deadline is `startedAt` + the list's duration. */
export interface TimedEntry {
  readonly startedAt: number
  timerPrev: TimedEntry | null
  timerNext: TimedEntry | null
  timerList: EntryList | null
  onTimeout (): void
}

/** An intrusive, doubly linked list of entries: adding and removing are O(1) and allocate nothing. */
export class EntryList {
  head: TimedEntry | null = null
  tail: TimedEntry | null = null

  add (entry: TimedEntry): void {
    entry.timerList = this
    entry.timerPrev = this.tail
    entry.timerNext = null
    if (this.tail === null) this.head = entry
    else this.tail.timerNext = entry
    this.tail = entry
  }

  remove (entry: TimedEntry): void {
    if (entry.timerPrev === null) this.head = entry.timerNext
    else entry.timerPrev.timerNext = entry.timerNext
    if (entry.timerNext === null) this.tail = entry.timerPrev
    else entry.timerNext.timerPrev = entry.timerPrev
    entry.timerPrev = entry.timerNext = entry.timerList = null
  }
}

/**
 * Tasks with the same time limit, in start order, so their deadlines only grow: one Node timer
 * serves the whole list (armed for its head), and adding or removing a task is O(1). This is how
 * Node groups its own timers; doing it here saves a Timeout object per running task.
 */
export class TimerList extends EntryList {
  readonly duration: number
  #timer: NodeJS.Timeout | null = null
  readonly #onEmpty: (list: TimerList) => void

  constructor (duration: number, onEmpty: (list: TimerList) => void) {
    super()
    this.duration = duration
    this.#onEmpty = onEmpty
  }

  /** `entry` started now: its `startedAt` is the latest in the list. */
  override add (entry: TimedEntry): void {
    super.add(entry)
    // the list of tasks without a time limit is never armed
    if (this.duration === 0) return
    if (this.#timer === null) this.#timer = setTimeout(expire, this.duration, this)
    else if (entry.timerPrev === null) this.#timer.ref()
  }

  override remove (entry: TimedEntry): void {
    super.remove(entry)
    // An empty list leaves its timer armed but unreferenced, so it cannot hold the process open:
    // short tasks, one after the other, would otherwise clear and set a timer each.
    if (this.head === null) this.#timer?.unref()
  }

  expire (): void {
    this.#timer = null
    if (this.head === null) {
      this.#onEmpty(this)
      return
    }
    const now = performance.now()
    let head = this.head
    while (head !== null && head.startedAt + this.duration <= now) {
      // onTimeout removes the entry from this list
      head.onTimeout()
      head = this.head
    }
    if (head !== null && this.#timer === null) {
      this.#timer = setTimeout(expire, Math.ceil(head.startedAt + this.duration - now), this)
    }
  }
}

function expire (list: TimerList): void {
  list.expire()
}

/** One `TimerList` per distinct time limit (`0`: no limit, never armed): together, every running task, in start order per list. */
export class Timers {
  readonly #lists = new Map<number, TimerList>()
  // the list of the last add: most apps have one time limit, so most adds need no lookup
  #last: TimerList | null = null
  readonly #forget = (list: TimerList): void => {
    this.#lists.delete(list.duration)
    if (this.#last === list) this.#last = null
  }

  /** The entry that started first, over every list; `null` when all are empty. */
  oldest (): TimedEntry | null {
    let oldest: TimedEntry | null = null
    for (const list of this.#lists.values()) {
      const head = list.head
      if (head !== null && (oldest === null || head.startedAt < oldest.startedAt)) oldest = head
    }
    return oldest
  }

  add (entry: TimedEntry, duration: number): void {
    const last = this.#last
    if (last !== null && last.duration === duration) {
      last.add(entry)
      return
    }
    let list = this.#lists.get(duration)
    if (list === undefined) {
      list = new TimerList(duration, this.#forget)
      this.#lists.set(duration, list)
    }
    this.#last = list
    list.add(entry)
  }
}
