// tap reporter: passes tap's TAP output through unchanged and closes with the plain line
// `N passed, N failed` that CI reads. The counts are tap's own: its closing comment
// `# { total: 8, pass: 7, fail: 1 }`. Should a run end without that comment (a crash), the
// leaf test points of every file, read back by tap's own parser, stand in for it.
import { Transform } from 'node:stream'
import { Parser } from 'tap-parser'

const summaryLine = /^# \{ (total: \d+.*) \}$/m

function countLeaves (parser, totals) {
  let childPending = false
  parser.on('child', (child) => {
    childPending = true
    countLeaves(child, totals)
  })
  parser.on('assert', (result) => {
    // the point that closes a subtest summarises it: its leaves are counted already
    if (childPending) {
      childPending = false
      return
    }
    if (result.skip || result.todo) totals.skip++
    else if (result.ok) totals.pass++
    else totals.fail++
  })
}

export default class PassedFailedReporter extends Transform {
  constructor () {
    super()
    this.leaves = { pass: 0, fail: 0, skip: 0 }
    this.summary = null
    this.parser = new Parser()
    countLeaves(this.parser, this.leaves)
    this.parser.on('comment', (comment) => {
      const match = summaryLine.exec(comment)
      if (match) {
        this.summary = Object.fromEntries(match[1].split(', ').map((pair) => {
          const [key, value] = pair.split(': ')
          return [key, Number(value)]
        }))
      }
    })
  }

  _transform (chunk, encoding, callback) {
    this.parser.write(chunk)
    callback(null, chunk)
  }

  _flush (callback) {
    this.parser.end()
    const counts = this.summary ?? this.leaves
    const passed = counts.pass ?? 0
    const failed = counts.fail ?? 0
    const skipped = (counts.skip ?? 0) + (counts.todo ?? 0)
    const skippedPart = skipped > 0 ? `, ${skipped} skipped` : ''
    callback(null, `\n${passed} passed, ${failed} failed${skippedPart}\n`)
  }
}
