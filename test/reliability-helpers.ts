import tap from 'tap'
import { request } from 'node:http'
import { connect } from 'node:net'
import { setImmediate as nextTurn } from 'node:timers/promises'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import type { LogLine } from './helpers'

/**
 * Fails the file on any `unhandledRejection` or `uncaughtException`: a deferred task must never
 * crash the process, whatever it throws and whenever it settles.
 */
export function failOnCrash (): void {
  const onRejection = (reason: unknown): void => { tap.fail('unhandledRejection', { reason }) }
  const onException = (err: Error): void => { tap.fail('uncaughtException', { err }) }
  process.on('unhandledRejection', onRejection)
  process.on('uncaughtException', onException)
  tap.teardown(() => {
    process.off('unhandledRejection', onRejection)
    process.off('uncaughtException', onException)
  })
}

/** A full collection; the flag can be set at run time, the function comes from a fresh context. */
export function exposeGc (): () => void {
  setFlagsFromString('--expose-gc')
  return runInNewContext('gc')
}

/**
 * Collects until `collected()` holds, at most `rounds` times. A WeakRef target is kept alive until
 * the current job ends, so each round first yields to the event loop.
 */
export async function collectUntil (gc: () => void, collected: () => boolean, rounds = 20): Promise<boolean> {
  for (let i = 0; i < rounds; i++) {
    await nextTurn()
    gc()
    if (collected()) return true
  }
  return false
}

export interface AbortedRequest {
  /** Status code of the response whose first chunk arrived. */
  statusCode: number
}

/**
 * GETs `path` on a new connection and destroys it as soon as the first body chunk arrives: a client
 * that hangs up mid-response.
 */
export function abortMidStream (port: number, path: string, headers: Record<string, string> = {}): Promise<AbortedRequest> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, agent: false, headers }, (res) => {
      res.once('data', () => {
        req.destroy()
        resolve({ statusCode: res.statusCode ?? 0 })
      })
    })
    // after our own destroy() the promise is settled: a late error changes nothing
    req.on('error', reject)
    req.end()
  })
}

/**
 * GETs `path` on a new connection and destroys it once `hangUp` resolves (typically: the handler
 * is running), before any response arrives. Resolves with `'aborted'` once the socket closed, or
 * with the status code of a response that came first (a 503 while the server closes).
 */
export function abortBeforeResponse (port: number, path: string, hangUp: Promise<unknown>): Promise<'aborted' | number> {
  return new Promise((resolve) => {
    let status: 'aborted' | number = 'aborted'
    const req = request({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      status = res.statusCode ?? 0
      res.resume()
    })
    req.on('error', () => {}) // the hang-up itself, or a refused connection while the server closes
    req.on('close', () => resolve(status))
    req.end()
    hangUp.then(() => req.destroy(), () => req.destroy())
  })
}

/**
 * Sends GETs for `paths` pipelined in one write on a new connection and destroys it once `hangUp`
 * resolves: the later responses are still queued behind the first. Resolves once the socket closed.
 */
export function pipelineThenHangUp (port: number, paths: string[], hangUp: Promise<unknown>): Promise<void> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1', () => {
      socket.write(paths.map((path) => `GET ${path} HTTP/1.1\r\nHost: localhost\r\n\r\n`).join(''))
    })
    socket.on('error', () => {}) // refused while the server closes
    socket.on('close', () => resolve())
    hangUp.then(() => socket.destroy(), () => socket.destroy())
  })
}

/** GETs over a real socket on a new connection; resolves with the body. */
export function getBody (port: number, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    request({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (chunk) => { body += chunk })
      res.on('end', () => resolve(body))
    }).on('error', reject).end()
  })
}

/** Runs `jobs` with at most `limit` in flight. */
export async function inBatches<T> (count: number, limit: number, job: (i: number) => Promise<T>): Promise<T[]> {
  const results: T[] = new Array(count)
  let next = 0
  async function worker (): Promise<void> {
    while (next < count) {
      const i = next++
      results[i] = await job(i)
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, count) }, worker))
  return results
}

/** Number of lines per value of `key(line)`. */
export function countBy (lines: LogLine[], key: (line: LogLine) => unknown): Map<unknown, number> {
  const counts = new Map<unknown, number>()
  for (const line of lines) {
    const value = key(line)
    counts.set(value, (counts.get(value) ?? 0) + 1)
  }
  return counts
}

/** The values that occur more than once. */
export function duplicates (lines: LogLine[], key: (line: LogLine) => unknown): unknown[] {
  return [...countBy(lines, key)].filter(([, n]) => n > 1).map(([value]) => value)
}
