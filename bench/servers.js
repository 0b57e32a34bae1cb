'use strict'

// A bench server (bench/server.js) as a child process, spoken to over IPC: `ready` with its
// port, `snapshot` for its counters, `stop`. `wrap` runs it under another program (valgrind):
// `{ execPath, execArgv }` placed before node.

const { fork } = require('node:child_process')
const path = require('node:path')

class Server {
  constructor (variant, { logFile, wrap = null, quiet = false } = {}) {
    this.variant = variant
    this.port = 0
    this.stopping = false
    this.waiting = new Map()
    this.nextId = 0
    const options = { stdio: ['ignore', quiet ? 'ignore' : 'inherit', quiet ? 'ignore' : 'inherit', 'ipc'] }
    if (wrap !== null) {
      options.execPath = wrap.execPath
      options.execArgv = [...wrap.execArgv, process.execPath, ...(wrap.nodeArgs ?? [])]
    }
    this.child = fork(path.join(__dirname, 'server.js'), [variant.name, logFile], options)
    this.pid = this.child.pid
    this.ready = new Promise((resolve, reject) => {
      this.child.on('message', (message) => {
        if (message.type === 'ready') {
          this.port = message.port
          resolve()
        } else if (message.type === 'snapshot') {
          this.waiting.get(message.id)(message)
          this.waiting.delete(message.id)
        }
      })
      this.child.once('exit', (code, signal) => {
        if (this.stopping) return
        reject(new Error(`server ${variant.name} exited early (${code ?? signal})`))
      })
    })
  }

  snapshot (options = {}) {
    const id = this.nextId++
    return new Promise((resolve) => {
      this.waiting.set(id, resolve)
      this.child.send({ type: 'snapshot', id, ...options })
    })
  }

  stop () {
    this.stopping = true
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000)
      this.child.once('exit', () => {
        clearTimeout(timer)
        resolve()
      })
      this.child.send({ type: 'stop' })
    })
  }

  /** Ends the process at once (its pending tasks are of no interest). */
  kill () {
    this.stopping = true
    return new Promise((resolve) => {
      if (this.child.exitCode !== null || this.child.signalCode !== null) return resolve()
      this.child.once('exit', () => resolve())
      this.child.kill('SIGKILL')
    })
  }
}

module.exports = { Server }
