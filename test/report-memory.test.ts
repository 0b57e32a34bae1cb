import { test } from 'tap'
import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { envWithoutCoverage } from './child-env'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { setImmediate as nextTurn } from 'node:timers/promises'
import { Summary } from '../lib/report/summary'
import type { Report } from '../lib/report/types'
import { syntheticLines, syntheticStream } from './fixtures/report/logs'

const root = join(__dirname, '..')
/** Old-space heap the CLI gets, whatever the size of the log: V8 stops the process past it. */
const HEAP_MB = 16

async function heapAfterGc (): Promise<number> {
  setFlagsFromString('--expose-gc')
  const gc = runInNewContext('gc') as () => void
  for (let i = 0; i < 3; i++) {
    await nextTurn()
    gc()
  }
  return process.memoryUsage().heapUsed
}

test('what the summary keeps does not grow with the number of lines', async (t) => {
  const summary = new Summary()
  const lines = syntheticLines({ tasks: 300_000 })
  let read = 0
  const feed = (tasks: number): void => {
    // three lines per task
    for (let i = 0; i < tasks * 3; i++) summary.add(lines.next().value as string)
    read += tasks
  }
  feed(20_000)
  const early = await heapAfterGc()
  feed(280_000)
  const late = await heapAfterGc()
  t.comment(`live heap after ${read} tasks: ${((late - early) / 1024).toFixed(0)} kB more than after 20000`)
  t.ok(late - early < 1024 * 1024, 'less than 1 MB more for fifteen times the lines')
  t.equal(summary.result().totals.tasks, 300_000)
})

interface Measured { code: number | null, inputMB: number, peakRssMB: number | null, report: Report | null }

/**
 * Pipes `tasks` synthetic tasks, generated on the fly (never on disk), into the built CLI, the bin
 * users run. Not through the TypeScript loader: its compiled-module caches alone kept 10 to 14 MB
 * of the 16 MB heap live and sometimes ran it out, which says nothing about the report.
 */
function runCli (tasks: number): Promise<Measured> {
  // the report alone, without the test runner's coverage hooks
  const env = envWithoutCoverage()
  const child = spawn(process.execPath, [`--max-old-space-size=${HEAP_MB}`, join(root, 'dist', 'cli.js'), 'report', '--json'], {
    cwd: root,
    env,
    stdio: ['pipe', 'pipe', 'inherit']
  })
  // VmHWM is the peak resident set so far: the last reading before the exit is the peak
  let peakKb: number | null = null
  const poll = setInterval(() => {
    try {
      const match = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))
      if (match !== null) peakKb = Math.max(peakKb ?? 0, Number(match[1]))
    } catch {}
  }, 20)
  let bytes = 0
  const input = syntheticStream({ tasks })
  input.on('data', (chunk: string) => { bytes += chunk.length })
  input.pipe(child.stdin)
  let stdout = ''
  child.stdout.on('data', (chunk) => { stdout += chunk })
  return new Promise((resolve) => {
    child.on('close', (code) => {
      clearInterval(poll)
      resolve({
        code,
        inputMB: bytes / 1_048_576,
        peakRssMB: peakKb === null ? null : peakKb / 1024,
        report: code === 0 ? JSON.parse(stdout) : null
      })
    })
  })
}

test(`the CLI reads a log ten times its heap limit of ${HEAP_MB} MB, streaming`, async (t) => {
  const { code, inputMB, peakRssMB, report } = await runCli(300_000)
  t.ok(inputMB > HEAP_MB * 10, `the log is ${inputMB.toFixed(0)} MB`)
  t.equal(code, 0, 'a heap limit smaller than the log: the process would die if it held the log')
  t.equal(report?.totals.tasks, 300_000, 'every line was read')
  t.equal(report?.groups.length, 12)
  if (peakRssMB === null) {
    t.pass('the peak resident set', { skip: 'no /proc here to read it' })
  } else {
    t.comment(`peak resident set: ${peakRssMB.toFixed(1)} MB for ${inputMB.toFixed(0)} MB of log`)
    t.ok(peakRssMB < 160, 'the whole process, Node included, stays under 160 MB')
  }
})
