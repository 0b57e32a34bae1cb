import type { FastifyBaseLogger } from 'fastify'
import { AttemptRunner } from '../../jobs/attempt'
import { durableWorker } from '../../jobs/durable-worker'
import { LeaseLoop } from '../../jobs/lease-loop'
import type { DurableWorker, SqliteWorkerSettings } from '../../jobs/worker'
import { isDeadOwner, ownerId } from '../owner'
import { SqliteStore } from './store'

// how often an idle worker looks for jobs other processes added, and for jobs of dead processes
export const POLL_INTERVAL = 100
export const RECOVER_INTERVAL = 1000

/** The lease loop of a SQLite queue, started: `createWorker()`'s, and the app's own with `work: true`. */
export function startSqliteLoop (store: SqliteStore, runner: AttemptRunner, logger: FastifyBaseLogger, concurrency: number, lockDuration: number): LeaseLoop {
  const loop = new LeaseLoop({
    store,
    runner,
    logger,
    owner: ownerId(),
    isDead: isDeadOwner,
    concurrency,
    lockDuration,
    pollInterval: POLL_INTERVAL,
    recoverInterval: RECOVER_INTERVAL
  })
  loop.start()
  return loop
}

/** `createWorker({ engine: 'sqlite', path, tasks })`: a lease loop over the file, in this process. */
export async function startSqliteWorker (settings: SqliteWorkerSettings): Promise<DurableWorker> {
  const { queue, logger, drainTimeout } = settings
  const store = new SqliteStore({ where: 'createWorker()', path: settings.path, queue, synchronous: settings.synchronous, busyTimeout: 5000 })
  await store.check(5000)
  const runner = new AttemptRunner({ tasks: settings.tasks, queue, engine: 'sqlite', logger, durable: true, metrics: settings.metrics })
  const loop = startSqliteLoop(store, runner, logger, settings.concurrency, settings.lockDuration)
  return durableWorker(queue, runner, logger, drainTimeout, {
    drain: () => loop.close(drainTimeout),
    release: () => store.close()
  })
}
