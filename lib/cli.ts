#!/usr/bin/env node
import { main } from './report/cli'

// `report app.log | head` closes the pipe early: the reader has what it wanted, not an error
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  // any other write error of stdout cannot be caused from a test, and must not pass silently
  /* c8 ignore next */
  if (err.code !== 'EPIPE') throw err
  process.exit()
})

const argv = process.argv.slice(2)
// the worker and status load their engine's driver, which the report (run with a small heap on big logs) does not need
const run = argv[0] === 'worker'
  ? (require('./jobs/cli') as typeof import('./jobs/cli')).runWorker(argv.slice(1), { stdout: process.stdout, stderr: process.stderr, signals: process })
  : argv[0] === 'status'
    ? (require('./jobs/status') as typeof import('./jobs/status')).runStatus(argv.slice(1), { stdout: process.stdout, stderr: process.stderr })
    : main(argv, { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr })
run.then((code) => { process.exitCode = code })
