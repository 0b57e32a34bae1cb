import { describe, FST_SAC_INVALID_JOB_DATA } from '../errors'

// A job's data crosses Redis as JSON: anything JSON.stringify would change or drop (a Date becomes
// a string, undefined disappears, a Map becomes {}) would reach the worker as something else, so
// it is refused where the job is described, with the path of the offending value.

const identifier = /^[A-Za-z_$][\w$]*$/

function childPath (path: string, key: string): string {
  return identifier.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`
}

function isPlainObject (value: object): boolean {
  const proto = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

/** Throws `FST_SAC_INVALID_JOB_DATA` naming the first value under `path` that is not JSON-safe. */
export function assertJsonSafe (where: string, value: unknown, path = 'data', ancestors: object[] = []): void {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return
    case 'number':
      if (Number.isFinite(value)) return
      break
    case 'object': {
      if (value === null) return
      if (ancestors.includes(value)) {
        throw new FST_SAC_INVALID_JOB_DATA(where, path, 'a circular reference')
      }
      if (Array.isArray(value)) {
        if (Object.getPrototypeOf(value) !== Array.prototype) break
        ancestors.push(value)
        for (let i = 0; i < value.length; i++) {
          // a hole reads as undefined and would come back as null
          if (!(i in value)) throw new FST_SAC_INVALID_JOB_DATA(where, `${path}[${i}]`, 'an empty array slot')
          assertJsonSafe(where, value[i], `${path}[${i}]`, ancestors)
        }
        ancestors.pop()
        return
      }
      if (!isPlainObject(value)) break
      if (Object.getOwnPropertySymbols(value).length > 0) {
        throw new FST_SAC_INVALID_JOB_DATA(where, path, 'an object with symbol keys')
      }
      ancestors.push(value)
      for (const [key, child] of Object.entries(value)) {
        assertJsonSafe(where, child, childPath(path, key), ancestors)
      }
      ancestors.pop()
      return
    }
  }
  throw new FST_SAC_INVALID_JOB_DATA(where, path, describe(value))
}
