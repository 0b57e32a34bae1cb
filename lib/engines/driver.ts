import { FST_SAC_MISSING_DRIVER } from '../errors'
import type { EngineName } from './types'

// Each engine's driver is an optional peer dependency, installed only by those who use that
// engine: it is looked for when the engine starts, and a missing one is a coded error that says
// what to install, instead of a bare MODULE_NOT_FOUND from deep inside the plugin.

/** The packages of `packages` that do not resolve from here. */
export function missingPackages (packages: readonly string[], resolve: (id: string) => string = require.resolve): string[] {
  return packages.filter((name) => {
    try {
      resolve(name)
      return false
    } catch {
      return true
    }
  })
}

/** Throws `FST_SAC_MISSING_DRIVER` unless every package of `packages` resolves from here. */
export function assertDrivers (where: string, engine: EngineName, packages: readonly string[], resolve: (id: string) => string = require.resolve): void {
  const missing = missingPackages(packages, resolve)
  if (missing.length > 0) {
    throw new FST_SAC_MISSING_DRIVER(where, engine, missing.join(' and '), `npm install ${missing.join(' ')}`)
  }
}

/** What the BullMQ engine needs: BullMQ lists ioredis only as an optional peer, so both. */
export const BULLMQ_DRIVERS = ['bullmq', 'ioredis'] as const
