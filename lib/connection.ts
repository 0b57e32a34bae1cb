import type { FastifyReply } from 'fastify'
import type { ConnectionStatus } from './types'
import type { Work } from './work'

// How the plugin follows a response until it closed, whatever the connection did: which events
// to listen to on each server flavour (HTTP/1.x with pipelining, HTTP/2, inject()), whether the
// whole response reached the client, and whether it has closed already.

/**
 * Hands the request's work over once its response closed. onResponse, the response's 'close',
 * the request's 'close' and a late registration all call it; the first does it, the others find
 * it done.
 */
export function handOver (work: Work, reply: FastifyReply): void {
  if (work.connection !== null) return
  work.responseClosed(connectionOf(reply), reply)
}

// A response can end without 'finish' or 'close': on HTTP/1.x a pipelined response still queued
// behind an earlier one when the client hangs up gets neither (Node 20). The request is then
// destroyed with its socket and emits 'close', so such work follows the request too. Only a
// queued response has no socket yet (Node assigns it when the ones ahead are done); a response
// that has one gets 'close' when the socket dies. Over HTTP/2 the stream's 'close' always comes;
// inject() has no socket and always closes the response.
export function followConnection (work: Work, reply: FastifyReply): void {
  const raw = reply.raw
  const req = reply.request.raw
  const queued = raw.socket === null && req.httpVersionMajor === 1 && !('_lightMyRequest' in raw)
  // one listener for both, kept with `on`: it is idempotent, and both emitters are gone soon
  function closed (this: unknown): void {
    // the request also closes after a normal response; only a dead socket matters there
    if (this === req && !req.socket.destroyed) return
    handOver(work, reply)
  }
  raw.on('close', closed)
  if (queued) req.on('close', closed)
}

// Whether the whole response reached the client. Each server flavour needs its own reading:
// - HTTP/1.x: a response ended but not finished never reached the socket; Node emits 'finish' and
//   reports `writableFinished` even when the socket died before the data was flushed, so a
//   destroyed socket that had not finished writing counts as aborted too;
// - HTTP/2 compatibility API: a reset stream also emits 'finish' and reports `writableFinished`,
//   so an ended response whose stream was reset (rstCode > 0) counts as aborted;
// - inject(): light-my-request's Response has no socket to flush, so ended is as finished as it gets.
export function connectionOf (reply: FastifyReply): ConnectionStatus {
  const raw = reply.raw
  if (reply.request.raw.httpVersionMajor === 2) {
    // rstCode stays undefined until the stream closed, and undefined > 0 is false
    const stream = (raw as unknown as { stream: { rstCode: number } }).stream
    return stream.rstCode > 0 || !raw.writableEnded ? 'aborted' : 'finished'
  }
  if (!raw.writableEnded) return 'aborted'
  if ('_lightMyRequest' in raw) return 'finished'
  // ended but never flushed: a pipelined response queued behind one the client did not wait for
  if (!raw.writableFinished) return 'aborted'
  const socket = reply.request.raw.socket
  return socket.destroyed && !socket.writableFinished ? 'aborted' : 'finished'
}

// True once the response emitted (or is about to emit) 'close', so a listener added now would never run.
export function isClosed (reply: FastifyReply): boolean {
  const raw = reply.raw
  if (raw.destroyed || (raw as { closed?: boolean }).closed === true) return true
  // the HTTP/2 compatibility response reads neither: its stream does
  return reply.request.raw.httpVersionMajor === 2 && (raw as unknown as { stream: { closed: boolean } }).stream.closed
}
