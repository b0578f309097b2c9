// Pieces several pages share: the job-state chips of a pipeline, a repeating refresh, errors.
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

export function showError(el, e) {
  clear(el, h('p.error', { role: 'alert' }, e.status === 404 ? 'Not found (or not visible to this token).' : String(e.message || e)));
}

export function triggerOf(item) {
  const src = item.source || 'cli';
  const labels = item.labels || {};
  const extra = labels.pr ? ` PR #${labels.pr}` : labels.event ? ` ${labels.event}` : '';
  return src + extra;
}
