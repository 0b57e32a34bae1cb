'use strict'

module.exports = require('neostandard')({
  ts: true,
  ignores: ['dist/**', '.tap/**', 'coverage/**', 'bench/results/**']
})
