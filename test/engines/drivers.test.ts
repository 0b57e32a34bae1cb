import { test } from 'tap'
import { createWorker, defineTask } from '../../lib/index'
import { assertDrivers } from '../../lib/engines/driver'

// Each engine's driver is an optional peer dependency: a missing one is named with the command
// that installs it. (test/fresh-install.test.ts shows it on a real install without the drivers.)

test('a missing driver is FST_SAC_MISSING_DRIVER naming every missing package and the command', async (t) => {
  const missing = (id: string): string => { throw Object.assign(new Error(`Cannot find module '${id}'`), { code: 'MODULE_NOT_FOUND' }) }
  t.throws(() => { assertDrivers('createWorker()', 'bullmq', ['bullmq', 'ioredis'], missing) }, {
    code: 'FST_SAC_MISSING_DRIVER',
    message: "createWorker(): the 'bullmq' engine needs the package bullmq and ioredis, which is not installed; install it with: npm install bullmq ioredis"
  })
  t.throws(() => { assertDrivers('q', 'bullmq', ['bullmq', 'ioredis'], (id) => id === 'bullmq' ? id : missing(id)) }, {
    message: "q: the 'bullmq' engine needs the package ioredis, which is not installed; install it with: npm install ioredis"
  })
  t.doesNotThrow(() => { assertDrivers('q', 'bullmq', ['bullmq', 'ioredis']) }, 'both are installed here (dev dependencies)')
})

test('createWorker() takes the sqlite and bullmq engines; a memory queue has no worker of its own', async (t) => {
  const tasks = [defineTask('t', () => {})]
  await t.rejects(createWorker({ engine: 'memory', tasks } as never), {
    code: 'FST_SAC_INVALID_OPTION',
    message: "createWorker(): engine should be 'sqlite' or 'bullmq', instead got 'memory'"
  })
  await t.rejects(createWorker({ engine: 'sqlite', tasks, connection: 'redis://x' } as never), {
    code: 'FST_SAC_ENGINE_OPTION',
    message: "createWorker(): connection is an option of the 'bullmq' engine, it should not be given with engine 'sqlite'"
  })
  await t.rejects(createWorker({ tasks, connection: 'redis://x', path: 'x.db' } as never), {
    code: 'FST_SAC_ENGINE_OPTION',
    message: "createWorker(): path is an option of the 'sqlite' engine, it should not be given with engine 'bullmq'"
  })
  await t.rejects(createWorker({ engine: 'sqlite', tasks } as never), {
    code: 'FST_SAC_INVALID_OPTION',
    message: 'createWorker(): path should be the path of a database file (a non-empty string), instead got undefined'
  })
})
