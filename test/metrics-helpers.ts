import { metrics } from '@opentelemetry/api'
import { MeterProvider } from '@opentelemetry/sdk-metrics'
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus'
import { createServer } from 'node:http'
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'

// What an operator does to scrape the plugin's metrics: the OpenTelemetry metrics SDK with its
// Prometheus exporter, registered as the global meter provider before the plugin, and a plain
// HTTP GET of /metrics as Prometheus sends it. The exporter's own server cannot listen on port 0
// (it reads 0 as its default, 9464), so a server of ours on a free port serves its handler.

export interface Sample {
  name: string
  labels: Record<string, string>
  value: number
}

export interface Scraped {
  samples: Sample[]
  /** `# TYPE` of each metric family. */
  types: Map<string, string>
  /** `# UNIT` of each metric family. */
  units: Map<string, string>
}

export interface Sdk {
  provider: MeterProvider
  /** `http://127.0.0.1:<port>/metrics` */
  url: string
  scrape (): Promise<Scraped>
  close (): Promise<void>
}

/** Registers the SDK as the global meter provider and serves its Prometheus text. */
export async function registerSdk (): Promise<Sdk> {
  const exporter = new PrometheusExporter({ preventServerStart: true })
  const provider = new MeterProvider({ readers: [exporter] })
  if (!metrics.setGlobalMeterProvider(provider)) throw new Error('a meter provider was registered already')
  const server: Server = createServer((request, response) => {
    if (request.url === '/metrics') exporter.getMetricsRequestHandler(request, response)
    else response.writeHead(404).end()
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/metrics`
  return {
    provider,
    url,
    scrape: () => scrape(url),
    async close () {
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
      await provider.shutdown()
      metrics.disable()
    }
  }
}

/** GET `url` as Prometheus does and parses the text. */
export async function scrape (url: string): Promise<Scraped> {
  const response = await fetch(url, { headers: { accept: 'text/plain;version=0.0.4' } })
  if (response.status !== 200) throw new Error(`GET ${url}: ${response.status}`)
  return parsePrometheus(await response.text())
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: \d+)?$/
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g

/** The Prometheus text exposition format, as far as the exporter writes it. */
export function parsePrometheus (text: string): Scraped {
  const samples: Sample[] = []
  const types = new Map<string, string>()
  const units = new Map<string, string>()
  for (const line of text.split('\n')) {
    if (line === '') continue
    const meta = /^# (TYPE|UNIT) (\S+) (\S+)$/.exec(line)
    if (meta !== null) {
      (meta[1] === 'TYPE' ? types : units).set(meta[2], meta[3])
      continue
    }
    if (line.startsWith('#')) continue
    const match = SAMPLE.exec(line)
    if (match === null) throw new Error(`not a sample: ${line}`)
    const labels: Record<string, string> = {}
    for (const [, key, value] of (match[2] ?? '').matchAll(LABEL)) labels[key] = value.replace(/\\(.)/g, (_, c: string) => c === 'n' ? '\n' : c)
    samples.push({ name: match[1], labels, value: match[3] === '+Inf' ? Infinity : Number(match[3]) })
  }
  return { samples, types, units }
}

/** The samples of `name` whose labels include `labels`. */
export function select (scraped: Scraped, name: string, labels: Record<string, string> = {}): Sample[] {
  return scraped.samples.filter((sample) => sample.name === name && Object.entries(labels).every(([key, value]) => sample.labels[key] === value))
}

/** The sum of the samples of `name` whose labels include `labels` (0 when there is none). */
export function total (scraped: Scraped, name: string, labels: Record<string, string> = {}): number {
  return select(scraped, name, labels).reduce((sum, sample) => sum + sample.value, 0)
}

/** The Prometheus name of an instrument: the plugin's prefix, dots as underscores, `_total` on counters. */
export function promName (instrument: string, counter = false): string {
  return `fastify_send_and_continue_${instrument.replace(/\./g, '_')}${counter ? '_total' : ''}`
}

export const ENDED = promName('task.ended', true)
export const RETRIES = promName('task.retries', true)
export const RESPONSES = promName('response.closed', true)
export const ENQUEUED = promName('job.enqueued', true)
export const ENQUEUE_FAILURES = promName('job.enqueue.failures', true)
export const COUNT = promName('task.count')
export const DURATION = promName('task.duration')
export const WAIT_TIME = promName('task.wait_time')
export const JOB_WAIT_TIME = promName('job.wait_time')
export const ENQUEUE_DURATION = promName('job.enqueue.duration')
