'use strict'

// `--before <git ref>`: the plugin as it was built at another commit, measured in the same run
// as the working tree's, for rows that must cost what they cost before a change (the `sac-before`
// row of the instruction counts). The ref's lib/ and build settings are taken with `git archive`
// into bench/results/tmp/before/<commit>/ and compiled there with this checkout's TypeScript
// (JavaScript only; the sources are removed once built); its dependencies resolve from this
// checkout's node_modules.

const { execFileSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const root = path.join(__dirname, '..')

/** Builds `ref` once per commit; returns the directory to `require()` and the commit. */
function buildBefore (ref, log) {
  const commit = execFileSync('git', ['rev-parse', '--verify', `${ref}^{commit}`], { cwd: root, encoding: 'utf8' }).trim()
  const dir = path.join(__dirname, 'results', 'tmp', 'before', commit)
  if (!fs.existsSync(path.join(dir, 'dist', 'index.js'))) {
    fs.rmSync(dir, { recursive: true, force: true })
    fs.mkdirSync(dir, { recursive: true })
    const archive = execFileSync('git', ['archive', '--format=tar', commit, 'lib', 'package.json', 'tsconfig.json', 'tsconfig.build.json'], { cwd: root, maxBuffer: 64 * 1024 * 1024 })
    execFileSync('tar', ['-x', '-C', dir], { input: archive })
    // JavaScript only, and no sources left behind: this checkout's type check (tsconfig.json takes
    // bench/**/*.ts) would otherwise meet a second copy of the plugin's declarations
    execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', path.join(dir, 'tsconfig.build.json'), '--declaration', 'false', '--declarationMap', 'false'], { cwd: dir, stdio: 'inherit' })
    fs.rmSync(path.join(dir, 'lib'), { recursive: true })
    log(`--before ${ref}: built commit ${commit.slice(0, 7)} into ${path.relative(root, dir)}`)
  }
  return { dir, commit }
}

module.exports = { buildBefore }
