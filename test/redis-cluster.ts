import { execFile, spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import type { Test } from 'tap'

const run = promisify(execFile)

export interface RedisCluster {
  /** The masters, as the `cluster` connection option takes them. */
  readonly nodes: Array<{ host: string, port: number }>
  /** The `connection` option for the cluster. */
  readonly connection: { cluster: Array<{ host: string, port: number }> }
  readonly processes: ChildProcess[]
  /** `redis-cli -p <port> ...args` on a node; resolves to its output. */
  cli (port: number, ...args: string[]): Promise<string>
  /** The node (and its process) that holds `key`'s hash slot. */
  nodeOf (key: string): Promise<{ port: number, process: ChildProcess }>
  /** Stops every node (SIGTERM, waits for exit). Safe to call twice. */
  stop (): Promise<void>
}

function freePort (): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo
      server.close(() => { resolve(port) })
    })
  })
}

/**
 * Starts a real Redis Cluster of three masters (no replicas) on free loopback ports, in the
 * foreground, without persistence, `noeviction`; each node's cluster bus gets its own free port
 * (`--cluster-port`) rather than port + 10000, which may be taken. Resolves once every node
 * reports `cluster_state:ok`; stopped at the test's teardown, also when the test fails.
 */
export async function startRedisCluster (t: Test, options: { maxmemoryPolicy?: string } = {}): Promise<RedisCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'sac-redis-cluster-'))
  const ports: number[] = []
  const buses: number[] = []
  for (let i = 0; i < 3; i++) {
    ports.push(await freePort())
    buses.push(await freePort())
  }
  const processes = ports.map((port, i) => spawn('redis-server', [
    '--port', String(port),
    '--cluster-port', String(buses[i]),
    '--bind', '127.0.0.1',
    '--cluster-enabled', 'yes',
    '--cluster-config-file', join(dir, `nodes-${port}.conf`),
    '--cluster-node-timeout', '2000',
    '--save', '',
    '--appendonly', 'no',
    '--daemonize', 'no',
    '--dir', dir,
    '--maxmemory-policy', options.maxmemoryPolicy ?? 'noeviction'
  ], { stdio: ['ignore', 'pipe', 'pipe'] }))
  let output = ''
  for (const child of processes) {
    child.stdout?.on('data', (chunk: Buffer) => { output += chunk.toString() })
    child.stderr?.on('data', (chunk: Buffer) => { output += chunk.toString() })
  }
  const exits = processes.map((child) => once(child, 'exit'))
  let stopped = false
  async function stop (): Promise<void> {
    if (stopped) return
    stopped = true
    for (const child of processes) {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
    }
    await Promise.all(exits)
  }
  t.teardown(async () => {
    await stop()
    rmSync(dir, { recursive: true, force: true })
  })

  const cli = (port: number, ...args: string[]): Promise<string> =>
    run('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args]).then(({ stdout }) => stdout)
  async function until (what: string, check: () => Promise<boolean>): Promise<void> {
    for (let i = 0; i < 300; i++) {
      const dead = processes.find((child) => child.exitCode !== null)
      if (dead !== undefined) throw new Error(`redis-server exited with ${dead.exitCode}: ${output}`)
      if (await check().catch(() => false)) return
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    throw new Error(`Redis Cluster: ${what} did not happen: ${output}`)
  }
  await until('every node answers', async () => (await Promise.all(ports.map((port) => cli(port, 'ping')))).every((reply) => reply.trim() === 'PONG'))
  await run('redis-cli', ['--cluster', 'create', ...ports.map((port) => `127.0.0.1:${port}`), '--cluster-replicas', '0', '--cluster-yes'])
  await until('cluster_state:ok on every node', async () =>
    (await Promise.all(ports.map((port) => cli(port, 'cluster', 'info')))).every((info) => info.includes('cluster_state:ok')))
  async function nodeOf (key: string): Promise<{ port: number, process: ChildProcess }> {
    const slot = Number(await cli(ports[0], 'cluster', 'keyslot', key))
    // CLUSTER NODES: `<id> <ip:port@bus> <flags> <master> <ping> <pong> <epoch> <state> <slot ranges...>`
    for (const line of (await cli(ports[0], 'cluster', 'nodes')).trim().split('\n')) {
      const fields = line.split(' ')
      const holds = fields.slice(8).some((range) => {
        const [first, last = first] = range.split('-').map(Number)
        return slot >= first && slot <= last
      })
      if (holds) {
        const port = Number(/:(\d+)@/.exec(fields[1])?.[1])
        return { port, process: processes[ports.indexOf(port)] }
      }
    }
    throw new Error(`no node holds slot ${slot} of ${key}`)
  }
  const nodes = ports.map((port) => ({ host: '127.0.0.1', port }))
  return { nodes, connection: { cluster: nodes }, processes, cli, nodeOf, stop }
}
