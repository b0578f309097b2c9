// Pieces several pages share: the job-state chips of a pipeline, a repeating refresh, errors.
import { api } from '../api.js';
import { h, clear } from '../dom.js';

// A pipeline's jobs at a glance: one chip per job; matrix combinations ("test (18, debian)") are
// grouped under their key, and a sharded job is one job (its shards are inside it).
export function jobChips(jobs) {
  const groups = new Map();
  for (const j of jobs || []) {
    const name = j.name || 'job';
    const key = name.includes(' (') ? name.slice(0, name.indexOf(' (')) : name;
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(j);
  }
  const out = h('span.chips');
  for (const [key, members] of groups) {
    const group = h('span.chip-group', { title: key });
    for (const j of members)
      group.append(h('a.chip.state-' + j.state, { href: '/ui/jobs/' + j.id, title: `${j.name || 'job'}: ${j.state}`, 'aria-label': `${j.name || 'job'} ${j.state}` }));
    out.append(group);
  }
  return out;
}

// Calls fn now and again after `ms` while it returns true (or after the number of ms it
// returns); returns the stop function.
export function every(ms, fn) {
  let timer = null, stopped = false;
  const tick = async () => {
    let again = false;
    try { again = await fn(); } catch (e) { again = true; console.warn(e); }
    if (!stopped && again) timer = setTimeout(tick, typeof again === 'number' ? again : ms);
  };
  tick();
  return () => { stopped = true; if (timer) clearTimeout(timer); };
}

// A list page's filters (repository, state) and the API query of the page the address names
// (its filters, the page size and the cursor).
export function listFilters(action, states, params, pageSize) {
  const repo = params.get('repo') || '';
  const state = params.get('state') || '';
  const cursor = params.get('cursor') || '';
  const form = h('form.filters', { method: 'get', action },
    h('input#filter-repo', { type: 'search', name: 'repo', value: repo, placeholder: 'repository', size: 40 }),
    h('select#filter-state', { name: 'state' }, states.map((s) => h('option', { value: s, selected: s === state }, s || 'any state'))),
    h('button', { type: 'submit' }, 'Filter'));
  const query = new URLSearchParams({ limit: pageSize });
  if (repo) query.set('repo', repo);
  if (state) query.set('state', state);
  if (cursor) query.set('cursor', cursor);
  return { form, query, repo, state, cursor };
}

// Cancel (while it runs) and re-run (once it ended) for a job or pipeline, as the scopes allow.
export function runButtons(canSubmit, ended, cancelPath, rerunBody, onRerun) {
  const actions = h('div.actions');
  if (canSubmit && !ended)
    actions.append(h('button#cancel.danger', { type: 'button', onclick: async (ev) => {
      ev.target.disabled = true;
      await api(cancelPath, { method: 'POST' }).catch((e) => alert(e.message));
    } }, 'Cancel'));
  if (canSubmit && ended)
    actions.append(h('button#rerun', { type: 'button', onclick: async () => {
      const again = await api('/v1/pipelines', { method: 'POST', body: rerunBody }).catch((e) => alert(e.message));
      if (again) onRerun(again);
    } }, 'Re-run'));
  return actions;
}

export function showError(el, e) {
  clear(el, h('p.error', { role: 'alert' }, e.status === 404 ? 'Not found (or not visible to this token).' : String(e.message || e)));
}

export function triggerOf(item) {
  const src = item.source || 'cli';
  const labels = item.labels || {};
  const extra = labels.pr ? ` PR #${labels.pr}` : labels.event ? ` ${labels.event}` : '';
  return src + extra;
}
