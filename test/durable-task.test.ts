import { test } from 'tap'
import { defineTask } from '../lib/index'
import { isDurableJob, kDurableJob } from '../lib/jobs/types'
import { isDurableTask, taskMap } from '../lib/jobs/tasks'
import { backoffDelay } from '../lib/backoff'

const noop = (): void => {}

test('defineTask() returns a frozen task with its defaults', async (t) => {
  const task = defineTask('sendWelcome', noop)
  t.match(task, { name: 'sendWelcome', handler: noop, attempts: 1, backoff: undefined, timeout: 30000 })
  t.ok(Object.isFrozen(task))
  t.ok(isDurableTask(task))
  const custom = defineTask('sync', noop, { attempts: 3, backoff: { type: 'exponential', delay: 100 }, timeout: 0 })
  t.same([custom.attempts, custom.backoff, custom.timeout], [3, { type: 'exponential', delay: 100 }, 0])
  t.equal(defineTask('fixed', noop, { backoff: 250 }).backoff, 250)
})

test('defineTask() refuses bad input with coded errors that say what was expected', async (t) => {
  const cases: Array<[() => unknown, string, string]> = [
    [() => defineTask('', noop), 'FST_SAC_INVALID_OPTION', "defineTask(): name should be a non-empty string, instead got ''"],
    [() => defineTask(42 as unknown as string, noop), 'FST_SAC_INVALID_OPTION', 'defineTask(): name should be a non-empty string, instead got 42'],
    // a lone surrogate has no encoding in a job id: refused here, not an uncoded URIError at with()
    [() => defineTask('bad\uD800name', noop), 'FST_SAC_INVALID_OPTION', "defineTask(): name should be a well-formed string (no lone UTF-16 surrogate, as a string cut inside an emoji has), instead got 'bad\\ud800name'"],
    [() => defineTask('a', 'x' as never), 'FST_SAC_INVALID_OPTION', "defineTask(\"a\"): handler should be a function, instead got 'x'"],
    [() => defineTask('a', noop, null as never), 'FST_SAC_INVALID_OPTION', 'defineTask("a"): the options should be an object, instead got null'],
    [() => defineTask('a', noop, { retries: 2 } as never), 'FST_SAC_UNKNOWN_OPTION', "defineTask(\"a\"): unknown option 'retries', expected one of attempts, backoff, timeout"],
    [() => defineTask('a', noop, { attempts: 0 }), 'FST_SAC_INVALID_OPTION', 'defineTask("a"): attempts should be a whole number of at least 1, instead got 0'],
    [() => defineTask('a', noop, { attempts: '2' as never }), 'FST_SAC_INVALID_OPTION', "defineTask(\"a\"): attempts should be a whole number of at least 1, instead got '2'"],
    [() => defineTask('a', noop, { timeout: -1 }), 'FST_SAC_INVALID_OPTION', 'defineTask("a"): timeout should be a whole number of milliseconds from 0 to 2147483647, instead got -1'],
    [() => defineTask('a', noop, { backoff: { type: 'linear', delay: 1 } as never }), 'FST_SAC_INVALID_OPTION', "defineTask(\"a\"): backoff should be a whole number of milliseconds from 0 to 2147483647, or { type: 'fixed' | 'exponential', delay }, instead got { type: 'linear', delay: 1 }"],
    [() => defineTask('a', noop, { backoff: { type: 'fixed', delay: 1, jitter: 1 } as never }), 'FST_SAC_INVALID_OPTION', "defineTask(\"a\"): backoff should be a whole number of milliseconds from 0 to 2147483647, or { type: 'fixed' | 'exponential', delay }, instead got { type: 'fixed', delay: 1, jitter: 1 }"],
    [() => defineTask('a', noop, { backoff: 'soon' as never }), 'FST_SAC_INVALID_OPTION', "defineTask(\"a\"): backoff should be a whole number of milliseconds from 0 to 2147483647, or { type: 'fixed' | 'exponential', delay }, instead got 'soon'"]
  ]
  for (const [fn, code, message] of cases) {
    t.throws(fn, { code, message }, message)
  }
})

test('task.with() describes a job: checked data, a unique id without a key, nothing sent', async (t) => {
  const task = defineTask<{ userId: number }>('sendWelcome', noop)
  const job = task.with({ userId: 1 })
  t.ok(isDurableJob(job))
  t.equal(job[kDurableJob], true)
  t.equal(job.task, task)
  t.same(job.data, { userId: 1 })
  t.equal(job.delay, 0)
  t.match(job.jobId, /^sendWelcome~[0-9a-f-]{36}$/)
  t.not(task.with({ userId: 1 }).jobId, job.jobId, 'two jobs without a key are two jobs')
  t.equal(task.with({ userId: 1 }, { delay: 500 }).delay, 500)
  t.notOk(isDurableJob(null))
  t.notOk(isDurableJob(noop))
})

test('job ids from keys are stable and safe for BullMQ: no ":", never all digits, short', async (t) => {
  const task = defineTask('sync:users', noop)
  const byKey = (key: string): string => task.with(null, { key }).jobId
  t.equal(byKey('42'), 'sync%3Ausers~42', 'a numeric key')
  t.equal(byKey('42'), byKey('42'), 'the same key is the same id')
  t.equal(byKey('https://example.com:8080/a?b=c'), 'sync%3Ausers~https%3A%2F%2Fexample.com%3A8080%2Fa%3Fb%3Dc', 'a URL')
  t.not(byKey('a~b'), defineTask('sync:users~a', noop).with(null, { key: 'b' }).jobId, 'the separator cannot be forged')
  const long = byKey('x'.repeat(1000))
  t.match(long, /^sync%3Ausers~sha256-[\w-]{43}$/, 'a long key is hashed')
  t.equal(long, byKey('x'.repeat(1000)))
  t.not(long, byKey('x'.repeat(1001)))
  for (const key of ['0', '123456789', 'a:b:c', ':', '~', 'ü', '%3A']) {
    const id = byKey(key)
    t.notOk(id.includes(':'), `${key}: no colon`)
    t.notOk(/^\d+$/.test(id), `${key}: not all digits`)
  }
  t.not(byKey(':'), byKey('%3A'), 'escaping keeps distinct keys distinct')
})

test('task.with() refuses data that would not survive JSON, naming the path', async (t) => {
  const task = defineTask('t', noop)
  class User { id = 1 }
  const cycle: Record<string, unknown> = { a: 1 }
  cycle.self = cycle
  const sparse = [1, , 3] // eslint-disable-line no-sparse-arrays
  const cases: Array<[unknown, string, string]> = [
    [undefined, 'data', 'undefined'],
    [{ a: undefined }, 'data.a', 'undefined'],
    [{ user: { createdAt: new Date(0) } }, 'data.user.createdAt', '1970-01-01T00:00:00.000Z'],
    [{ list: [1, 2, () => 1] }, 'data.list[2]', '[Function (anonymous)]'],
    [{ big: 1n }, 'data.big', '1n'],
    [{ n: NaN }, 'data.n', 'NaN'],
    [{ n: Infinity }, 'data.n', 'Infinity'],
    [{ m: new Map() }, 'data.m', 'Map(0) {}'],
    [{ s: new Set([1]) }, 'data.s', 'Set(1) { 1 }'],
    [{ u: new User() }, 'data.u', 'User { id: 1 }'],
    [{ 'odd key': Symbol('x') }, 'data["odd key"]', 'Symbol(x)'],
    [cycle, 'data.self', 'a circular reference'],
    [{ sparse }, 'data.sparse[1]', 'an empty array slot'],
    [{ [Symbol('k')]: 1 }, 'data', 'an object with symbol keys'],
    [{ arr: Object.setPrototypeOf([1], class extends Array {}.prototype) }, 'data.arr', '[ 1 ]']
  ]
  for (const [data, path, given] of cases) {
    t.throws(() => task.with(data as never), {
      code: 'FST_SAC_INVALID_JOB_DATA',
      message: `t.with(): ${path} should be a JSON value (a plain object, array, string, finite number, boolean or null), instead got ${given}`
    }, path)
  }
  const shared = { x: 1 }
  const fine = { a: [shared, shared], b: null, c: 'x', d: true, e: -1.5, f: Object.create(null) }
  t.equal(task.with(fine).data, fine, 'repeated (not circular) references and null-prototype objects are fine')
})

test('task.with() refuses bad options', async (t) => {
  const task = defineTask('t', noop)
  t.throws(() => task.with(null, 'k' as never), { code: 'FST_SAC_INVALID_OPTION', message: "t.with(): the options should be an object, instead got 'k'" })
  t.throws(() => task.with(null, { id: 'x' } as never), { code: 'FST_SAC_UNKNOWN_OPTION', message: "t.with(): unknown option 'id', expected one of key, delay" })
  t.throws(() => task.with(null, { key: 42 } as never), { code: 'FST_SAC_INVALID_OPTION', message: 't.with(): key should be a non-empty string, instead got 42' })
  t.throws(() => task.with(null, { key: '' }), { code: 'FST_SAC_INVALID_OPTION', message: "t.with(): key should be a non-empty string, instead got ''" })
  t.throws(() => task.with(null, { key: 'user-\uDC00' }), { code: 'FST_SAC_INVALID_OPTION', message: "t.with(): key should be a well-formed string (no lone UTF-16 surrogate, as a string cut inside an emoji has), instead got 'user-\\udc00'" })
  // a whole emoji (a surrogate pair) is a key like any other
  t.equal(task.with(null, { key: 'user-\u{1F600}' }).jobId, 't~user-%F0%9F%98%80')
  t.throws(() => task.with(null, { delay: 1.5 }), { code: 'FST_SAC_INVALID_OPTION', message: 't.with(): delay should be a whole number of milliseconds from 0 to 2147483647, instead got 1.5' })
})

test('a list of tasks: only defineTask() results, unique names', async (t) => {
  const a = defineTask('a', noop)
  t.same([...taskMap('here', [a]).keys()], ['a'])
  t.throws(() => taskMap('here', []), { code: 'FST_SAC_INVALID_OPTION', message: 'here: tasks should be a non-empty array of tasks made by defineTask(), instead got []' })
  t.throws(() => taskMap('here', a), { code: 'FST_SAC_INVALID_OPTION' })
  t.throws(() => taskMap('here', [a, noop]), { code: 'FST_SAC_INVALID_OPTION', message: 'here: tasks[1] should be a task made by defineTask(), instead got [Function: noop]' })
  // a hole is checked as any task is (forEach would skip it: new Array(1) made a queue of no task)
  t.throws(() => taskMap('here', [a, , a]), { code: 'FST_SAC_INVALID_OPTION', message: 'here: tasks[1] should be a task made by defineTask(), instead got undefined' }) // eslint-disable-line no-sparse-arrays
  t.throws(() => taskMap('here', new Array(1)), { code: 'FST_SAC_INVALID_OPTION', message: 'here: tasks[0] should be a task made by defineTask(), instead got undefined' })
  t.throws(() => taskMap('here', [a, defineTask('a', noop)]), { code: 'FST_SAC_DUPLICATE_TASK', message: "here: task names should be unique, instead got 'a' twice" })
})

test('the retry delay follows BullMQ\'s built-in backoffs', async (t) => {
  t.equal(backoffDelay(undefined, 1), 0)
  t.equal(backoffDelay(300, 2), 300)
  t.equal(backoffDelay({ type: 'fixed', delay: 100 }, 3), 100)
  t.same([1, 2, 3].map((attempt) => backoffDelay({ type: 'exponential', delay: 100 }, attempt)), [100, 200, 400])
})
