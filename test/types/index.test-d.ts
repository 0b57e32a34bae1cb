import Fastify from 'fastify'
import type { FastifyBaseLogger, FastifyReply } from 'fastify'
import { expectAssignable, expectError, expectNotAssignable, expectType } from 'tsd'
import fastifySendAndContinue, { isSendAndContinueError } from '../..'
import type {
  ConnectionStatus,
  DeferOptions,
  DroppedTaskInfo,
  Outcome,
  RequestSnapshot,
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
    expectType<readonly TaskOutcome[] | undefined>(ctx.outcomes)
  }))
  reply.defer([async () => {}, () => 1], { name: 'n', timeout: 5, always: true })
  expectError(reply.defer('not a task'))
  expectError(reply.defer(() => {}, { onClientAbort: 'run' }))
  return reply.sendAndContinue({ ok: true }, async ({ signal }) => { signal.throwIfAborted() })
})
app.get('/off', { config: { sendAndContinue: false } }, (request, reply) => reply.sendAndContinue('x'))
expectError(app.get('/bad', { config: { sendAndContinue: { timeout: 'x' } } }, () => 'x'))

expectType<Promise<void>>(app.sendAndContinue.drain())
const stats = app.sendAndContinue.stats()
expectType<SendAndContinueStats>(stats)
expectType<number>(stats.running)
expectType<boolean>(stats.saturated)
expectAssignable<Outcome>('dropped')
expectAssignable<DeferOptions>({ always: true })
expectAssignable<SendAndContinueOptions>({})

const err: unknown = new Error('x')
if (isSendAndContinueError(err)) {
  expectType<'FST_SAC_INVALID_OPTION' | 'FST_SAC_UNKNOWN_OPTION' | 'FST_SAC_INVALID_TASK' | 'FST_SAC_NOT_ENABLED' | 'FST_SAC_ALREADY_SENT' | 'FST_SAC_HIJACKED'>(err.code)
}

// tracing
expectAssignable<SendAndContinueOptions>({ tracing: false })
expectNotAssignable<SendAndContinueOptions>({ tracing: 'off' })
declare const message: import('../..').TaskMessage
expectType<Outcome | null>(message.outcome)
expectType<ConnectionStatus | null>(message.connection)
expectType<number>(message.queuedMs)
