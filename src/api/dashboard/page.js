'use strict';
// The dashboard of shared_map_api: every map of this location, refreshed from
// the same location's JSON API. Keys and values are untrusted (clients choose
// the URIs a map counts), so they only ever reach the page as text nodes.

const REFRESH_MS = 2000;
const TOP = 10;            // largest numeric entries shown per map
const LISTED = 1000;       // entries fetched per map to find them
const HISTORY = 60;        // points of the activity sparkline
const SVG = 'http://www.w3.org/2000/svg';

const writable = document.body.dataset.writable === 'yes';
const mapsEl = document.getElementById('maps');
const statusEl = document.getElementById('status');
const prefixEl = document.getElementById('prefix');

// Per map: the previous sample, to turn counters into rates, and the history.
const seen = new Map();

function el(tag, props, ...children) {
  const e = document.createElement(tag);
  Object.assign(e, props || {});
  for (const c of children) e.append(c);
  return e;
}

function number(n) {
  return Number(n).toLocaleString('en-US');
}

function bytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : String(n)) + ' ' + units[i];
}

function micros(us) {
  return us >= 1000 ? (us / 1000).toFixed(1) + ' ms' : number(us) + ' µs';
}

// The key as text: UTF-8 keys as they are, others as their base64 form.
function keyText(e) {
  return e.key !== undefined ? e.key : 'base64:' + e.key_base64;
}

// The query string form of a key: every byte percent-encoded as the API decodes it.
function keyArg(e) {
  if (e.key !== undefined) return encodeURIComponent(e.key);
  return Array.from(atob(e.key_base64), c => '%' + c.charCodeAt(0).toString(16).padStart(2, '0')).join('');
}

async function api(path, init) {
  const r = await fetch(path, Object.assign({ cache: 'no-store', headers: { Accept: 'application/json' } }, init));
  if (!r.ok) throw new Error(path + ': ' + r.status + ' ' + (await r.text()).trim());
  return r;
}

function fillRow(label, used, total, text) {
  const ratio = total > 0 ? Math.min(1, used / total) : 0;
  const inner = el('div');
  inner.style.width = (ratio * 100).toFixed(1) + '%';
  const bar = el('div', { className: 'bar' + (ratio > 0.9 ? ' high' : '') }, inner);
  bar.setAttribute('role', 'meter');
  bar.setAttribute('aria-label', label);
  bar.setAttribute('aria-valuenow', (ratio * 100).toFixed(0));
  return [el('span', { textContent: label }), bar, el('span', { className: 'num', textContent: text })];
}

function sparkline(points) {
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('class', 'spark');
  svg.setAttribute('viewBox', '0 0 ' + (HISTORY - 1) + ' 40');
  svg.setAttribute('preserveAspectRatio', 'none');
  const max = Math.max(1, ...points);
  const offset = HISTORY - points.length;
  const line = document.createElementNS(SVG, 'polyline');
  line.setAttribute('points', points.map((p, i) => (offset + i) + ',' + (39 - (p / max) * 38).toFixed(2)).join(' '));
  line.setAttribute('vector-effect', 'non-scaling-stroke');
  svg.append(line);
  return svg;
}

async function confirmAndSend(question, path, init) {
  if (!window.confirm(question)) return;
  try {
    await api(path, init);
  } catch (err) {
    statusEl.textContent = String(err.message || err);
    statusEl.className = 'error';
  }
  refresh();
}

function renderMap(m, listing, now) {
  const s = m.stats;
  const prev = seen.get(m.name);
  const numeric = listing.entries.filter(e => e.type !== 'string');
  const sum = numeric.reduce((a, e) => a + Number(e.value), 0);
  const lookups = s.hits + s.misses;
  const dt = prev ? (now - prev.at) / 1000 : 0;
  const history = prev ? prev.history : [];
  if (prev && dt > 0) {
    const rate = (Math.max(0, sum - prev.sum) + Math.max(0, lookups - prev.lookups)) / dt;
    history.push(rate);
    if (history.length > HISTORY) history.shift();
  }
  const previous = prev ? prev.values : new Map();
  const values = new Map(numeric.map(e => [keyText(e), Number(e.value)]));
  seen.set(m.name, { at: now, sum, lookups, history, values });

  const title = el('div', { className: 'title' },
    el('h2', { textContent: m.name }), el('span', { className: 'type', textContent: s.type }));
  if (writable) {
    title.append(el('button', {
      textContent: 'clear map', title: 'remove every entry of ' + m.name,
      onclick: () => confirmAndSend('Remove every entry of "' + m.name + '"?',
        encodeURIComponent(m.name), { method: 'DELETE' }),
    }));
  }

  const used = s.space - s.free_space;
  const fill = el('div', { className: 'fill' },
    ...fillRow('entries', s.entries, s.max_entries, number(s.entries) + ' / ' + number(s.max_entries)),
    ...fillRow('space', used, s.space, bytes(used) + ' / ' + bytes(s.space)));

  const stats = el('dl', { className: 'stats' });
  for (const [name, value] of Object.entries(s)) {
    if (typeof value !== 'number' || ['space', 'free_space', 'entries', 'max_entries'].includes(name)) continue;
    stats.append(el('dt', { textContent: name.replace(/_/g, ' ') }), el('dd', { textContent: number(value) }));
  }

  if (s.lock) {
    stats.append(el('dt', { textContent: 'lock waits' }), el('dd', { textContent: number(s.lock.waits) }),
      el('dt', { textContent: 'time waited' }), el('dd', { textContent: micros(s.lock.wait_us) }),
      el('dt', { textContent: 'longest hold' }), el('dd', { textContent: micros(s.lock.hold_max_us) }));
  }

  const last = history.length ? history[history.length - 1] : 0;
  const caption = el('div', { className: 'caption',
    textContent: 'activity: ' + last.toFixed(1) + '/s (increments of listed counters and lookups)' });

  const top = numeric.slice().sort((a, b) => Number(b.value) - Number(a.value)).slice(0, TOP);
  const table = el('table', {},
    el('thead', {}, el('tr', {},
      el('th', { textContent: 'key' }), el('th', { className: 'num', textContent: 'value' }),
      el('th', { className: 'num', textContent: 'per second' }), ...(writable ? [el('th')] : []))));
  const body = el('tbody');
  for (const e of top) {
    const k = keyText(e);
    const before = previous.get(k);
    const rate = before !== undefined && dt > 0 ? ((Number(e.value) - before) / dt).toFixed(1) : '–';
    // An expired entry the map still holds (listed with `stale`): marked, dimmed.
    const value = el('td', { className: 'num', textContent: number(e.value) });
    if (e.stale) {
      value.prepend(el('span', { className: 'stale', textContent: 'stale',
        title: 'expired; held until the sweep, an eviction or a write to the key' }), ' ');
    }
    const row = el('tr', { className: e.stale ? 'stale' : '' },
      el('td', { className: 'key', textContent: k }), value,
      el('td', { className: 'num', textContent: e.stale ? '–' : rate }));
    if (writable) {
      row.append(el('td', {}, el('button', {
        textContent: 'reset', title: 'set to 0',
        onclick: () => confirmAndSend('Reset "' + k + '" in "' + m.name + '" to 0?',
          encodeURIComponent(m.name) + '?key=' + keyArg(e) + '&type=' + e.type, { method: 'PUT', body: '0' }),
      })));
    }
    body.append(row);
  }
  table.append(body);
  const note = listing.more ? ' (the first ' + number(LISTED) + ' listed entries)' : '';
  const tableCaption = el('div', { className: 'caption',
    textContent: top.length ? 'largest numeric entries' + note : 'no numeric entries' + note });

  const section = el('section', { className: 'map' }, title, fill, stats, sparkline(history), caption,
    tableCaption, table);
  section.dataset.map = m.name;
  return section;
}

let running = false;
async function refresh() {
  if (running) return;
  running = true;
  try {
    const list = await (await api('?format=json')).json();
    const prefix = prefixEl.value;
    const listings = await Promise.all(list.maps.map(m =>
      api(encodeURIComponent(m.name) + '?stale&limit=' + LISTED +
          (prefix ? '&prefix=' + encodeURIComponent(prefix) : '')).then(r => r.json())));
    const now = Date.now();
    mapsEl.replaceChildren(...list.maps.map((m, i) => renderMap(m, listings[i], now)));
    statusEl.textContent = list.maps.length + ' maps · ' + new Date(now).toLocaleTimeString() +
      (writable ? '' : ' · read-only');
    statusEl.className = '';
  } catch (err) {
    statusEl.textContent = String(err.message || err);
    statusEl.className = 'error';
  } finally {
    running = false;
  }
}

document.getElementById('search').addEventListener('submit', ev => { ev.preventDefault(); refresh(); });
prefixEl.addEventListener('input', () => { seen.clear(); refresh(); });
refresh();
setInterval(refresh, REFRESH_MS);
