import tap, { test } from 'tap'
import type { Test } from 'tap'
import { execFile } from 'node:child_process'
import { appendFile, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { promisify } from 'node:util'
import { Readable, Writable } from 'node:stream'
import { main } from '../lib/report/cli'
import { renderHtml, OPEN_GROUPS } from '../lib/report/html'
import { Summary, PENDING_SAMPLE, RECENT_SHUTDOWNS } from '../lib/report/summary'
import { OUTCOMES, RAN_OUTCOMES } from '../lib/report/types'
import type { Report } from '../lib/report/types'
import { durableFacts, writeAppLog, writeDurableLogs } from './fixtures/report/logs'

const run = promisify(execFile)
// five Chromium runs: seconds each on a busy machine
tap.setTimeout(120_000)
const root = join(__dirname, '..')
/** Where the test leaves its screenshot of the page, for a person to look at. */
const SCREENSHOT = join(root, '.tap', 'report-html', 'report.png')

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

// a fresh profile each time, and nothing that reaches out to the network on its own
function chromiumFlags (profile: string): string[] {
  return ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', `--user-data-dir=${profile}`]
}

/** The page as headless Chromium leaves it once it loaded and its script ran. */
async function renderInChromium (url: string, profile: string): Promise<string> {
  const { stdout } = await run('chromium', [...chromiumFlags(profile), '--dump-dom', url], { maxBuffer: 64 * 1024 * 1024, timeout: 60_000 })
  return stdout
}

/**
 * The same page with its scripts forbidden by its own Content-Security-Policy: what a reader with
 * JavaScript off gets (headless Chromium cannot dump a page with scripting switched off).
 */
async function withoutScripts (page: string): Promise<string> {
  const html = await readFile(page, 'utf8')
  const blocked = html.replace("script-src 'unsafe-inline'", "script-src 'none'")
  if (blocked === html) throw new Error('the page has no script-src policy to tighten')
  const copy = page.replace(/\.html$/, '.noscript.html')
  await writeFile(copy, blocked)
  return pathToFileURL(copy).href
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

/** Every number the page shows, read back from the DOM, against the report `--json` printed. */
function checkNumbers (t: Test, dom: string, report: Report): void {
  const { totals, jobs } = report
  const cards = Object.fromEntries(elements(dom, 'data-total').map((card) => [card['data-total'], numberOrNull(card['data-value'])]))
  t.match(cards, {
    tasks: totals.tasks,
    completed: totals.outcomes.completed,
    problems: totals.outcomes.failed + totals.outcomes.timeout + totals.outcomes.cancelled + totals.outcomes.dropped,
    skipped: totals.outcomes.skipped,
    responses: totals.responses,
    refused: totals.refused,
    pending: jobs.pending,
    'jobs-enqueued': jobs.enqueued,
    'jobs-finished': jobs.finished,
    'jobs-pending': jobs.pending,
    'jobs-retries': jobs.retries,
    'jobs-duplicates': jobs.duplicates
  }, 'the cards')
  const segments = (scope: string, html = dom): Array<[string, number]> =>
    elements(html, `data-scope="${scope}"`).map((segment) => [segment['data-outcome'], Number(segment['data-count'])])
  const present = (outcomes: Report['totals']['outcomes']): Array<[string, number]> =>
    OUTCOMES.filter((outcome) => outcomes[outcome] > 0).map((outcome) => [outcome, outcomes[outcome]])
  t.same(segments('totals'), present(totals.outcomes), 'the outcome bar')

  t.same(elements(dom, 'data-responses').map((row) => [row['data-route'], Number(row['data-responses']), Number(row['data-aborted']), Number(row['data-refused'])]),
    report.routes.map((route) => [route.route, route.responses, route.aborted, route.refused]), 'the routes table')
  t.same(segments('row'), report.groups.flatMap((group) => present(group.outcomes)), 'the tasks table\'s bars')

  const bars = elements(dom, 'data-time=')
  t.same(bars.map((bar) => [bar['data-time'], ...OUTCOMES.map((outcome) => Number(bar[`data-${outcome}`])), Number(bar['data-refused'])]),
    report.timeline.buckets.map((bucket) => [bucket.start, ...OUTCOMES.map((outcome) => bucket.outcomes[outcome]), bucket.refused]), 'the timeline')

  // one <details> per group: cut the DOM at each one and compare what it shows with --json
  const sections = dom.split('<details class="group"').slice(1)
  t.equal(sections.length, report.groups.length)
  report.groups.forEach((group, i) => {
    const html = '<details class="group"' + sections[i].slice(0, sections[i].indexOf('</details>'))
    const [header] = elements(html, 'data-tasks')
    t.same([header['data-route'], header['data-task'], Number(header['data-tasks']), Number(header['data-aborted'])],
      [group.route, group.task, group.tasks, group.aborted], `${group.route} ${group.task}`)
    t.same(segments('group', html), present(group.outcomes))
    const stats = Object.fromEntries(elements(html, 'data-stat').map((cell) => [cell['data-stat'], numberOrNull(cell['data-value'])]))
    for (const key of ['p50', 'p95', 'p99', 'max', 'count'] as const) {
      t.equal(stats[`duration-${key}`], group.durationMs[key])
      t.equal(stats[`queued-${key}`], group.queuedMs[key])
    }
    t.same(elements(html, 'data-le').map((bar) => [bar['data-le'] === 'inf' ? null : Number(bar['data-le']), Number(bar['data-count']),
      ...RAN_OUTCOMES.map((outcome) => Number(bar[`data-${outcome}`]))]),
    group.histogram.map((bucket) => [bucket.le, bucket.count, ...RAN_OUTCOMES.map((outcome) => bucket.outcomes[outcome])]), 'the histogram, by outcome')
    t.same(elements(html, 'data-failure=').map((item) => [item['data-failure'], Number(item['data-count'])]),
      group.failures.map((failure) => [failure.outcome, failure.count]))
    t.same(elements(html, 'data-slow=').map((row) => row['data-slow']), group.slowest.map((slow) => slow.reqId ?? ''))
  })
  t.same(elements(dom, 'data-slowest').map((row) => [row['data-slowest'], Number(row['data-duration'])]),
    report.slowest.map((slow) => [slow.reqId ?? '', slow.durationMs]), 'the slowest tasks of all groups')
  t.same(elements(dom, 'data-all-failure').map((row) => [row['data-all-failure'], Number(row['data-count'])]),
    report.groups.flatMap((group) => group.failures.map((failure) => [failure.outcome, failure.count])), 'failures by message')
  t.same(elements(dom, 'data-refused-route').map((row) => [row['data-refused-route'], Number(row['data-count'])]),
    report.routes.filter((route) => route.refused > 0).map((route) => [route.route, route.refused]), 'refused requests')
  t.same(elements(dom, 'data-pending').map((row) => row['data-pending']), jobs.pendingSample.map((job) => job.jobId), 'jobs not finished')
  t.same(elements(dom, 'data-superseded').map((row) => [row['data-superseded'], row['data-counted']]),
    jobs.supersededSample.map((job) => [job.jobId, job.counted.outcome]), 'jobs counted by their latest final line')
  t.same(elements(dom, 'data-shutdown').map((row) => [row['data-shutdown'] === 'true', ...OUTCOMES.map((outcome) => Number(row[`data-${outcome}`]))]),
    report.shutdowns.recent.map((shutdown) => [shutdown.drained, ...OUTCOMES.map((outcome) => shutdown.outcomes[outcome])]), 'shutdowns with their counts')
}

test('the HTML report in headless Chromium: the numbers of --json, with JavaScript and without; a screenshot', async (t) => {
  const which = await run('sh', ['-c', 'command -v chromium']).catch(() => null)
  if (which === null) {
    t.fail('chromium is not installed: apt-get install -y chromium (.ci/run does it)')
    return
  }
  const dir = await mkdtemp(join(tmpdir(), 'sac-html-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const log = join(dir, 'app.log')
  await writeAppLog(log)
  const durable = await writeDurableLogs(dir)
  // markup in names and messages must come out as text
  await appendFile(log, JSON.stringify({
    level: 50,
    time: Date.now(),
    reqId: '"><b>id</b>',
    deferred: { task: '<img src=x onerror="document.title=1">', outcome: 'failed', connection: 'finished', route: '</script><script>document.title=2</script>', statusCode: 200, durationMs: 4321, queuedMs: 0 },
    err: { type: 'Error', message: '<b>bold</b> & "quoted"' },
    msg: 'deferred task failed'
  }) + '\n')
  const files = [log, durable.web, durable.worker1, durable.worker2]

  const page = join(dir, 'report.html')
  const report = JSON.parse(await cli(['report', '--json', ...files])) as Report
  await cli(['report', '--html', page, ...files])
  t.same(report.jobs, { ...durableFacts.jobs, pendingSample: report.jobs.pendingSample, supersededSample: report.jobs.supersededSample }, 'the logs hold durable jobs')
  t.ok(report.totals.refused, 'and refused requests')

  const url = pathToFileURL(page).href
  const dom = await renderInChromium(url, join(dir, 'profile-1'))
  t.match(dom, /<body[^>]*data-enhanced="true"/, 'the page\'s script ran to the end')
  t.notMatch(dom, /<img|<b>|document\.title=\d<\/script>/, 'no markup from the log was interpreted')
  t.match(dom, /<title>Deferred work report<\/title>/, 'nothing in the log changed the title')
  t.match(dom, '&lt;b&gt;bold&lt;/b&gt; &amp; "quoted"', 'the message shows as text')
  t.notMatch(dom, /<input class="filter"[^>]* hidden/, 'the filter shows once the script runs')
  checkNumbers(t, dom, report)

  const plain = await renderInChromium(await withoutScripts(page), join(dir, 'profile-2'))
  t.notMatch(plain, /<body[^>]*data-enhanced/, 'with JavaScript off, the script did not run')
  t.match(plain, /<input class="filter"[^>]* hidden/, 'and the filter, which needs it, stays hidden')
  checkNumbers(t, plain, report)
  t.equal(elements(plain, '<details class="group" ').length, report.groups.length)
  t.equal((plain.match(/<details class="group" id="group-\d+" open/g) ?? []).length, OPEN_GROUPS, 'the groups with the most problems open, histograms shown')

  // the view in the address: the tasks sorted by p95, slowest first, then filtered to one route
  const sorted = await renderInChromium(`${url}#sort=-p95`, join(dir, 'profile-3'))
  const p95 = [...report.groups].filter((group) => group.durationMs.p95 !== null).map((group) => group.durationMs.p95 as number).sort((a, b) => b - a)
  const rows = sorted.slice(sorted.indexOf('id="tasks"'), sorted.indexOf('<details class="group"'))
  const shown = elements(rows, 'data-group').map((row) => report.groups[Number(row['data-group']) - 1].durationMs.p95).filter((value) => value !== null)
  t.same(shown, p95, 'sorted by p95, descending')
  t.match(sorted, /<th data-sort="number"[^>]*aria-sort="descending"[^>]*>p95<\/th>/)
  const filtered = await renderInChromium(`${url}#filter=orders`, join(dir, 'profile-4'))
  const visible = elements(filtered.slice(filtered.indexOf('id="tasks"'), filtered.indexOf('<details class="group"')), 'data-group=')
  const hidden = (filtered.match(/<tr data-group="\d+"[^>]* hidden/g) ?? []).length
  t.equal(visible.length - hidden, report.groups.filter((group) => group.route.includes('orders') || group.task.includes('orders')).length, 'filtered to /orders')
  t.match(filtered, /<input class="filter"[^>]*>/)

  await mkdir(join(root, '.tap', 'report-html'), { recursive: true })
  await run('chromium', [...chromiumFlags(join(dir, 'profile-5')), '--hide-scrollbars', '--window-size=1280,4200', `--screenshot=${SCREENSHOT}`, url],
    { timeout: 60_000 })
  t.ok((await stat(SCREENSHOT)).size > 50_000, 'a screenshot with something on it')
  t.comment(`screenshot of the page: ${SCREENSHOT}`)
})

test('the page loads nothing: no URL outside the page, and a policy that forbids it', async (t) => {
  const html = renderHtml(new Summary().result())
  t.notMatch(html, /(src|href)="(?!#)|https?:\/\/(?!www\.w3\.org)|@import|url\(/)
  t.match(html, 'content="default-src \'none\'; style-src \'unsafe-inline\'; script-src \'unsafe-inline\'"')
  t.match(html, 'No task lines in this log.')
  t.match(html, 'No line with a time.')
})

test('--task: the page says responses were not counted', async (t) => {
  const summary = new Summary({ tasks: ['t'] })
  summary.add(JSON.stringify({ time: 1, deferred: { task: 't', outcome: 'completed', route: '/r', durationMs: 1, queuedMs: 0 } }))
  const html = renderHtml(summary.result())
  t.match(html, 'responses: not counted with --task')
  t.match(html, 'Not counted with --task')
  t.match(html, 'only task t')
})

test('the embedded data is the report, and the page escapes what closes a script', async (t) => {
  const summary = new Summary()
  summary.add(JSON.stringify({ deferred: { task: '</script>', outcome: 'completed', route: '/r', durationMs: 1, queuedMs: 0 } }))
  const html = renderHtml(summary.result())
  const embedded = /<script type="application\/json" id="report-data">(.*)<\/script>/.exec(html)?.[1] as string
  t.notMatch(embedded, '</script>')
  t.same(JSON.parse(embedded), summary.result())
  t.ok((await readFile(join(root, 'package.json'), 'utf8')).length > 0)
})

test('edge cases of the page: filters, failures without request ids, long periods, very slow tasks, many shutdowns', async (t) => {
  const day = 86_400_000
  const summary = new Summary()
  const line = (fields: Record<string, unknown>, extra: Record<string, unknown> = {}): void => summary.add(JSON.stringify({
    time: 1000, deferred: { task: 't', outcome: 'completed', route: '/r', durationMs: 1, queuedMs: 0, ...fields }, ...extra
  }))
  // a shutdown line without a time, read before any time: it cannot be placed, so counts as the oldest
  summary.add(JSON.stringify({ deferredShutdown: { drained: true } }))
  line({ outcome: 'failed', durationMs: 2e7 }, { err: { message: 'slow and wrong' } })
  line({}, { time: 300 * day })
  for (let i = 0; i <= PENDING_SAMPLE; i++) line({ outcome: 'enqueued', jobId: `j${i}` }, { reqId: `r${i}` })
  // shutdowns out of order, none that ran out of drain time
  for (let i = 0; i < RECENT_SHUTDOWNS + 1; i++) summary.add(JSON.stringify({ time: (RECENT_SHUTDOWNS - i) * day, pid: 7, deferredShutdown: { drained: true, completed: i } }))
  summary.add(JSON.stringify({ deferredShutdown: { drained: true } }))
  const report = summary.result()
  t.equal(report.timeline.bucketMs >= day, true, 'a period of months: bars of days')
  t.same(report.shutdowns.recent.map((shutdown) => shutdown.time === null ? null : Date.parse(shutdown.time) / day), [2, 3, 4, 5, 6, 7, 8, 9, 10, null],
    'the most recent by time; a line without a time goes after the latest time read before it')
  const html = renderHtml(report)
  t.match(renderHtml(new Summary({ since: 0, until: 400 * day }).result()), /only since 1970-01-01 00:00:00Z, until 1971-02-05 00:00:00Z/)
  t.match(html, /<td class="text ids">-<\/td>/, 'a failure without request ids')
  t.match(html, /data-le="inf"[^>]*><title>over 1000\.00 s: 1 failed<\/title>/, 'past the last bound')
  t.match(html, `Not finished (the first ${PENDING_SAMPLE})`)
  t.match(html, /<code>-<\/code><\/td><td class="text"><code>j0<\/code>/, 'a job without a queue name')
  t.match(html, `<h2 id="shutdowns">Shutdowns: ${RECENT_SHUTDOWNS + 3} (the last ${RECENT_SHUTDOWNS} shown)</h2>`)
  t.match(html, /<td class="text ids">-<\/td><td class="text">yes<\/td>/, 'a shutdown line without a process')
  t.match(html, /class="tick" text-anchor="start">1970-01-0\d</, 'dates on the time axis')
})
