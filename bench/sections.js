'use strict'

// The sections of BENCHMARKS.md that a phase writes on its own (enqueue, metrics, engines): each
// kept between `<!-- name:start -->` and `<!-- name:end -->`, so a full run keeps them as they are
// and the phase's own run rewrites its one in place.

const fs = require('node:fs')

const BEFORE = '## How it is measured'

function markers (name) {
  return { start: `<!-- ${name}:start -->`, end: `<!-- ${name}:end -->` }
}

/** The `name` block of an existing file with `trailing` after it, or `''`. */
function keptBlock (file, name, trailing = '\n') {
  if (!fs.existsSync(file)) return ''
  const { start: START, end: END } = markers(name)
  const text = fs.readFileSync(file, 'utf8')
  const start = text.indexOf(START)
  const end = text.indexOf(END)
  return start === -1 || end < start ? '' : `${text.slice(start, end + END.length)}${trailing}`
}

/** Writes `block` into `file`: in place of the old `name` block, or before `How it is measured`. */
function writeBlock (file, name, block) {
  const { start: START, end: END } = markers(name)
  const text = fs.readFileSync(file, 'utf8')
  const start = text.indexOf(START)
  const end = text.indexOf(END)
  if (start !== -1 && end > start) {
    fs.writeFileSync(file, text.slice(0, start) + block + text.slice(end + END.length + 1))
  } else {
    const at = text.indexOf(BEFORE)
    fs.writeFileSync(file, at === -1 ? `${text}\n${block}` : `${text.slice(0, at)}${block}\n${text.slice(at)}`)
  }
}

module.exports = { markers, keptBlock, writeBlock }
