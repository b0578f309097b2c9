// One job: steps (state, duration, shard), the live log (virtualized, ANSI colours), the JUnit
// results (failures first, each expandable), artifacts, the template and bake, cancel and re-run.
import { api, streamNdjson } from '../api.js';
import { h, clear, badge, duration, elapsed, when, bytes, FINAL } from '../dom.js';
import { can, navigate } from '../app.js';
import { every, runButtons, showError } from './common.js';
import { LogView } from '../logview.js';

export function jobPage(el, id) {
  const head = h('div');
  const steps = h('div');
  const tests = h('div#tests');
  const artifacts = h('div#artifacts');
  const log = new LogView();
  const logState = h('span.muted#log-state', 'connecting…');
  clear(el, head, h('h2', 'Steps'), steps,
    h('h2', 'Log ', log.count, ' ', logState), log.el,
    h('h2', 'Tests'), tests, h('h2', 'Artifacts'), artifacts);

  const abort = new AbortController();
  let finalSeen = false;
  streamNdjson(`/v1/jobs/${encodeURIComponent(id)}/logs?follow=true`, (events) => log.addEvents(events), abort.signal)
    .then(() => { log.finish(); logState.textContent = 'complete'; })
    .catch((e) => { if (e.name !== 'AbortError') logState.textContent = 'log: ' + e.message; });
  logState.textContent = 'following';

  const stop = every(1500, async () => {
    let j;
    try { j = await api('/v1/jobs/' + encodeURIComponent(id)); } catch (e) { showError(head, e); return false; }
    drawHead(head, j);
    drawSteps(steps, j);
    const done = FINAL.has(j.state);
    if (done && !finalSeen) {
      finalSeen = true;
      drawTests(tests, j);
      drawArtifacts(artifacts, j);
    } else if (!done) {
      clear(tests, h('p.muted', 'Read when the job ends.'));
      clear(artifacts, h('p.muted', 'Kept when the job ends.'));
    }
    return !done;
  });
  return () => { stop(); abort.abort(); };
}

function drawHead(el, j) {
  // Re-running a job runs its pipeline again (the commit's .kiln.yml as a whole).
  const actions = runButtons(can('ci:submit'), FINAL.has(j.state), `/v1/jobs/${j.id}/cancel`,
    { repo: j.repo, sha: j.sha }, (again) => navigate('/ui/pipelines/' + again.id));
  clear(el,
    h('p.crumbs', h('a', { href: '/ui/' }, 'Pipelines'), ' / ',
      j.pipeline ? h('a', { href: '/ui/pipelines/' + j.pipeline }, j.pipeline) : '–', ' / ', j.id),
    h('h1', j.name || 'job', ' ', h('span#job-state', badge(j.state))),
    h('dl.facts',
      h('dt', 'Repository'), h('dd', j.repo),
      h('dt', 'Commit'), h('dd.mono', j.sha || '(resolving ' + j.ref + ')'),
      h('dt', 'Template'), h('dd.mono', j.template_key || '–'),
      h('dt', 'Bake'), h('dd#bake', j.template_key ? (j.bake_hit ? 'hit (restored from a baked snapshot)' : 'miss (baked for this job)') : '–'),
      h('dt', 'Duration'), h('dd', duration(elapsed(j))),
      h('dt', 'Created'), h('dd', when(j.created_at)),
      h('dt', 'Host'), h('dd#job-host', j.host || '–'),
      h('dt', 'Attempts'), h('dd', String(j.attempts) + (j.restarts ? ` (${j.restarts} restart)` : '')),
      // Attempt 2: its run was interrupted (its host lost, or kilnd restarted); the reason says which.
      h('dt', 'Attempt'), h('dd#job-attempt', String(j.attempt || 1) + (j.attempt_reason ? ` — ${j.attempt_reason}` : ''))),
    j.error ? h('p.error#job-error', j.error) : null,
    actions);
}

function drawSteps(el, j) {
  if (!j.steps.length) return clear(el, h('p.muted', 'No steps yet.'));
  // shard: a number from 0, or null for the job's own VM (before any fan-out).
  const shardOf = (s) => (typeof s.shard === 'number' && s.shard >= 0 ? s.shard : null);
  const sharded = j.steps.some((s) => shardOf(s) !== null);
  clear(el, h('table.list#steps',
    h('thead', h('tr', ['Step', sharded ? 'Shard' : null, 'State', 'Exit', 'Duration', 'Started'].filter(Boolean).map((t) => h('th', t)))),
    h('tbody', j.steps.map((s) => h('tr',
      h('td', s.name),
      sharded ? h('td', shardOf(s) === null ? '–' : String(shardOf(s))) : null,
      h('td', badge(s.state)),
      h('td.num', s.exit_code ?? '–'),
      h('td.num', s.state === 'running' && s.started_at ? duration(Date.now() - Date.parse(s.started_at)) : duration(s.duration_ms)),
      h('td', when(s.started_at)))))));
}

async function drawTests(el, j) {
  if (!j.junit) return clear(el, h('p.muted', 'This job reported no JUnit results.'));
  const t = j.junit;
  const passed = t.tests - t.failures - t.errors - t.skipped;
  const totals = h('p.totals#test-totals',
    h('span.count.state-passed', `${passed} passed`), ' ',
    h('span.count.state-failed', `${t.failures} failed`), ' ',
    h('span.count.state-error', `${t.errors} errors`), ' ',
    h('span.count.state-skipped', `${t.skipped} skipped`), ' ',
    h('span.muted', `of ${t.tests}`));
  const table = h('tbody');
  const more = h('div');
  clear(el, totals, h('table.list#test-cases', h('thead', h('tr', ['Outcome', 'Test', 'Time'].map((x) => h('th', x)))), table), more);
  const load = async (cursor) => {
    const q = new URLSearchParams({ limit: 200 });
    if (cursor) q.set('cursor', cursor);
    let page;
    try { page = await api(`/v1/jobs/${j.id}/tests?${q}`); } catch (e) { return showError(more, e); }
    for (const c of page.cases) table.append(caseRow(c));
    clear(more, page.next_cursor ? h('button', { type: 'button', onclick: () => load(page.next_cursor) }, `Show more (${page.count - page.cases.length - (cursor | 0)} left)`) : null);
  };
  load('');
}

function caseRow(c) {
  const failed = c.outcome === 'failure' || c.outcome === 'error';
  const title = [c.classname, c.name].filter(Boolean).join(' › ');
  const detail = failed || c.output
    ? h('details.case', { open: false },
      h('summary', title, c.message ? h('span.case-message', ' — ' + c.message) : null),
      c.type ? h('p.muted', c.type) : null,
      c.output ? h('pre.case-output', c.output) : null)
    : h('span', title);
  return h('tr.case.outcome-' + c.outcome, h('td', badge(c.outcome === 'failure' ? 'failed' : c.outcome)), h('td', detail), h('td.num', c.time_seconds ? c.time_seconds.toFixed(3) + ' s' : '–'));
}

async function drawArtifacts(el, j) {
  let list;
  try { list = await api(`/v1/jobs/${j.id}/artifacts`); } catch (e) { return showError(el, e); }
  if (!list.artifacts.length) return clear(el, h('p.muted', 'No artifacts.'));
  clear(el, h('ul.artifacts', list.artifacts.map((a) => h('li',
    h('a', { href: `/v1/jobs/${j.id}/artifacts/${a.name.split('/').map(encodeURIComponent).join('/')}`, download: a.name.split('/').pop() }, a.name),
    ' ', h('span.muted', bytes(a.size))))));
}

