// One pipeline: its commit and state, its jobs as a graph of needs, a table of the jobs, cancel
// and re-run.
import { api } from '../api.js';
import { h, clear, badge, duration, elapsed, shortSha, when, FINAL } from '../dom.js';
import { can, navigate } from '../app.js';
import { every, runButtons, showError, triggerOf } from './common.js';
import { needsGraph } from './graph.js';

export function pipelinePage(el, id) {
  const body = h('div');
  clear(el, h('p.crumbs', h('a', { href: '/ui/' }, 'Pipelines'), ' / ', id), body);
  return every(2000, async () => {
    let p;
    try { p = await api('/v1/pipelines/' + encodeURIComponent(id)); } catch (e) { showError(body, e); return false; }
    const actions = runButtons(can('ci:submit'), FINAL.has(p.state), `/v1/pipelines/${p.id}/cancel`,
      { repo: p.repo, sha: p.sha }, (again) => navigate('/ui/pipelines/' + again.id));
    clear(body,
      h('h1', p.repo.replace(/^https?:\/\//, ''), ' ', badge(p.state)),
      h('dl.facts',
        h('dt', 'Commit'), h('dd.mono', p.sha || '(resolving ' + p.ref + ')'),
        h('dt', 'Trigger'), h('dd', triggerOf(p)),
        h('dt', 'Trust'), h('dd', p.trusted ? 'trusted' : 'untrusted (no secrets, restricted network)'),
        h('dt', 'Created'), h('dd', when(p.created_at)),
        h('dt', 'Duration'), h('dd', duration(elapsed(p)))),
      p.error ? h('p.error', p.error) : null,
      actions,
      h('h2', 'Jobs'),
      p.jobs.length ? h('div.graph-wrap', needsGraph(p.jobs)) : h('p.muted', 'Planned once a worker has read .kiln.yml.'),
      h('table.list#jobs',
        h('thead', h('tr', ['Job', 'State', 'Needs', 'Duration', 'Started'].map((t) => h('th', t)))),
        h('tbody', p.jobs.map((j) => h('tr',
          h('td', h('a', { href: '/ui/jobs/' + j.id }, j.name || 'job')),
          h('td', badge(j.state)),
          h('td', (j.needs || []).map((n) => p.jobs.find((x) => x.id === n)?.name || n).join(', ') || '–'),
          h('td.num', duration(elapsed(j))),
          h('td', when(j.started_at)))))),
      h('p.muted.mono', p.id, ' · ', shortSha(p.sha)));
    return !FINAL.has(p.state);
  });
}
