// A line chart of our own in SVG: axes, legend (click to hide a series), hover values,
// drag to zoom, and a stacked option. One <path class="series"> per series, gaps as moves.

const PALETTE = ['#2563eb', '#dc2626', '#16a34a', '#d97706', '#7c3aed', '#0891b2', '#db2777',
  '#65a30d', '#ea580c', '#4f46e5', '#059669', '#b91c1c', '#0d9488', '#9333ea', '#ca8a04'];

/** The colour of series number `i`. */
export function color(i) {
  return PALETTE[i % PALETTE.length];
}

/** Escapes text for HTML and SVG. */
export function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
}

/** `name{a="b", ...}` for a label set. */
export function seriesName(metric) {
  const name = metric.__name__ || '';
  const rest = Object.entries(metric).filter(([k]) => k !== '__name__')
    .map(([k, v]) => `${k}=${JSON.stringify(v)}`);
  return rest.length ? `${name}{${rest.join(', ')}}` : (name || '{}');
}

/** A short number: 1.5k, 2.3M, 0.004. */
export function fmtNum(v) {
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  if (a >= 1e15 || (a > 0 && a < 1e-3)) return v.toExponential(2);
  for (const [d, s] of [[1e12, 'T'], [1e9, 'G'], [1e6, 'M'], [1e3, 'k']]) {
    if (a >= d) return +(v / d).toFixed(2) + s;
  }
  return String(+v.toFixed(4));
}

function niceStep(span, count) {
  const raw = span / count;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const n = raw / mag;
  return (n < 1.5 ? 1 : n < 3 ? 2 : n < 7 ? 5 : 10) * mag;
}

const TIME_STEPS = [1, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800];

function fmtTime(t, span) {
  const d = new Date(t * 1000);
  const p = (n) => String(n).padStart(2, '0');
  const hm = `${p(d.getHours())}:${p(d.getMinutes())}`;
  if (span <= 300) return `${hm}:${p(d.getSeconds())}`;
  if (span <= 86400 * 2) return hm;
  return `${p(d.getMonth() + 1)}-${p(d.getDate())} ${hm}`;
}

/**
 * Draws `series` ([{name, points: [[tSec, value], ...]}]) into `el`.
 * opts: {stacked, start, end, step, onZoom(startSec, endSec)}.
 */
export function renderChart(el, series, opts = {}) {
  const hidden = new Set(opts.hidden || []);
  el._chartObserver?.disconnect();
  el.innerHTML = '';
  el.classList.add('chart-wrap');
  const W = Math.max(320, el.clientWidth || 800);
  const H = 320;
  const m = { l: 64, r: 12, t: 10, b: 28 };
  const iw = W - m.l - m.r;
  const ih = H - m.t - m.b;

  // Every timestamp seen, sorted: the hover snaps to these, and stacking sums along them.
  const allTs = [...new Set(series.flatMap((s) => s.points.map((p) => p[0])))].sort((a, b) => a - b);
  const visible = series.map((s, i) => ({ ...s, index: i })).filter((s) => !hidden.has(s.index));
  let drawn = visible.map((s) => ({ ...s, map: new Map(s.points.map(([t, v]) => [t, v])) }));
  if (opts.stacked) {
    const acc = new Map();
    drawn = drawn.map((s) => {
      const map = new Map();
      const base = new Map();
      for (const t of allTs) {
        const v = s.map.get(t);
        if (v === undefined || !Number.isFinite(v)) continue;
        const below = acc.get(t) || 0;
        acc.set(t, below + v);
        map.set(t, below + v);
        base.set(t, below);
      }
      return { ...s, map, base, raw: s.map };
    });
  }
  const x0 = opts.start ?? allTs[0] ?? 0;
  const x1 = opts.end ?? allTs[allTs.length - 1] ?? 1;
  let lo = Infinity, hi = -Infinity;
  for (const s of drawn) for (const v of s.map.values()) if (Number.isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  if (!Number.isFinite(lo)) { lo = 0; hi = 1; }
  if (opts.stacked) lo = Math.min(0, lo);
  if (lo === hi) { lo -= Math.abs(lo) * 0.1 || 1; hi += Math.abs(hi) * 0.1 || 1; }
  const ystep = niceStep(hi - lo, 5);
  lo = Math.floor(lo / ystep) * ystep;
  hi = Math.ceil(hi / ystep) * ystep;
  const X = (t) => m.l + ((t - x0) / ((x1 - x0) || 1)) * iw;
  const Y = (v) => m.t + ih - ((v - lo) / ((hi - lo) || 1)) * ih;

  const parts = [];
  for (let v = lo; v <= hi + ystep / 2; v += ystep) {
    const y = Y(v).toFixed(1);
    parts.push(`<line class="grid" x1="${m.l}" x2="${W - m.r}" y1="${y}" y2="${y}"/>`);
    parts.push(`<text class="tick" x="${m.l - 6}" y="${y}" text-anchor="end" dominant-baseline="middle">${esc(fmtNum(+v.toPrecision(12)))}</text>`);
  }
  const span = x1 - x0;
  const tstep = TIME_STEPS.find((s) => span / s <= Math.max(2, iw / 110)) || 604800;
  for (let t = Math.ceil(x0 / tstep) * tstep; t <= x1; t += tstep) {
    const x = X(t).toFixed(1);
    parts.push(`<line class="grid" x1="${x}" x2="${x}" y1="${m.t}" y2="${m.t + ih}"/>`);
    parts.push(`<text class="tick" x="${x}" y="${H - 8}" text-anchor="middle">${esc(fmtTime(t, span))}</text>`);
  }
  // A gap wider than twice the step (or 2.5 samples' spacing) breaks the line.
  const gap = (opts.step || 0) * 2 || Infinity;
  for (const s of drawn) {
    let d = '';
    let prev = null;
    const pts = allTs.filter((t) => s.map.has(t) && Number.isFinite(s.map.get(t)));
    for (const t of pts) {
      const cmd = prev === null || t - prev > gap ? 'M' : 'L';
      d += `${cmd}${X(t).toFixed(1)},${Y(s.map.get(t)).toFixed(1)}`;
      prev = t;
    }
    if (pts.length === 1) d += `h1`;
    if (opts.stacked && pts.length > 1) {
      // The band between this series and the ones below it.
      const back = pts.slice().reverse().map((t) => `L${X(t).toFixed(1)},${Y(s.base.get(t)).toFixed(1)}`).join('');
      const top = pts.map((t, i) => `${i ? 'L' : 'M'}${X(t).toFixed(1)},${Y(s.map.get(t)).toFixed(1)}`).join('');
      parts.push(`<path class="area" d="${top}${back}Z" fill="${color(s.index)}" fill-opacity="0.18"/>`);
    }
    parts.push(`<path class="series" data-index="${s.index}" d="${d}" stroke="${color(s.index)}"/>`);
  }
  parts.push(`<line class="cursor" x1="0" x2="0" y1="${m.t}" y2="${m.t + ih}" visibility="hidden"/>`);
  parts.push(`<rect class="zoom" x="0" y="${m.t}" width="0" height="${ih}" visibility="hidden"/>`);
  parts.push(`<rect class="overlay" x="${m.l}" y="${m.t}" width="${iw}" height="${ih}" fill="transparent"/>`);

  const svgHtml = `<svg class="chart" role="img" aria-label="Line chart of ${series.length} series" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}">${parts.join('')}</svg>`;
  el.insertAdjacentHTML('beforeend', svgHtml);
  const tip = document.createElement('div');
  tip.className = 'tooltip';
  tip.hidden = true;
  el.append(tip);

  const legend = document.createElement('ul');
  legend.className = 'legend';
  legend.innerHTML = series.map((s, i) => `<li><button type="button" class="legend-item${hidden.has(i) ? ' off' : ''}" data-index="${i}" aria-pressed="${!hidden.has(i)}"><span class="swatch" style="background:${color(i)}"></span>${esc(s.name)}</button></li>`).join('');
  el.append(legend);
  legend.addEventListener('click', (e) => {
    const b = e.target.closest('.legend-item');
    if (!b) return;
    const i = +b.dataset.index;
    // A plain click shows only that series (or all again); ctrl/meta-click toggles one.
    if (e.ctrlKey || e.metaKey) { hidden.has(i) ? hidden.delete(i) : hidden.add(i); }
    else if (hidden.size === series.length - 1 && !hidden.has(i)) hidden.clear();
    else { hidden.clear(); series.forEach((_, j) => j !== i && hidden.add(j)); }
    renderChart(el, series, { ...opts, hidden: [...hidden] });
  });

  const svg = el.querySelector('svg');
  const overlay = svg.querySelector('.overlay');
  const cursor = svg.querySelector('.cursor');
  const zoom = svg.querySelector('.zoom');
  const toT = (clientX) => {
    const r = svg.getBoundingClientRect();
    const px = (clientX - r.left) * (W / r.width);
    return x0 + ((Math.min(Math.max(px, m.l), m.l + iw) - m.l) / iw) * (x1 - x0);
  };
  let dragFrom = null;
  overlay.addEventListener('mousedown', (e) => { dragFrom = toT(e.clientX); e.preventDefault(); });
  overlay.addEventListener('mousemove', (e) => {
    const t = toT(e.clientX);
    if (dragFrom !== null) {
      const a = X(Math.min(dragFrom, t)), b = X(Math.max(dragFrom, t));
      zoom.setAttribute('x', a); zoom.setAttribute('width', b - a); zoom.setAttribute('visibility', 'visible');
    }
    if (!allTs.length) return;
    let best = allTs[0];
    for (const ts of allTs) if (Math.abs(ts - t) < Math.abs(best - t)) best = ts;
    cursor.setAttribute('x1', X(best)); cursor.setAttribute('x2', X(best)); cursor.setAttribute('visibility', 'visible');
    const rows = drawn.filter((s) => s.map.has(best))
      .map((s) => ({ s, v: (s.raw || s.map).get(best) }))
      .sort((a, b) => b.v - a.v).slice(0, 12)
      .map(({ s, v }) => `<div><span class="swatch" style="background:${color(s.index)}"></span>${esc(s.name)}: <b>${esc(fmtNum(v))}</b></div>`);
    tip.innerHTML = `<div class="tip-time">${esc(new Date(best * 1000).toLocaleString())}</div>${rows.join('') || '<div>no value</div>'}`;
    tip.hidden = false;
    const r = el.getBoundingClientRect();
    const left = e.clientX - r.left + 14;
    tip.style.left = `${Math.min(left, r.width - tip.offsetWidth - 4)}px`;
    tip.style.top = `${e.clientY - r.top + 10}px`;
  });
  overlay.addEventListener('mouseleave', () => { tip.hidden = true; cursor.setAttribute('visibility', 'hidden'); });
  // On window, so a drag released outside the chart still ends; dropped once the chart is gone.
  const up = (e) => {
    if (!svg.isConnected) { window.removeEventListener('mouseup', up); return; }
    if (dragFrom === null) return;
    const t = toT(e.clientX);
    const a = Math.min(dragFrom, t), b = Math.max(dragFrom, t);
    dragFrom = null;
    zoom.setAttribute('visibility', 'hidden');
    if (opts.onZoom && X(b) - X(a) > 5) opts.onZoom(a, b);
  };
  window.addEventListener('mouseup', up);

  // Redraw when the container's width changes (window resized, sidebar opened).
  if (typeof ResizeObserver === 'function') {
    const observer = new ResizeObserver(() => {
      if (!svg.isConnected) { observer.disconnect(); return; }
      if (Math.abs(Math.max(320, el.clientWidth || W) - W) > 20) renderChart(el, series, { ...opts, hidden: [...hidden] });
    });
    observer.observe(el);
    el._chartObserver = observer;
  }
}
