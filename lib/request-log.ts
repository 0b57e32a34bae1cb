import type { FastifyBaseLogger } from 'fastify'

// Fastify gives each request a pino child logger bound with the request id. A pending task that
// kept it would keep that child too (about 230 B with pino), long after the request is gone.
// When the request's logger is exactly the child Fastify's default factory made (its parent is
// the route's logger, its only binding the id, no route `logLevel` or `logSerializers`, not
// replaced by a `request.log = request.log.child(...)`), the work keeps the parent and the id
// instead: its lines go through the parent with the id as their first field, which pino writes
// as the same bytes, and `ctx.log` is that child made again when a task asks for it.

/** pino's own symbols, found by their descriptions on the app's logger; `null` for other loggers. */
export interface PinoSymbols {
  readonly chindings: symbol
  readonly serializers: symbol
  readonly levelVal: symbol
}

type Keyed = Record<symbol, unknown>

export function pinoSymbolsOf (log: FastifyBaseLogger): PinoSymbols | null {
  // pino keeps them on the root logger; an app's logger may be a child of it (`loggerInstance`)
  const found = new Map<string | undefined, symbol>()
  for (let object: object | null = log; object !== null; object = Object.getPrototypeOf(object)) {
    for (const symbol of Object.getOwnPropertySymbols(object)) {
      if (!found.has(symbol.description)) found.set(symbol.description, symbol)
    }
  }
  const chindings = found.get('pino.chindings')
  if (chindings === undefined) return null
  const keyed = log as unknown as Keyed
  // options that would place or change the fields of a line written through the parent
  const formatters = keyed[found.get('pino.formatters') as symbol] as { log?: unknown }
  if (keyed[found.get('pino.nestedKey') as symbol] !== null || keyed[found.get('pino.mixin') as symbol] !== undefined || formatters.log !== undefined) return null
  return { chindings, serializers: found.get('pino.serializers') as symbol, levelVal: found.get('pino.levelVal') as symbol }
}

/** The request id binding of a route's default child loggers, learnt from the first one. */
export interface IdBinding {
  /** `,"reqId":` as pino writes it, before the id */
  prefix: string | null
  label: string | null
}

/**
 * Whether `log` is the child Fastify's default factory made for request `id` from `parent`, so
 * that writing through `parent` with `{ [label]: id }` first gives the same line.
 */
export function isDefaultChild (log: FastifyBaseLogger, parent: FastifyBaseLogger, id: unknown, pino: PinoSymbols, binding: IdBinding): boolean {
  if (typeof id !== 'string' || Object.getPrototypeOf(log) !== parent) return false
  const child = log as unknown as Keyed
  const base = parent as unknown as Keyed
  if (child[pino.serializers] !== base[pino.serializers] || Object.hasOwn(child, pino.levelVal)) return false
  const chindings = child[pino.chindings] as string
  const inherited = base[pino.chindings] as string
  const value = JSON.stringify(id)
  if (binding.prefix === null) {
    // the first request of the route: `,"<label>":"<id>"` after the parent's bindings, nothing else
    const match = /^,("(?:[^"\\]|\\.)*"):/.exec(chindings.slice(inherited.length))
    if (match === null || chindings !== inherited + match[0] + value) return false
    binding.prefix = match[0]
    binding.label = JSON.parse(match[1]) as string
    return true
  }
  return chindings === inherited + binding.prefix + value
}
