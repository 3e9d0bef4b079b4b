// The Query page: PromQL editor with autocomplete, instant/range, time range, step, chart,
// table and JSON views. Everything the page shows follows from the URL, so a view can be shared.

import { api, isAbort } from '/ui/api.js';
import { renderChart, seriesName, esc, fmtNum, color } from '/ui/chart.js';
import { attachAutocomplete } from '/ui/promql.js';

/** Range presets, in seconds. */
export const PRESETS = [['5m', 300], ['15m', 900], ['30m', 1800], ['1h', 3600], ['3h', 10800], ['6h', 21600],
  ['12h', 43200], ['1d', 86400], ['2d', 172800], ['7d', 604800], ['30d', 2592000]];

/** "1h" or "90s" or "3600" to seconds; NaN when not a duration. */
export function parseDuration(s) {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)?$/.exec(String(s).trim());
  if (!m) return NaN;
  const mult = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400, w: 604800, y: 31536000 }[m[2] || 's'];
  return +m[1] * mult;
}

/** A step that gives about 250 points across the range, rounded to a whole second. */
export function autoStep(range) {
  return Math.max(1, Math.round(range / 250));
}

const TABLE_LIMIT = 1000;

function toLocalInput(sec) {
  const d = new Date(sec * 1000 - new Date().getTimezoneOffset() * 60000);
  return d.toISOString().slice(0, 19);
}

/** Renders the Query page into `root` for URL state `st` (a URLSearchParams); `nav` updates the URL. */
export function queryPage(root, st, nav) {
  const expr = st.get('expr') || '';
  const mode = st.get('mode') === 'instant' ? 'instant' : 'range';
  const range = st.get('range') || '1h';
  const end = st.get('end') || '';
  const step = st.get('step') || '';
  const tab = st.get('tab') || (mode === 'instant' ? 'table' : 'chart');
  const stacked = st.get('stacked') === '1';
  root.innerHTML = `
  <h1 class="visually-hidden">Query</h1>
  <form id="qform" class="card" autocomplete="off">
    <label for="expr" class="field-label">PromQL expression</label>
    <div class="editor">
      <textarea id="expr" name="expr" rows="2" spellcheck="false" role="combobox" aria-autocomplete="list"
        aria-controls="ac-list" aria-expanded="false" placeholder="e.g. rate(http_requests_total[5m])">${esc(expr)}</textarea>
      <ul id="ac-list" class="ac-list" role="listbox" aria-label="Suggestions" hidden></ul>
    </div>
    <div id="qerror" class="error" role="alert" hidden></div>
    <div class="controls">
      <fieldset class="seg"><legend class="visually-hidden">Query type</legend>
        <label><input type="radio" name="mode" value="range" ${mode === 'range' ? 'checked' : ''}> Range</label>
        <label><input type="radio" name="mode" value="instant" ${mode === 'instant' ? 'checked' : ''}> Instant</label>
      </fieldset>
      <label>Range <select id="range">${PRESETS.map(([n]) => `<option ${n === range ? 'selected' : ''}>${n}</option>`).join('')}${PRESETS.some(([n]) => n === range) ? '' : `<option selected>${esc(range)}</option>`}</select></label>
      <label>End <input type="datetime-local" id="end" step="1" value="${end ? toLocalInput(+end) : ''}"></label>
      <button type="button" id="now" class="link">now</button>
      <label>Step <input id="step" size="6" placeholder="auto" value="${esc(step)}"></label>
      <label><input type="checkbox" id="stacked" ${stacked ? 'checked' : ''}> Stacked</label>
      <button type="submit" class="primary">Execute</button>
    </div>
  </form>
  <div class="tabs" role="tablist" aria-label="Result view">
    ${['chart', 'table', 'json'].map((t) => `<button type="button" role="tab" class="tab" data-tab="${t}" aria-selected="${t === tab}">${t === 'json' ? 'JSON' : t[0].toUpperCase() + t.slice(1)}</button>`).join('')}
  </div>
  <div id="qstats" class="muted" aria-live="polite"></div>
  <div id="qout" class="card result" role="tabpanel"></div>`;

  const form = root.querySelector('#qform');
  const input = root.querySelector('#expr');
  const read = () => {
    const p = new URLSearchParams();
    p.set('expr', input.value.trim());
    p.set('mode', form.mode.value);
    p.set('range', root.querySelector('#range').value);
    const e = root.querySelector('#end').value;
    if (e) p.set('end', String(Math.floor(new Date(e).getTime() / 1000)));
    const s = root.querySelector('#step').value.trim();
    if (s) p.set('step', s);
    p.set('tab', root.querySelector('.tab[aria-selected="true"]').dataset.tab);
    if (root.querySelector('#stacked').checked) p.set('stacked', '1');
    return p;
  };
  const run = () => nav('query', read());
  attachAutocomplete(input, root.querySelector('#ac-list'), run);
  form.addEventListener('submit', (e) => { e.preventDefault(); run(); });
  root.querySelector('#now').addEventListener('click', () => { root.querySelector('#end').value = ''; run(); });
  for (const sel of ['#range', '#stacked']) root.querySelector(sel).addEventListener('change', run);
  form.querySelectorAll('input[name=mode]').forEach((r) => r.addEventListener('change', () => {
    const p = read();
    p.set('tab', p.get('mode') === 'instant' ? 'table' : 'chart');
    nav('query', p);
  }));
  const tabs = [...root.querySelectorAll('.tab')];
  tabs.forEach((b, i) => {
    b.tabIndex = b.getAttribute('aria-selected') === 'true' ? 0 : -1;
    b.addEventListener('click', () => {
      const p = read();
      p.set('tab', b.dataset.tab);
      nav('query', p);
    });
    // Arrow keys move between tabs, as in any tab list.
    b.addEventListener('keydown', (e) => {
      const d = e.key === 'ArrowRight' ? 1 : e.key === 'ArrowLeft' ? -1 : 0;
      if (!d) return;
      e.preventDefault();
      tabs[(i + d + tabs.length) % tabs.length].click();
      setTimeout(() => document.querySelector('.tab[aria-selected="true"]')?.focus(), 0);
    });
  });
  if (!expr) {
    root.querySelector('#qout').innerHTML = '<p class="muted">Type an expression and press Enter. Ctrl+Space or typing shows suggestions.</p>';
    input.focus();
    return;
  }
  execute(root, { expr, mode, range, end, step, tab, stacked }, nav, read);
}

async function execute(root, q, nav, read) {
  const out = root.querySelector('#qout');
  const err = root.querySelector('#qerror');
  const stats = root.querySelector('#qstats');
  const rangeSec = parseDuration(q.range);
  if (!Number.isFinite(rangeSec) || rangeSec <= 0) return showError(err, `bad range "${q.range}": use e.g. 1h`);
  let stepSec = q.step ? parseDuration(q.step) : autoStep(rangeSec);
  if (!Number.isFinite(stepSec) || stepSec <= 0) return showError(err, `bad step "${q.step}": use e.g. 15s, or leave empty for auto`);
  const endSec = q.end ? +q.end : Math.floor(Date.now() / 1000);
  const startSec = endSec - rangeSec;
  out.innerHTML = '<p class="muted">Loading…</p>';
  const t0 = performance.now();
  let data;
  try {
    data = q.mode === 'range'
      ? await api('/api/v1/query_range', { query: q.expr, start: startSec, end: endSec, step: stepSec }, 'query')
      : await api('/api/v1/query', { query: q.expr, time: endSec }, 'query');
  } catch (e) {
    if (isAbort(e)) return;
    out.innerHTML = '';
    return showError(err, e.message, e.type);
  }
  const ms = Math.round(performance.now() - t0);
  const n = Array.isArray(data.result) ? data.result.length : 1;
  stats.textContent = `${n} ${n === 1 ? 'series' : 'series'} · ${data.resultType} · ${ms} ms${q.mode === 'range' ? ` · step ${stepSec}s` : ''}`;
  out.innerHTML = '';
  if (q.tab === 'json') {
    const pre = document.createElement('pre');
    pre.className = 'json';
    const s = JSON.stringify(data, null, 2);
    pre.textContent = s.length > 2e6 ? s.slice(0, 2e6) + '\n… (cut at 2 MB)' : s;
    out.append(pre);
  } else if (q.tab === 'table') {
    out.append(table(data));
  } else if (data.resultType !== 'matrix') {
    out.innerHTML = '<p class="muted">An instant query has one value per series: see the Table view, or switch to Range for a chart.</p>';
  } else {
    const series = data.result.map((r) => ({ name: seriesName(r.metric), points: r.values.map(([t, v]) => [t, parseFloat(v)]) }));
    if (!series.length) { out.innerHTML = '<p class="muted">No data in this time range.</p>'; return; }
    renderChart(out, series, {
      stacked: q.stacked, start: startSec, end: endSec, step: stepSec,
      onZoom: (a, b) => {
        const p = read();
        p.set('end', String(Math.ceil(b)));
        p.set('range', `${Math.max(1, Math.round(b - a))}s`);
        p.delete('step');
        nav('query', p);
      },
    });
  }
}

function showError(el, message, type) {
  el.hidden = false;
  el.innerHTML = `<strong>${esc(type ? `Error (${type})` : 'Error')}:</strong> ${esc(message)}`;
}

function table(data) {
  const wrap = document.createElement('div');
  const t = data.resultType;
  if (t === 'scalar' || t === 'string') {
    wrap.innerHTML = `<table class="grid-table"><thead><tr><th>${t}</th><th>Time</th></tr></thead><tbody><tr><td class="num">${esc(data.result[1])}</td><td>${esc(new Date(data.result[0] * 1000).toISOString())}</td></tr></tbody></table>`;
    return wrap;
  }
  const rows = data.result.slice(0, TABLE_LIMIT);
  const more = data.result.length > TABLE_LIMIT ? `<p class="muted">Showing the first ${TABLE_LIMIT} of ${data.result.length} series.</p>` : '';
  if (!rows.length) { wrap.innerHTML = '<p class="muted">No series.</p>'; return wrap; }
  if (t === 'vector') {
    wrap.innerHTML = `${more}<table class="grid-table"><thead><tr><th>Series</th><th>Value</th></tr></thead><tbody>${rows.map((r, i) => `<tr><td><span class="swatch" style="background:${color(i)}"></span>${esc(seriesName(r.metric))}</td><td class="num">${esc(r.value[1])}</td></tr>`).join('')}</tbody></table>`;
  } else {
    wrap.innerHTML = `${more}<table class="grid-table"><thead><tr><th>Series</th><th>Points</th><th>Last value</th><th>Min</th><th>Max</th></tr></thead><tbody>${rows.map((r, i) => {
      let lo = Infinity, hi = -Infinity;
      for (const [, v] of r.values) { const x = parseFloat(v); if (Number.isFinite(x)) { lo = Math.min(lo, x); hi = Math.max(hi, x); } }
      const last = r.values.length ? r.values[r.values.length - 1][1] : '';
      return `<tr><td><span class="swatch" style="background:${color(i)}"></span>${esc(seriesName(r.metric))}</td><td class="num">${r.values.length}</td><td class="num">${esc(last)}</td><td class="num">${lo <= hi ? esc(fmtNum(lo)) : ''}</td><td class="num">${lo <= hi ? esc(fmtNum(hi)) : ''}</td></tr>`;
    }).join('')}</tbody></table>`;
  }
  return wrap;
}
