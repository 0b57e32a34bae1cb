/** Per-reply deferred work, `null` until the first `reply.defer()` (lib/index.ts `ReplyState`). */
export const kWork = Symbol('fastify-send-and-continue.work')
