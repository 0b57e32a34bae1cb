'use strict'

// autocannon in this process: for `seconds`, or for a fixed `amount` of requests. GET / by
// default; `post` sends that body as JSON with POST instead.

const autocannon = require('autocannon')
const { percentiles } = require('../stats')

function runAutocannon (port, { seconds, amount, connections, post }) {
  return new Promise((resolve, reject) => {
    // autocannon's own histogram keeps whole milliseconds; the raw times keep the fraction
    const latencies = []
    const options = { url: `http://127.0.0.1:${port}/`, connections }
    if (post !== undefined) {
      options.method = 'POST'
      options.headers = { 'content-type': 'application/json' }
      options.body = JSON.stringify(post)
    }
    if (amount === undefined) options.duration = seconds
    else options.amount = amount
    const instance = autocannon(options, (err, result) => {
      if (err) return reject(err)
      const latency = percentiles(latencies)
      resolve({
        requests: result['2xx'],
        rps: result['2xx'] / result.duration,
        latencyP50: latency.p50,
        latencyP99: latency.p99,
        errors: result.errors + result.timeouts + result.non2xx
      })
    })
    instance.on('response', (client, statusCode, bytes, responseTime) => {
      latencies.push(responseTime)
    })
  })
}

module.exports = { runAutocannon }
