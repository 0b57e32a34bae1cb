import { OUTCOMES } from './types'
import type { Report } from './types'

// The page draws itself from the report embedded as JSON, with the DOM API only (textContent, never
// innerHTML with data), so route names and error messages cannot inject markup. It loads nothing.
const style = `
:root { --completed: #2f9e5b; --failed: #d9484b; --timeout: #ee8f2a; --skipped: #9aa4b2; --cancelled: #8a67c2; --dropped: #7d2630;
  --ink: #1d2430; --muted: #667085; --line: #e4e7ec; --bg: #f6f7f9; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Liberation Sans", sans-serif; color: var(--ink); background: var(--bg); }
main { max-width: 1120px; margin: 0 auto; padding: 28px 24px 48px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 32px 0 12px; }
.muted { color: var(--muted); }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(170px, 1fr)); gap: 12px; margin: 20px 0; }
.card, .group { background: #fff; border: 1px solid var(--line); border-radius: 10px; }
.card { padding: 14px 16px; }
.card .value { font-size: 26px; font-weight: 650; font-variant-numeric: tabular-nums; }
.card .label { color: var(--muted); font-size: 13px; }
.bar { display: flex; height: 14px; border-radius: 7px; overflow: hidden; background: var(--line); }
.bar span { display: block; min-width: 3px; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 16px; list-style: none; padding: 0; margin: 8px 0 0; font-size: 13px; }
.legend li::before { content: ""; display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 6px; background: var(--swatch); }
.group { padding: 18px 20px; margin-bottom: 16px; }
.group header { display: flex; justify-content: space-between; align-items: baseline; gap: 12px; flex-wrap: wrap; }
.group h3 { margin: 0; font-size: 16px; }
.group h3 code { font-size: 15px; background: #eef1f5; padding: 1px 6px; border-radius: 4px; }
.columns { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1.3fr); gap: 28px; margin-top: 16px; }
@media (max-width: 760px) { .columns { grid-template-columns: 1fr; } }
h4 { margin: 0 0 8px; font-size: 13px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); font-weight: 600; }
table { border-collapse: collapse; width: 100%; font-size: 14px; font-variant-numeric: tabular-nums; }
th, td { text-align: right; padding: 4px 8px; border-bottom: 1px solid var(--line); }
th:first-child, td:first-child { text-align: left; padding-left: 0; }
th { color: var(--muted); font-weight: 600; font-size: 12px; }
.hist { display: flex; align-items: flex-end; gap: 4px; height: 150px; padding-top: 18px; }
.hist .col { flex: 1; display: flex; flex-direction: column; justify-content: flex-end; align-items: center; height: 100%; min-width: 0; }
.hist .fill { width: 100%; background: #4f7cd6; border-radius: 3px 3px 0 0; min-height: 1px; }
.hist .fill.zero { background: var(--line); }
.hist .count { font-size: 11px; color: var(--muted); margin-bottom: 2px; }
.hist .le { font-size: 10px; color: var(--muted); margin-top: 4px; white-space: nowrap; }
td.text, th.text { text-align: left; }
.failures { list-style: none; padding: 0; margin: 16px 0 0; }
.failures li { border-left: 3px solid var(--swatch); padding: 6px 10px; margin-bottom: 8px; background: #fbfbfc; }
.failures .message { font-family: ui-monospace, "SFMono-Regular", Menlo, "Liberation Mono", monospace; font-size: 13px; word-break: break-word; }
.failures .ids { font-size: 12px; color: var(--muted); }
.empty { color: var(--muted); font-size: 14px; }
`

const script = `
(function () {
  var report = JSON.parse(document.getElementById('report-data').textContent);
  var OUTCOMES = ${JSON.stringify(OUTCOMES)};
  var root = document.getElementById('report');
  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    for (var key in attrs || {}) {
      if (key === 'text') node.textContent = attrs[key];
      else if (key === 'style') node.setAttribute('style', attrs[key]);
      else node.setAttribute(key, attrs[key]);
    }
    (children || []).forEach(function (child) { if (child) node.appendChild(child); });
    return node;
  }
  function count(n) { return n.toLocaleString('en-US'); }
  function plural(n, word) { return count(n) + ' ' + word + (n === 1 ? '' : 's'); }
  function ms(v) {
    if (v === null) return '-';
    if (v >= 1000) return (v / 1000).toFixed(2) + ' s';
    if (v >= 100) return Math.round(v) + ' ms';
    if (v >= 10) return v.toFixed(1) + ' ms';
    return v.toFixed(2) + ' ms';
  }
  function rate(r) { return r === null ? '-' : (r * 100).toFixed(1) + '%'; }
  function when(iso) { return iso === null ? '?' : iso.replace('T', ' ').replace(/\\.\\d+Z$/, ' UTC'); }
  function outcomeBar(outcomes, scope) {
    var total = OUTCOMES.reduce(function (sum, o) { return sum + outcomes[o]; }, 0);
    var bar = el('div', { class: 'bar', role: 'img', 'aria-label': OUTCOMES.map(function (o) { return outcomes[o] + ' ' + o; }).join(', ') });
    var legend = el('ul', { class: 'legend' });
    OUTCOMES.forEach(function (o) {
      if (outcomes[o] === 0) return;
      bar.appendChild(el('span', { 'data-scope': scope, 'data-outcome': o, 'data-count': outcomes[o],
        title: outcomes[o] + ' ' + o, style: 'flex-grow:' + outcomes[o] + ';background:var(--' + o + ')' }));
      legend.appendChild(el('li', { style: '--swatch:var(--' + o + ')',
        text: count(outcomes[o]) + ' ' + o + ' (' + Math.round(outcomes[o] / total * 100) + '%)' }));
    });
    return el('div', {}, [bar, legend]);
  }
  function card(value, label, stat) {
    return el('div', { class: 'card' }, [el('div', { class: 'value', 'data-total': stat, text: value }), el('div', { class: 'label', text: label })]);
  }
  function short(le) { return le >= 1000 ? le / 1000 + 's' : String(le); }
  // every bucket, always: the same axis in every group, so groups compare at a glance
  function histogram(group) {
    var buckets = group.histogram;
    var top = Math.max.apply(null, buckets.map(function (b) { return b.count; }));
    if (top === 0) return el('p', { class: 'empty', text: 'No task of this group ran.' });
    return el('div', { class: 'hist' }, buckets.map(function (b, i) {
      var label = b.le === null ? '> ' + short(buckets[i - 1].le) : short(b.le);
      var range = i === 0 ? 'up to ' + ms(b.le) : b.le === null ? 'over ' + ms(buckets[i - 1].le) : ms(buckets[i - 1].le) + ' to ' + ms(b.le);
      return el('div', { class: 'col', 'data-le': b.le === null ? 'inf' : b.le, 'data-count': b.count, title: range + ': ' + plural(b.count, 'task') }, [
        el('span', { class: 'count', text: b.count === 0 ? '' : count(b.count) }),
        el('div', { class: 'fill' + (b.count === 0 ? ' zero' : ''), style: 'height:' + (b.count / top * 100).toFixed(1) + '%' }),
        el('span', { class: 'le', text: label })
      ]);
    }));
  }
  function stats(group) {
    var rows = [['Duration', 'duration', group.durationMs], ['Queued', 'queued', group.queuedMs]];
    return el('table', {}, [
      el('tr', {}, ['', 'p50', 'p95', 'p99', 'max', 'tasks'].map(function (h) { return el('th', { text: h }); })),
    ].concat(rows.map(function (row) {
      return el('tr', {}, [el('td', { text: row[0] })].concat(['p50', 'p95', 'p99', 'max', 'count'].map(function (k) {
        var v = row[2][k];
        return el('td', { 'data-stat': row[1] + '-' + k, 'data-value': v === null ? 'null' : v, text: k === 'count' ? count(v) : ms(v) });
      })));
    })));
  }
  function slowest(group) {
    if (group.slowest.length === 0) return null;
    return el('table', {}, [el('tr', {}, ['Slowest', 'reqId', 'outcome'].map(function (h) { return el('th', { class: 'text', text: h }); }))]
      .concat(group.slowest.map(function (t) {
        return el('tr', { 'data-slow': t.reqId === null ? '' : t.reqId }, [
          el('td', { 'data-value': t.durationMs, text: ms(t.durationMs) }),
          el('td', { class: 'text', text: t.reqId === null ? '-' : t.reqId }), el('td', { class: 'text', text: t.outcome })
        ]);
      })));
  }
  function failures(group) {
    if (group.failures.length === 0) return null;
    return el('ul', { class: 'failures' }, group.failures.map(function (f) {
      return el('li', { style: '--swatch:var(--' + f.outcome + ')', 'data-failure': f.outcome, 'data-count': f.count }, [
        el('div', {}, [el('strong', { text: count(f.count) + ' × ' + f.outcome + ': ' }), el('span', { class: 'message', text: f.message })]),
        el('div', { class: 'ids', text: f.reqIds.length === 0 ? '' : 'reqId ' + f.reqIds.join(', ') })
      ]);
    }));
  }

  var t = report.totals;
  var problems = t.outcomes.failed + t.outcomes.timeout + t.outcomes.cancelled + t.outcomes.dropped;
  root.appendChild(el('h1', { text: 'Deferred work' }));
  root.appendChild(el('p', { class: 'muted', text: 'From ' + when(report.period.from) + ' to ' + when(report.period.to) + ' · ' +
    count(report.lines.used) + ' of ' + count(report.lines.total) + ' log lines' }));
  root.appendChild(el('div', { class: 'cards' }, [
    card(count(t.tasks), 'tasks', 'tasks'),
    card(count(t.outcomes.completed), 'completed', 'completed'),
    card(count(problems), 'failed, timed out, cancelled or dropped', 'problems'),
    card(count(t.responses), 'responses with deferred work', 'responses'),
    card(rate(t.responses === 0 ? null : t.abortedResponses / t.responses), 'of them aborted by the client', 'abortedRate')
  ]));
  root.appendChild(outcomeBar(t.outcomes, 'totals'));

  if (report.routes.length > 0) {
    root.appendChild(el('h2', { text: 'Responses per route' }));
    root.appendChild(el('div', { class: 'card' }, [el('table', {}, [
      el('tr', {}, ['Route', 'Responses', 'Aborted', 'Aborted rate'].map(function (h) { return el('th', { text: h }); }))
    ].concat(report.routes.map(function (r) {
      return el('tr', { 'data-route': r.route, 'data-responses': r.responses, 'data-aborted': r.aborted }, [
        el('td', { text: r.route }), el('td', { text: count(r.responses) }), el('td', { text: count(r.aborted) }), el('td', { text: rate(r.abortedRate) })
      ]);
    })))]));
  }

  root.appendChild(el('h2', { text: 'Tasks per route' }));
  if (report.groups.length === 0) root.appendChild(el('p', { class: 'empty', text: 'No task lines in this log.' }));
  report.groups.forEach(function (g) {
    root.appendChild(el('section', { class: 'group', 'data-route': g.route, 'data-task': g.task, 'data-tasks': g.tasks, 'data-aborted': g.aborted }, [
      el('header', {}, [
        el('h3', {}, [el('code', { text: g.route }), document.createTextNode(' → '), el('code', { text: g.task })]),
        el('span', { class: 'muted', text: plural(g.tasks, 'task') + ' · ' + count(g.aborted) + ' after a client abort' })
      ]),
      el('div', { style: 'margin-top:12px' }, [outcomeBar(g.outcomes, 'group')]),
      el('div', { class: 'columns' }, [
        el('div', {}, [el('h4', { text: 'Timings' }), stats(g), el('div', { style: 'margin-top:14px' }, [slowest(g)])]),
        el('div', {}, [el('h4', { text: 'Duration of the tasks that ran (ms, upper bounds)' }), histogram(g)])
      ]),
      failures(g)
    ]));
  });

  if (report.shutdowns.count > 0) {
    root.appendChild(el('h2', { text: 'Shutdowns' }));
    root.appendChild(el('div', { class: 'card' }, [el('table', {}, [
      el('tr', {}, ['Time', 'Drained', 'Took', 'Drain timeout'].map(function (h) { return el('th', { text: h }); }))
    ].concat(report.shutdowns.recent.map(function (s) {
      return el('tr', { 'data-shutdown': s.drained }, [
        el('td', { text: s.time === null ? '?' : when(new Date(s.time).toISOString()) }),
        el('td', { text: s.drained ? 'yes' : 'no, the rest was cancelled' }),
        el('td', { text: ms(s.durationMs) }), el('td', { text: ms(s.drainTimeout) })
      ]);
    })))]));
  }
  document.body.setAttribute('data-rendered', 'true');
})();
`

/** A self-contained page (no network) that draws the report: outcome bars and duration histograms. */
export function renderHtml (report: Report): string {
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
<main id="report"><noscript>This report draws itself with JavaScript; run the report with --json for the numbers.</noscript></main>
<script type="application/json" id="report-data">${data}</script>
<script>${script}</script>
</body>
</html>
`
}
