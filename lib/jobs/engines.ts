import type { FastifyBaseLogger } from 'fastify'
import { assertDrivers, BULLMQ_DRIVERS } from '../engines/driver'
import type { Engine } from '../engines/types'
import { zeroOutcomes } from '../types'
import type { Outcome } from '../types'
import { AttemptRunner } from './attempt'
import { MemoryLoop } from './memory-loop'
import type { QueueSettings } from './options'
import type { EngineMetrics } from '../metrics'

// Starts the engine the `queue` option names, and the worker of the app's own process where the
// engine runs jobs there (memory; sqlite with `work: true`).

export const WHERE = 'fastify-send-and-continue queue'

/** What the plugin's own options give the app's worker (the memory engine's bounds). */
export interface AppBounds {
  concurrency: number
  maxQueued: number
  drainTimeout: number
}

/** The jobs this process runs: a loop over the engine's store, writing through the app's logger. */
export interface AppWorker {
  /** How many more jobs the engine takes now (the memory engine's `concurrency + maxQueued`); `Infinity` when unbounded. */
  room (): number
  /** A job was enqueued: look for it now. */
  wake (): void
  whenIdle (): Promise<void>
  counts (): Record<Outcome, number>
  running (): number
  /** Jobs held in this process's memory and not running (due, delayed or waiting out a backoff): the memory engine only. */
  waiting?: () => number
  /** Waits up to `drainTimeout`, then gives the rest up; resolves with whether all ended in time. */
  close (): Promise<boolean>
}

export interface StartedEngine {
  engine: Engine
  worker: AppWorker | null
}

export async function startEngine (settings: QueueSettings, bounds: AppBounds, logger: FastifyBaseLogger, tracing: boolean, metrics: EngineMetrics | null = null): Promise<StartedEngine> {
  const { name: queue, tasks } = settings
  if (settings.engine === 'memory') {
    const { MemoryStore } = require('../engines/memory/store') as typeof import('../engines/memory/store')
    const store = new MemoryStore(queue)
    const runner = new AttemptRunner({ tasks, queue, engine: 'memory', logger, durable: false, tracing, metrics })
    const loop = new MemoryLoop(store, runner, bounds.concurrency, logger)
    store.onAdded = () => { loop.wake() }
    const worker: AppWorker = {
      room: () => bounds.concurrency + bounds.maxQueued - store.unfinished,
      wake: noop,
      whenIdle: () => loop.whenIdle(),
      counts: () => runner.counts,
      running: () => loop.running,
      waiting: () => store.unfinished - loop.running,
      async close () {
        // delayed jobs and backoffs count: the drain waits for every job added
        const idle = loop.whenIdle()
        const drained = await new Promise<boolean>((resolve) => {
          const timer = setTimeout(resolve, bounds.drainTimeout, false)
          idle.then(() => {
            clearTimeout(timer)
            resolve(true)
          }, noop)
        })
        // what never started is cancelled first, so nothing starts in the slots the running free
        if (!drained) for (const job of store.takeWaiting()) runner.cancelled(job)
        await loop.close()
        return drained
      }
    }
    return { engine: store, worker }
  }
  if (settings.engine === 'sqlite') {
    const { SqliteStore } = require('../engines/sqlite/store') as typeof import('../engines/sqlite/store')
    const { startSqliteLoop } = require('../engines/sqlite/worker') as typeof import('../engines/sqlite/worker')
    const store = new SqliteStore({ where: WHERE, path: settings.path, queue, synchronous: settings.synchronous, busyTimeout: settings.enqueueTimeout })
    await store.check(settings.enqueueTimeout)
    if (!settings.work) return { engine: store, worker: null }
    const runner = new AttemptRunner({ tasks, queue, engine: 'sqlite', logger, durable: true, tracing, metrics })
    const loop = startSqliteLoop(store, runner, logger, settings.concurrency, settings.lockDuration)
    const worker: AppWorker = {
      room: () => Infinity,
      wake: () => { loop.wake() },
      whenIdle: () => loop.whenIdle(),
      counts: () => runner.counts,
      running: () => loop.running,
      close: () => loop.close(settings.drainTimeout)
    }
    return { engine: store, worker }
  }
  assertDrivers(WHERE, 'bullmq', BULLMQ_DRIVERS)
  // BullMQ and ioredis load with the first queue: the in-process plugin never needs them
  const { BullEngine } = require('../engines/bullmq/engine') as typeof import('../engines/bullmq/engine')
  const engine = new BullEngine(settings)
  try {
    await engine.check(settings.enqueueTimeout)
  } catch (err) {
    await engine.close()
    throw err
  }
  return { engine, worker: null }
}

/** No app worker: nothing ran here. */
export const NO_COUNTS: Readonly<Record<Outcome, number>> = Object.freeze(zeroOutcomes())

function noop (): void {}
