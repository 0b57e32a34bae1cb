// Porting the PHP pattern "answer, close the connection, keep working":
//
//   <?php
//   ignore_user_abort(true);                 // keep running if the client goes away
//   set_time_limit(30);                      // but not forever
//   register_shutdown_function(function () {
//       if (connection_status() !== CONNECTION_NORMAL) error_log('the client left early');
//   });
//   ob_start();
//   echo json_encode(['ok' => true]);
//   header('Connection: close');
//   header('Content-Length: ' . ob_get_length());
//   ob_end_flush(); flush();                 // the client has the whole answer now
//   send_welcome_email();                    // slow work, after the response
//
// Run: node --import tsx examples/php-port.ts
import Fastify from 'fastify'
import type { FastifyInstance } from 'fastify'
import { request } from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import sendAndContinue from 'fastify-send-and-continue'

async function build (): Promise<FastifyInstance> {
  const app = Fastify()
  // awaited: the plugin is ready, its options checked, before the routes that use it
  await app.register(sendAndContinue, {
    closeConnection: true, // header('Connection: close')
    onClientAbort: 'run', // ignore_user_abort(true); 'skip' is PHP's default of stopping
    timeout: 30_000 // set_time_limit(30), per task; its signal aborts at the limit
  })

  app.post('/signup', (req, reply) => {
    // register_shutdown_function(): runs after the other tasks, whatever happened to the client
    reply.defer(function shutdownFunction ({ connection, outcomes }) {
      // connection_status()
      if (connection !== 'finished') console.log('shutdown function: the client left early')
      else console.log(`shutdown function: connection ${connection}, tasks: ${outcomes?.map((o) => `${o.name} ${o.outcome}`).join(', ')}`)
    }, { always: true })
    // echo + Content-Length + flush: Fastify sets Content-Length for a serialized payload
    return reply.sendAndContinue({ ok: true }, async function sendWelcomeEmail ({ signal }) {
      await sleep(100, undefined, { signal })
      console.log('welcome e-mail sent')
    })
  })
  return app
}

function post (url: string): Promise<{ status: number, headers: Record<string, unknown>, body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST' }, (res) => {
      let body = ''
      res.on('data', (chunk) => { body += chunk })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }))
    })
    req.on('error', reject)
    req.end()
  })
}

async function main (): Promise<void> {
  const app = await build()
  const url = await app.listen({ port: 0, host: '127.0.0.1' })
  const response = await post(`${url}/signup`)
  console.log(`client got ${response.status} ${response.body} with connection: ${response.headers.connection}, content-length: ${response.headers['content-length']}`)
  await app.sendAndContinue.drain()
  await app.close()
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
})
