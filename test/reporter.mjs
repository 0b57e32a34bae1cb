// tap reporter: passes tap's TAP output through unchanged and closes with the
// plain line `N passed, N failed` that CI reads. The counts are the leaf test
// points of every file, read back from the stream by tap's own parser.
import { Transform } from 'node:stream'
import { Parser } from 'tap-parser'

function countLeaves (parser, totals) {
  let childPending = false
  parser.on('child', (child) => {
    childPending = true
    countLeaves(child, totals)
  })
  parser.on('assert', (result) => {
    // the point that closes a subtest summarises it: count its leaves only
    if (childPending) {
      childPending = false
      return
    }
    if (result.skip || result.todo) totals.skipped++
    else if (result.ok) totals.passed++
    else totals.failed++
  })
}

export default class PassedFailedReporter extends Transform {
  constructor () {
    super()
    this.totals = { passed: 0, failed: 0, skipped: 0 }
    this.parser = new Parser()
    countLeaves(this.parser, this.totals)
  }

  _transform (chunk, encoding, callback) {
    this.parser.write(chunk)
    callback(null, chunk)
  }

  _flush (callback) {
    this.parser.end()
    const { passed, failed, skipped } = this.totals
    const skippedPart = skipped > 0 ? `, ${skipped} skipped` : ''
    callback(null, `\n${passed} passed, ${failed} failed${skippedPart}\n`)
  }
}
