import { test } from 'tap'
import { execFile } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { dirname, join, posix } from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)
const root = join(__dirname, '..')

/** Scripts npm runs when the package is installed as a dependency (or from git). */
const INSTALL_SCRIPTS = ['preinstall', 'install', 'postinstall', 'prepublish', 'preprepare', 'prepare', 'postprepare']

interface Packed { files: Array<{ path: string }> }

test('the published package: no install-time scripts, the build made before packing', async (t) => {
  const pkg = JSON.parse(await readFile(join(root, 'package.json'), 'utf8'))
  t.same(INSTALL_SCRIPTS.filter((script) => pkg.scripts[script] !== undefined), [], 'nothing runs on the user\'s install')
  t.equal(pkg.scripts.prepack, 'npm run build', 'npm pack and npm publish build dist first')
  t.match(pkg.scripts.pretest, /npm run build/, 'and npm test builds before testing, as CI runs it after npm ci')
})

test('the packed files: dist, the sources its maps point at, nothing else of the repository', async (t) => {
  // --ignore-scripts: the test reads what would be packed, without rebuilding dist under the other test files
  const { stdout } = await run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: root, maxBuffer: 16 * 1024 * 1024 })
  const files = new Set((JSON.parse(stdout) as Packed[])[0].files.map((file) => file.path))
  t.ok(files.has('dist/index.js') && files.has('dist/index.d.ts') && files.has('dist/cli.js'))
  t.same([...files].filter((file) => !/^(dist|lib)\//.test(file)).sort(), ['CHANGELOG.md', 'LICENSE', 'README.md', 'package.json'])
  t.same([...files].filter((file) => /^(test|bench|examples)\//.test(file)), [])

  const maps = [...files].filter((file) => file.endsWith('.map'))
  t.ok(maps.length > 10, `${maps.length} source maps`)
  const unresolved: string[] = []
  for (const map of maps) {
    const { sources } = JSON.parse(await readFile(join(root, map), 'utf8')) as { sources: string[] }
    for (const source of sources) {
      const target = posix.normalize(posix.join(dirname(map), source))
      if (!files.has(target)) unresolved.push(`${map} -> ${target}`)
    }
  }
  t.same(unresolved, [], 'every source a map names is in the package')
})

test('the supported Node range is the one CI tests', async (t) => {
  const pkg = JSON.parse(await readFile(join(root, 'package.json'), 'utf8'))
  t.equal(pkg.engines.node, '>=20.19')
  const ci = await readFile(join(root, '.ci', 'node-majors'), 'utf8')
  t.match(ci, /^MAJORS=\(22 24 26\)$/m, 'CI runs the suite on the supported majors beside the main one (20)')
  const main = Number(process.versions.node.split('.')[0])
  t.ok(main === 20 || ci.includes(String(main)), 'the main run\'s Node is one of them')
  const readme = await readFile(join(root, 'README.md'), 'utf8')
  t.match(readme, /Node\.js 20\.19 or later/)
  t.match(readme, /EBADENGINE/, 'the README says where the warning on Node 20 comes from')
})
