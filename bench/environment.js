'use strict'

// What a run was measured on: machine, versions, commit.

const { spawnSync } = require('node:child_process')
const os = require('node:os')
const path = require('node:path')

const root = path.join(__dirname, '..')

function git (...args) {
  const result = spawnSync('git', args, { cwd: root, encoding: 'utf8' })
  return result.status === 0 ? result.stdout.trim() : null
}

function versionOf (name) {
  return require(`${name}/package.json`).version
}

function environment ({ wrk, valgrind }) {
  const cpus = os.cpus()
  return {
    cpu: cpus[0]?.model ?? 'unknown',
    cores: cpus.length,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    fastify: versionOf('fastify'),
    pino: versionOf('pino'),
    autocannon: versionOf('autocannon'),
    wrk,
    valgrind,
    plugin: require('../package.json').version,
    commit: git('rev-parse', '--short', 'HEAD'),
    libChanged: (git('status', '--porcelain', '--', 'lib') ?? '') !== ''
  }
}

module.exports = { environment }
