'use strict'

// `node bench/probes/ioredis-pipeline.js`: what one ioredis `Pipeline` costs to build on a client
// that BullMQ loaded its Lua scripts onto, against a bare client. ioredis's auto-pipelining (the
// `bullmq` engine's web client has `enableAutoPipelining: true`) builds one Pipeline per
// event-loop turn that sends commands, and `multi()` (BullMQ's `addBulk`) one per call; the
// constructor copies every script of `client.scriptsSet` onto the new object. Also times
// `queue.add()` of one small job per turn on a client with and without auto-pipelining.

const { performance } = require('node:perf_hooks')
const Redis = require('ioredis')
const Pipeline = require('ioredis/built/Pipeline').default
const { Queue } = require('bullmq')
const { startRedis } = require('../redis')

function perCall (n, fn) {
  for (let i = 0; i < 2000; i++) fn()
  const started = performance.now()
  for (let i = 0; i < n; i++) fn()
  return (performance.now() - started) * 1000 / n
}

async function addsPerTurn (queue, jobs, perTurn) {
  const cpu = process.cpuUsage()
  for (let done = 0; done < jobs; done += perTurn) {
    const adds = []
    for (let i = 0; i < perTurn; i++) adds.push(queue.add('bench-job', { n: i }, { attempts: 1, removeOnComplete: { age: 3600, count: 10000 }, removeOnFail: { age: 604800, count: 100000 } }))
    await Promise.all(adds)
    await new Promise(setImmediate)
  }
  const used = process.cpuUsage(cpu)
  return (used.user + used.system) / jobs
}

async function main () {
  const server = await startRedis()
  try {
    const bare = new Redis({ path: server.socketPath })
    const auto = new Redis({ path: server.socketPath, enableAutoPipelining: true })
    const plain = new Redis({ path: server.socketPath })
    const autoQueue = new Queue('probe-auto', { connection: auto })
    const plainQueue = new Queue('probe-plain', { connection: plain })
    await autoQueue.add('warm', {})
    await plainQueue.add('warm', {})
    console.log(`scripts on a BullMQ client: ${Object.keys(auto.scriptsSet).length}`)
    console.log(`new Pipeline(bare client): ${perCall(20_000, () => new Pipeline(bare)).toFixed(2)} µs`)
    console.log(`new Pipeline(BullMQ client): ${perCall(20_000, () => new Pipeline(auto)).toFixed(2)} µs`)
    for (const perTurn of [1, 4, 16]) {
      for (let round = 0; round < 2; round++) {
        const a = await addsPerTurn(autoQueue, 8000, perTurn)
        const p = await addsPerTurn(plainQueue, 8000, perTurn)
        console.log(`queue.add(), ${perTurn} per turn, round ${round + 1}: this process's CPU per job ${a.toFixed(1)} µs with auto-pipelining, ${p.toFixed(1)} µs without (${(a / p).toFixed(2)}x)`)
      }
    }
    await autoQueue.close()
    await plainQueue.close()
    for (const client of [bare, auto, plain]) client.disconnect()
  } finally {
    await server.stop()
  }
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
