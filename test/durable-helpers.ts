import Fastify from 'fastify'
import type { FastifyInstance } from 'fastify'
import { Queue } from 'bullmq'
import pino from 'pino'
import type { Test } from 'tap'
import sendAndContinue from '../lib/index'
import type { BullQueueOptions, SendAndContinueOptions } from '../lib/index'
import { LogCollector } from './helpers'
import type { RedisServer } from './redis'

export interface DurableApp {
  app: FastifyInstance
  logs: LogCollector
}

/** An app with the plugin and a `queue` on `redis`, logging to a collector, closed at teardown. */
export async function buildDurable (t: Test, redis: RedisServer, queue: Omit<BullQueueOptions, 'connection'>, options: SendAndContinueOptions = {}): Promise<DurableApp> {
  const logs = new LogCollector()
  const app = Fastify({ logger: { level: 'info', stream: logs } })
  t.teardown(() => app.close())
  await app.register(sendAndContinue, { ...options, queue: { connection: redis.connection, ...queue } })
  return { app, logs }
}

/** A BullMQ Queue to look at what Redis holds, closed at teardown. */
export function inspect (t: Test, redis: RedisServer, name = 'fastify-send-and-continue', prefix?: string): Queue {
  const queue = new Queue(name, { connection: { ...redis.connection, maxRetriesPerRequest: null }, ...(prefix === undefined ? {} : { prefix }) })
  t.teardown(() => queue.close())
  return queue
}

/** A pino logger writing to a collector. */
export function workerLogger (): { logger: pino.Logger, logs: LogCollector } {
  const logs = new LogCollector()
  return { logger: pino({}, logs), logs }
}

/** Adds `count` jobs of `task` as the web process would, straight through BullMQ. */
export async function addJobs (queue: Queue, task: string, count: number, data: (i: number) => unknown = (i) => ({ i }), opts: Record<string, unknown> = {}): Promise<string[]> {
  const jobs = Array.from({ length: count }, (_, i) => ({
    name: task,
    data: {
      data: data(i),
      request: { id: `req-${i + 1}`, method: 'POST', url: `/items/${i}`, routeUrl: '/items/:id' },
      route: '/items/:id',
      connection: null,
      statusCode: 202,
      enqueuedAt: Date.now()
    },
    opts: { jobId: `${task}~${i}`, ...opts }
  }))
  await queue.addBulk(jobs)
  return jobs.map((job) => job.opts.jobId)
}
