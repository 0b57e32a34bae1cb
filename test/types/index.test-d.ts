import Fastify from 'fastify'
import type { FastifyBaseLogger, FastifyReply } from 'fastify'
import { expectAssignable, expectError, expectNotAssignable, expectType } from 'tsd'
import fastifySendAndContinue, { createWorker, defineTask, isSendAndContinueError } from '../..'
import type {
  DurableJob,
  DurableStats,
  DurableTask,
  DurableTaskContext,
  DurableWorker,
  RedisClusterConnection,
  WorkerStats,
  ConnectionStatus,
  DeferOptions,
  DroppedTaskInfo,
  Outcome,
  RequestSnapshot,
  RouteSendAndContinueOptions,
  SendAndContinueOptions,
  SendAndContinueStats,
  TaskContext,
  TaskOutcome
} from '../..'

const app = Fastify()
app.register(fastifySendAndContinue)
app.register(fastifySendAndContinue, {
  timeout: 30000,
  onClientAbort: 'skip',
  closeConnection: true,
  drainTimeout: 10000,
  global: false,
  concurrency: 100,
  maxQueued: 10000,
  onDropped: (info) => { expectType<DroppedTaskInfo>(info) },
  rejectWhenSaturated: true,
  retryAfter: 5
})
expectError(app.register(fastifySendAndContinue, { onClientAbort: 'ignore' }))
expectError(app.register(fastifySendAndContinue, { timeout: '30s' }))

app.get('/', { config: { sendAndContinue: { timeout: 100, onClientAbort: 'run', closeConnection: false } } }, async (request, reply) => {
  expectType<FastifyReply>(reply.defer((ctx) => {
    expectType<TaskContext>(ctx)
    expectType<AbortSignal>(ctx.signal)
    expectType<FastifyBaseLogger>(ctx.log)
    expectType<ConnectionStatus>(ctx.connection)
    expectType<number>(ctx.statusCode)
    expectType<RequestSnapshot>(ctx.request)
    expectType<string>(ctx.request.id)
    expectType<string | undefined>(ctx.request.routeUrl)
    expectType<string>(ctx.name)
    expectType<number>(ctx.attempt)
    expectType<readonly TaskOutcome[] | undefined>(ctx.outcomes)
  }))
  reply.defer([async () => {}, () => 1], { name: 'n', timeout: 5, always: true })
  expectError(reply.defer('not a task'))
  expectError(reply.defer(() => {}, { onClientAbort: 'run' }))
  // retries
  reply.defer(() => {}, { attempts: 3, backoff: 100 })
  reply.defer(() => {}, { attempts: 3, backoff: { type: 'exponential', delay: 100 } })
  reply.sendAndContinue('x', [() => {}], { attempts: 2, backoff: { type: 'fixed', delay: 5 } })
  expectError(reply.defer(() => {}, { attempts: '3' }))
  expectError(reply.defer(() => {}, { backoff: { type: 'linear', delay: 1 } }))
  expectError(reply.defer(() => {}, { backoff: { type: 'fixed' } }))
  return reply.sendAndContinue({ ok: true }, async ({ signal }) => { signal.throwIfAborted() })
})
app.get('/off', { config: { sendAndContinue: false } }, (request, reply) => reply.sendAndContinue('x'))
expectError(app.get('/bad', { config: { sendAndContinue: { timeout: 'x' } } }, () => 'x'))

expectType<Promise<void>>(app.sendAndContinue.drain())
const stats = app.sendAndContinue.stats()
expectType<SendAndContinueStats>(stats)
expectType<number>(stats.running)
expectType<number>(stats.retrying)
expectType<boolean>(stats.saturated)
expectAssignable<Outcome>('dropped')
expectAssignable<DeferOptions>({ always: true })
expectAssignable<DeferOptions>({ attempts: 2, backoff: { type: 'exponential', delay: 10 } })
expectNotAssignable<DeferOptions>({ backoff: '10ms' })
expectAssignable<SendAndContinueOptions>({})

const err: unknown = new Error('x')
if (isSendAndContinueError(err)) {
  expectType<'FST_SAC_INVALID_OPTION' | 'FST_SAC_UNKNOWN_OPTION' | 'FST_SAC_INVALID_TASK' | 'FST_SAC_NOT_ENABLED' | 'FST_SAC_ALREADY_SENT' | 'FST_SAC_HIJACKED' |
  'FST_SAC_INVALID_JOB_DATA' | 'FST_SAC_DUPLICATE_TASK' | 'FST_SAC_UNKNOWN_TASK' | 'FST_SAC_NO_QUEUE' | 'FST_SAC_REDIS_UNREACHABLE' | 'FST_SAC_REDIS_EVICTION' |
  'FST_SAC_CLUSTER_PREFIX' | 'FST_SAC_ENGINE_OPTION' | 'FST_SAC_MISSING_DRIVER' | 'FST_SAC_MISSING_METRICS_SDK' | 'FST_SAC_SQLITE_PATH' | 'FST_SAC_SQLITE_FOREIGN' | 'FST_SAC_SQLITE_SCHEMA'>(err.code)
}

// tracing
expectAssignable<SendAndContinueOptions>({ tracing: false })
expectNotAssignable<SendAndContinueOptions>({ tracing: 'off' })
// metrics
expectAssignable<SendAndContinueOptions>({ metrics: false })
expectNotAssignable<SendAndContinueOptions>({ metrics: 'off' })
declare const message: import('../..').TaskMessage
expectType<Outcome | null>(message.outcome)
expectType<ConnectionStatus | null>(message.connection)
expectType<number>(message.queuedMs)

// durable work
const sendWelcome = defineTask<{ userId: number }>('sendWelcome', async (data, ctx) => {
  expectType<number>(data.userId)
  expectType<DurableTaskContext>(ctx)
  expectType<AbortSignal>(ctx.signal)
  expectType<string>(ctx.jobId)
  expectType<number>(ctx.attempt)
  expectType<ConnectionStatus | null>(ctx.connection)
}, { attempts: 3, backoff: { type: 'exponential', delay: 100 }, timeout: 1000 })
expectType<DurableTask<{ userId: number }>>(sendWelcome)
expectType<DurableJob<{ userId: number }>>(sendWelcome.with({ userId: 1 }, { key: 'user-1', delay: 10 }))
expectError(sendWelcome.with({ userId: 'x' }))
expectError(defineTask('bad', () => {}, { retries: 2 }))
expectError(defineTask<{ when: Date }>('dated', () => {}))
app.register(fastifySendAndContinue, {
  queue: { connection: 'redis://127.0.0.1:6379', tasks: [sendWelcome], name: 'q', prefix: 'p', enqueueTimeout: 500, onEnqueueError: 'run-local' }
})
app.register(fastifySendAndContinue, { queue: { connection: { host: '127.0.0.1', port: 6379 }, tasks: [sendWelcome] } })
expectError(app.register(fastifySendAndContinue, { queue: { connection: 'redis://x', tasks: [sendWelcome], onEnqueueError: 'retry' } }))
app.get('/durable', (request, reply) => {
  reply.defer(sendWelcome.with({ userId: 1 }))
  reply.defer([sendWelcome.with({ userId: 1 }), ({ signal }) => { expectType<AbortSignal>(signal) }])
  return reply.sendAndContinue('ok', sendWelcome.with({ userId: 2 }))
})
expectType<DurableStats | undefined>(app.sendAndContinue.stats().durable)
createWorker({ connection: 'redis://127.0.0.1:6379', tasks: [sendWelcome], concurrency: 4, drainTimeout: 1000, lockDuration: 5000, stalledInterval: 5000 })
  .then((worker) => {
    expectType<DurableWorker>(worker)
    expectType<Promise<void>>(worker.close())
    expectType<WorkerStats>(worker.stats())
  })

// engines: the options of each, and those of another engine refused by the types too
app.register(fastifySendAndContinue, { queue: { engine: 'memory', tasks: [sendWelcome] } })
app.register(fastifySendAndContinue, {
  queue: { engine: 'sqlite', path: 'var/deferred.db', tasks: [sendWelcome], work: false, concurrency: 4, drainTimeout: 1000, lockDuration: 5000, synchronous: 'full' }
})
app.register(fastifySendAndContinue, { queue: { engine: 'bullmq', connection: 'redis://127.0.0.1:6379', tasks: [sendWelcome] } })
expectError(app.register(fastifySendAndContinue, { queue: { engine: 'memory', tasks: [sendWelcome], path: 'x.db' } }))
expectError(app.register(fastifySendAndContinue, { queue: { engine: 'sqlite', tasks: [sendWelcome] } }))
expectError(app.register(fastifySendAndContinue, { queue: { engine: 'sqlite', path: 'x.db', connection: 'redis://x', tasks: [sendWelcome] } }))
expectError(app.register(fastifySendAndContinue, { queue: { engine: 'sqlite', path: 'x.db', tasks: [sendWelcome], synchronous: 'off' } }))
expectError(app.register(fastifySendAndContinue, { queue: { engine: 'postgres', tasks: [sendWelcome] } }))
createWorker({ engine: 'sqlite', path: 'var/deferred.db', tasks: [sendWelcome], concurrency: 4, synchronous: 'normal' })
  .then((worker) => { expectType<WorkerStats>(worker.stats()) })
expectError(createWorker({ engine: 'sqlite', path: 'x.db', tasks: [sendWelcome], stalledInterval: 100 }))
expectError(createWorker({ engine: 'memory', tasks: [sendWelcome] }))
createWorker({ engine: 'sqlite', path: 'x.db', tasks: [sendWelcome], metrics: false })
expectError(createWorker({ engine: 'sqlite', path: 'x.db', tasks: [sendWelcome], metrics: 'off' }))

// a Redis Cluster: its nodes, ioredis cluster options beside them, each node's options under redisOptions
app.register(fastifySendAndContinue, {
  queue: { connection: { cluster: [{ host: '10.0.0.1', port: 6379 }], redisOptions: { password: 'secret' }, scaleReads: 'master' }, prefix: '{bull}', tasks: [sendWelcome] }
})
createWorker({ connection: { cluster: [{ host: '10.0.0.1', port: 6379 }, { host: '10.0.0.2', port: 6379 }] }, tasks: [sendWelcome] })
expectAssignable<RedisClusterConnection>({ cluster: [{ host: 'a', port: 1 }], natMap: {} })
expectNotAssignable<RedisClusterConnection>({ cluster: [{ host: 'a' }] })
expectNotAssignable<RedisClusterConnection>({ cluster: [{ host: 'a', port: 1 }], redisOptions: { password: 1 } })

// reply.sendAndContinue(payload) is typed like the route's reply.send(payload)
interface Created { Reply: { 201: { id: number } } }
app.post<Created>('/typed', (request, reply) => {
  reply.code(201).sendAndContinue({ id: 1 }, () => {})
  reply.code(201).send({ id: 1 })
  expectError(reply.code(201).sendAndContinue({ id: 'one' }, () => {}))
  expectError(reply.code(201).send({ id: 'one' }))
  expectError(reply.code(201).sendAndContinue({ name: 'x' }))
  expectError(reply.code(201).sendAndContinue())
  expectError(reply.code(201).send())
  expectError(reply.code(201).sendAndContinue({ id: 1 }, 'not a task'))
})
app.post('/untyped', (request, reply) => {
  expectType<FastifyReply>(reply.sendAndContinue({ anything: true }, () => {}, { timeout: 1 }))
  reply.sendAndContinue()
})

// Fastify infers a route's config type from the literal, so an unknown key there passes; a value of
// the wrong type does not, and `satisfies` catches typos in the keys
expectError(app.get('/typo-policy', { config: { sendAndContinue: { onClientAbort: 'ignore' } } }, () => 'x'))
expectError({ timeot: 100 } satisfies RouteSendAndContinueOptions)
app.get('/satisfies', { config: { sendAndContinue: { timeout: 100 } satisfies RouteSendAndContinueOptions } }, () => 'x')
