'use strict'

// A redis-server of the bench's own for the enqueue phase: in the foreground on a unix socket in
// a temp dir, no persistence (the cost measured is the enqueue, not the disk), `noeviction` as the
// plugin requires. Stopped at the end of the phase.

const { spawn, spawnSync } = require('node:child_process')
const { once } = require('node:events')
const fs = require('node:fs')
const net = require('node:net')
const os = require('node:os')
const path = require('node:path')
const { setTimeout: sleep } = require('node:timers/promises')

/** The `redis-server --version` line, or `null` when it is not installed. */
function redisVersion () {
  const result = spawnSync('redis-server', ['--version'], { encoding: 'utf8' })
  if (result.error !== undefined || result.status !== 0) return null
  return result.stdout.trim()
}

function ping (socketPath) {
  return new Promise((resolve) => {
    const socket = net.connect(socketPath)
    socket.once('error', () => resolve(false))
    socket.once('connect', () => socket.write('PING\r\n'))
    socket.once('data', (data) => {
      socket.destroy()
      resolve(data.toString().startsWith('+PONG'))
    })
  })
}

async function startRedis () {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sac-bench-redis-'))
  const socketPath = path.join(dir, 'redis.sock')
  const child = spawn('redis-server', [
    '--port', '0', '--unixsocket', socketPath, '--unixsocketperm', '700',
    '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--dir', dir,
    '--maxmemory-policy', 'noeviction'
  ], { stdio: ['ignore', 'ignore', 'inherit'] })
  const exited = once(child, 'exit')
  async function stop () {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
    await exited
    fs.rmSync(dir, { recursive: true, force: true })
  }
  for (let i = 0; !(await ping(socketPath)); i++) {
    if (child.exitCode !== null || i === 500) {
      await stop()
      throw new Error(`redis-server did not answer on ${socketPath}`)
    }
    await sleep(10)
  }
  return { socketPath, pid: child.pid, stop }
}

module.exports = { redisVersion, startRedis }
