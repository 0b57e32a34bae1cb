/** Per-reply deferred work, `null` until the first `reply.defer()`. */
export const kWork = Symbol('fastify-send-and-continue.work')
/** Per-reply: `reply.sendAndContinue()` called `reply.send()`, whose async onSend hooks may still run. */
export const kSendCalled = Symbol('fastify-send-and-continue.send-called')
