'use strict'

// An open-loop client for the fixed-rate phase. Requests leave at an even pace whatever the server
// does, over keep-alive sockets, preferring an idle one. autocannon's `overallRate` is a quota per
// connection and second: every connection fires at the start of each second, which is a burst at
// full saturation rather than a steady half of it.

const net = require('node:net')
const { performance } = require('node:perf_hooks')
const { percentiles } = require('../stats')

const REQUEST = 'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'
const OK = 'HTTP/1.1 2'

function connect (port) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => resolve(socket))
    socket.once('error', reject)
  })
}

function connection (socket, latencies) {
  const state = { socket, sentAt: [], tail: '', received: 0 }
  socket.setNoDelay(true)
  socket.on('data', (chunk) => {
    const now = performance.now()
    const text = state.tail + chunk.toString('latin1')
    let at = text.indexOf(OK)
    while (at !== -1) {
      latencies.push(now - state.sentAt.shift())
      state.received++
      at = text.indexOf(OK, at + OK.length)
    }
    // shorter than the status prefix, so a match is never counted twice
    state.tail = text.slice(-(OK.length - 1))
  })
  socket.on('error', () => {})
  return state
}

/** `rate` requests per second for `seconds`, over `connections` sockets. */
async function runPaced (port, rate, seconds, connections = 50) {
  const latencies = []
  const sockets = await Promise.all(Array.from({ length: connections }, () => connect(port)))
  const pool = sockets.map((socket) => connection(socket, latencies))
  const total = Math.round(rate * seconds)
  const interval = 1000 / rate
  const start = performance.now()
  let sent = 0
  let next = 0

  function pick () {
    for (let i = 0; i < pool.length; i++) {
      const candidate = pool[(next + i) % pool.length]
      if (candidate.sentAt.length === 0) {
        next = (next + i + 1) % pool.length
        return candidate
      }
    }
    // every socket is waiting: pipeline on the next one rather than fall behind the pace
    const busy = pool[next]
    next = (next + 1) % pool.length
    return busy
  }

  await new Promise((resolve) => {
    function pump () {
      const now = performance.now()
      while (sent < total && start + sent * interval <= now) {
        const target = pick()
        target.sentAt.push(performance.now())
        target.socket.write(REQUEST)
        sent++
      }
      if (sent < total) setTimeout(pump, 1)
      else resolve()
    }
    pump()
  })
  const elapsed = (performance.now() - start) / 1000
  const deadline = performance.now() + 2000
  while (pool.some((c) => c.sentAt.length > 0) && performance.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
  for (const socket of sockets) socket.destroy()
  const received = pool.reduce((sum, c) => sum + c.received, 0)
  const latency = percentiles(latencies)
  return {
    requests: received,
    rps: received / elapsed,
    latencyP50: latency.p50,
    latencyP99: latency.p99,
    errors: sent - received
  }
}

module.exports = { runPaced }
