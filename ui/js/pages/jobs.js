// Every job, newest first, filtered by repository and state, paged by cursor.
import { api } from '../api.js';
import { h, clear, badge, duration, elapsed, shortSha, when, FINAL } from '../dom.js';
import { every, listFilters, showError } from './common.js';

const PAGE = 50;
const STATES = ['', 'queued', 'waiting', 'running', 'passed', 'failed', 'error', 'cancelled', 'skipped'];

export function jobsPage(el, _id, params) {
  const { form, query, repo, state, cursor } = listFilters('/ui/jobs', STATES, params, PAGE);
  const body = h('div');
  clear(el, h('h1', 'Jobs'), form, body);
  return every(3000, async () => {
    let data;
    try { data = await api('/v1/jobs?' + query); } catch (e) { showError(body, e); return false; }
    const next = new URLSearchParams(params);
    if (data.next_cursor) next.set('cursor', data.next_cursor);
    clear(body,
      data.jobs.length ? h('table.list#job-list',
        h('thead', h('tr', ['Job', 'Repository', 'Commit', 'State', 'Template', 'Duration', 'When'].map((t) => h('th', t)))),
        h('tbody', data.jobs.map((j) => h('tr',
          h('td', h('a', { href: '/ui/jobs/' + j.id }, j.name || j.id)),
          h('td', j.repo.replace(/^https?:\/\//, '')),
          h('td.mono', shortSha(j.sha)),
          h('td', badge(j.state)),
          h('td.mono', j.template_key ? j.template_key.slice(0, 12) + (j.bake_hit ? ' (hit)' : ' (miss)') : '–'),
          h('td.num', duration(elapsed(j))),
          h('td', when(j.created_at)))))) : h('p.muted', 'No jobs.'),
      h('nav.pager', cursor ? h('a', { href: '/ui/jobs' + (repo || state ? '?' + new URLSearchParams({ repo, state }) : '') }, '« Newest') : null,
        data.next_cursor ? h('a', { href: '/ui/jobs?' + next }, 'Older »') : null));
    if (cursor) return false;
    return data.jobs.some((j) => !FINAL.has(j.state)) ? 2000 : 10000;
  });
}
