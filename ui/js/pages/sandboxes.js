// Sandboxes not ended (live and paused): template, metadata, age, a TTL countdown (a paused one's
// TTL stands still: what it has left), create time; delete.
import { api } from '../api.js';
import { h, clear, badge } from '../dom.js';
import { can } from '../app.js';
import { every, showError } from './common.js';

function countdown(expiresAt) {
  const ms = Date.parse(expiresAt) - Date.now();
  if (ms <= 0) return 'expiring';
  return duration(ms);
}

function duration(ms) {
  const s = Math.floor(ms / 1000);
  const m = Math.floor(s / 60);
  return m >= 60 ? `${Math.floor(m / 60)}h ${m % 60}m` : `${m}:${String(s % 60).padStart(2, '0')}`;
}

// ?id=<sandbox> (the GitLab executor's link) marks that sandbox's row.
export function sandboxesPage(el, _id, params) {
  if (!can('sandboxes')) return clear(el, h('h1', 'Sandboxes'), h('p', 'This token has no sandboxes scope.'));
  const body = h('div');
  clear(el, h('h1', 'Sandboxes'), body);
  let list = [];
  const ticker = setInterval(() => {
    for (const td of body.querySelectorAll('td[data-expires]')) td.textContent = countdown(td.dataset.expires);
    for (const td of body.querySelectorAll('td[data-created]')) td.textContent = ago(td.dataset.created);
  }, 1000);
  const stop = every(5000, async () => {
    try { list = (await api('/v1/sandboxes')).sandboxes; } catch (e) { showError(body, e); return true; }
    draw();
    return true;
  });
  function draw() {
    if (!list.length) return clear(body, h('p.muted', 'No live or paused sandboxes.'));
    clear(body, h('table.list#sandbox-list',
      h('thead', h('tr', ['Sandbox', 'Template', 'State', 'Metadata', 'Age', 'TTL left', 'Create time', ''].map((t) => h('th', t)))),
      h('tbody', list.map((sb) => h('tr', { 'data-id': sb.id, class: sb.id === params.get('id') ? 'selected' : null },
        h('td.mono', sb.id),
        h('td', sb.template),
        h('td', badge(sb.state)),
        h('td', Object.entries(sb.metadata || {}).map(([k, v]) => h('span.kv', `${k}=${v}`))),
        h('td', { 'data-created': sb.created_at }, ago(sb.created_at)),
        sb.state === 'paused' ? h('td.num', `paused, ${duration((sb.ttl_left_seconds || 0) * 1000)}`)
          : h('td.num', { 'data-expires': sb.expires_at }, countdown(sb.expires_at)),
        h('td.num', sb.create_ms ? `${Math.round(sb.create_ms)} ms` : '–'),
        h('td', mayDelete() ? h('button.danger.delete', { type: 'button', 'data-id': sb.id, onclick: async (ev) => {
          ev.target.disabled = true;
          try {
            await api('/v1/sandboxes/' + sb.id, { method: 'DELETE' });
            list = list.filter((x) => x.id !== sb.id);
            draw();
          } catch (e) { ev.target.disabled = false; alert(e.message); }
        } }, 'Delete') : null))))));
  }
  return () => { stop(); clearInterval(ticker); };
}

// GET /v1/sandboxes lists only the token's own (an admin's too, without owner=all), and a
// token may delete its own: every row listed may be deleted.
function mayDelete() { return can('sandboxes'); }

function ago(iso) {
  const s = Math.max(0, Math.floor((Date.now() - Date.parse(iso)) / 1000));
  return s < 60 ? `${s} s` : s < 3600 ? `${Math.floor(s / 60)} min` : `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}
