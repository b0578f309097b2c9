// Templates (GET /v1/templates) and CI bakes. An admin sees the bake cache itself (GET /v1/bakes):
// each bake's key, size on disk, hits and misses, when it was made and last used. Other CI tokens
// cannot list kilnd's bakes; they see each template key the recent jobs ran on, how often it was a
// hit (restored from a baked snapshot) or a miss, and when it was last used.
import { api } from '../api.js';
import { h, clear, when, bytes } from '../dom.js';
import { can } from '../app.js';
import { showError } from './common.js';

export function templatesPage(el) {
  const templates = h('div');
  const bakes = h('div#bakes');
  clear(el, h('h1', 'Templates'), templates, h('h2', 'CI bakes'), bakes);
  if (can('sandboxes')) loadTemplates(templates); else clear(templates, h('p.muted', 'Listing templates needs the sandboxes scope.'));
  if (can('admin')) loadBakeCache(bakes);
  else if (can('ci')) loadBakes(bakes); else clear(bakes, h('p.muted', 'Bakes are read from jobs: that needs a CI scope.'));
}

async function loadTemplates(el) {
  let data;
  try { data = await api('/v1/templates'); } catch (e) { return showError(el, e); }
  clear(el, h('table.list#template-list',
    h('thead', h('tr', ['Template', 'Kind', 'Ready', 'vCPUs', 'Memory'].map((t) => h('th', t)))),
    h('tbody', data.templates.map((t) => h('tr',
      h('td.mono', t.id), h('td', t.kind), h('td', t.ready ? 'yes' : 'baking'), h('td.num', t.vcpus), h('td.num', t.memory_mib + ' MiB'))))));
}

async function loadBakeCache(el) {
  let data;
  try { data = await api('/v1/bakes'); } catch (e) { return showError(el, e); }
  if (!data.bakes.length) return clear(el, h('p.muted', 'The bake cache is empty.'));
  const total = data.bakes.reduce((n, b) => n + (b.size_bytes || 0), 0);
  clear(el, h('p.muted', `${data.bakes.length} bakes, ${bytes(total)} on disk. Hits and misses count the jobs still kept.`),
    h('table.list#bake-list',
      h('thead', h('tr', ['Key', 'Template', 'Host', 'Size', 'Hits', 'Misses', 'Baked', 'Last use'].map((t) => h('th', t)))),
      h('tbody', data.bakes.map((b) => h('tr', { 'data-key': b.key, 'data-host': b.host },
        h('td.mono', { title: b.key }, b.key.slice(0, 16)), h('td.mono', b.template), h('td.mono.bake-host', b.host),
        h('td.num.bake-size', { 'data-bytes': b.size_bytes ?? '' }, b.size_bytes === null ? 'gone' : bytes(b.size_bytes)),
        h('td.num.bake-hits', b.hits), h('td.num.bake-misses', b.misses),
        h('td', when(b.created_at)), h('td', when(b.used_at)))))));
}

async function loadBakes(el) {
  // The last 500 jobs (two pages at most): enough to see which bakes are hot.
  const jobs = [];
  let cursor = '';
  try {
    for (let i = 0; i < 2; i++) {
      const q = new URLSearchParams({ limit: 250 });
      if (cursor) q.set('cursor', cursor);
      const page = await api('/v1/jobs?' + q);
      jobs.push(...page.jobs);
      if (!page.next_cursor) break;
      cursor = page.next_cursor;
    }
  } catch (e) { return showError(el, e); }
  const byKey = new Map();
  for (const j of jobs) {
    if (!j.template_key) continue;
    const b = byKey.get(j.template_key) || { key: j.template_key, hits: 0, misses: 0, last: null, repos: new Set() };
    if (j.bake_hit) b.hits++; else b.misses++;
    if (!b.last || j.created_at > b.last) b.last = j.created_at;
    b.repos.add(j.repo.replace(/^https?:\/\//, ''));
    byKey.set(j.template_key, b);
  }
  const rows = [...byKey.values()].sort((a, b) => (a.last < b.last ? 1 : -1));
  if (!rows.length) return clear(el, h('p.muted', 'No job has used a bake yet.'));
  clear(el, h('p.muted', `From the last ${jobs.length} jobs.`), h('table.list#bake-list',
    h('thead', h('tr', ['Key', 'Hits', 'Misses', 'Last use', 'Repositories'].map((t) => h('th', t)))),
    h('tbody', rows.map((b) => h('tr', h('td.mono', { title: b.key }, b.key.slice(0, 16)), h('td.num', b.hits), h('td.num', b.misses),
      h('td', when(b.last)), h('td', [...b.repos].join(', ')))))));
}
