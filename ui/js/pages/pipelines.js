// The pipelines list: newest first, filtered by repository and state, paged by cursor, redrawn
// every few seconds while one on the page is still queued or running.
import { api } from '../api.js';
import { h, clear, badge, duration, elapsed, shortSha, when, FINAL } from '../dom.js';
import { jobChips, every, listFilters, showError, triggerOf } from './common.js';

const PAGE = 25;
const STATES = ['', 'queued', 'running', 'passed', 'failed', 'error', 'cancelled'];

export function pipelinesPage(el, _id, params) {
  const { form, query, repo, state, cursor } = listFilters('/ui/pipelines', STATES, params, PAGE);
  const body = h('div');
  clear(el, h('h1', 'Pipelines'), form, body);

  return every(3000, async () => {
    let data;
    try { data = await api('/v1/pipelines?' + query); } catch (e) { showError(body, e); return true; }
    const rows = data.pipelines.map((p) => h('tr', { 'data-id': p.id },
      h('td', h('a', { href: '/ui/pipelines/' + p.id }, p.repo.replace(/^https?:\/\//, ''))),
      h('td.mono', { title: p.sha }, shortSha(p.sha) || p.ref),
      h('td', triggerOf(p)),
      h('td', p.trusted ? 'trusted' : h('span.untrusted', 'untrusted')),
      h('td', badge(p.state)),
      h('td', jobChips(p.jobs)),
      h('td.num', duration(elapsed(p))),
      h('td', when(p.created_at))));
    const next = new URLSearchParams(params);
    if (data.next_cursor) next.set('cursor', data.next_cursor);
    const first = new URLSearchParams(params);
    first.delete('cursor');
    clear(body,
      rows.length ? h('table.list#pipelines',
        h('thead', h('tr', ['Repository', 'Commit', 'Trigger', 'Trust', 'State', 'Jobs', 'Duration', 'When'].map((t) => h('th', t)))),
        h('tbody', rows)) : h('p.muted', 'No pipelines' + (repo || state ? ' match these filters.' : ' yet.')),
      h('nav.pager', cursor ? h('a', { href: '/ui/pipelines?' + first }, '« Newest') : null,
        data.next_cursor ? h('a#older', { href: '/ui/pipelines?' + next }, 'Older »') : null));
    // The first page follows what runs (every 2 s while something on it does, else every 10 s
    // for new ones); older pages do not change.
    if (cursor) return false;
    return data.pipelines.some((p) => !FINAL.has(p.state)) ? 2000 : 10000;
  });
}
