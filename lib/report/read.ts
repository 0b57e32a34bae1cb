import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { createGunzip } from 'node:zlib'
import split2 from 'split2'

/** Longest line kept in memory; longer ones are skipped (a deferred-work line is far shorter). */
export const MAX_LINE_LENGTH = 1024 * 1024

// skipOverflow (drop an overlong line, keep going) is missing from @types/split2
const splitOptions: split2.Options = { maxLength: MAX_LINE_LENGTH, skipOverflow: true } as split2.Options

function isGzip (chunk: Buffer): boolean {
  return chunk[0] === 0x1f && (chunk.length === 1 || chunk[1] === 0x8b)
}

// Decompresses when the stream starts with gzip's magic bytes, so `app.log.gz` and
// `zcat | report` both work without a flag. No JSON text starts with 0x1f.
async function * gunzipIfNeeded (source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  const chunks = source[Symbol.asyncIterator]()
  const first = await chunks.next()
  if (first.done === true) return
  async function * all (): AsyncGenerator<Buffer> {
    yield first.value
    for (let next = await chunks.next(); next.done !== true; next = await chunks.next()) yield next.value
  }
  if (!isGzip(first.value)) {
    yield * all()
    return
  }
  const gunzip = createGunzip()
  const feeding = pipeline(Readable.from(all()), gunzip)
  // a corrupt file fails both the feeding and the reading below: report it once, from the reading
  feeding.catch(() => {})
  yield * gunzip
  await feeding
}

/**
 * Streams `input` (plain or gzip NDJSON) line by line into `onLine`, with backpressure, so memory
 * does not grow with the input. `onBytes` sees how many raw bytes were read, for progress.
 */
export async function readLines (
  input: Readable,
  onLine: (line: string) => void,
  onBytes: (bytes: number) => void = () => {}
): Promise<void> {
  await pipeline(
    input,
    async function * countBytes (source: AsyncIterable<Buffer>) {
      for await (const chunk of source) {
        onBytes(chunk.length)
        yield chunk
      }
    },
    gunzipIfNeeded,
    // the mapper consumes each line and returns nothing, so split2 pushes nothing downstream
    split2((line: string) => { onLine(line) }, splitOptions)
  )
}
