// PromQL editor help: the function list and what to suggest at the cursor.

import { api, isAbort } from '/ui/api.js';

/** The built-in PromQL functions and aggregations; plugin functions come from /api/v1/plugins. */
export const FUNCTIONS = [
  'abs', 'absent', 'absent_over_time', 'avg_over_time', 'ceil', 'changes', 'clamp', 'clamp_max',
  'clamp_min', 'count_over_time', 'day_of_month', 'day_of_week', 'day_of_year', 'days_in_month',
  'delta', 'deriv', 'exp', 'floor', 'histogram_quantile', 'holt_winters', 'hour', 'idelta',
  'increase', 'irate', 'label_join', 'label_replace', 'last_over_time', 'ln', 'log10', 'log2',
  'max_over_time', 'min_over_time', 'minute', 'month', 'predict_linear', 'present_over_time',
  'quantile_over_time', 'rate', 'resets', 'round', 'scalar', 'sgn', 'sort', 'sort_desc', 'sqrt',
  'stddev_over_time', 'stdvar_over_time', 'sum_over_time', 'time', 'timestamp', 'vector', 'year',
  'sum', 'avg', 'min', 'max', 'count', 'count_values', 'group', 'stddev', 'stdvar', 'topk',
  'bottomk', 'quantile',
];

const cache = new Map();
async function cached(key, load) {
  if (!cache.has(key)) cache.set(key, load().catch((e) => { cache.delete(key); throw e; }));
  return cache.get(key);
}

/** All metric names (cached for the page's life; the list can be long). */
export function metricNames() {
  return cached('names', () => api('/api/v1/label/__name__/values', {}));
}

/** Names of the functions plugins provide (empty when no plugin API or none loaded). */
export function pluginFunctions() {
  return cached('plugin-fns', () => api('/api/v1/plugins', {})
    .then((list) => (list || []).flatMap((p) => (p.functions || []).map((f) => f.name)))
    .catch(() => []));
}

/**
 * What to suggest for `text` with the cursor at `pos`: {from, items: [{text, kind}]} where
 * `from` is where the replaced word starts.
 */
export async function suggest(text, pos) {
  const before = text.slice(0, pos);
  const word = /[a-zA-Z_:][a-zA-Z0-9_:]*$/.exec(before)?.[0] || '';
  const from = pos - word.length;
  // Inside braces? Find the last unclosed '{'.
  const open = before.lastIndexOf('{');
  const inBraces = open > before.lastIndexOf('}');
  if (inBraces) {
    const metric = /([a-zA-Z_:][a-zA-Z0-9_:]*)\s*$/.exec(before.slice(0, open))?.[1];
    const match = metric ? [`{__name__=${JSON.stringify(metric)}}`] : undefined;
    const inside = before.slice(open + 1);
    const val = /([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)$/.exec(inside);
    if (val) {
      const prefix = val[3];
      const values = await cached(`v:${val[1]}:${metric}`, () => api(`/api/v1/label/${encodeURIComponent(val[1])}/values`, { 'match[]': match }, 'suggest'));
      return {
        from: pos - prefix.length,
        items: values.filter((v) => v.startsWith(prefix)).slice(0, 200).map((v) => ({ text: v, kind: 'value' })),
      };
    }
    if (/(^|,)\s*[a-zA-Z0-9_]*$/.test(inside)) {
      const names = await cached(`l:${metric}`, () => api('/api/v1/labels', { 'match[]': match }, 'suggest'));
      return { from, items: names.filter((n) => n !== '__name__' && n.startsWith(word)).map((n) => ({ text: n, kind: 'label' })) };
    }
    return { from, items: [] };
  }
  if (!word) return { from, items: [] };
  // After "by (" or "without (": label names.
  if (/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*$/.test(before)) {
    const names = await cached('l:', () => api('/api/v1/labels', {}, 'suggest'));
    return { from, items: names.filter((n) => n.startsWith(word)).map((n) => ({ text: n, kind: 'label' })) };
  }
  const [names, extra] = await Promise.all([metricNames(), pluginFunctions()]);
  const fns = [...new Set([...FUNCTIONS, ...extra])].sort();
  const items = fns.filter((f) => f.startsWith(word)).map((f) => ({ text: f, kind: 'function' }));
  for (const n of names) {
    if (items.length >= 200) break;
    if (n.startsWith(word)) items.push({ text: n, kind: 'metric' });
  }
  return { from, items };
}

/**
 * Attaches autocomplete to a <textarea>: suggestions in a listbox below it, arrows to move,
 * Tab/Enter to accept, Escape to close. Ctrl+Enter (or Enter without a list) runs `onRun`.
 */
export function attachAutocomplete(input, list, onRun) {
  let items = [];
  let active = 0;
  let from = 0;
  let seq = 0;
  const close = () => { items = []; list.hidden = true; input.setAttribute('aria-expanded', 'false'); };
  const show = () => {
    if (!items.length) return close();
    list.innerHTML = items.map((it, i) => `<li role="option" id="ac-${i}" class="ac-item${i === active ? ' active' : ''}" aria-selected="${i === active}" data-i="${i}"><span class="ac-kind ac-${it.kind}">${it.kind[0]}</span>${it.text.replace(/[&<>]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;' }[c]))}</li>`).join('');
    list.hidden = false;
    input.setAttribute('aria-expanded', 'true');
    input.setAttribute('aria-activedescendant', `ac-${active}`);
    list.querySelector('.active')?.scrollIntoView({ block: 'nearest' });
  };
  const accept = (i) => {
    const it = items[i];
    if (!it) return;
    const pos = input.selectionStart;
    const suffix = it.kind === 'function' ? '(' : '';
    input.value = input.value.slice(0, from) + it.text + suffix + input.value.slice(pos);
    const c = from + it.text.length + suffix.length;
    input.setSelectionRange(c, c);
    close();
    input.focus();
  };
  const update = async () => {
    const my = ++seq;
    try {
      const r = await suggest(input.value, input.selectionStart);
      if (my !== seq) return;
      // A single suggestion equal to what is typed already is no help; hide it.
      const typed = input.value.slice(r.from, input.selectionStart);
      items = r.items.length === 1 && r.items[0].text === typed ? [] : r.items;
      from = r.from;
      active = 0;
      show();
    } catch (e) {
      if (!isAbort(e)) close();
    }
  };
  input.addEventListener('input', update);
  input.addEventListener('blur', () => setTimeout(close, 150));
  input.addEventListener('keydown', (e) => {
    if (e.key === ' ' && e.ctrlKey) { e.preventDefault(); update(); return; }
    if (!list.hidden && items.length) {
      if (e.key === 'ArrowDown') { active = (active + 1) % items.length; show(); e.preventDefault(); return; }
      if (e.key === 'ArrowUp') { active = (active - 1 + items.length) % items.length; show(); e.preventDefault(); return; }
      if (e.key === 'Tab' || (e.key === 'Enter' && !e.ctrlKey && !e.metaKey)) { accept(active); e.preventDefault(); return; }
      if (e.key === 'Escape') { close(); e.preventDefault(); return; }
    }
    if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); close(); onRun(); }
  });
  list.addEventListener('mousedown', (e) => {
    const li = e.target.closest('.ac-item');
    if (li) { e.preventDefault(); accept(+li.dataset.i); }
  });
}
