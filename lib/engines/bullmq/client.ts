import { Redis } from 'ioredis'
import type { RedisOptions } from 'ioredis'
import type { RedisConnection } from '../../jobs/options'

// Loaded only when a queue or a worker starts: the in-process plugin never loads ioredis.

/** A new ioredis client; `overrides` win over what the user gave. */
export function createClient (connection: RedisConnection, overrides: RedisOptions): Redis {
  return typeof connection === 'string'
    ? new Redis(connection, overrides)
    : new Redis({ ...(connection as RedisOptions), ...overrides })
}
