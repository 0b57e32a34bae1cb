import { describe, FST_SAC_DUPLICATE_TASK, FST_SAC_INVALID_OPTION } from '../errors'
import type { DurableTask } from './types'

/** A durable task as `defineTask()` makes it (frozen, with `with()`). */
export function isDurableTask (value: unknown): value is DurableTask {
  return typeof value === 'object' && value !== null && Object.isFrozen(value) &&
    typeof (value as DurableTask).name === 'string' && typeof (value as DurableTask).handler === 'function' &&
    typeof (value as DurableTask).with === 'function'
}

/** The tasks by name; refuses anything but a non-empty array of `defineTask()` results with unique names. */
export function taskMap (where: string, tasks: unknown): Map<string, DurableTask> {
  if (!Array.isArray(tasks) || tasks.length === 0) {
    throw new FST_SAC_INVALID_OPTION(where, 'tasks', 'a non-empty array of tasks made by defineTask()', describe(tasks))
  }
  const map = new Map<string, DurableTask>()
  // every index, holes included (forEach would skip a sparse array's holes)
  for (let i = 0; i < tasks.length; i++) {
    const task: unknown = tasks[i]
    if (!isDurableTask(task)) {
      throw new FST_SAC_INVALID_OPTION(where, `tasks[${i}]`, 'a task made by defineTask()', describe(task))
    }
    if (map.has(task.name)) throw new FST_SAC_DUPLICATE_TASK(where, describe(task.name))
    map.set(task.name, task)
  }
  return map
}
