import { Distribution } from './distribution'
import { zeroOutcomes } from '../types'
import { OUTCOMES } from './types'
import type { Failure, Group, Report, ReportOutcome, RouteResponses, Shutdown, SlowTask } from './types'

export interface ReportFilters {
  /** Keep only these routes (the route pattern, as logged). */
  routes?: string[]
  /** Keep only these task names. */
  tasks?: string[]
  /** Keep only lines logged at or after this time, epoch ms. */
  since?: number
  /** Keep only lines logged at or before this time, epoch ms. */
  until?: number
}

/** Slowest tasks kept per group. */
export const SLOWEST = 5
/** Sample request ids kept per failure message. */
export const SAMPLE_REQ_IDS = 3
/** Distinct failure messages kept per group; the rest are counted under OTHER_MESSAGES. */
export const MAX_MESSAGES = 100
export const OTHER_MESSAGES = '(other messages)'
/** Shutdown summaries kept, the most recent ones. */
export const RECENT_SHUTDOWNS = 10

const outcomeSet = new Set<string>(OUTCOMES)
const ran = new Set<ReportOutcome>(['completed', 'failed', 'timeout'])

type Json = Record<string, unknown>

function isObject (value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function numberOr (value: unknown, fallback: number): number {
  return typeof value === 'number' && Number.isFinite(value) && value >= 0 ? value : fallback
}

function timeOf (line: Json): number | null {
  const time = typeof line.time === 'string' ? Date.parse(line.time) : line.time
  return typeof time === 'number' && Number.isFinite(time) ? time : null
}

function failureMessage (outcome: Failure['outcome'], deferred: Json, line: Json): string {
  switch (outcome) {
    case 'failed': {
      const message = isObject(line.err) ? line.err.message : undefined
      return typeof message === 'string' && message !== '' ? message : '(no error message)'
    }
    case 'timeout':
      return typeof deferred.timeoutMs === 'number' ? `timed out after ${deferred.timeoutMs} ms` : 'timed out'
    case 'cancelled':
      return 'the shutdown drain ran out'
    case 'dropped':
      return deferred.reason === 'queue-full'
        ? 'the queue was full'
        : deferred.reason === 'closing' ? 'registered while the app was closing' : 'dropped'
  }
}

class GroupStats {
  tasks = 0
  aborted = 0
  readonly outcomes = zeroOutcomes()
  readonly duration = new Distribution(true)
  readonly queued = new Distribution(false)
  readonly slowest: SlowTask[] = []
  readonly failures = new Map<string, Failure>()

  constructor (readonly route: string, readonly task: string) {}

  add (outcome: ReportOutcome, deferred: Json, line: Json, reqId: string | null): void {
    this.tasks++
    this.outcomes[outcome]++
    if (deferred.connection === 'aborted') this.aborted++
    const durationMs = numberOr(deferred.durationMs, -1)
    // a task cancelled while still queued never ran: its 0 would drag the percentiles down
    if (durationMs >= 0 && (ran.has(outcome) || (outcome === 'cancelled' && durationMs > 0))) {
      this.duration.record(durationMs)
      this.#keepIfSlow({ reqId, durationMs, outcome })
    }
    const queuedMs = numberOr(deferred.queuedMs, -1)
    if (queuedMs >= 0 && outcome !== 'skipped' && outcome !== 'dropped') this.queued.record(queuedMs)
    if (outcome !== 'completed' && outcome !== 'skipped') this.#addFailure(outcome, failureMessage(outcome, deferred, line), reqId)
  }

  #keepIfSlow (task: SlowTask): void {
    const slowest = this.slowest
    if (slowest.length === SLOWEST && task.durationMs <= slowest[SLOWEST - 1].durationMs) return
    let i = slowest.length
    while (i > 0 && slowest[i - 1].durationMs < task.durationMs) i--
    slowest.splice(i, 0, task)
    if (slowest.length > SLOWEST) slowest.pop()
  }

  #addFailure (outcome: Failure['outcome'], message: string, reqId: string | null): void {
    let key = `${outcome}\u0000${message}`
    let failure = this.failures.get(key)
    if (failure === undefined) {
      // bounds memory when messages carry ids: "user 123 not found", "user 124 not found"...
      if (this.failures.size >= MAX_MESSAGES) {
        key = `${outcome}\u0000${OTHER_MESSAGES}`
        message = OTHER_MESSAGES
        failure = this.failures.get(key)
      }
      if (failure === undefined) {
        failure = { outcome, message, count: 0, reqIds: [] }
        this.failures.set(key, failure)
      }
    }
    failure.count++
    if (reqId !== null && failure.reqIds.length < SAMPLE_REQ_IDS && !failure.reqIds.includes(reqId)) failure.reqIds.push(reqId)
  }

  toJSON (): Group {
    return {
      route: this.route,
      task: this.task,
      tasks: this.tasks,
      outcomes: { ...this.outcomes },
      aborted: this.aborted,
      durationMs: this.duration.percentiles(),
      queuedMs: this.queued.percentiles(),
      histogram: this.duration.buckets(),
      slowest: this.slowest.map((task) => ({ ...task })),
      failures: [...this.failures.values()]
        .sort((a, b) => b.count - a.count || a.message.localeCompare(b.message))
        .map((failure) => ({ ...failure, reqIds: [...failure.reqIds] }))
    }
  }
}

function byName (a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}

/**
 * Folds pino lines into a report, one line at a time, in memory bounded by the number of
 * route/task pairs, never by the number of lines.
 */
export class Summary {
  readonly filters: ReportFilters
  #lines = { total: 0, used: 0, filtered: 0, skipped: 0 }
  #groups = new Map<string, GroupStats>()
  #routes = new Map<string, { responses: number, aborted: number }>()
  #shutdowns: Shutdown[] = []
  #shutdownCount = 0
  #undrained = 0
  #from: number | null = null
  #to: number | null = null
  #routeFilter: Set<string> | null
  #taskFilter: Set<string> | null

  constructor (filters: ReportFilters = {}) {
    this.filters = filters
    this.#routeFilter = filters.routes !== undefined && filters.routes.length > 0 ? new Set(filters.routes) : null
    this.#taskFilter = filters.tasks !== undefined && filters.tasks.length > 0 ? new Set(filters.tasks) : null
  }

  /** Adds one line of text; anything that is not a deferred-work line is counted as skipped. */
  add (text: string): void {
    if (text.trim() === '') return
    this.#lines.total++
    // most lines of an application's log are not about deferred work: skip them without parsing
    if (!text.includes('"deferred')) {
      this.#lines.skipped++
      return
    }
    let line: unknown
    try {
      line = JSON.parse(text)
    } catch {
      this.#lines.skipped++
      return
    }
    if (!isObject(line)) {
      this.#lines.skipped++
      return
    }
    const kind = this.#addLine(line)
    this.#lines[kind]++
  }

  #addLine (line: Json): 'used' | 'filtered' | 'skipped' {
    const deferred = line.deferred
    const shutdown = line.deferredShutdown
    let kind: 'task' | 'close' | 'shutdown'
    if (isObject(deferred) && typeof deferred.outcome === 'string' && outcomeSet.has(deferred.outcome)) kind = 'task'
    else if (isObject(deferred) && deferred.outcome === undefined && typeof deferred.tasks === 'number') kind = 'close'
    else if (isObject(shutdown) && typeof shutdown.drained === 'boolean') kind = 'shutdown'
    else return 'skipped'

    const time = timeOf(line)
    if (!this.#inPeriod(time)) return 'filtered'
    const reqId = typeof line.reqId === 'string' || typeof line.reqId === 'number' ? String(line.reqId) : null

    if (kind === 'shutdown') {
      this.#addShutdown(shutdown as Json, time)
    } else {
      const fields = deferred as Json
      const route = typeof fields.route === 'string' ? fields.route : '(unknown route)'
      if (this.#routeFilter !== null && !this.#routeFilter.has(route)) return 'filtered'
      if (kind === 'close') {
        // a response line names no task: it belongs to no task's report
        if (this.#taskFilter !== null) return 'filtered'
        this.#addClose(route, fields)
      } else {
        const task = typeof fields.task === 'string' ? fields.task : '(unnamed)'
        if (this.#taskFilter !== null && !this.#taskFilter.has(task)) return 'filtered'
        const key = `${route}\u0000${task}`
        let group = this.#groups.get(key)
        if (group === undefined) {
          group = new GroupStats(route, task)
          this.#groups.set(key, group)
        }
        group.add(fields.outcome as ReportOutcome, fields, line, reqId)
      }
    }
    if (time !== null) {
      if (this.#from === null || time < this.#from) this.#from = time
      if (this.#to === null || time > this.#to) this.#to = time
    }
    return 'used'
  }

  #inPeriod (time: number | null): boolean {
    const { since, until } = this.filters
    if (since === undefined && until === undefined) return true
    if (time === null) return false
    return (since === undefined || time >= since) && (until === undefined || time <= until)
  }

  #addClose (route: string, fields: Json): void {
    let stats = this.#routes.get(route)
    if (stats === undefined) {
      stats = { responses: 0, aborted: 0 }
      this.#routes.set(route, stats)
    }
    stats.responses++
    if (fields.connection === 'aborted') stats.aborted++
  }

  #addShutdown (fields: Json, time: number | null): void {
    this.#shutdownCount++
    if (fields.drained !== true) this.#undrained++
    const outcomes = zeroOutcomes()
    for (const outcome of OUTCOMES) outcomes[outcome] = numberOr(fields[outcome], 0)
    this.#shutdowns.push({
      time,
      drained: fields.drained as boolean,
      durationMs: numberOr(fields.durationMs, 0),
      drainTimeout: numberOr(fields.drainTimeout, 0),
      outcomes
    })
    if (this.#shutdowns.length > RECENT_SHUTDOWNS) this.#shutdowns.shift()
  }

  result (): Report {
    const groups = [...this.#groups.values()]
      .sort((a, b) => byName(a.route, b.route) || byName(a.task, b.task))
      .map((group) => group.toJSON())
    const outcomes = zeroOutcomes()
    let aborted = 0
    const routeNames = new Set(this.#routes.keys())
    for (const group of groups) {
      for (const outcome of OUTCOMES) outcomes[outcome] += group.outcomes[outcome]
      aborted += group.aborted
      routeNames.add(group.route)
    }
    const routes: RouteResponses[] = [...routeNames].sort(byName).map((route) => {
      const { responses, aborted } = this.#routes.get(route) ?? { responses: 0, aborted: 0 }
      return { route, responses, aborted, abortedRate: responses === 0 ? null : Math.round((aborted / responses) * 10_000) / 10_000 }
    })
    const iso = (time: number | undefined | null): string | null => time == null ? null : new Date(time).toISOString()
    return {
      lines: { ...this.#lines },
      filters: {
        route: [...(this.#routeFilter ?? [])],
        task: [...(this.#taskFilter ?? [])],
        since: iso(this.filters.since),
        until: iso(this.filters.until)
      },
      period: { from: iso(this.#from), to: iso(this.#to) },
      totals: {
        tasks: groups.reduce((sum, group) => sum + group.tasks, 0),
        outcomes,
        aborted,
        responses: routes.reduce((sum, route) => sum + route.responses, 0),
        abortedResponses: routes.reduce((sum, route) => sum + route.aborted, 0)
      },
      routes,
      groups,
      shutdowns: {
        count: this.#shutdownCount,
        undrained: this.#undrained,
        recent: this.#shutdowns.map((shutdown) => ({ ...shutdown, outcomes: { ...shutdown.outcomes } }))
      }
    }
  }
}
