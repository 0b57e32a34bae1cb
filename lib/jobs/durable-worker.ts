import { performance } from 'node:perf_hooks'
import type { FastifyBaseLogger } from 'fastify'
import { logShutdown } from '../log'
import type { AttemptRunner } from './attempt'
import type { DurableWorker } from './worker'

/** How an engine's worker stops: drains (resolving with whether every job ended in time), then lets go of its store. */
export interface WorkerStop {
  drain: () => Promise<boolean>
  release: () => Promise<void> | void
}

/**
 * The `createWorker()` result of every engine: `close()` runs once however often it is called,
 * and writes the worker's shutdown line between the drain and the release of the store.
 */
export function durableWorker (queue: string, runner: AttemptRunner, logger: FastifyBaseLogger, drainTimeout: number, stop: WorkerStop): DurableWorker {
  let closing: Promise<void> | null = null
  async function close (): Promise<void> {
    const startedAt = performance.now()
    const drained = await stop.drain()
    logShutdown(logger, { drained, durationMs: Math.round(performance.now() - startedAt), drainTimeout, ...runner.counts })
    await stop.release()
  }
  return {
    queue,
    close () {
      closing ??= close()
      return closing
    },
    stats () {
      return runner.stats()
    }
  }
}
