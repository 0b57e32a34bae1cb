import { Cluster, Redis } from 'ioredis'
import type { RedisOptions } from 'ioredis'
import { isClusterConnection } from '../../jobs/options'
import type { RedisConnection } from '../../jobs/options'

// Loaded only when a queue or a worker starts: the in-process plugin never loads ioredis.

/** A connection to one Redis server, or to a Redis Cluster. */
export type RedisClient = Redis | Cluster

/** What the engine sets over the user's options. */
export interface ClientOverrides {
  maxRetriesPerRequest: number | null
  enableOfflineQueue?: boolean
  enableAutoPipelining?: boolean
  /** `() => null`: no reconnection (the status command tries once). */
  retryStrategy?: () => null
}

/**
 * A new ioredis client; `overrides` win over what the user gave. On a cluster, the retries of a
 * command are each node connection's option (`redisOptions`), the rest the cluster's.
 */
export function createClient (connection: RedisConnection, overrides: ClientOverrides): RedisClient {
  if (typeof connection === 'string') return new Redis(connection, overrides)
  if (isClusterConnection(connection)) {
    const { cluster, redisOptions, ...options } = connection
    const { maxRetriesPerRequest, retryStrategy, ...clusterOverrides } = overrides
    const node = retryStrategy === undefined ? { maxRetriesPerRequest } : { maxRetriesPerRequest, retryStrategy }
    return new Cluster(cluster, { ...options, ...clusterOverrides, redisOptions: { ...redisOptions, ...node } })
  }
  return new Redis({ ...(connection as RedisOptions), ...overrides })
}
