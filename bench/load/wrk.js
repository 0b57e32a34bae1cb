'use strict'

// wrk as a child process (it takes whole seconds), its text output parsed.

const { execFile, spawnSync } = require('node:child_process')
const { promisify } = require('node:util')

const execFileAsync = promisify(execFile)
const UNITS = { us: 0.001, ms: 1, s: 1000, m: 60_000 }

/** wrk's version line, or null when it is not installed. */
function wrkVersion () {
  const result = spawnSync('wrk', ['-v'], { encoding: 'utf8' })
  if (result.error) return null
  const first = `${result.stdout}${result.stderr}`.split('\n')[0]
  return first.replace(/\s*Copyright.*$/, '').trim()
}

function wrkLatency (stdout, percent) {
  const match = stdout.match(new RegExp(`^\\s*${percent}%\\s+([\\d.]+)(us|ms|s|m)\\s*$`, 'm'))
  return match === null ? NaN : Number(match[1]) * UNITS[match[2]]
}

async function runWrk (port, { seconds, connections }) {
  const { stdout } = await execFileAsync('wrk', [
    '-t1', `-c${connections}`, `-d${seconds}s`, '--latency', `http://127.0.0.1:${port}/`
  ])
  const total = stdout.match(/(\d+) requests in ([\d.]+)(us|ms|s|m)/)
  const non2xx = stdout.match(/Non-2xx or 3xx responses: (\d+)/)
  const socketErrors = stdout.match(/Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/)
  const requests = Number(total[1]) - (non2xx === null ? 0 : Number(non2xx[1]))
  return {
    requests,
    rps: requests / (Number(total[2]) * UNITS[total[3]] / 1000),
    latencyP50: wrkLatency(stdout, 50),
    latencyP99: wrkLatency(stdout, 99),
    // read errors are the connections wrk cuts at the end of the run
    errors: (non2xx === null ? 0 : Number(non2xx[1])) +
      (socketErrors === null ? 0 : Number(socketErrors[1]) + Number(socketErrors[3]) + Number(socketErrors[4]))
  }
}

module.exports = { wrkVersion, runWrk }
