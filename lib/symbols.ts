/** Per-reply deferred work, `null` until the first `reply.defer()`. */
export const kWork = Symbol('fastify-send-and-continue.work')
