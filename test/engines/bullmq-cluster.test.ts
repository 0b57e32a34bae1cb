import t from 'tap'
import { createWorker } from '../../lib/index'
import { startRedisCluster } from '../redis-cluster'
import { conformance } from './conformance'

// The conformance suite on a Redis Cluster of three masters, started once for the file: each test
// gets its own hash-tagged prefix, so the queues land in different slots (and on different nodes).
// a cluster to start, then the whole suite: more than tap's 30 s on a loaded machine
t.setTimeout(120_000)
const cluster = startRedisCluster(t)
let tests = 0

conformance({
  engine: 'bullmq',
  async setup () {
    const { connection } = await cluster
    const prefix = `{conformance-${++tests}}`
    return {
      queue: { engine: 'bullmq', connection, prefix },
      worker: (tasks, logger, concurrency) => createWorker({ connection, prefix, tasks, logger, concurrency })
    }
  }
})
