import Fastify from 'fastify'
import type { FastifyInstance, FastifyServerOptions } from 'fastify'
import { Writable } from 'node:stream'
import { once } from 'node:events'
import type { Test } from 'tap'
import sendAndContinue from '../lib/index'
import type { SendAndContinueOptions } from '../lib/index'

export interface LogLine {
  level: number
  msg: string
  reqId?: string
  deferred?: {
    task?: string
    outcome?: string
    connection?: string | null
    route?: string
    statusCode?: number
    durationMs?: number
    queuedMs?: number
    timeoutMs?: number
    reason?: string
    responseTime?: number
    tasks?: number
    /** Durable jobs (lib/log.ts): the BullMQ job id, the attempt (1-based), the queue name. */
    jobId?: string
    attempt?: number
    queue?: string
    /** `retrying` lines: how long until the next attempt. */
    delayMs?: number
  }
  deferredShutdown?: Record<string, number | boolean>
  err?: { message: string, type: string }
  [key: string]: unknown
}

/** Collects every pino line the app writes, parsed. */
export class LogCollector extends Writable {
  readonly lines: LogLine[] = []
  #waiters: Array<{ check: () => boolean, resolve: () => void }> = []

  override _write (chunk: Buffer, _encoding: string, callback: () => void): void {
    for (const text of chunk.toString().split('\n')) {
      if (text !== '') this.lines.push(JSON.parse(text))
    }
    this.#waiters = this.#waiters.filter((waiter) => {
      if (!waiter.check()) return true
      waiter.resolve()
      return false
    })
    callback()
  }

  /** Task outcome lines. */
  get outcomes (): LogLine[] {
    return this.lines.filter((line) => line.deferred?.outcome !== undefined)
  }

  /** Response close lines. */
  get closes (): LogLine[] {
    return this.lines.filter((line) => line.deferred?.tasks !== undefined)
  }

  /** Resolves once `check` holds over the lines written so far. */
  until (check: (lines: LogLine[]) => boolean): Promise<void> {
    if (check(this.lines)) return Promise.resolve()
    return new Promise((resolve) => {
      this.#waiters.push({ check: () => check(this.lines), resolve })
    })
  }

  /** Resolves once `count` outcome lines were written. */
  untilOutcomes (count: number): Promise<void> {
    return this.until(() => this.outcomes.length >= count)
  }
}

export interface Built {
  app: FastifyInstance
  logs: LogCollector
}

/** A Fastify app with the plugin registered, logging to a collector, closed at teardown. */
export async function build (t: Test, options: SendAndContinueOptions = {}, server: FastifyServerOptions = {}): Promise<Built> {
  const logs = new LogCollector()
  const app = Fastify({ logger: { level: 'info', stream: logs }, ...server })
  t.teardown(() => app.close())
  await app.register(sendAndContinue, options)
  return { app, logs }
}

/** A promise with its resolve function, to let a test hold a task open. */
export function deferred<T = void> (): { promise: Promise<T>, resolve: (value: T) => void } {
  let settle!: (value: T) => void
  const promise = new Promise<T>((resolve) => { settle = resolve })
  return { promise, resolve: settle }
}

export async function listen (app: FastifyInstance): Promise<{ port: number, url: string }> {
  const url = await app.listen({ port: 0, host: '127.0.0.1' })
  const address = app.server.address()
  if (address === null || typeof address === 'string') throw new Error('no port')
  return { port: address.port, url }
}

export { once }
