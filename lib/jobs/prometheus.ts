import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { FST_SAC_MISSING_METRICS_SDK } from '../errors'
import { missingPackages } from '../engines/driver'

// The worker CLI's `--metrics-port`: the OpenTelemetry metrics SDK with its Prometheus exporter,
// registered as the global meter provider before the worker starts (it looks the provider up
// then), and served as Prometheus text on GET /metrics. The SDK and the exporter are optional
// peer dependencies, loaded only here.

/** What `--metrics-port` needs: the API the plugin records through, the SDK and its exporter. */
export const METRICS_PACKAGES = ['@opentelemetry/api', '@opentelemetry/sdk-metrics', '@opentelemetry/exporter-prometheus'] as const

export const METRICS_PATH = '/metrics'

export interface MetricsServer {
  /** The port it listens on (the one asked for, or the one the system chose for 0). */
  readonly port: number
  /** Stops serving, shuts the SDK down and unregisters its provider. */
  close (): Promise<void>
}

/**
 * Registers the SDK and serves its Prometheus text on `port` (all interfaces, as exporters do;
 * `0` for a free port). Throws `FST_SAC_MISSING_METRICS_SDK` when a package is missing.
 */
export async function serveMetrics (where: string, option: string, port: number, resolve?: (id: string) => string): Promise<MetricsServer> {
  const missing = missingPackages(METRICS_PACKAGES, resolve)
  if (missing.length > 0) {
    throw new FST_SAC_MISSING_METRICS_SDK(where, option, missing.join(', '), `npm install ${missing.join(' ')}`)
  }
  const { metrics } = require('@opentelemetry/api') as typeof import('@opentelemetry/api')
  const { MeterProvider } = require('@opentelemetry/sdk-metrics') as typeof import('@opentelemetry/sdk-metrics')
  const { PrometheusExporter } = require('@opentelemetry/exporter-prometheus') as typeof import('@opentelemetry/exporter-prometheus')
  // the exporter's own server cannot listen on port 0 (it reads 0 as "the default, 9464"): this one serves its handler
  const exporter = new PrometheusExporter({ preventServerStart: true })
  const provider = new MeterProvider({ readers: [exporter] })
  metrics.setGlobalMeterProvider(provider)
  const server = createServer((request, response) => {
    if (request.method === 'GET' && (request.url as string).split('?')[0] === METRICS_PATH) {
      exporter.getMetricsRequestHandler(request, response)
    } else {
      response.statusCode = 404
      response.end()
    }
  })
  async function stop (): Promise<void> {
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
    await provider.shutdown()
    metrics.disable()
  }
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(port, resolve)
    })
  } catch (err) {
    await stop()
    throw err
  }
  return { port: (server.address() as AddressInfo).port, close: stop }
}
