import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, rmSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Test } from 'tap'

export interface RedisServer {
  /** The unix socket, as ioredis's `path` option takes it. */
  readonly path: string
  /** ioredis connection options for the socket. */
  readonly connection: { path: string }
  /** The directory the socket and any persistence files live in. */
  readonly dir: string
  readonly process: ChildProcess
  /** Stops the server (SIGTERM, waits for exit). Safe to call twice. */
  stop (): Promise<void>
}

export interface RedisOptions {
  /** @default 'noeviction' */
  maxmemoryPolicy?: string
  /** Extra `redis-server` arguments. */
  args?: string[]
  /** Reuse a directory (and so a socket path) of a server stopped earlier, e.g. to restart it. */
  dir?: string
}

/**
 * Starts a real `redis-server` in the foreground on a unix socket in a temp dir: no daemon, no
 * persistence, `noeviction` unless told otherwise. Stopped at the test's teardown, also when the
 * test fails.
 */
export async function startRedis (t: Test, options: RedisOptions = {}): Promise<RedisServer> {
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), 'sac-redis-'))
  const path = join(dir, 'redis.sock')
  const child = spawn('redis-server', [
    '--port', '0',
    '--unixsocket', path,
    '--unixsocketperm', '700',
    '--save', '',
    '--appendonly', 'no',
    '--daemonize', 'no',
    '--dir', dir,
    '--maxmemory-policy', options.maxmemoryPolicy ?? 'noeviction',
    ...(options.args ?? [])
  ], { stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout?.on('data', (chunk: Buffer) => { output += chunk.toString() })
  child.stderr?.on('data', (chunk: Buffer) => { output += chunk.toString() })
  const exited = once(child, 'exit')
  let stopped = false
  async function stop (): Promise<void> {
    if (stopped) return
    stopped = true
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
    await exited
  }
  t.teardown(async () => {
    await stop()
    if (options.dir === undefined) rmSync(dir, { recursive: true, force: true })
  })
  await waitForSocket(path, child, () => output)
  return { path, connection: { path }, dir, process: child, stop }
}

async function waitForSocket (path: string, child: ChildProcess, output: () => string): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (child.exitCode !== null) throw new Error(`redis-server exited with ${child.exitCode}: ${output()}`)
    if (await ping(path)) return
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  throw new Error(`redis-server did not answer on ${path}: ${output()}`)
}

function ping (path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(path)
    socket.once('error', () => { resolve(false) })
    socket.once('connect', () => { socket.write('PING\r\n') })
    socket.once('data', (data) => {
      socket.destroy()
      resolve(data.toString().startsWith('+PONG'))
    })
  })
}
