import { test } from 'tap'
import { execFile } from 'node:child_process'
import { copyFile, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { envWithoutCoverage } from './child-env'

// A user copies examples/durable into an ES module project compiled by a strict NodeNext tsc:
// relative imports need their extension, and register() is awaited before the routes.

const root = join(__dirname, '..')

test('examples/durable compiles under a strict NodeNext tsc', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sac-nodenext-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  await writeFile(join(dir, 'package.json'), JSON.stringify({ name: 'copied-example', private: true, type: 'module' }))
  // copied, so the project's "type": "module" applies to them: ES module resolution, extensions required
  const files = ['app.ts', 'worker.ts', 'tasks.ts']
  for (const file of files) await copyFile(join(root, 'examples', 'durable', file), join(dir, file))
  await symlink(join(root, 'node_modules'), join(dir, 'node_modules'))
  await writeFile(join(dir, 'tsconfig.json'), JSON.stringify({
    compilerOptions: {
      target: 'ES2022',
      module: 'NodeNext',
      moduleResolution: 'NodeNext',
      strict: true,
      noEmit: true,
      skipLibCheck: true,
      types: ['node'],
      // the built package, as installed
      paths: { 'fastify-send-and-continue': [join(root, 'dist', 'index.d.ts')] }
    },
    files
  }))
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc')
  const result = await promisify(execFile)(process.execPath, [tsc, '-p', join(dir, 'tsconfig.json')], { env: envWithoutCoverage() })
    .then(() => ({ code: 0, stdout: '' }), (err: { code: number, stdout: string }) => ({ code: err.code, stdout: err.stdout }))
  t.same(result, { code: 0, stdout: '' }, 'no type error')
})
