import { Distribution } from './distribution'
import { Timeline } from './timeline'
import { zeroOutcomes } from '../types'
import { OUTCOMES } from './types'
import type {
  Failure, FinalRef, Group, JobRef, RanOutcome, Report, ReportOutcome, RequestRef, RouteResponses, Shutdown, SlowTask, SlowTaskOfGroup, SupersededJob, UnaccountedRef
} from './types'

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
/** Slowest tasks kept over all groups. */
export const SLOWEST_OVERALL = 10
/** Sample requests kept per failure message. */
export const SAMPLE_REQ_IDS = 3
/** Distinct failure messages kept per group; the rest are counted under OTHER_MESSAGES. */
export const MAX_MESSAGES = 100
export const OTHER_MESSAGES = '(other messages)'
/** Shutdown summaries kept, the most recent ones. */
export const RECENT_SHUTDOWNS = 10
/** Pending durable jobs listed by name. */
export const PENDING_SAMPLE = 10
/** Durable jobs listed with the final lines their latest one superseded. */
export const SUPERSEDED_SAMPLE = 10
/** Superseded final lines kept per job. */
export const SUPERSEDED_PER_JOB = 5
/** Requests with unaccounted tasks listed by name. */
export const UNACCOUNTED_SAMPLE = 10
/**
 * Final lines kept per process lifetime while their close line has not been read (a task dropped
 * before its response closed logs first; a process's files read newest first): the oldest go first.
 */
export const MAX_EARLY = 10_000

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

function iso (time: number | null | undefined): string | null {
  return time == null ? null : new Date(time).toISOString()
}

function sameRequest (a: RequestRef, b: RequestRef): boolean {
  return a.reqId === b.reqId && a.file === b.file && a.hostname === b.hostname && a.pid === b.pid
}

function failureMessage (outcome: ReportOutcome, deferred: Json, line: Json): string {
  switch (outcome) {
    case 'completed':
    case 'skipped':
      return ''
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
        : deferred.reason === 'closing'
          ? 'registered while the app was closing'
          : deferred.reason === 'enqueue-failed'
            ? 'Redis did not take the job'
            : typeof deferred.reason === 'string' && deferred.reason !== '' ? deferred.reason : 'dropped'
  }
}

/** Keeps the `size` slowest of what it is offered, slowest first, ties in the order offered. */
function keepIfSlow<T extends { durationMs: number }> (slowest: T[], size: number, task: T): void {
  if (slowest.length === size && task.durationMs <= slowest[size - 1].durationMs) return
  let i = slowest.length
  while (i > 0 && slowest[i - 1].durationMs < task.durationMs) i--
  slowest.splice(i, 0, task)
  if (slowest.length > size) slowest.pop()
}

class GroupStats {
  tasks = 0
  aborted = 0
  enqueued = 0
  retries = 0
  readonly outcomes = zeroOutcomes()
  readonly duration = new Distribution(true)
  readonly queued = new Distribution(false)
  readonly slowest: SlowTask[] = []
  readonly failures = new Map<string, Failure>()

  constructor (readonly route: string, readonly task: string) {}

  /** Counts a final outcome; returns the task as a slow-task candidate when it ran. */
  add (outcome: ReportOutcome, deferred: Json, message: string, ref: RequestRef): SlowTask | null {
    this.tasks++
    this.outcomes[outcome]++
    let slow: SlowTask | null = null
    const durationMs = numberOr(deferred.durationMs, -1)
    // a task cancelled while still queued never ran: its 0 would drag the percentiles down
    const started = ran.has(outcome) || (outcome === 'cancelled' && durationMs > 0)
    // skipped and dropped tasks never ran: they are not "tasks run after an abort"
    if (deferred.connection === 'aborted' && started) this.aborted++
    if (durationMs >= 0 && started) {
      this.duration.record(durationMs, outcome as RanOutcome)
      slow = { ...ref, durationMs, outcome }
      keepIfSlow(this.slowest, SLOWEST, slow)
    }
    const queuedMs = numberOr(deferred.queuedMs, -1)
    if (queuedMs >= 0 && outcome !== 'skipped' && outcome !== 'dropped') this.queued.record(queuedMs)
    if (outcome !== 'completed' && outcome !== 'skipped') this.#addFailure(outcome, message, ref)
    return slow
  }

  #addFailure (outcome: Failure['outcome'], message: string, ref: RequestRef): void {
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
        failure = { outcome, message, count: 0, samples: [] }
        this.failures.set(key, failure)
      }
    }
    failure.count++
    if (ref.reqId !== null && failure.samples.length < SAMPLE_REQ_IDS && !failure.samples.some((sample) => sameRequest(sample, ref))) {
      failure.samples.push(ref)
    }
  }

  toJSON (): Group {
    return {
      route: this.route,
      task: this.task,
      tasks: this.tasks,
      outcomes: { ...this.outcomes },
      aborted: this.aborted,
      enqueued: this.enqueued,
      retries: this.retries,
      durationMs: this.duration.percentiles(),
      queuedMs: this.queued.percentiles(),
      histogram: this.duration.buckets(),
      slowest: this.slowest.map((task) => ({ ...task })),
      failures: [...this.failures.values()]
        .sort((a, b) => b.count - a.count || a.message.localeCompare(b.message))
        .map((failure) => ({ ...failure, samples: failure.samples.map((sample) => ({ ...sample })) }))
    }
  }
}

interface RouteStats { responses: number, aborted: number, refused: number, unaccounted: number }

/** Levels of a finished response's close line that an `info` logger does not write. */
const QUIET_LEVELS = new Set(['debug', 'trace', 'silent'])

function newLifetime (instance: string | null, responseLogLevel: unknown = 'info'): Lifetime {
  const quiet = typeof responseLogLevel === 'string' && QUIET_LEVELS.has(responseLogLevel) ? responseLogLevel : null
  return { instance, quiet, finished: false, shutdownAt: -1, open: new Map(), early: new Map() }
}

function byName (a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}

/** A durable job's final line, kept until the report is made: a later one may supersede it. */
interface FinalLine {
  group: GroupStats
  outcome: ReportOutcome
  deferred: Json
  message: string
  ref: RequestRef
  /** `deferred.attempt`, 0 when the line has none. */
  attempt: number
  time: number | null
}

/** What the report knows of a durable job: whether it was enqueued, its counted final line, the ones it superseded. */
interface JobState {
  enqueued: boolean
  final: FinalLine | null
  superseded: FinalLine[] | null
}

/**
 * Whether `line` is a later word on its job than `counted`: a higher attempt (clocks of different
 * hosts may disagree, attempts do not), then a later time. On a tie the line read first stays.
 */
function isLater (line: FinalLine, counted: FinalLine): boolean {
  if (line.attempt !== counted.attempt) return line.attempt > counted.attempt
  return (line.time ?? -Infinity) > (counted.time ?? -Infinity)
}

function finalRef (line: FinalLine): FinalRef {
  return { ...line.ref, outcome: line.outcome, attempt: line.attempt }
}

/** In-process tasks a close line announced whose final lines have not been read yet. */
interface Announced {
  remaining: number
  announced: number
  /** Where the close line was read, to tell whether a shutdown line came after it. */
  at: number
  ref: RequestRef
  route: string
  /** Whether the close line passed the filters: only those are reported. */
  counted: boolean
}

/**
 * One run of a process: from its `deferredStart` line to the next one of the same hostname and
 * pid, or, in logs without start lines, the whole log of that hostname and pid. Request ids
 * restart at `req-1` in every run; in containers every run is pid 1 on the same hostname.
 */
interface Lifetime {
  instance: string | null
  /** Its `responseLogLevel` when below `info` or `'silent'`: finished responses may leave no close line. */
  quiet: string | null
  /** Whether a finished response's close line was read: then finished responses were logged. */
  finished: boolean
  /** Where its last shutdown line was read, -1 before any. */
  shutdownAt: number
  open: Map<string, Announced>
  early: Map<string, number>
}

/**
 * Folds pino lines into a report, one line at a time, in memory bounded by the number of
 * route/task pairs, never by the number of lines (durable jobs excepted: counting each once
 * takes a few dozen bytes per job id).
 */
export class Summary {
  readonly filters: ReportFilters
  readonly version: string
  #lines = { total: 0, used: 0, filtered: 0, skipped: 0 }
  #files: string[] = []
  #processes = new Set<string>()
  #groups = new Map<string, GroupStats>()
  #routes = new Map<string, RouteStats>()
  #slowest: SlowTaskOfGroup[] = []
  #timeline = new Timeline()
  #jobs = new Map<string, JobState>()
  #pending = new Map<string, JobRef>()
  #result: Report | null = null
  #read = 0
  #starts = 0
  #lifetimes = new Map<string, Lifetime>()
  #unaccounted = { afterShutdown: 0, withoutShutdown: 0, samples: [] as UnaccountedRef[] }
  #unchecked = new Map<string, number>()
  #retries = 0
  #duplicates = 0
  #shutdowns: Array<Shutdown & { at: number }> = []
  #shutdownCount = 0
  #undrained = 0
  #from: number | null = null
  #to: number | null = null
  #routeFilter: Set<string> | null
  #taskFilter: Set<string> | null

  constructor (filters: ReportFilters = {}, version = '') {
    this.filters = filters
    this.version = version
    this.#routeFilter = filters.routes !== undefined && filters.routes.length > 0 ? new Set(filters.routes) : null
    this.#taskFilter = filters.tasks !== undefined && filters.tasks.length > 0 ? new Set(filters.tasks) : null
  }

  /**
   * Adds one line of text read from `file` (as given by the user, `-` for standard input);
   * anything that is not a deferred-work line is counted as skipped.
   */
  add (text: string, file: string | null = null): void {
    if (this.#result !== null) throw new Error('Summary.add() after result(): the report is made once, after the last line')
    if (text.trim() === '') return
    this.#lines.total++
    if (file !== null && this.#files[this.#files.length - 1] !== file && !this.#files.includes(file)) this.#files.push(file)
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
    const kind = this.#addLine(line, file)
    this.#lines[kind]++
  }

  #addLine (line: Json, file: string | null): 'used' | 'filtered' | 'skipped' {
    const deferred = line.deferred
    const shutdown = line.deferredShutdown
    const refused = line.deferredRefused
    const start = line.deferredStart
    let kind: 'task' | 'enqueued' | 'retrying' | 'close' | 'shutdown' | 'refused' | 'start'
    if (isObject(deferred) && typeof deferred.outcome === 'string' && outcomeSet.has(deferred.outcome)) kind = 'task'
    else if (isObject(deferred) && (deferred.outcome === 'enqueued' || deferred.outcome === 'retrying')) kind = deferred.outcome
    else if (isObject(deferred) && deferred.outcome === undefined && (typeof deferred.tasks === 'number' || typeof deferred.jobs === 'number')) kind = 'close'
    else if (isObject(shutdown) && typeof shutdown.drained === 'boolean') kind = 'shutdown'
    else if (isObject(refused)) kind = 'refused'
    else if (isObject(start)) kind = 'start'
    else return 'skipped'

    const time = timeOf(line)
    const ref: RequestRef = {
      reqId: typeof line.reqId === 'string' || typeof line.reqId === 'number' ? String(line.reqId) : null,
      file,
      hostname: typeof line.hostname === 'string' ? line.hostname : null,
      pid: typeof line.pid === 'number' ? line.pid : null,
      time: iso(time)
    }
    // lost work is looked for over every line, whatever the filters: a task's final line may fall
    // outside --until while its close line is inside
    this.#follow(kind, deferred as Json, start as Json, time, ref)
    if (!this.#inPeriod(time)) return 'filtered'

    if (kind === 'start') {
      this.#starts++
    } else if (kind === 'shutdown') {
      this.#addShutdown(shutdown as Json, time, ref)
    } else {
      const fields = (kind === 'refused' ? refused : deferred) as Json
      const route = typeof fields.route === 'string' ? fields.route : '(unknown route)'
      if (this.#routeFilter !== null && !this.#routeFilter.has(route)) return 'filtered'
      if (kind === 'close' || kind === 'refused') {
        // a response or refusal line names no task: it belongs to no task's report
        if (this.#taskFilter !== null) return 'filtered'
        this.#addToRoute(route, kind, fields)
        if (kind === 'refused' && time !== null) this.#timeline.add(time, 'refused')
      } else {
        const task = typeof fields.task === 'string' ? fields.task : '(unnamed)'
        if (this.#taskFilter !== null && !this.#taskFilter.has(task)) return 'filtered'
        const group = this.#group(route, task)
        if (kind === 'task') this.#addTask(group, fields, line, ref, time)
        else if (kind === 'retrying') {
          group.retries++
          this.#retries++
        } else this.#addEnqueued(group, fields, ref)
      }
    }
    this.#processes.add(`${ref.hostname}\u0000${ref.pid}`)
    if (time !== null) {
      if (this.#from === null || time < this.#from) this.#from = time
      if (this.#to === null || time > this.#to) this.#to = time
    }
    return 'used'
  }

  /** Follows process lifetimes, and matches each close line's tasks with their final lines. */
  #follow (kind: string, deferred: Json, start: Json, time: number | null, ref: RequestRef): void {
    const at = this.#read++
    const process = `${ref.hostname}\u0000${ref.pid}`
    if (kind === 'start') {
      const ended = this.#lifetimes.get(process)
      if (ended !== undefined) this.#settle(ended)
      this.#lifetimes.set(process, newLifetime(typeof start.instance === 'string' ? start.instance : null, start.responseLogLevel))
      return
    }
    const lifetime = this.#lifetime(process)
    const reqId = String(ref.reqId)
    if (kind === 'shutdown') {
      lifetime.shutdownAt = at
    } else if (kind === 'close') {
      const route = typeof deferred.route === 'string' ? deferred.route : '(unknown route)'
      const counted = this.#taskFilter === null && this.#inPeriod(time) && (this.#routeFilter === null || this.#routeFilter.has(route))
      if (deferred.connection === 'finished') lifetime.finished = true
      const early = lifetime.early.get(reqId) ?? 0
      lifetime.early.delete(reqId)
      const announced = numberOr(deferred.tasks, 0)
      const remaining = announced - early
      if (remaining <= 0) return
      const open = lifetime.open.get(reqId)
      // two requests under one id (a client's x-request-id): their tasks add up
      if (open === undefined) lifetime.open.set(reqId, { remaining, announced, at, ref, route, counted })
      else {
        open.remaining += remaining
        open.announced += announced
      }
    } else if (kind === 'task' && typeof deferred.jobId !== 'string') {
      // durable jobs are followed by their jobId, not here
      const open = lifetime.open.get(reqId)
      if (open !== undefined) {
        if (--open.remaining === 0) lifetime.open.delete(reqId)
        return
      }
      lifetime.early.set(reqId, (lifetime.early.get(reqId) ?? 0) + 1)
      if (lifetime.early.size > MAX_EARLY) lifetime.early.delete(lifetime.early.keys().next().value as string)
    }
  }

  #lifetime (process: string): Lifetime {
    let lifetime = this.#lifetimes.get(process)
    if (lifetime === undefined) {
      lifetime = newLifetime(null)
      this.#lifetimes.set(process, lifetime)
    }
    return lifetime
  }

  /** A lifetime ended (its process started again, or the logs end): what it announced and never logged is lost. */
  #settle (lifetime: Lifetime): void {
    if (lifetime.quiet !== null && !lifetime.finished) this.#unchecked.set(lifetime.quiet, (this.#unchecked.get(lifetime.quiet) ?? 0) + 1)
    for (const open of lifetime.open.values()) {
      if (!open.counted) continue
      const shutdown = lifetime.shutdownAt > open.at
      if (shutdown) this.#unaccounted.afterShutdown += open.remaining
      else this.#unaccounted.withoutShutdown += open.remaining
      const route = this.#routes.get(open.route) as RouteStats
      route.unaccounted += open.remaining
      if (this.#unaccounted.samples.length < UNACCOUNTED_SAMPLE) {
        this.#unaccounted.samples.push({ ...open.ref, route: open.route, tasks: open.remaining, announced: open.announced, instance: lifetime.instance, shutdown })
      }
    }
  }

  #group (route: string, task: string): GroupStats {
    const key = `${route}\u0000${task}`
    let group = this.#groups.get(key)
    if (group === undefined) {
      group = new GroupStats(route, task)
      this.#groups.set(key, group)
    }
    return group
  }

  #addTask (group: GroupStats, fields: Json, line: Json, ref: RequestRef, time: number | null): void {
    const outcome = fields.outcome as ReportOutcome
    const message = failureMessage(outcome, fields, line)
    if (typeof fields.jobId === 'string') {
      // the last word wins: a job is counted by its latest final line once every line is read
      const final: FinalLine = { group, outcome, deferred: fields, message, ref, attempt: numberOr(fields.attempt, 0), time }
      const jobKey = `${fields.queue}\u0000${fields.jobId}`
      const job = this.#job(jobKey)
      this.#pending.delete(jobKey)
      if (job.final === null) {
        job.final = final
        return
      }
      // a job retried by hand, re-run after a worker crashed, or run after its enqueue was logged as failed
      this.#duplicates++
      const [counted, superseded] = isLater(final, job.final) ? [final, job.final] : [job.final, final]
      job.final = counted
      if (job.superseded === null) job.superseded = [superseded]
      else if (job.superseded.length < SUPERSEDED_PER_JOB) job.superseded.push(superseded)
      return
    }
    this.#count(group, outcome, fields, message, ref, time)
  }

  #count (group: GroupStats, outcome: ReportOutcome, fields: Json, message: string, ref: RequestRef, time: number | null): void {
    const slow = group.add(outcome, fields, message, ref)
    if (slow !== null) keepIfSlow(this.#slowest, SLOWEST_OVERALL, { ...slow, route: group.route, task: group.task })
    if (time !== null) this.#timeline.add(time, outcome)
  }

  #job (jobKey: string): JobState {
    let job = this.#jobs.get(jobKey)
    if (job === undefined) {
      job = { enqueued: false, final: null, superseded: null }
      this.#jobs.set(jobKey, job)
    }
    return job
  }

  #addEnqueued (group: GroupStats, fields: Json, ref: RequestRef): void {
    if (typeof fields.jobId !== 'string') {
      group.enqueued++
      return
    }
    const jobKey = `${fields.queue}\u0000${fields.jobId}`
    const job = this.#job(jobKey)
    if (job.enqueued) return
    group.enqueued++
    job.enqueued = true
    if (job.final === null) {
      this.#pending.set(jobKey, { ...ref, queue: typeof fields.queue === 'string' ? fields.queue : null, jobId: fields.jobId, route: group.route, task: group.task })
    }
  }

  #inPeriod (time: number | null): boolean {
    const { since, until } = this.filters
    if (since === undefined && until === undefined) return true
    if (time === null) return false
    return (since === undefined || time >= since) && (until === undefined || time <= until)
  }

  #addToRoute (route: string, kind: 'close' | 'refused', fields: Json): void {
    let stats = this.#routes.get(route)
    if (stats === undefined) {
      stats = { responses: 0, aborted: 0, refused: 0, unaccounted: 0 }
      this.#routes.set(route, stats)
    }
    if (kind === 'refused') {
      stats.refused++
      return
    }
    stats.responses++
    if (fields.connection === 'aborted') stats.aborted++
  }

  #addShutdown (fields: Json, time: number | null, ref: RequestRef): void {
    this.#shutdownCount++
    if (fields.drained !== true) this.#undrained++
    const outcomes = zeroOutcomes()
    for (const outcome of OUTCOMES) outcomes[outcome] = numberOr(fields[outcome], 0)
    const shutdown = {
      time: iso(time),
      drained: fields.drained as boolean,
      durationMs: numberOr(fields.durationMs, 0),
      drainTimeout: numberOr(fields.drainTimeout, 0),
      outcomes,
      file: ref.file,
      hostname: ref.hostname,
      pid: ref.pid,
      // a line without a time goes where it was read, after the latest time seen so far
      at: time ?? this.#to ?? -Infinity
    }
    // the most recent by time, whatever order the files were read in
    let i = this.#shutdowns.length
    while (i > 0 && this.#shutdowns[i - 1].at > shutdown.at) i--
    this.#shutdowns.splice(i, 0, shutdown)
    if (this.#shutdowns.length > RECENT_SHUTDOWNS) this.#shutdowns.shift()
  }

  /**
   * The report. Durable jobs are counted here, each by its latest final line, so call it once,
   * after the last line: later calls return the same report, and lines added after it are refused.
   */
  result (): Report {
    this.#result ??= this.#report()
    return this.#result
  }

  #report (): Report {
    for (const lifetime of this.#lifetimes.values()) this.#settle(lifetime)
    let finished = 0
    let enqueued = 0
    const superseded: SupersededJob[] = []
    for (const [jobKey, job] of this.#jobs) {
      if (job.enqueued) enqueued++
      const final = job.final
      if (final === null) continue
      finished++
      this.#count(final.group, final.outcome, final.deferred, final.message, final.ref, final.time)
      if (job.superseded !== null && superseded.length < SUPERSEDED_SAMPLE) {
        const queue = final.deferred.queue
        superseded.push({
          queue: typeof queue === 'string' ? queue : null,
          jobId: jobKey.slice(jobKey.indexOf('\u0000') + 1),
          route: final.group.route,
          task: final.group.task,
          counted: finalRef(final),
          superseded: job.superseded.map(finalRef)
        })
      }
    }
    const groups = [...this.#groups.values()]
      .sort((a, b) => byName(a.route, b.route) || byName(a.task, b.task))
      .map((group) => group.toJSON())
    const outcomes = zeroOutcomes()
    let aborted = 0
    const counted = this.#taskFilter === null
    const routeNames = new Set(counted ? this.#routes.keys() : [])
    for (const group of groups) {
      for (const outcome of OUTCOMES) outcomes[outcome] += group.outcomes[outcome]
      aborted += group.aborted
      if (counted) routeNames.add(group.route)
    }
    const routes: RouteResponses[] = [...routeNames].sort(byName).map((route) => {
      const { responses, aborted, refused, unaccounted } = this.#routes.get(route) ?? { responses: 0, aborted: 0, refused: 0, unaccounted: 0 }
      return { route, responses, aborted, abortedRate: responses === 0 ? null : Math.round((aborted / responses) * 10_000) / 10_000, refused, unaccounted }
    })
    const sum = (key: 'responses' | 'aborted' | 'refused' | 'unaccounted'): number | null => counted ? routes.reduce((total, route) => total + route[key], 0) : null
    return {
      version: this.version,
      lines: { ...this.#lines },
      sources: { files: [...this.#files], processes: this.#processes.size, starts: this.#starts },
      filters: {
        route: [...(this.#routeFilter ?? [])],
        task: [...(this.#taskFilter ?? [])],
        since: iso(this.filters.since),
        until: iso(this.filters.until)
      },
      period: { from: iso(this.#from), to: iso(this.#to) },
      totals: {
        tasks: groups.reduce((total, group) => total + group.tasks, 0),
        outcomes,
        aborted,
        responses: sum('responses'),
        abortedResponses: sum('aborted'),
        refused: sum('refused'),
        unaccounted: sum('unaccounted')
      },
      unaccounted: {
        afterShutdown: this.#unaccounted.afterShutdown,
        withoutShutdown: this.#unaccounted.withoutShutdown,
        unchecked: [...this.#unchecked].sort(([a], [b]) => byName(a, b)).map(([responseLogLevel, instances]) => ({ responseLogLevel, instances })),
        samples: this.#unaccounted.samples.map((sample) => ({ ...sample }))
      },
      routes,
      groups,
      slowest: this.#slowest.map((task) => ({ ...task })),
      timeline: { bucketMs: this.#timeline.bucketMs, buckets: this.#timeline.buckets() },
      jobs: {
        enqueued,
        finished,
        pending: this.#pending.size,
        retries: this.#retries,
        duplicates: this.#duplicates,
        supersededSample: superseded,
        pendingSample: [...this.#pending.values()].slice(0, PENDING_SAMPLE).map((job) => ({ ...job }))
      },
      shutdowns: {
        count: this.#shutdownCount,
        undrained: this.#undrained,
        recent: this.#shutdowns.map(({ at, ...shutdown }) => ({ ...shutdown, outcomes: { ...shutdown.outcomes } }))
      }
    }
  }
}
