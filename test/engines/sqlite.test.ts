import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { conformance } from './conformance'

conformance({
  engine: 'sqlite',
  async setup (t, { concurrency }) {
    const dir = await mkdtemp(join(tmpdir(), 'sac-sqlite-'))
    t.teardown(() => rm(dir, { recursive: true, force: true }))
    // the app runs its own jobs (work: true, the default)
    return { queue: { engine: 'sqlite', path: join(dir, 'deferred.db'), concurrency } }
  }
})
