import { createWorker } from '../../lib/index'
import { startRedis } from '../redis'
import { conformance } from './conformance'

conformance({
  engine: 'bullmq',
  async setup (t) {
    const redis = await startRedis(t)
    return {
      queue: { engine: 'bullmq', connection: redis.connection },
      worker: (tasks, logger, concurrency) => createWorker({ connection: redis.connection, tasks, logger, concurrency })
    }
  }
})
