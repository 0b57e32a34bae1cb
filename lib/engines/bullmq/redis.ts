import type { Cluster } from 'ioredis'
import { describe, FST_SAC_REDIS_EVICTION, FST_SAC_REDIS_UNREACHABLE } from '../../errors'
import type { RedisClient } from './client'

/** Resolves once `client` is ready; rejects with its last error (or 'no answer') after `timeout` ms. */
export function waitReady (client: RedisClient, timeout: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let lastError: Error | null = null
    function onError (err: Error): void { lastError = err }
    function onReady (): void {
      clearTimeout(timer)
      client.off('error', onError)
      resolve()
    }
    const timer = setTimeout(() => {
      client.off('ready', onReady)
      client.off('error', onError)
      reject(lastError ?? new Error('no answer'))
    }, timeout)
    client.on('error', onError)
    client.once('ready', onReady)
  })
}

/**
 * The startup check of the web process and of the worker: Redis answers within `timeout`, and
 * never evicts keys (under any other `maxmemory-policy`, Redis may delete jobs when memory runs
 * short: BullMQ's own docs require `noeviction`); on a cluster, every node. Reads `INFO memory`,
 * which managed Redis services allow where `CONFIG GET` is often disabled.
 */
export async function checkRedis (where: string, client: RedisClient, timeout: number): Promise<void> {
  let infos: string[]
  try {
    await waitReady(client, timeout)
    // on a cluster, every node: any of them may hold the queue's slot (after a failover, a resharding)
    const nodes = client.isCluster ? (client as Cluster).nodes('all') : [client]
    infos = await Promise.all(nodes.map((node) => node.info('memory')))
  } catch (err) {
    throw new FST_SAC_REDIS_UNREACHABLE(where, timeout, describe((err as Error).message))
  }
  for (const info of infos) {
    // every Redis reports it; a proxy that does not is refused as 'undefined'
    const policy = String(/^maxmemory_policy:(\S+)/m.exec(info)?.[1])
    if (policy !== 'noeviction') throw new FST_SAC_REDIS_EVICTION(where, policy)
  }
}
