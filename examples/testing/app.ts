import Fastify from 'fastify'
import type { FastifyServerOptions } from 'fastify'
import sendAndContinue from 'fastify-send-and-continue'

export interface Mailer {
  send (to: string, signal: AbortSignal): Promise<void>
}

/** The application, built by a function so that tests get a fresh one with their own mailer. */
export async function build (mailer: Mailer, options: FastifyServerOptions = {}) {
  const app = Fastify(options)
  // awaited: the plugin is ready, its options checked, before the routes that use it
  await app.register(sendAndContinue)
  app.post<{ Body: { email: string } }>('/signup', (request, reply) => {
    return reply.code(201).sendAndContinue({ ok: true }, async function sendWelcomeEmail ({ signal }) {
      await mailer.send(request.body.email, signal)
    })
  })
  return app
}
