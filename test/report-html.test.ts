import { test } from 'tap'
import { execFile } from 'node:child_process'
import { appendFile, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { promisify } from 'node:util'
import { Readable, Writable } from 'node:stream'
import { main } from '../lib/report/cli'
import { renderHtml } from '../lib/report/html'
import { OUTCOMES } from '../lib/report/types'
import type { Report } from '../lib/report/types'
import { writeAppLog } from './fixtures/report/logs'

const run = promisify(execFile)

class Sink extends Writable {
  text = ''
  override _write (chunk: Buffer, _encoding: string, done: () => void): void {
    this.text += chunk.toString()
    done()
  }
}

async function cli (argv: string[]): Promise<string> {
  const stdout = new Sink()
  const code = await main(argv, { stdin: Readable.from([]), stdout, stderr: new Sink() })
  if (code !== 0) throw new Error(`report exited with ${code}`)
  return stdout.text
}

/** The page as headless Chromium leaves it once its script ran. */
async function renderInChromium (file: string, profile: string): Promise<string> {
  const { stdout } = await run('chromium', [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
    '--disable-sync', '--no-first-run', `--user-data-dir=${profile}`, '--dump-dom', pathToFileURL(file).href
  ], { maxBuffer: 64 * 1024 * 1024, timeout: 60_000 })
  return stdout
}

function decode (text: string): string {
  return text.replace(/&quot;/g, '"').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&#39;/g, "'").replace(/&amp;/g, '&')
}

/** `data-*` attributes of every element whose opening tag has `marker`, in document order. */
function elements (html: string, marker: string): Array<Record<string, string>> {
  const found: Array<Record<string, string>> = []
  for (const tag of html.match(/<[a-z0-9]+\s[^>]*>/g) ?? []) {
    if (!tag.includes(marker)) continue
    const attributes: Record<string, string> = {}
    for (const [, name, value] of tag.matchAll(/(data-[a-z-]+)="([^"]*)"/g)) attributes[name] = decode(value)
    found.push(attributes)
  }
  return found
}

const numberOrNull = (value: string): number | null => value === 'null' ? null : Number(value)

test('the HTML report renders in headless Chromium with the numbers of --json', async (t) => {
  const which = await run('sh', ['-c', 'command -v chromium']).catch(() => null)
  if (which === null) {
    t.fail('chromium is not installed: apt-get install -y chromium (.ci/run does it)')
    return
  }
  const dir = await mkdtemp(join(tmpdir(), 'sac-html-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const log = join(dir, 'app.log')
  await writeAppLog(log)
  // markup in names and messages must come out as text
  await appendFile(log, JSON.stringify({
    level: 50,
    time: Date.now(),
    reqId: '"><b>id</b>',
    deferred: { task: '<img src=x onerror="document.title=1">', outcome: 'failed', connection: 'finished', route: '</script><script>document.title=2</script>', statusCode: 200, durationMs: 4321, queuedMs: 0 },
    err: { type: 'Error', message: '<b>bold</b> & "quoted"' },
    msg: 'deferred task failed'
  }) + '\n')

  const page = join(dir, 'report.html')
  const report = JSON.parse(await cli(['report', '--json', log])) as Report
  await cli(['report', '--html', page, log])
  const dom = await renderInChromium(page, join(dir, 'profile'))

  t.match(dom, /<body[^>]*data-rendered="true"/, 'the page\'s script ran to the end')
  t.notMatch(dom, /<img|<b>|document\.title=\d<\/script>/, 'no markup from the log was interpreted')
  t.match(dom, /<title>Deferred work report<\/title>/, 'nothing in the log changed the title')

  const totals = Object.fromEntries(elements(dom, 'data-total').map((card) => [card['data-total'], card]))
  t.equal(Object.keys(totals).length, 5)
  const bar = elements(dom, 'data-scope="totals"')
  t.same(bar.map((segment) => [segment['data-outcome'], Number(segment['data-count'])]),
    OUTCOMES.filter((outcome) => report.totals.outcomes[outcome] > 0).map((outcome) => [outcome, report.totals.outcomes[outcome]]))

  const routes = elements(dom, 'data-responses')
  t.same(routes.map((row) => [row['data-route'], Number(row['data-responses']), Number(row['data-aborted'])]),
    report.routes.map((route) => [route.route, route.responses, route.aborted]))

  // one <section> per group: cut the DOM at each one and compare what it shows with --json
  const sections = dom.split('<section class="group"').slice(1)
  t.equal(sections.length, report.groups.length)
  report.groups.forEach((group, i) => {
    const html = '<section class="group"' + sections[i]
    const [header] = elements(html, 'data-tasks')
    t.same([header['data-route'], header['data-task'], Number(header['data-tasks']), Number(header['data-aborted'])],
      [group.route, group.task, group.tasks, group.aborted], `${group.route} ${group.task}`)
    t.same(elements(html, 'data-scope="group"').map((segment) => [segment['data-outcome'], Number(segment['data-count'])]),
      OUTCOMES.filter((outcome) => group.outcomes[outcome] > 0).map((outcome) => [outcome, group.outcomes[outcome]]))
    const stats = Object.fromEntries(elements(html, 'data-stat').map((cell) => [cell['data-stat'], numberOrNull(cell['data-value'])]))
    for (const key of ['p50', 'p95', 'p99', 'max', 'count'] as const) {
      t.equal(stats[`duration-${key}`], group.durationMs[key])
      t.equal(stats[`queued-${key}`], group.queuedMs[key])
    }
    const columns = elements(html, 'data-le')
    if (group.durationMs.count === 0) {
      t.same(columns, [], 'no histogram when no task ran')
    } else {
      t.same(columns.map((column) => [column['data-le'] === 'inf' ? null : Number(column['data-le']), Number(column['data-count'])]),
        group.histogram.map((bucket) => [bucket.le, bucket.count]))
    }
    t.same(elements(html, 'data-failure').map((item) => [item['data-failure'], Number(item['data-count'])]),
      group.failures.map((failure) => [failure.outcome, failure.count]))
    t.same(elements(html, 'data-slow').map((row) => row['data-slow']), group.slowest.map((slow) => slow.reqId ?? ''))
  })
  const hostile = report.groups.find((group) => group.task.startsWith('<img'))
  t.ok(hostile, 'the group with markup in its names is in the report')
  t.match(dom, '&lt;b&gt;bold&lt;/b&gt; &amp; "quoted"', 'the message shows as text')
  t.equal(elements(dom, 'data-shutdown').length, report.shutdowns.recent.length)
})

test('the page loads nothing: no URL outside the page, and a policy that forbids it', async (t) => {
  const html = renderHtml({
    lines: { total: 0, used: 0, filtered: 0, skipped: 0 },
    filters: { route: [], task: [], since: null, until: null },
    period: { from: null, to: null },
    totals: { tasks: 0, outcomes: { completed: 0, failed: 0, timeout: 0, skipped: 0, cancelled: 0, dropped: 0 }, aborted: 0, responses: 0, abortedResponses: 0 },
    routes: [],
    groups: [],
    shutdowns: { count: 0, undrained: 0, recent: [] }
  })
  t.notMatch(html, /(src|href)=|https?:\/\/|@import|url\(/)
  t.match(html, 'content="default-src \'none\'; style-src \'unsafe-inline\'; script-src \'unsafe-inline\'"')
})
