// The UI shell: navigation, theme, and the router. The page and its state live in the URL
// fragment (#/page?key=value), so reload, back/forward and shared links all restore a view.

import { api, post, text, isAbort } from '/ui/api.js';
import { esc } from '/ui/chart.js';
import { queryPage } from '/ui/query.js';
import { explorePage, cardinalityPage } from '/ui/explore.js';

const PAGES = {
  query: queryPage,
  explore: explorePage,
  cardinality: cardinalityPage,
  status: statusPage,
  targets: targetsPage,
  plugins: pluginsPage,
};

function parseHash() {
  const h = location.hash.replace(/^#\/?/, '');
  const i = h.indexOf('?');
  const page = (i < 0 ? h : h.slice(0, i)) || 'query';
  return { page: PAGES[page] ? page : 'query', params: new URLSearchParams(i < 0 ? '' : h.slice(i + 1)) };
}

/** Goes to `page` with `params`; the hashchange handler renders it. */
export function nav(page, params) {
  const next = `#/${page}?${params}`;
  if (location.hash === next) render();
  else location.hash = next;
}

function render() {
  const { page, params } = parseHash();
  document.querySelectorAll('nav a[data-page]').forEach((a) => {
    if (a.dataset.page === page) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  });
  document.title = `${page[0].toUpperCase()}${page.slice(1)} · Strata`;
  const root = document.getElementById('page');
  root.dataset.page = page;
  PAGES[page](root, params, nav);
}

function setupTheme() {
  const saved = localStorage.getItem('strata-theme');
  const dark = saved ? saved === 'dark' : matchMedia('(prefers-color-scheme: dark)').matches;
  document.documentElement.dataset.theme = dark ? 'dark' : 'light';
  const b = document.getElementById('theme');
  const label = () => { b.textContent = document.documentElement.dataset.theme === 'dark' ? 'Light theme' : 'Dark theme'; };
  label();
  b.addEventListener('click', () => {
    const t = document.documentElement.dataset.theme === 'dark' ? 'light' : 'dark';
    document.documentElement.dataset.theme = t;
    localStorage.setItem('strata-theme', t);
    label();
    render();
  });
}

/** Parses Prometheus text exposition into [{name, labels, value}] (comments skipped). */
export function parseMetrics(body) {
  const out = [];
  for (const line of body.split('\n')) {
    if (!line || line[0] === '#') continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (m) out.push({ name: m[1], labels: m[2] || '', value: parseFloat(m[3]) });
  }
  return out;
}

function fmtBytes(b) {
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (b >= 1024 && i < u.length - 1) { b /= 1024; i++; }
  return `${b.toFixed(i ? 1 : 0)} ${u[i]}`;
}

function fmtDuration(s) {
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  return d ? `${d}d ${h}h` : h ? `${h}h ${m}m` : `${m}m ${Math.floor(s % 60)}s`;
}

async function statusPage(root) {
  root.innerHTML = `<h1>Status</h1><div id="serror" class="error" role="alert" hidden></div><div class="card-grid" id="sout"><p class="muted">Loading…</p></div>`;
  try {
    const [build, metrics, tsdb, config] = await Promise.all([
      api('/api/v1/status/buildinfo', {}, 'status-build'),
      text('/metrics', 'status-metrics'),
      api('/api/v1/status/tsdb', { topN: 1 }, 'status-tsdb').catch(() => null),
      // Roles without the endpoint (404) show a note instead; other errors are shown as such.
      api('/api/v1/status/config', {}, 'status-config').catch((e) => (isAbort(e) ? Promise.reject(e) : { error: e })),
    ]);
    const all = parseMetrics(metrics);
    const sum = (name) => all.filter((m) => m.name === name).reduce((a, m) => a + m.value, 0);
    const has = (name) => all.some((m) => m.name === name);
    const kv = (rows) => `<table class="grid-table kv"><tbody>${rows.map(([k, v]) => `<tr><th scope="row">${esc(k)}</th><td>${esc(v)}</td></tr>`).join('')}</tbody></table>`;
    const proc = [];
    if (has('process_resident_memory_bytes')) proc.push(['Resident memory', fmtBytes(sum('process_resident_memory_bytes'))]);
    if (has('process_start_time_seconds')) proc.push(['Uptime', fmtDuration(Date.now() / 1000 - sum('process_start_time_seconds'))]);
    if (has('process_cpu_seconds_total')) proc.push(['CPU time', `${sum('process_cpu_seconds_total').toFixed(1)} s`]);
    if (has('process_open_fds')) proc.push(['Open files', String(sum('process_open_fds'))]);
    if (tsdb) proc.push(['Series today', String(tsdb.totalSeries)]);
    // Storage and ingest figures: every strata_* gauge/counter about rows, parts, bytes, merges.
    const interesting = /rows|parts|bytes|merge|series|samples|ingest/;
    const names = [...new Set(all.map((m) => m.name))].filter((n) => n.startsWith('strata_') && interesting.test(n) && !/_bucket$|_sum$|_count$/.test(n)).sort();
    const storage = names.map((n) => [n, String(sum(n))]);
    document.getElementById('sout').innerHTML = `
      <section class="card"><h2>Build</h2>${kv([['Application', build.application || 'strata'], ['Version', build.strataVersion || ''], ['Prometheus API', build.version]])}</section>
      <section class="card"><h2>Process</h2>${proc.length ? kv(proc) : '<p class="muted">This node does not export process metrics.</p>'}</section>
      <section class="card wide"><h2>Storage and ingest</h2>${storage.length ? kv(storage) : '<p class="muted">No storage metrics exported yet.</p>'}<p><a href="/metrics">All metrics (/metrics)</a></p></section>
      <section class="card wide" aria-labelledby="config-title"><h2 id="config-title">Configuration</h2>${configCard(config)}</section>`;
  } catch (e) {
    if (isAbort(e)) return;
    const el = document.getElementById('serror');
    el.hidden = false;
    el.textContent = `Error: ${e.message}`;
  }
}

/** The effective appliance.toml (secrets redacted by the server), or why it is not shown. */
function configCard(config) {
  if (config && typeof config.toml === 'string') {
    return `<p class="muted">In effect now: appliance.toml with defaults and command-line flags applied; secrets are redacted.</p><pre class="json config-toml" id="config-toml" tabindex="0" aria-label="Effective configuration">${esc(config.toml)}</pre>`;
  }
  const e = config?.error;
  if (e && e.status === 404) return '<p class="muted">This node does not publish its configuration.</p>';
  return `<div class="error" role="alert">Cannot load the configuration: ${esc(e?.message || 'no answer')}</div>`;
}

async function targetsPage(root) {
  root.innerHTML = `<h1>Targets</h1><div id="tout" class="card"><p class="muted">Loading…</p></div>`;
  const out = root.querySelector('#tout');
  try {
    const d = await api('/api/v1/targets', {}, 'targets');
    const ts = d.activeTargets || [];
    out.innerHTML = ts.length ? `<table class="grid-table"><thead><tr><th>Endpoint</th><th>Job</th><th>State</th><th>Last scrape</th><th>Duration</th><th>Error</th></tr></thead><tbody>${ts.map((t) =>
      `<tr><td>${esc(t.scrapeUrl || '')}</td><td>${esc(t.labels?.job || t.scrapePool || '')}</td><td class="state-${esc(t.health)}">${esc(t.health)}</td><td>${esc(t.lastScrape || '')}</td><td class="num">${esc(t.lastScrapeDuration ?? '')}</td><td>${esc(t.lastError || '')}</td></tr>`).join('')}</tbody></table>` : '<p>No scrape targets are configured.</p>';
  } catch (e) {
    if (isAbort(e)) return;
    out.innerHTML = e.status === 404
      ? '<p>No scrape agent is configured on this node, so there are no targets to show.</p>'
      : `<div class="error" role="alert">${esc(e.message)}</div>`;
  }
}

async function pluginsPage(root) {
  root.innerHTML = `<h1>Plugins</h1><div id="pout" class="card"><p class="muted">Loading…</p></div>`;
  const out = root.querySelector('#pout');
  let list;
  try {
    list = await api('/api/v1/plugins', {}, 'plugins');
  } catch (e) {
    if (isAbort(e)) return;
    out.innerHTML = e.status === 404
      ? '<p>No plugins are configured on this node (the plugin API is not served here).</p>'
      : `<div class="error" role="alert">${esc(e.message)}</div>`;
    return;
  }
  if (!list || !list.length) {
    out.innerHTML = '<p>No plugins are configured on this node.</p>';
    return;
  }
  const failures = (f) => Object.entries(f || {}).map(([k, v]) => `${k}: ${v}`).join(', ');
  out.innerHTML = `<div class="actions"><button type="button" id="reload" class="button">Reload plugins</button><span id="reload-result" role="status"></span></div>
  <table class="grid-table"><thead><tr><th>Name</th><th>Kind</th><th>Version</th><th>Mounts / functions</th><th>Loaded</th><th>Calls</th><th>Bad input</th><th>Failures</th></tr></thead><tbody>${list.map((p) =>
    `<tr><td>${esc(p.name)}<div class="muted">${esc(p.path || '')}</div></td><td>${esc(p.kind)}</td><td>${esc(p.info?.version || '')}</td><td>${esc([...(p.http_paths || []), ...(p.functions || []).map((f) => `${f.name}()`)].join(', '))}${(p.listeners || []).map((l) => `<div class="muted">${esc(`${l.protocol}://${l.address}`)}: ${esc(l.samples)} samples, ${esc(l.dropped_chunks)} dropped${l.protocol === 'tcp' ? `, ${esc(l.open_connections)} open` : ''}</div>`).join('')}</td><td>${p.loaded_at_ms ? esc(new Date(p.loaded_at_ms).toLocaleString()) : ''}${p.from_cache ? ' <span class="muted">(cached)</span>' : ''}</td><td class="num">${esc(p.calls ?? '')}</td><td class="num">${esc(p.parse_errors ?? '')}</td><td>${esc(failures(p.failures))}</td></tr>`).join('')}</tbody></table>`;
  out.querySelector('#reload').addEventListener('click', async () => {
    const r = out.querySelector('#reload-result');
    r.textContent = 'Reloading…';
    try {
      await post('/api/v1/plugins/reload');
      pluginsPage(root);
    } catch (e) {
      r.textContent = `Reload failed: ${e.message}`;
      r.className = 'error';
    }
  });
}

setupTheme();
window.addEventListener('hashchange', render);
render();
