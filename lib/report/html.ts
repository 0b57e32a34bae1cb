import { histogramChart, timelineChart, escapeHtml as esc } from './svg'
import { formatCount, formatMs, formatRate, formatRequest, formatSource, formatStep, formatTime, uncheckedSummary } from './text'
import { OUTCOMES, RAN_OUTCOMES } from './types'
import type { FinalRef, Group, OutcomeCounts, Report, RequestRef } from './types'

// The page is drawn here, on the server side: every number is in the HTML, readable with
// JavaScript off. The script only sorts and filters tables. Every value from the log goes
// through esc(), so route names and error messages cannot inject markup. It loads nothing.
const style = `
:root { --completed: #2f9e5b; --failed: #d9484b; --timeout: #ee8f2a; --skipped: #9aa4b2; --cancelled: #8a67c2; --dropped: #7d2630;
  --refused: #2e3440; --ink: #1d2430; --muted: #667085; --line: #e4e7ec; --bg: #f6f7f9; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Liberation Sans", sans-serif; color: var(--ink); background: var(--bg); }
main { max-width: 1180px; margin: 0 auto; padding: 24px 24px 48px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 30px 0 10px; scroll-margin-top: 12px; }
h3 { font-size: 15px; margin: 16px 0 8px; }
a { color: #2f5fb3; }
code { font: 13px ui-monospace, "SFMono-Regular", Menlo, "Liberation Mono", monospace; background: #eef1f5; padding: 1px 5px; border-radius: 4px; }
.muted { color: var(--muted); }
nav.index { display: flex; flex-wrap: wrap; gap: 4px 14px; margin: 12px 0 0; padding: 10px 14px; background: #fff; border: 1px solid var(--line); border-radius: 10px; font-size: 14px; }
nav.index a { text-decoration: none; }
nav.index a span { color: var(--muted); }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: 10px; margin: 16px 0 12px; }
.card, .panel, details.group { background: #fff; border: 1px solid var(--line); border-radius: 10px; }
.card { padding: 12px 14px; }
.card .value { font-size: 24px; font-weight: 650; font-variant-numeric: tabular-nums; }
.card .label { color: var(--muted); font-size: 13px; }
.panel { padding: 12px 16px; overflow-x: auto; }
.bar { display: flex; height: 14px; border-radius: 7px; overflow: hidden; background: var(--line); min-width: 80px; }
.bar span { display: block; min-width: 2px; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 16px; list-style: none; padding: 0; margin: 8px 0 0; font-size: 13px; }
.legend li::before { content: ""; display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 6px; background: var(--swatch); }
${[...OUTCOMES, 'refused'].map((key) => `.fill-${key} { fill: var(--${key}); } .bg-${key} { background: var(--${key}); } .sw-${key} { --swatch: var(--${key}); }`).join('\n')}
svg.chart { width: 100%; height: 180px; display: block; }
svg.chart .axis { stroke: var(--line); }
svg.chart .tick { font-size: 11px; fill: var(--muted); }
svg.chart .hit { fill: transparent; }
svg.chart g:hover .hit { fill: #eef1f5; }
table { border-collapse: collapse; width: 100%; font-size: 14px; font-variant-numeric: tabular-nums; }
th, td { text-align: right; padding: 4px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { color: var(--muted); font-weight: 600; font-size: 12px; white-space: nowrap; }
td[data-value] { white-space: nowrap; }
.text { text-align: left; }
td.text code, td.ids { overflow-wrap: anywhere; }
td.message { font: 13px ui-monospace, "SFMono-Regular", Menlo, "Liberation Mono", monospace; word-break: break-word; }
td.ids { font-size: 12px; color: var(--muted); }
td.bar-cell { width: 140px; }
table.sortable th[data-sort] { cursor: pointer; user-select: none; }
table.sortable th[aria-sort="ascending"]::after { content: " ▲"; }
table.sortable th[aria-sort="descending"]::after { content: " ▼"; }
.filter { margin: 0 0 10px; font: inherit; padding: 6px 10px; border: 1px solid var(--line); border-radius: 6px; width: 320px; max-width: 100%; }
details.group { margin: 8px 0; padding: 0 16px; }
details.group > summary { cursor: pointer; padding: 10px 0; }
details.group[open] { padding-bottom: 14px; }
.columns { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1.4fr); gap: 24px; }
@media (max-width: 820px) { .columns { grid-template-columns: 1fr; } }
.empty { color: var(--muted); font-size: 14px; }
`

// Sorting by a column's data-value (numbers) or text, and a filter over rows' data-filter. The
// view is kept in the address (#sort=-p95&filter=orders), so a sorted, filtered page can be shared.
const script = `
(function () {
  var tables = Array.prototype.slice.call(document.querySelectorAll('table.sortable'));
  var filters = Array.prototype.slice.call(document.querySelectorAll('input.filter'));
  var view = { sort: '', filter: '' };
  (location.hash.slice(1) || '').split('&').forEach(function (pair) {
    var at = pair.indexOf('=');
    if (at > 0 && pair.slice(0, at) in view) view[pair.slice(0, at)] = decodeURIComponent(pair.slice(at + 1));
  });
  function remember() {
    var parts = [];
    if (view.sort) parts.push('sort=' + encodeURIComponent(view.sort));
    if (view.filter) parts.push('filter=' + encodeURIComponent(view.filter));
    history.replaceState(null, '', parts.length ? '#' + parts.join('&') : location.pathname + location.search);
  }
  function sortBy(title, ascending) {
    tables.forEach(function (table) {
      var heads = Array.prototype.slice.call(table.tHead.rows[0].cells);
      var column = heads.findIndex(function (th) { return th.hasAttribute('data-sort') && th.textContent === title; });
      if (column === -1) return;
      heads.forEach(function (th) { th.removeAttribute('aria-sort'); });
      heads[column].setAttribute('aria-sort', ascending ? 'ascending' : 'descending');
      var numeric = heads[column].getAttribute('data-sort') === 'number';
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = a.cells[column], y = b.cells[column];
        var order = numeric
          ? Number(x.getAttribute('data-value')) - Number(y.getAttribute('data-value'))
          : x.textContent.localeCompare(y.textContent);
        return ascending ? order : -order;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
    view.sort = (ascending ? '' : '-') + title;
  }
  function filter(query) {
    view.filter = query;
    var needle = query.trim().toLowerCase();
    document.querySelectorAll('[data-filter]').forEach(function (row) {
      row.hidden = needle !== '' && row.getAttribute('data-filter').toLowerCase().indexOf(needle) === -1;
    });
  }
  tables.forEach(function (table) {
    Array.prototype.slice.call(table.tHead.rows[0].cells).forEach(function (th) {
      if (!th.hasAttribute('data-sort')) return;
      th.tabIndex = 0;
      function click() {
        sortBy(th.textContent, th.getAttribute('aria-sort') !== 'ascending');
        remember();
      }
      th.addEventListener('click', click);
      th.addEventListener('keydown', function (event) { if (event.key === 'Enter') click(); });
    });
  });
  filters.forEach(function (input) {
    input.hidden = false;
    input.value = view.filter;
    input.addEventListener('input', function () {
      filter(input.value);
      remember();
    });
  });
  if (view.sort) sortBy(view.sort.replace(/^-/, ''), view.sort.charAt(0) !== '-');
  if (view.filter) filter(view.filter);
  document.body.setAttribute('data-enhanced', 'true');
})();
`

/** Group details open when the page loads. */
export const OPEN_GROUPS = 3

function attr (value: string | number | null): string {
  return esc(value === null ? 'null' : String(value))
}

function num (value: number | null, shown: string, name?: string): string {
  return `<td${name === undefined ? '' : ` data-stat="${name}"`} data-value="${attr(value)}">${esc(shown)}</td>`
}

function outcomeBar (outcomes: OutcomeCounts, scope: string): string {
  const parts = OUTCOMES.filter((outcome) => outcomes[outcome] > 0)
  const label = parts.map((outcome) => `${outcomes[outcome]} ${outcome}`).join(', ') || 'no task'
  return `<div class="bar" role="img" aria-label="${esc(label)}">${parts.map((outcome) =>
    `<span class="bg-${outcome}" data-scope="${scope}" data-outcome="${outcome}" data-count="${outcomes[outcome]}" title="${formatCount(outcomes[outcome])} ${outcome}" style="flex-grow:${outcomes[outcome]}"></span>`).join('')}</div>`
}

function legend (counts: Array<[string, number]>): string {
  const total = counts.reduce((sum, [, count]) => sum + count, 0)
  return `<ul class="legend">${counts.filter(([, count]) => count > 0).map(([key, count]) =>
    `<li class="sw-${key}">${formatCount(count)} ${key} (${Math.round(count / total * 100)}%)</li>`).join('')}</ul>`
}

function card (value: string, label: string, stat: string, raw: number | null): string {
  return `<div class="card"><div class="value" data-total="${stat}" data-value="${attr(raw)}">${esc(value)}</div><div class="label">${esc(label)}</div></div>`
}

function table (classes: string, head: Array<[string, 'text' | 'number' | null]>, rows: string[], attributes = ''): string {
  const headers = head.map(([title, sort]) => `<th${sort === 'text' ? ' class="text"' : ''}${sort === null ? '' : ` data-sort="${sort}"`}>${esc(title)}</th>`).join('')
  return `<table class="${classes}"${attributes}><thead><tr>${headers}</tr></thead><tbody>${rows.join('')}</tbody></table>`
}

function requestCell (refs: RequestRef[], qualify: boolean): string {
  return `<td class="text ids">${refs.length === 0 ? '-' : refs.map((ref) => esc(formatRequest(ref, qualify))).join('<br>')}</td>`
}

function plural (n: number, word: string): string {
  return `${formatCount(n)} ${word}${n === 1 ? '' : 's'}`
}

function groupId (i: number): string {
  return `group-${i + 1}`
}

function groupDetails (group: Group, i: number, qualify: boolean, open: boolean): string {
  const stats = (['durationMs', 'queuedMs'] as const).map((key) => {
    const values = group[key]
    const name = key === 'durationMs' ? 'duration' : 'queued'
    return `<tr><td class="text">${key === 'durationMs' ? 'Duration' : 'Queued'}</td>${(['p50', 'p95', 'p99', 'max'] as const).map((p) =>
      num(values[p], formatMs(values[p]), `${name}-${p}`)).join('')}${num(values.count, formatCount(values.count), `${name}-count`)}</tr>`
  })
  const slowest = group.slowest.map((task) =>
    `<tr data-slow="${attr(task.reqId ?? '')}">${num(task.durationMs, formatMs(task.durationMs))}<td class="text">${task.outcome}</td>${requestCell([task], qualify)}</tr>`)
  const durable = group.enqueued + group.retries > 0 ? ` · ${formatCount(group.enqueued)} enqueued · ${formatCount(group.retries)} retried` : ''
  const chart = group.histogram.length === 0
    ? '<p class="empty">No task of this group ran.</p>'
    : `${histogramChart(group.histogram)}${legend(RAN_OUTCOMES.map((outcome) => [outcome, group.histogram.reduce((sum, bucket) => sum + bucket.outcomes[outcome], 0)]))}`
  const failureRows = group.failures.map((failure) => `<tr data-failure="${failure.outcome}" data-count="${failure.count}"><td class="text">${failure.outcome}</td>` +
    `${num(failure.count, formatCount(failure.count))}<td class="text message">${esc(failure.message)}</td>${requestCell(failure.samples, qualify)}</tr>`)
  const failures = failureRows.length === 0 ? '' : `<h3>Failures</h3>${table('', [['Outcome', null], ['Count', null], ['Message', null], ['Sample requests', null]], failureRows)}`
  return `<details class="group" id="${groupId(i)}"${open ? ' open' : ''} data-route="${attr(group.route)}" data-task="${attr(group.task)}" data-tasks="${group.tasks}" data-aborted="${group.aborted}" data-filter="${attr(`${group.route} ${group.task}`)}">
<summary><code>${esc(group.route)}</code> → <code>${esc(group.task)}</code> <span class="muted">${plural(group.tasks, 'task')} · ${formatCount(group.aborted)} after a client abort${durable}</span></summary>
${outcomeBar(group.outcomes, 'group')}${legend(OUTCOMES.map((outcome) => [outcome, group.outcomes[outcome]]))}
<div class="columns"><div><h3>Timings</h3>${table('', [['', null], ['p50', null], ['p95', null], ['p99', null], ['max', null], ['tasks', null]], stats)}
${slowest.length === 0 ? '' : `<h3>Slowest</h3>${table('', [['Duration', null], ['Outcome', null], ['Request', null]], slowest)}`}</div>
<div><h3>How long the tasks that ran took</h3>${chart}</div></div>
${failures}
</details>`
}

/** A self-contained page (no network, no JavaScript needed) with the whole report, tables and charts. */
export function renderHtml (report: Report): string {
  const { totals, jobs, shutdowns } = report
  const qualify = report.sources.files.length > 1 || report.sources.processes > 1
  const problems = totals.outcomes.failed + totals.outcomes.timeout + totals.outcomes.cancelled + totals.outcomes.dropped
  const failures = report.groups.flatMap((group, i) => group.failures.map((failure) => ({ ...failure, group, i })))
  const refusedRoutes = report.routes.filter((route) => route.refused > 0)
  // open from the start: the groups with the most tasks that did not complete, so a reader (or a
  // printout, or the page with JavaScript off) sees their histograms without a click
  const opened = new Set([...report.groups].filter((group) => group.tasks - group.outcomes.completed - group.outcomes.skipped > 0)
    .sort((a, b) => (b.tasks - b.outcomes.completed) - (a.tasks - a.outcomes.completed)).slice(0, OPEN_GROUPS))
  const hasJobs = jobs.enqueued + jobs.finished + jobs.retries > 0
  const sections: Array<[string, string, number | null]> = [
    ['totals', 'Totals', null], ['timeline', 'Over time', null], ['routes', 'Routes', report.routes.length], ['tasks', 'Tasks', report.groups.length],
    ['slowest', 'Slowest tasks', report.slowest.length], ['failures', 'Failures', failures.length]
  ]
  if (totals.refused !== null && totals.refused > 0) sections.push(['refused', 'Refused requests', totals.refused])
  if (totals.unaccounted !== null && totals.unaccounted > 0) sections.push(['unaccounted', 'Unaccounted tasks', totals.unaccounted])
  if (hasJobs) sections.push(['jobs', 'Durable jobs', jobs.enqueued])
  if (shutdowns.count > 0) sections.push(['shutdowns', 'Shutdowns', shutdowns.count])

  const out: string[] = []
  const files = report.sources.files.length === 0 ? '' : ` · ${report.sources.files.map((file) => `<code>${esc(file)}</code>`).join(' ')}`
  const processes = report.sources.processes > 1 ? ` · ${formatCount(report.sources.processes)} processes` : ''
  const filters = [...report.filters.route.map((route) => `route ${route}`), ...report.filters.task.map((task) => `task ${task}`),
    ...(report.filters.since === null ? [] : [`since ${formatTime(report.filters.since)}`]), ...(report.filters.until === null ? [] : [`until ${formatTime(report.filters.until)}`])]
  out.push('<h1>Deferred work</h1>',
    `<p class="muted">From ${esc(formatTime(report.period.from))} to ${esc(formatTime(report.period.to))} · ${formatCount(report.lines.used)} of ${formatCount(report.lines.total)} log lines${files}${processes}` +
    `${filters.length === 0 ? '' : ` · only ${esc(filters.join(', '))}`}${report.version === '' ? '' : ` · report ${esc(report.version)}`}</p>`,
    `<nav class="index" aria-label="Sections">${sections.map(([id, title, count]) => `<a href="#${id}">${title}${count === null ? '' : ` <span>${formatCount(count)}</span>`}</a>`).join('')}</nav>`)

  out.push('<h2 id="totals">Totals</h2><div class="cards">',
    card(formatCount(totals.tasks), 'tasks', 'tasks', totals.tasks),
    card(formatCount(totals.outcomes.completed), 'completed', 'completed', totals.outcomes.completed),
    card(formatCount(problems), 'failed, timed out, cancelled or dropped', 'problems', problems),
    card(formatCount(totals.outcomes.skipped), 'skipped: the client aborted', 'skipped', totals.outcomes.skipped),
    totals.responses === null
      ? card('-', 'responses: not counted with --task', 'responses', null)
      : card(formatCount(totals.responses), 'responses with deferred work', 'responses', totals.responses),
    card(formatRate(totals.responses ? (totals.abortedResponses as number) / totals.responses : null), 'of them aborted by the client', 'abortedRate',
      totals.responses ? (totals.abortedResponses as number) / totals.responses : null),
    card(totals.refused === null ? '-' : formatCount(totals.refused), 'requests refused (503)', 'refused', totals.refused),
    card(totals.unaccounted === null ? '-' : formatCount(totals.unaccounted), 'tasks unaccounted for: announced, never logged', 'unaccounted', totals.unaccounted),
    ...(hasJobs ? [card(formatCount(jobs.pending), 'durable jobs not finished', 'pending', jobs.pending)] : []),
    '</div>', outcomeBar(totals.outcomes, 'totals'), legend(OUTCOMES.map((outcome) => [outcome, totals.outcomes[outcome]])))

  const { timeline } = report
  out.push('<h2 id="timeline">Over time</h2><div class="panel">')
  if (timeline.buckets.length === 0) out.push('<p class="empty">No line with a time.</p>')
  else {
    const refused = timeline.buckets.reduce((sum, bucket) => sum + bucket.refused, 0)
    out.push(`<p class="muted">Final outcomes${refused > 0 ? ' and refused requests' : ''} as logged, one bar per ${formatStep(timeline.bucketMs)}, from ${esc(formatTime(timeline.buckets[0].start))}.</p>`,
      timelineChart(timeline.buckets, timeline.bucketMs),
      legend([...OUTCOMES.map((outcome): [string, number] => [outcome, totals.outcomes[outcome]]), ['refused', refused]]))
  }
  out.push('</div>')

  out.push('<h2 id="routes">Routes</h2>',
    '<input class="filter" type="search" placeholder="Filter routes and tasks" aria-label="Filter routes and tasks" data-rows="[data-filter]" hidden>')
  if (report.routes.length === 0) {
    out.push(`<p class="empty">${totals.responses === null ? 'Not counted with --task: the lines of responses and refusals name no task.' : 'No response lines.'}</p>`)
  } else {
    const rows = report.routes.map((route) => {
      const groups = report.groups.filter((group) => group.route === route.route)
      const tasks = groups.reduce((sum, group) => sum + group.tasks, 0)
      const failed = groups.reduce((sum, group) => sum + group.tasks - group.outcomes.completed - group.outcomes.skipped, 0)
      return `<tr data-route="${attr(route.route)}" data-responses="${route.responses}" data-aborted="${route.aborted}" data-refused="${route.refused}" data-unaccounted="${route.unaccounted}" data-filter="${attr(route.route)}">` +
        `<td class="text"><code>${esc(route.route)}</code></td>${num(route.responses, formatCount(route.responses))}${num(route.aborted, formatCount(route.aborted))}` +
        `${num(route.abortedRate ?? -1, formatRate(route.abortedRate))}${num(route.refused, formatCount(route.refused))}${num(tasks, formatCount(tasks))}${num(failed, formatCount(failed))}` +
        `${num(route.unaccounted, formatCount(route.unaccounted))}</tr>`
    })
    out.push('<div class="panel">', table('sortable', [['Route', 'text'], ['Responses', 'number'], ['Aborted', 'number'], ['Aborted rate', 'number'], ['Refused', 'number'],
      ['Tasks', 'number'], ['Not completed', 'number'], ['Unaccounted', 'number']], rows), '</div>')
  }

  out.push('<h2 id="tasks">Tasks per route</h2>')
  if (report.groups.length === 0) out.push('<p class="empty">No task lines in this log.</p>')
  else {
    const rows = report.groups.map((group, i) => `<tr data-group="${i + 1}" data-filter="${attr(`${group.route} ${group.task}`)}">` +
      `<td class="text"><a href="#${groupId(i)}"><code>${esc(group.route)}</code></a></td><td class="text"><code>${esc(group.task)}</code></td>` +
      `${num(group.tasks, formatCount(group.tasks))}<td class="bar-cell" data-value="${group.outcomes.completed / Math.max(1, group.tasks)}">${outcomeBar(group.outcomes, 'row')}</td>` +
      `${num(group.tasks - group.outcomes.completed - group.outcomes.skipped, formatCount(group.tasks - group.outcomes.completed - group.outcomes.skipped))}` +
      `${(['p50', 'p95', 'p99', 'max'] as const).map((p) => num(group.durationMs[p] ?? -1, formatMs(group.durationMs[p]))).join('')}${num(group.queuedMs.p95 ?? -1, formatMs(group.queuedMs.p95))}</tr>`)
    out.push('<div class="panel">', table('sortable', [['Route', 'text'], ['Task', 'text'], ['Tasks', 'number'], ['Outcomes', 'number'], ['Not completed', 'number'],
      ['p50', 'number'], ['p95', 'number'], ['p99', 'number'], ['Max', 'number'], ['Queued p95', 'number']], rows), '</div>',
    '<p class="muted">Each group in detail (click to open): outcomes, timings, a duration histogram coloured by outcome, the slowest tasks and the failures.</p>',
    ...report.groups.map((group, i) => groupDetails(group, i, qualify, opened.has(group))))
  }

  out.push('<h2 id="slowest">Slowest tasks</h2>')
  if (report.slowest.length === 0) out.push('<p class="empty">No task ran.</p>')
  else {
    out.push('<div class="panel">', table('sortable', [['Duration', 'number'], ['Outcome', 'text'], ['Route', 'text'], ['Task', 'text'], ['Request', 'text'], ['Logged at', 'text']],
      report.slowest.map((task) => `<tr data-slowest="${attr(task.reqId ?? '')}" data-duration="${task.durationMs}">${num(task.durationMs, formatMs(task.durationMs))}<td class="text">${task.outcome}</td>` +
        `<td class="text"><code>${esc(task.route)}</code></td><td class="text"><code>${esc(task.task)}</code></td>${requestCell([task], qualify)}<td class="text ids">${esc(formatTime(task.time))}</td></tr>`)), '</div>')
  }

  out.push('<h2 id="failures">Failures, by message</h2>')
  if (failures.length === 0) out.push('<p class="empty">No task failed, timed out, was cancelled or dropped.</p>')
  else {
    out.push('<div class="panel">', table('sortable', [['Route', 'text'], ['Task', 'text'], ['Outcome', 'text'], ['Count', 'number'], ['Message', 'text'], ['Sample requests', 'text']],
      failures.map((failure) => `<tr class="sw-${failure.outcome}" data-all-failure="${failure.outcome}" data-count="${failure.count}">` +
        `<td class="text"><a href="#${groupId(failure.i)}"><code>${esc(failure.group.route)}</code></a></td><td class="text"><code>${esc(failure.group.task)}</code></td>` +
        `<td class="text">${failure.outcome}</td>${num(failure.count, formatCount(failure.count))}<td class="text message">${esc(failure.message)}</td>${requestCell(failure.samples, qualify)}</tr>`)), '</div>')
  }

  if (totals.refused !== null && totals.refused > 0) {
    out.push('<h2 id="refused">Refused requests</h2><p class="muted">Answered 503 with Retry-After by <code>rejectWhenSaturated</code> while the deferred work was saturated.</p><div class="panel">',
      table('', [['Route', null], ['Refused', null]], refusedRoutes.map((route) => `<tr data-refused-route="${attr(route.route)}" data-count="${route.refused}"><td class="text"><code>${esc(route.route)}</code></td>${num(route.refused, formatCount(route.refused))}</tr>`)), '</div>')
  }

  if (totals.unaccounted !== null && totals.unaccounted > 0) {
    const { afterShutdown, withoutShutdown, samples } = report.unaccounted
    out.push(`<h2 id="unaccounted">Unaccounted tasks: ${formatCount(totals.unaccounted)}</h2>`,
      '<p class="muted">Tasks a response announced when it closed (its close line) that never logged a final line in the same process lifetime. ' +
      `${formatCount(withoutShutdown)} in a process that never logged a shutdown afterwards: it crashed or was killed, or the log ends while they still ran. ` +
      `${formatCount(afterShutdown)} in a process that logged a shutdown afterwards: lost by the plugin, a bug worth reporting.</p><div class="panel">`,
      table('', [['Request', null], ['Route', null], ['Tasks lost', null], ['Process', null], ['Shutdown logged after', null]], samples.map((sample) =>
        `<tr data-unaccounted="${attr(sample.reqId ?? '')}" data-count="${sample.tasks}" data-lost-after-shutdown="${sample.shutdown}">${requestCell([sample], qualify)}` +
        `<td class="text"><code>${esc(sample.route)}</code></td>${num(sample.tasks, `${formatCount(sample.tasks)} of ${formatCount(sample.announced)}`)}` +
        `<td class="text ids">${esc(formatSource(sample) || '-')}${sample.instance === null ? '' : `<br>instance ${esc(sample.instance)}`}</td>` +
        `<td class="text">${sample.shutdown ? 'yes: a bug, please report it' : 'no: crashed, killed, or still running'}</td></tr>`)), '</div>')
  }
  if (report.unaccounted.unchecked.length > 0) {
    const instances = report.unaccounted.unchecked.reduce((total, { instances }) => total + instances, 0)
    out.push(`<p class="muted" id="unchecked" data-unchecked="${instances}">${esc(uncheckedSummary(report).trim())}</p>`)
  }

  if (hasJobs) {
    out.push('<h2 id="jobs">Durable jobs</h2><div class="cards">',
      card(formatCount(jobs.enqueued), 'enqueued', 'jobs-enqueued', jobs.enqueued), card(formatCount(jobs.finished), 'finished (counted once)', 'jobs-finished', jobs.finished),
      card(formatCount(jobs.pending), 'enqueued, not finished in these logs', 'jobs-pending', jobs.pending), card(formatCount(jobs.retries), 'attempts retried', 'jobs-retries', jobs.retries),
      card(formatCount(jobs.duplicates), 'final lines superseded by a later one', 'jobs-duplicates', jobs.duplicates), '</div>')
    if (jobs.pendingSample.length > 0) {
      out.push(`<div class="panel"><h3>Not finished${jobs.pendingSample.length < jobs.pending ? ` (the first ${jobs.pendingSample.length})` : ''}</h3>`,
        table('', [['Queue', null], ['Job id', null], ['Route', null], ['Task', null], ['Request', null], ['Enqueued at', null]], jobs.pendingSample.map((job) =>
          `<tr data-pending="${attr(job.jobId)}"><td class="text"><code>${esc(job.queue ?? '-')}</code></td><td class="text"><code>${esc(job.jobId)}</code></td><td class="text"><code>${esc(job.route)}</code></td>` +
          `<td class="text"><code>${esc(job.task)}</code></td>${requestCell([job], qualify)}<td class="text ids">${esc(formatTime(job.time))}</td></tr>`)), '</div>')
    }
    if (jobs.supersededSample.length > 0) {
      const final = (line: FinalRef): string => `${esc(line.outcome)}, attempt ${line.attempt}, ${esc(formatTime(line.time))}${qualify ? ` ${esc(formatSource(line))}` : ''}`
      out.push('<div class="panel"><h3>Counted by their latest final line (highest attempt, then latest time)</h3>',
        table('', [['Job id', null], ['Route', null], ['Task', null], ['Counted', null], ['Superseded', null]], jobs.supersededSample.map((job) =>
          `<tr data-superseded="${attr(job.jobId)}" data-counted="${job.counted.outcome}"><td class="text"><code>${esc(job.jobId)}</code></td><td class="text"><code>${esc(job.route)}</code></td>` +
          `<td class="text"><code>${esc(job.task)}</code></td><td class="text ids">${final(job.counted)}</td><td class="text ids">${job.superseded.map(final).join('<br>')}</td></tr>`)), '</div>')
    }
  }

  if (shutdowns.count > 0) {
    const undrained = shutdowns.undrained > 0 ? `, ${formatCount(shutdowns.undrained)} ran out of drain time` : ''
    const shown = shutdowns.recent.length < shutdowns.count ? ` (the last ${shutdowns.recent.length} shown)` : ''
    out.push(`<h2 id="shutdowns">Shutdowns: ${formatCount(shutdowns.count)}${undrained}${shown}</h2><div class="panel">`,
      table('', [['Time', null], ['Process', null], ['Drained', null], ['Took', null], ['Drain timeout', null], ...OUTCOMES.map((outcome): [string, null] => [outcome, null])],
        shutdowns.recent.map((shutdown) => `<tr data-shutdown="${shutdown.drained}" ${OUTCOMES.map((outcome) => `data-${outcome}="${shutdown.outcomes[outcome]}"`).join(' ')}>` +
          `<td class="text">${esc(formatTime(shutdown.time))}</td><td class="text ids">${esc(formatSource(shutdown) || '-')}</td><td class="text">${shutdown.drained ? 'yes' : 'no, the rest was cancelled'}</td>` +
          `${num(shutdown.durationMs, formatMs(shutdown.durationMs))}${num(shutdown.drainTimeout, formatMs(shutdown.drainTimeout))}` +
          `${OUTCOMES.map((outcome) => num(shutdown.outcomes[outcome], formatCount(shutdown.outcomes[outcome]))).join('')}</tr>`)), '</div>')
  }

  // '<' escaped, so no value can close the script element or open a comment
  const data = JSON.stringify(report).replace(/</g, '\\u003c')
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>Deferred work report</title>
<style>${style}</style>
</head>
<body>
<main id="report">
${out.join('\n')}
</main>
<script type="application/json" id="report-data">${data}</script>
<script>${script}</script>
</body>
</html>
`
}
