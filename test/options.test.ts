import { test } from 'tap'
import Fastify from 'fastify'
import sendAndContinue, { defineTask, isSendAndContinueError } from '../lib/index'
import { build } from './helpers'

async function registerWith (options: unknown): Promise<unknown> {
  const app = Fastify()
  try {
    await app.register(sendAndContinue, options as never)
    await app.ready()
    return null
  } catch (err) {
    return err
  } finally {
    await app.close()
  }
}

const invalidPluginOptions: Array<[string, unknown, string]> = [
  ['timeout', 'abc', "fastify-send-and-continue: timeout should be a whole number of milliseconds from 0 to 2147483647, instead got 'abc'"],
  ['timeout', -1, 'timeout should be a whole number of milliseconds from 0 to 2147483647, instead got -1'],
  ['timeout', 1.5, 'instead got 1.5'],
  ['timeout', 2147483648, 'instead got 2147483648'],
  ['timeout', NaN, 'instead got NaN'],
  ['timeout', null, 'instead got null'],
  ['drainTimeout', '10s', "drainTimeout should be a whole number of milliseconds from 0 to 2147483647, instead got '10s'"],
  ['onClientAbort', 'ignore', "onClientAbort should be 'run' or 'skip', instead got 'ignore'"],
  ['closeConnection', 'yes', "closeConnection should be a boolean, instead got 'yes'"],
  ['global', 1, 'global should be a boolean, instead got 1'],
  ['concurrency', 0, 'concurrency should be a whole number of at least 1, or Infinity, instead got 0'],
  ['concurrency', 2.5, 'instead got 2.5'],
  ['maxQueued', -1, 'maxQueued should be a whole number of at least 0, or Infinity, instead got -1'],
  ['maxQueued', '10', "instead got '10'"],
  ['onDropped', 'log', "onDropped should be a function, instead got 'log'"],
  ['rejectWhenSaturated', 'true', "rejectWhenSaturated should be a boolean, instead got 'true'"],
  ['retryAfter', 0, 'retryAfter should be a whole number of seconds from 1 to 2147483647, instead got 0'],
  ['tracing', 'off', "tracing should be a boolean, instead got 'off'"],
  ['metrics', 'on', "fastify-send-and-continue: metrics should be a boolean, instead got 'on'"],
  ['metrics', 0, 'metrics should be a boolean, instead got 0']
]

for (const [name, value, message] of invalidPluginOptions) {
  test(`plugin option ${name}: ${String(value)} is refused`, async (t) => {
    const err = await registerWith({ [name]: value }) as Error & { code: string }
    t.equal(err.code, 'FST_SAC_INVALID_OPTION')
    t.ok(err instanceof TypeError)
    t.ok(isSendAndContinueError(err))
    t.match(err.message, message)
  })
}

test('an unknown plugin option is refused, naming the known ones', async (t) => {
  const err = await registerWith({ timout: 10 }) as Error & { code: string }
  t.equal(err.code, 'FST_SAC_UNKNOWN_OPTION')
  t.match(err.message, "fastify-send-and-continue: unknown option 'timout', expected one of timeout, onClientAbort")
})

test('options that are not an object are refused', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  // Fastify itself refuses non-object register options, so call the plugin directly
  await t.rejects((sendAndContinue as unknown as (a: unknown, b: unknown) => Promise<void>)(app, [1]), {
    code: 'FST_SAC_INVALID_OPTION',
    message: 'fastify-send-and-continue: the options should be an object, instead got [ 1 ]'
  })
})

test('valid options and Fastify\'s own register options are accepted; undefined means the default', async (t) => {
  t.equal(await registerWith({
    timeout: 0,
    onClientAbort: 'skip',
    closeConnection: true,
    drainTimeout: 0,
    global: false,
    concurrency: Infinity,
    maxQueued: Infinity,
    onDropped: () => {},
    rejectWhenSaturated: true,
    retryAfter: 30,
    prefix: '/x',
    logLevel: 'info'
  }), null)
  t.equal(await registerWith({ timeout: undefined }), null)
  t.equal(await registerWith({ maxQueued: 0, concurrency: 1 }), null)
})

test('invalid route options are refused when the route is declared', async (t) => {
  const { app } = await build(t)
  t.throws(() => app.get('/a', { config: { sendAndContinue: { timeout: 'soon' } as never } }, () => 'x'), {
    code: 'FST_SAC_INVALID_OPTION',
    message: "route GET /a config.sendAndContinue: timeout should be a whole number of milliseconds from 0 to 2147483647, instead got 'soon'"
  })
  t.throws(() => app.get('/b', { config: { sendAndContinue: { onClientAbort: 'never' } as never } }, () => 'x'), {
    message: "route GET /b config.sendAndContinue: onClientAbort should be 'run' or 'skip', instead got 'never'"
  })
  t.throws(() => app.get('/c', { config: { sendAndContinue: 'on' as never } }, () => 'x'), {
    code: 'FST_SAC_INVALID_OPTION',
    message: "route GET /c config.sendAndContinue: the value should be false, true or an object, instead got 'on'"
  })
  t.throws(() => app.get('/d', { config: { sendAndContinue: { drainTimeout: 5 } as never } }, () => 'x'), {
    code: 'FST_SAC_UNKNOWN_OPTION',
    message: "route GET /d config.sendAndContinue: unknown option 'drainTimeout', expected one of timeout, onClientAbort, closeConnection, rejectWhenSaturated, retryAfter"
  })
  t.throws(() => app.route({ method: ['GET', 'POST'], url: '/e', config: { sendAndContinue: { retryAfter: -2 } }, handler: () => 'x' }), {
    message: 'route GET,POST /e config.sendAndContinue: retryAfter should be a whole number of seconds from 1 to 2147483647, instead got -2'
  })
})

const invalidTasks: Array<[string, unknown, string]> = [
  ['a string', 'task', "'task'"],
  ['null', null, 'null'],
  ['an object', { run () {} }, '{ run: [Function: run] }'],
  ['an empty array', [], '[]'],
  ['an array with a non-function', [() => {}, 42], '[ [Function (anonymous)], 42 ]'],
  // holes are not tasks (Array.prototype.every skips them: the check reads every index)
  ['an array with a hole', [() => {}, , () => {}], '[ [Function (anonymous)], <1 empty item>, [Function (anonymous)] ]'], // eslint-disable-line no-sparse-arrays
  ['an array of holes only', new Array(2), '[ <2 empty items> ]']
]

test('a durable job beside a hole is refused with the call: the job is not enqueued', async (t) => {
  const job = defineTask('holeJob', () => {})
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(sendAndContinue, { queue: { engine: 'memory', tasks: [job] } })
  const errors: Array<{ code: string }> = []
  app.get('/', (req, reply) => {
    try { reply.sendAndContinue('ok', [job.with({}), , () => {}] as never) } catch (err) { errors.push(err as never) } // eslint-disable-line no-sparse-arrays
    return 'fallback'
  })
  t.equal((await app.inject('/')).body, 'fallback')
  t.same(errors.map((e) => e.code), ['FST_SAC_INVALID_TASK'])
  await app.sendAndContinue.drain()
  t.match(app.sendAndContinue.stats(), { completed: 0, failed: 0, durable: { enqueued: 0 } })
})

for (const [label, task, shown] of invalidTasks) {
  test(`a task that is ${label} is refused by defer and sendAndContinue, before anything is sent`, async (t) => {
    const { app, logs } = await build(t)
    const errors: Array<{ code: string, message: string }> = []
    app.get('/defer', (req, reply) => {
      try { reply.defer(task as never) } catch (err) { errors.push(err as never) }
      return 'ok'
    })
    app.get('/send', (req, reply) => {
      try { reply.sendAndContinue('ok', task as never) } catch (err) { errors.push(err as never) }
      t.equal(reply.sent, false, 'nothing was sent')
      return 'fallback'
    })
    await app.inject('/defer')
    t.equal((await app.inject('/send')).body, 'fallback')
    t.same(errors.map((e) => e.code), ['FST_SAC_INVALID_TASK', 'FST_SAC_INVALID_TASK'])
    t.equal(errors[0].message, `reply.defer(): task should be a function, a durable job from task.with() or a non-empty array of them, instead got ${shown}`)
    t.equal(errors[1].message, `reply.sendAndContinue(): task should be a function, a durable job from task.with() or a non-empty array of them, instead got ${shown}`)
    t.equal(logs.closes.length, 0)
  })
}

const invalidCallOptions: Array<[unknown, string, string]> = [
  [{ name: '' }, 'FST_SAC_INVALID_OPTION', "name should be a non-empty string, instead got ''"],
  [{ name: 7 }, 'FST_SAC_INVALID_OPTION', 'name should be a non-empty string, instead got 7'],
  [{ timeout: -5 }, 'FST_SAC_INVALID_OPTION', 'timeout should be a whole number of milliseconds from 0 to 2147483647, instead got -5'],
  [{ always: 'yes' }, 'FST_SAC_INVALID_OPTION', "always should be a boolean, instead got 'yes'"],
  [{ onClientAbort: 'skip' }, 'FST_SAC_UNKNOWN_OPTION', "unknown option 'onClientAbort', expected one of name, timeout, always, attempts, backoff"],
  ['fast', 'FST_SAC_INVALID_OPTION', "the options should be an object, instead got 'fast'"]
]

for (const [options, code, message] of invalidCallOptions) {
  test(`call options ${JSON.stringify(options)} are refused`, async (t) => {
    const { app } = await build(t)
    app.get('/defer', (req, reply) => { reply.defer(() => {}, options as never); return 'x' })
    app.get('/send', (req, reply) => reply.sendAndContinue('x', () => {}, options as never))
    app.get('/no-task', (req, reply) => reply.sendAndContinue('x', undefined, options as never))
    for (const [url, where] of [['/defer', 'reply.defer()'], ['/send', 'reply.sendAndContinue()'], ['/no-task', 'reply.sendAndContinue()']]) {
      const response = await app.inject(url)
      t.equal(response.statusCode, 500)
      t.same(response.json(), {
        statusCode: 500,
        code,
        error: 'Internal Server Error',
        message: `${where}: ${message}`
      })
    }
  })
}

test('isSendAndContinueError tells this plugin\'s errors apart', async (t) => {
  t.equal(isSendAndContinueError(new Error('x')), false)
  t.equal(isSendAndContinueError(Object.assign(new Error('x'), { code: 'FST_ERR_OTHER' })), false)
  t.equal(isSendAndContinueError({ code: 'FST_SAC_INVALID_TASK' }), false, 'not an Error')
  t.equal(isSendAndContinueError(null), false)
})
