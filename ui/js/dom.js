// Small helpers to build the page without innerHTML (so nothing from the API is ever parsed as
// markup) and to show times and durations.
const SVG_NS = 'http://www.w3.org/2000/svg';

// h('div.cls#id', {attr: v, onclick: fn}, child, ...): children are nodes or text.
export function h(spec, attrs, ...children) {
  return build(document.createElement(tagOf(spec)), spec, attrs, children);
}
export function s(spec, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tagOf(spec)), spec, attrs, children, true);
}

function tagOf(spec) { return spec.split(/[.#]/)[0] || 'div'; }

function build(el, spec, attrs, children, svg = false) {
  for (const m of spec.matchAll(/([.#])([^.#]+)/g)) {
    if (m[1] === '.') el.classList.add(m[2]); else el.id = m[2];
  }
  // A first argument that is not a plain object is a child (0 and '' too).
  if (attrs !== null && attrs !== undefined && (typeof attrs !== 'object' || attrs instanceof Node || Array.isArray(attrs))) {
    children.unshift(attrs);
    attrs = null;
  }
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'text') el.textContent = v;
    else if (k === 'class') el.setAttribute('class', v);
    else if (!svg && k in el && k !== 'list' && k !== 'form') el[k] = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function duration(ms) {
  if (ms === null || ms === undefined || ms < 0) return '–';
  if (ms < 1000) return ms + ' ms';
  const sec = ms / 1000;
  if (sec < 60) return sec.toFixed(1) + ' s';
  const m = Math.floor(sec / 60), r = Math.round(sec % 60);
  if (m < 60) return `${m}m ${r}s`;
  return `${Math.floor(m / 60)}h ${m % 60}m`;
}

export function ago(iso) {
  if (!iso) return '–';
  const ms = Date.now() - Date.parse(iso);
  if (ms < 0) return 'just now';
  if (ms < 60000) return Math.floor(ms / 1000) + ' s ago';
  if (ms < 3600000) return Math.floor(ms / 60000) + ' min ago';
  if (ms < 86400000) return Math.floor(ms / 3600000) + ' h ago';
  return Math.floor(ms / 86400000) + ' d ago';
}

export function when(iso) {
  return iso ? h('time', { datetime: iso, title: new Date(iso).toLocaleString() }, ago(iso)) : '–';
}

export function badge(state) { return h('span.badge.state-' + state, state); }

export function shortSha(sha) { return sha ? sha.slice(0, 10) : '…'; }

export function bytes(n) {
  if (n < 1024) return n + ' B';
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n, i = -1;
  do { v /= 1024; i++; } while (v >= 1024 && i < units.length - 1);
  return v.toFixed(1) + ' ' + units[i];
}

// A job's or pipeline's running time so far (running) or in all (ended).
export function elapsed(item) {
  if (item.duration_ms) return item.duration_ms;
  if (item.started_at && !item.finished_at) return Date.now() - Date.parse(item.started_at);
  return null;
}

export const FINAL = new Set(['passed', 'failed', 'error', 'cancelled', 'skipped']);
