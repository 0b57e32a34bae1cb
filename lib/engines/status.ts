// What the `status` command reads from a queue, the same on every engine that keeps jobs outside
// the process (sqlite, bullmq): each engine's reader fills it, read-only.

/** The states a job is counted in. `delayed`: waiting, but not due yet (a `delay`, or a backoff before a retry). */
export const STATUS_STATES = ['waiting', 'delayed', 'active', 'completed', 'failed'] as const

export type StatusState = typeof STATUS_STATES[number]

export type StateCounts = Record<StatusState, number>

/** One queue, as the store holds it now. Times are epoch milliseconds. */
export interface QueueStatus {
  states: StateCounts
  /** One entry per task that has jobs, sorted by name. */
  tasks: Array<{ task: string } & StateCounts>
  /** The due job that runs next: the one waiting longest. `null` when no job is due. */
  oldestWaiting: { id: string, task: string, enqueuedAt: number } | null
  /** The newest failed jobs, newest first. */
  failed: FailedJob[]
}

export interface FailedJob {
  id: string
  task: string
  /** The message of the error its last attempt ended with, as the store kept it. */
  error: string | null
  /** The attempt its final line named, from 1. */
  attempts: number
  failedAt: number
}

export function zeroStates (): StateCounts {
  return { waiting: 0, delayed: 0, active: 0, completed: 0, failed: 0 }
}

/** Per-task and total counts from `[task, state, count]` entries (a task and state may repeat). */
export function tally (entries: Iterable<readonly [string, StatusState, number]>): Pick<QueueStatus, 'states' | 'tasks'> {
  const states = zeroStates()
  const tasks = new Map<string, { task: string } & StateCounts>()
  for (const [task, state, count] of entries) {
    states[state] += count
    let row = tasks.get(task)
    if (row === undefined) {
      row = { task, ...zeroStates() }
      tasks.set(task, row)
    }
    row[state] += count
  }
  return { states, tasks: [...tasks.values()].sort((a, b) => a.task < b.task ? -1 : 1) }
}
