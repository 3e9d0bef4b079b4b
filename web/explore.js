// The Explore and Cardinality pages. Long lists (every metric name, every series of a metric)
// are virtualized: only the rows in view exist in the DOM, so 100k names stay responsive.

import { api, isAbort } from '/ui/api.js';
import { seriesName, esc } from '/ui/chart.js';
import { metricNames } from '/ui/promql.js';

const ROW = 30;

/**
 * A scrolling list of `items` that renders only the visible rows with `row(item, index)`
 * (an HTML string). Returns {el, set(items)}.
 */
export function virtualList(className, row, height = 480) {
  const el = document.createElement('div');
  el.className = `vlist ${className}`;
  el.style.height = `${height}px`;
  el.tabIndex = 0;
  const inner = document.createElement('div');
  inner.className = 'vlist-inner';
  el.append(inner);
  let items = [];
  let first = -1;
  const draw = (force) => {
    const start = Math.max(0, Math.floor(el.scrollTop / ROW) - 5);
    if (start === first && !force) return;
    first = start;
    const end = Math.min(items.length, start + Math.ceil(height / ROW) + 10);
    let html = '';
    for (let i = start; i < end; i++) html += `<div class="vrow" data-i="${i}" style="top:${i * ROW}px">${row(items[i], i)}</div>`;
    inner.innerHTML = html;
  };
  el.addEventListener('scroll', () => draw(false));
  return {
    el,
    set(next) {
      items = next;
      inner.style.height = `${items.length * ROW}px`;
      el.scrollTop = 0;
      draw(true);
    },
    /** Redraws the rows in view (after a selection change) without moving the scroll position. */
    refresh() {
      draw(true);
    },
  };
}

function href(page, params) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== '') p.set(k, v);
  return `#/${page}?${p}`;
}

/** Quotes a label value for a PromQL selector. */
function q(v) {
  return JSON.stringify(v);
}

function selectorOf(metric, filters) {
  const parts = Object.entries(filters).map(([k, v]) => `${k}=${q(v)}`);
  return `${metric}${parts.length ? `{${parts.join(', ')}}` : ''}`;
}

/** The Explore page on screen: its metric list is reused while only the selection changes. */
let current = null;

/** Renders Explore for URL state `st`: metric list on the left, the chosen metric (or selector) on the right. */
export function explorePage(root, st, nav) {
  const metric = st.get('metric') || '';
  const match = st.get('match') || '';
  const filter = st.get('filter') || '';
  const label = st.get('label') || '';
  const value = st.get('value') || '';
  // Picking a metric or a label keeps the metric list as it is (filter, scroll position) and
  // only redraws the detail pane.
  if (current && current.root === root && root.contains(current.list.el) && (st.get('filter') || '') === current.box.value) {
    current.selected.metric = metric;
    current.list.refresh();
    const detail = root.querySelector('#detail');
    if (!metric && !match) detail.innerHTML = '<p class="muted">Pick a metric to see its labels and series.</p>';
    else showDetail(detail, { metric, match, label, value, filter }, nav);
    return;
  }
  root.innerHTML = `
  <h1 class="visually-hidden">Explore</h1>
  <div class="explore">
    <section class="card metrics-pane" aria-labelledby="metrics-h">
      <h2 id="metrics-h">Metrics <span id="metric-count" class="muted"></span></h2>
      <label for="metric-filter" class="visually-hidden">Filter metric names</label>
      <input id="metric-filter" type="search" placeholder="Filter metric names" value="${esc(filter)}">
      <div id="metrics-error" class="error" role="alert" hidden></div>
      <div id="metric-list"></div>
    </section>
    <section class="card detail-pane" id="detail" aria-live="polite"></section>
  </div>`;
  const selected = { metric };
  const list = virtualList('metric-list', ([name, count]) =>
    `<a class="metric-row${name === selected.metric ? ' selected' : ''}" href="${esc(href('explore', { metric: name, filter: box.value }))}"><span class="name">${esc(name)}</span><span class="count">${count === undefined ? '' : esc(count)}</span></a>`);
  root.querySelector('#metric-list').replaceWith(list.el);
  const box = root.querySelector('#metric-filter');
  current = { root, list, box, selected };
  let all = [];
  const apply = () => {
    const f = box.value.toLowerCase();
    const shown = f ? all.filter(([n]) => n.toLowerCase().includes(f)) : all;
    root.querySelector('#metric-count').textContent = `(${shown.length}${f ? ` of ${all.length}` : ''})`;
    list.set(shown);
  };
  let timer;
  box.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      apply();
      // Keep the filter in the URL without re-rendering the page.
      const h = location.hash;
      const p = new URLSearchParams(h.includes('?') ? h.slice(h.indexOf('?') + 1) : '');
      box.value ? p.set('filter', box.value) : p.delete('filter');
      history.replaceState(null, '', `#/explore?${p}`);
    }, 120);
  });
  Promise.all([metricNames(), api('/api/v1/status/tsdb', { topN: 1000 }, 'explore-counts').catch(() => null)])
    .then(([names, tsdb]) => {
      const counts = new Map((tsdb?.seriesCountByMetricName || []).map((e) => [e.name, e.value]));
      // Names beyond the top 1000 have fewer series than the smallest count shown.
      const floor = counts.size >= 1000 ? Math.min(...counts.values()) : 0;
      all = names.map((n) => [n, counts.get(n) ?? (floor ? `≤${floor}` : undefined)]);
      all.sort((a, b) => (typeof b[1] === 'number' ? b[1] : 0) - (typeof a[1] === 'number' ? a[1] : 0) || (a[0] < b[0] ? -1 : 1));
      apply();
    })
    .catch((e) => {
      if (isAbort(e)) return;
      const el = root.querySelector('#metrics-error');
      el.hidden = false;
      el.textContent = `Cannot list metrics: ${e.message}`;
    });
  const detail = root.querySelector('#detail');
  if (!metric && !match) {
    detail.innerHTML = '<p class="muted">Pick a metric to see its labels and series.</p>';
    return;
  }
  showDetail(detail, { metric, match, label, value, filter }, nav);
}

async function showDetail(detail, s, nav) {
  const selector = s.metric ? `{__name__=${q(s.metric)}}` : s.match;
  detail.innerHTML = `<h2>${esc(s.metric || s.match)}</h2><p class="muted">Loading series…</p>`;
  let series;
  try {
    series = await api('/api/v1/series', { 'match[]': selector, start: Math.floor(Date.now() / 1000) - 86400 }, 'explore-series');
  } catch (e) {
    if (isAbort(e)) return;
    detail.innerHTML = `<h2>${esc(s.metric || s.match)}</h2><div class="error" role="alert">${esc(e.message)}</div>`;
    return;
  }
  // Label name -> value -> number of series.
  const byLabel = new Map();
  for (const m of series) {
    for (const [k, v] of Object.entries(m)) {
      if (k === '__name__' && s.metric) continue;
      if (!byLabel.has(k)) byLabel.set(k, new Map());
      const vals = byLabel.get(k);
      vals.set(v, (vals.get(v) || 0) + 1);
    }
  }
  const filters = s.label && s.value ? { [s.label]: s.value } : {};
  const matching = series.filter((m) => !s.label || !s.value || m[s.label] === s.value);
  const base = { metric: s.metric, match: s.match, filter: s.filter };
  const labels = [...byLabel.entries()].sort((a, b) => a[1].size - b[1].size || (a[0] < b[0] ? -1 : 1));
  const chartExpr = s.metric ? selectorOf(s.metric, filters) : s.match;
  detail.innerHTML = `
    <h2>${esc(s.metric || s.match)} <span class="muted">${series.length} series</span></h2>
    <div class="actions"><a class="button primary" id="chart-all" href="${esc(href('query', { expr: chartExpr, tab: 'chart' }))}">Chart ${s.label && s.value ? 'matching' : 'all'} (${matching.length})</a>
    <button type="button" class="button" id="chart-selected" disabled>Chart selected</button></div>
    <h3>Labels</h3>
    <ul class="labels">${labels.map(([k, vals]) => `<li><a class="label-name${k === s.label ? ' selected' : ''}" href="${esc(href('explore', { ...base, label: k === s.label ? '' : k }))}">${esc(k)}</a> <span class="muted">${vals.size} value${vals.size === 1 ? '' : 's'}</span></li>`).join('') || '<li class="muted">no labels</li>'}</ul>
    <div id="values"></div>
    <h3>Series <span class="muted">${matching.length}${s.label && s.value ? ` with ${esc(s.label)}=${esc(q(s.value))}` : ''}</span></h3>
    <div id="series-list"></div>`;
  if (s.label && byLabel.has(s.label)) {
    const vals = [...byLabel.get(s.label).entries()].sort((a, b) => b[1] - a[1]);
    const max = vals[0]?.[1] || 1;
    const vl = virtualList('value-list', ([v, c]) =>
      `<a class="value-row${v === s.value ? ' selected' : ''}" href="${esc(href('explore', { ...base, label: s.label, value: v === s.value ? '' : v }))}"><span class="name">${esc(s.label)}=${esc(q(v))}</span><span class="bar" style="width:${(c / max) * 100}%"></span><span class="count">${c}</span></a>`,
      Math.min(240, vals.length * ROW + 2));
    const head = document.createElement('h3');
    head.textContent = `Values of ${s.label} (${vals.length})`;
    detail.querySelector('#values').append(head, vl.el);
    vl.set(vals);
  }
  const selected = new Set();
  const sl = virtualList('series-rows', (m, i) => {
    const name = seriesName(m);
    return `<label class="series-row"><input type="checkbox" data-i="${i}" ${selected.has(i) ? 'checked' : ''}><span class="name">${esc(name)}</span></label><a class="chart-one" href="${esc(href('query', { expr: name, tab: 'chart' }))}" aria-label="Chart ${esc(name)}">chart</a>`;
  }, Math.min(480, Math.max(1, matching.length) * ROW + 2));
  detail.querySelector('#series-list').replaceWith(sl.el);
  sl.set(matching);
  const btn = detail.querySelector('#chart-selected');
  sl.el.addEventListener('change', (e) => {
    const i = +e.target.dataset.i;
    e.target.checked ? selected.add(i) : selected.delete(i);
    btn.disabled = selected.size === 0;
    btn.textContent = `Chart selected (${selected.size})`;
  });
  btn.addEventListener('click', () => {
    const expr = [...selected].map((i) => seriesName(matching[i])).join(' or ');
    nav('query', new URLSearchParams({ expr, tab: 'chart' }));
  });
}

function todayUTC() {
  return new Date().toISOString().slice(0, 10);
}

/** Renders the Cardinality page for URL state `st` (date, topN). */
export async function cardinalityPage(root, st, nav) {
  const date = st.get('date') || todayUTC();
  const topN = st.get('topN') || '20';
  root.innerHTML = `
  <h1>Cardinality</h1>
  <form id="cform" class="card controls">
    <label>Day (UTC) <input type="date" id="date" value="${esc(date)}"></label>
    <label>Top <select id="topN">${[10, 20, 50, 100, 500].map((n) => `<option ${String(n) === topN ? 'selected' : ''}>${n}</option>`).join('')}</select></label>
  </form>
  <div id="cerror" class="error" role="alert" hidden></div>
  <div id="cout"></div>`;
  const go = () => nav('cardinality', new URLSearchParams({ date: root.querySelector('#date').value, topN: root.querySelector('#topN').value }));
  root.querySelector('#date').addEventListener('change', go);
  root.querySelector('#topN').addEventListener('change', go);
  let d;
  try {
    d = await api('/api/v1/status/tsdb', { date, topN }, 'cardinality');
  } catch (e) {
    if (isAbort(e)) return;
    const el = root.querySelector('#cerror');
    el.hidden = false;
    el.textContent = `Error: ${e.message}`;
    return;
  }
  const section = (title, rows, link) => {
    const max = Math.max(1, ...rows.map((r) => r.value));
    return `<section class="card card-table"><h2>${esc(title)}</h2>${rows.length ? `<table class="grid-table bars"><tbody>${rows.map((r) =>
      `<tr><td><a href="${esc(link(r.name))}">${esc(r.name)}</a></td><td class="barcell"><span class="bar" style="width:${(r.value / max) * 100}%"></span></td><td class="num">${esc(r.value)}</td></tr>`).join('')}</tbody></table>` : '<p class="muted">none</p>'}</section>`;
  };
  const pair = (name) => {
    const i = name.indexOf('=');
    return i < 0 ? name : `{${name.slice(0, i)}=${q(name.slice(i + 1))}}`;
  };
  root.querySelector('#cout').innerHTML = `
    <p class="total card">Total series on ${esc(date)}: <strong id="total-series">${esc(d.totalSeries)}</strong></p>
    <div class="card-grid">
    ${section('Metrics by series', d.seriesCountByMetricName || [], (n) => href('explore', { metric: n }))}
    ${section('Labels by series', d.seriesCountByLabelName || [], (n) => href('explore', { match: `{${n}!=""}` }))}
    ${section('Labels by distinct values', d.labelValueCountByLabelName || [], (n) => href('explore', { match: `{${n}!=""}` }))}
    ${section('Label=value pairs by series', d.seriesCountByLabelValuePair || [], (n) => href('explore', { match: pair(n) }))}
    </div>`;
}
