'use strict'

// valgrind for the instruction-count phase: found, or installed from Debian when missing (as
// root), or a reason why not. `control` drives a running callgrind through callgrind_control.

const { execFile, spawnSync } = require('node:child_process')
const { promisify } = require('node:util')

const execFileAsync = promisify(execFile)

function version () {
  const result = spawnSync('valgrind', ['--version'], { encoding: 'utf8' })
  const control = spawnSync('callgrind_control', ['-h'], { encoding: 'utf8' })
  if (result.error || result.status !== 0 || control.error) return null
  return result.stdout.trim()
}

function install (log) {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    return 'valgrind is not installed and this is not root: `apt-get install -y valgrind` as root enables this phase'
  }
  log('valgrind is not installed: apt-get install -y valgrind')
  const options = { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } }
  let result = spawnSync('apt-get', ['install', '-y', 'valgrind'], options)
  if (result.status !== 0) {
    spawnSync('apt-get', ['update'], options)
    result = spawnSync('apt-get', ['install', '-y', 'valgrind'], options)
  }
  if (result.error) return `valgrind is not installed and apt-get is not available (${result.error.code})`
  if (result.status !== 0) return `valgrind is not installed and apt-get failed: ${result.stderr.trim().split('\n').pop()}`
  return null
}

/** `{ version }` when callgrind can run, else `{ missing: reason }`. */
function ensureValgrind (log) {
  const found = version()
  if (found !== null) return { version: found }
  const failure = install(log)
  const installed = failure === null ? version() : null
  if (installed !== null) return { version: installed, installed: true }
  return { missing: failure ?? 'valgrind was installed but does not run' }
}

/** `callgrind_control <flags> <pid>`: `-z` zeroes the counters, `-d` dumps them, `-i on` starts counting. */
async function control (pid, ...flags) {
  await execFileAsync('callgrind_control', [...flags, String(pid)])
}

module.exports = { ensureValgrind, control }
