import type * as OTel from '@opentelemetry/api'
import { loadApi } from './otel'
import type { EngineName } from './engines/types'
import type { ConnectionStatus, Outcome } from './types'

// OpenTelemetry metrics through `@opentelemetry/api` (an optional peer dependency, loaded as for
// spans by lib/otel.ts). The meter provider is looked up when the plugin registers or a worker
// starts: the metrics API has no proxy, so a meter taken before the SDK registered its provider
// stays a no-op. With no provider (or `metrics: false`) the callers hold `null` and the hot path
// is one check.
//
// Counts (tasks by outcome, retries, responses, enqueues) are kept here, in plain fields of
// series objects made once per engine, route, task and outcome, and reported by one observable
// callback when the SDK collects: a task that ends adds 1 to a field, with no SDK call. The
// histograms are recorded per task, with the series' attribute objects (built once, never per
// record) and fewer attributes than the counters: the SDK hashes a record's attributes every time
// (sorts their keys, JSON-stringifies them), at a cost that grows with their number and is nearly
// nothing without any, so the durations carry the task, its outcome and the engine (the counters
// have the route), an in-process task's wait none (every task of the process waits in its app's
// one scheduler) and a durable job's wait, a measure of another queue, its own instrument with
// the engine. OpenTelemetry's types stay inside function bodies: no declaration of this module
// names them, so TypeScript users without the package see no missing module.

/** The `engine` attribute: where the task ran (or was enqueued). */
export type MetricsEngine = EngineName | 'in-process'

/** The `state` attribute of `task.count`. */
export type TaskState = 'pending' | 'queued' | 'running' | 'retrying' | 'enqueueing'

/** Reports one current count; counts of one engine and state are summed over the process's sources. */
export type Observe = (engine: MetricsEngine, state: TaskState, value: number) => void

/** Something that holds tasks (a scheduler, a worker): asked for its counts when the SDK collects. */
export type CountSource = (observe: Observe) => void

type Attributes = Readonly<Record<string, string>>

/** What the plugin needs of an OpenTelemetry histogram. */
interface Histogram {
  record (value: number, attributes: Attributes): void
}

interface Histograms {
  readonly duration: Histogram
  /** In-process tasks' waits for a slot. */
  readonly waitTime: Histogram
  /** Durable jobs' waits in their queue. */
  readonly jobWaitTime: Histogram
  readonly enqueueDuration: Histogram
}

/** The observable instruments, reported from the counts kept here. */
type Counted = 'ended' | 'retries' | 'responses' | 'enqueued' | 'enqueueFailures' | 'count'
type Report = (instrument: Counted, value: number, attributes: Attributes) => void

const METER_NAME = 'fastify-send-and-continue'
export const PREFIX = 'fastify.send_and_continue.'

// Tasks are mostly outbound I/O (SMTP, webhooks: tens of ms to seconds) with a 30 s default time
// limit; waits for a slot are usually sub-millisecond and grow to seconds under overload; an
// enqueue is a local commit or a Redis round trip, bounded by `enqueueTimeout` (default 2 s).
export const DURATION_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300]
export const WAIT_BUCKETS = [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300]
export const JOB_WAIT_BUCKETS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600]
export const ENQUEUE_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

/** Every instrument: its name after the prefix, kind, unit and description (the README's Metrics table lists the same). */
export const INSTRUMENTS = {
  ended: { name: 'task.ended', kind: 'counter', unit: '{task}', description: 'Deferred tasks that ended, by final outcome' },
  retries: { name: 'task.retries', kind: 'counter', unit: '{attempt}', description: 'Attempts that ended and were run again, by their outcome' },
  duration: { name: 'task.duration', kind: 'histogram', unit: 's', description: 'How long deferred tasks ran, each attempt', buckets: DURATION_BUCKETS },
  waitTime: { name: 'task.wait_time', kind: 'histogram', unit: 's', description: 'How long in-process tasks waited for a slot before they started, each attempt', buckets: WAIT_BUCKETS },
  jobWaitTime: { name: 'job.wait_time', kind: 'histogram', unit: 's', description: 'How long durable jobs waited in their queue before an attempt started', buckets: JOB_WAIT_BUCKETS },
  count: { name: 'task.count', kind: 'updowncounter', unit: '{task}', description: 'Deferred tasks now, by state' },
  responses: { name: 'response.closed', kind: 'counter', unit: '{response}', description: 'Responses that carried deferred work, by how the connection ended' },
  enqueued: { name: 'job.enqueued', kind: 'counter', unit: '{job}', description: 'Durable jobs the store took' },
  enqueueFailures: { name: 'job.enqueue.failures', kind: 'counter', unit: '{job}', description: 'Durable jobs the store did not take in time' },
  enqueueDuration: { name: 'job.enqueue.duration', kind: 'histogram', unit: 's', description: 'How long the enqueue of durable jobs held the response', buckets: ENQUEUE_BUCKETS }
} as const

/** The counts of one task at one outcome: how many ended so, how many attempts ended so and were retried. */
class OutcomeSeries {
  /** The counters': `{ engine, 'http.route', outcome, 'task.name' }`. */
  readonly attributes: Attributes
  /** `task.duration`'s: `{ engine, outcome, 'task.name' }`. */
  readonly durationAttributes: Attributes

  ended = 0
  retries = 0

  constructor (task: TaskSeries, outcome: Outcome) {
    // keys in the order the SDK sorts them into, for every record: engine, http.route, outcome, task.name
    const { engine, 'http.route': route, 'task.name': name } = task.attributes
    this.attributes = route === undefined ? { engine, outcome, 'task.name': name } : { engine, 'http.route': route, outcome, 'task.name': name }
    this.durationAttributes = { engine, outcome, 'task.name': name }
  }
}

/** One task name on one route and engine. */
class TaskSeries {
  readonly attributes: Attributes
  readonly outcomes: Record<Outcome, OutcomeSeries | null> = { completed: null, failed: null, timeout: null, skipped: null, cancelled: null, dropped: null }
  enqueued = 0
  enqueueFailed = 0

  constructor (name: string, route: RouteMetrics) {
    this.attributes = { ...route.attributes, 'task.name': name }
  }

  outcome (outcome: Outcome): OutcomeSeries {
    let series = this.outcomes[outcome]
    if (series === null) series = this.outcomes[outcome] = new OutcomeSeries(this, outcome)
    return series
  }
}

/**
 * The metrics of one route on one engine: what the plugin's and the workers' code calls. Times in
 * milliseconds, as everywhere else in the plugin; recorded in seconds.
 */
export class RouteMetrics {
  /** `{ engine, 'http.route' }`; no `http.route` for the not-found handler. */
  readonly attributes: Attributes
  readonly #histograms: Histograms
  // the engine's wait histogram (in-process tasks', or durable jobs'), and its attributes
  readonly #wait: Histogram
  readonly #waitAttributes: Attributes
  readonly #tasks = new Map<string, TaskSeries>()
  // the task named last: most routes defer one task, so most lookups stop here
  #last: TaskSeries | null = null
  /** Responses that carried deferred work, by how the connection ended (in-process routes only). */
  finished = 0
  aborted = 0
  #responseAttributes: Readonly<Record<ConnectionStatus, Attributes>> | null = null

  constructor (histograms: Histograms, engine: MetricsEngine, route: string | undefined, waitAttributes: Attributes) {
    this.#histograms = histograms
    this.#wait = engine === 'in-process' ? histograms.waitTime : histograms.jobWaitTime
    this.#waitAttributes = waitAttributes
    this.attributes = route === undefined ? { engine } : { engine, 'http.route': route }
  }

  task (name: string): TaskSeries {
    const last = this.#last
    if (last !== null && last.attributes['task.name'] === name) return last
    let series = this.#tasks.get(name)
    if (series === undefined) {
      series = new TaskSeries(name, this)
      this.#tasks.set(name, series)
    }
    this.#last = series
    return series
  }

  /** `{ connection, 'http.route' }`: a response is not run by an engine. */
  get responseAttributes (): Readonly<Record<ConnectionStatus, Attributes>> {
    if (this.#responseAttributes === null) {
      const { engine, ...route } = this.attributes
      this.#responseAttributes = { finished: { ...route, connection: 'finished' }, aborted: { ...route, connection: 'aborted' } }
    }
    return this.#responseAttributes
  }

  /** A task (or an attempt of it) starts after waiting `waitMs` for it: the wait is its engine's queue's, whatever the task. */
  started (waitMs: number): void {
    this.#wait.record(waitMs / 1000, this.#waitAttributes)
  }

  /** A task ended as `outcome` (its final line); `durationMs` is how long its last attempt ran, `-1` if it never ran. */
  ended (name: string, outcome: Outcome, durationMs: number): void {
    const series = this.task(name).outcome(outcome)
    series.ended++
    if (durationMs >= 0) this.#histograms.duration.record(durationMs / 1000, series.durationAttributes)
  }

  /** An attempt that ran `durationMs` ended as `outcome` and the task runs again (a `retrying` line). */
  retried (name: string, outcome: Outcome, durationMs: number): void {
    const series = this.task(name).outcome(outcome)
    series.retries++
    this.#histograms.duration.record(durationMs / 1000, series.durationAttributes)
  }

  /** A response that carried deferred work closed (its close line). */
  responded (connection: ConnectionStatus): void {
    if (connection === 'finished') this.finished++
    else this.aborted++
  }

  /** A durable job the store took (`taken`), or did not take in time. */
  enqueued (name: string, taken: boolean): void {
    const series = this.task(name)
    if (taken) series.enqueued++
    else series.enqueueFailed++
  }

  /** An enqueue held its response `durationMs` before the headers went out. */
  enqueueHeld (durationMs: number): void {
    this.#histograms.enqueueDuration.record(durationMs / 1000, this.attributes)
  }

  /** Reports the counts of this route. */
  collect (report: Report): void {
    if (this.finished !== 0) report('responses', this.finished, this.responseAttributes.finished)
    if (this.aborted !== 0) report('responses', this.aborted, this.responseAttributes.aborted)
    for (const task of this.#tasks.values()) {
      if (task.enqueued !== 0) report('enqueued', task.enqueued, task.attributes)
      if (task.enqueueFailed !== 0) report('enqueueFailures', task.enqueueFailed, task.attributes)
      for (const series of Object.values(task.outcomes)) {
        if (series === null) continue
        if (series.ended !== 0) report('ended', series.ended, series.attributes)
        if (series.retries !== 0) report('retries', series.retries, series.attributes)
      }
    }
  }
}

/** The routes of one engine. */
export class EngineMetrics {
  readonly engine: MetricsEngine
  readonly #histograms: Histograms
  readonly #routes = new Map<string | undefined, RouteMetrics>()
  /** `task.wait_time`'s: none (in-process); `job.wait_time`'s: `{ engine }`. */
  readonly #waitAttributes: Attributes

  constructor (histograms: Histograms, engine: MetricsEngine) {
    this.#histograms = histograms
    this.engine = engine
    this.#waitAttributes = engine === 'in-process' ? {} : { engine }
  }

  /** `route`: the route pattern, `undefined` for the not-found handler. */
  route (route: string | undefined): RouteMetrics {
    let metrics = this.#routes.get(route)
    if (metrics === undefined) {
      metrics = new RouteMetrics(this.#histograms, this.engine, route, this.#waitAttributes)
      this.#routes.set(route, metrics)
    }
    return metrics
  }

  collect (report: Report): void {
    for (const route of this.#routes.values()) route.collect(report)
  }
}

/**
 * The instruments of one meter provider, and every series counted for it in this process: plugin
 * instances and workers share them, so two apps in one process add up rather than overwrite.
 */
export class Meters {
  readonly provider: unknown
  readonly #histograms: Histograms
  readonly #engines = new Map<MetricsEngine, EngineMetrics>()
  readonly #sources = new Set<CountSource>()
  readonly #stateAttributes = new Map<string, Attributes>()

  constructor (provider: unknown, histograms: Histograms) {
    this.provider = provider
    this.#histograms = histograms
  }

  engine (engine: MetricsEngine): EngineMetrics {
    let metrics = this.#engines.get(engine)
    if (metrics === undefined) {
      metrics = new EngineMetrics(this.#histograms, engine)
      this.#engines.set(engine, metrics)
    }
    return metrics
  }

  /** Reports `source`'s counts at every collection until the returned function is called. */
  watch (source: CountSource): () => void {
    this.#sources.add(source)
    return () => { this.#sources.delete(source) }
  }

  /** Reports every count: the counters' totals so far, and the sources' current counts summed by engine and state. */
  collect (report: Report): void {
    for (const engine of this.#engines.values()) engine.collect(report)
    const sums = new Map<string, number>()
    for (const source of this.#sources) {
      source((engine, state, value) => {
        const key = `${engine} ${state}`
        sums.set(key, (sums.get(key) ?? 0) + value)
      })
    }
    for (const [key, value] of sums) report('count', value, this.#attributesOf(key))
    // a state reported before and held by no source now (its app closed) is 0, not its last value
    for (const [key, attributes] of this.#stateAttributes) if (!sums.has(key)) report('count', 0, attributes)
  }

  #attributesOf (key: string): Attributes {
    let attributes = this.#stateAttributes.get(key)
    if (attributes === undefined) {
      const [engine, state] = key.split(' ')
      attributes = { state, engine }
      this.#stateAttributes.set(key, attributes)
    }
    return attributes
  }
}

// the instruments of the provider looked up last; a new provider (after `metrics.disable()`) gets its own
let current: Meters | null = null

/**
 * The instruments of the global meter provider, or `null` when nothing would record them:
 * `@opentelemetry/api` is not installed, or no SDK registered a provider (the API's no-op one).
 */
export function lookUpMeters (): Meters | null {
  const api = loadApi()
  if (api === null) return null
  const provider = api.metrics.getMeterProvider()
  if (current !== null && current.provider === provider) return current
  const { version } = require('../package.json') as { version: string }
  const meter = provider.getMeter(METER_NAME, version)
  if (meter === api.createNoopMeter()) return null
  const histogram = (spec: { name: string, unit: string, description: string, buckets: readonly number[] }): OTel.Histogram =>
    meter.createHistogram(PREFIX + spec.name, { description: spec.description, unit: spec.unit, advice: { explicitBucketBoundaries: [...spec.buckets] } })
  const meters = new Meters(provider, {
    duration: histogram(INSTRUMENTS.duration),
    waitTime: histogram(INSTRUMENTS.waitTime),
    jobWaitTime: histogram(INSTRUMENTS.jobWaitTime),
    enqueueDuration: histogram(INSTRUMENTS.enqueueDuration)
  })
  const options = (spec: { unit: string, description: string }): OTel.MetricOptions => ({ description: spec.description, unit: spec.unit, valueType: api.ValueType.INT })
  const observables: Record<Counted, OTel.Observable> = {
    ended: meter.createObservableCounter(PREFIX + INSTRUMENTS.ended.name, options(INSTRUMENTS.ended)),
    retries: meter.createObservableCounter(PREFIX + INSTRUMENTS.retries.name, options(INSTRUMENTS.retries)),
    responses: meter.createObservableCounter(PREFIX + INSTRUMENTS.responses.name, options(INSTRUMENTS.responses)),
    enqueued: meter.createObservableCounter(PREFIX + INSTRUMENTS.enqueued.name, options(INSTRUMENTS.enqueued)),
    enqueueFailures: meter.createObservableCounter(PREFIX + INSTRUMENTS.enqueueFailures.name, options(INSTRUMENTS.enqueueFailures)),
    count: meter.createObservableUpDownCounter(PREFIX + INSTRUMENTS.count.name, options(INSTRUMENTS.count))
  }
  meter.addBatchObservableCallback((result) => {
    meters.collect((instrument, value, attributes) => { result.observe(observables[instrument], value, attributes) })
  }, Object.values(observables))
  current = meters
  return meters
}
