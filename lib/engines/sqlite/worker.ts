import { performance } from 'node:perf_hooks'
import { logShutdown } from '../../log'
import { AttemptRunner } from '../../jobs/attempt'
import { LeaseLoop } from '../../jobs/lease-loop'
import type { DurableWorker, SqliteWorkerSettings } from '../../jobs/worker'
import { isDeadOwner, ownerId } from '../owner'
import { SqliteStore } from './store'

// how often an idle worker looks for jobs other processes added, and for jobs of dead processes
export const POLL_INTERVAL = 100
export const RECOVER_INTERVAL = 1000

/** `createWorker({ engine: 'sqlite', path, tasks })`: a lease loop over the file, in this process. */
export async function startSqliteWorker (settings: SqliteWorkerSettings): Promise<DurableWorker> {
  const { queue, logger, drainTimeout } = settings
  const store = new SqliteStore({ where: 'createWorker()', path: settings.path, queue, synchronous: settings.synchronous, busyTimeout: 5000 })
  await store.check(5000)
  const runner = new AttemptRunner({ tasks: settings.tasks, queue, engine: 'sqlite', logger, durable: true, metrics: settings.metrics })
  const loop = new LeaseLoop({
    store,
    runner,
    logger,
    owner: ownerId(),
    isDead: isDeadOwner,
    concurrency: settings.concurrency,
    lockDuration: settings.lockDuration,
    pollInterval: POLL_INTERVAL,
    recoverInterval: RECOVER_INTERVAL
  })
  loop.start()

  let closing: Promise<void> | null = null
  async function close (): Promise<void> {
    const startedAt = performance.now()
    const drained = await loop.close(drainTimeout)
    logShutdown(logger, { drained, durationMs: Math.round(performance.now() - startedAt), drainTimeout, ...runner.counts })
    await store.close()
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
