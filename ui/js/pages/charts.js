// Pictures drawn from the API: job durations over the last day per repository, sandbox create
// times of the last hour, pass/fail over the last day.
import { api } from '../api.js';
import { h, clear, duration } from '../dom.js';
import { can } from '../app.js';
import { histogram, scatterOverTime, stackedOverTime } from '../svgchart.js';

const DAY = 86400000, HOUR = 3600000;

export function chartsPage(el) {
  const jobsBox = h('section');
  const passBox = h('section');
  const createBox = h('section');
  clear(el, h('h1', 'Charts'),
    h('h2', 'Job durations, last 24 hours, per repository'), jobsBox,
    h('h2', 'Passed and failed jobs, last 24 hours'), passBox,
    h('h2', 'Sandbox create times, last hour'), createBox);
  if (can('ci')) drawJobs(jobsBox, passBox);
  else for (const b of [jobsBox, passBox]) clear(b, h('p.muted', 'Needs a CI scope.'));
  drawCreates(createBox);
}

// Pages of /v1/jobs back to a day ago (at most 10 pages of 500).
async function lastDayOfJobs() {
  const since = Date.now() - DAY;
  const out = [];
  let cursor = '';
  for (let i = 0; i < 10; i++) {
    const q = new URLSearchParams({ limit: 500 });
    if (cursor) q.set('cursor', cursor);
    const page = await api('/v1/jobs?' + q);
    for (const j of page.jobs) if (Date.parse(j.created_at) >= since) out.push(j);
    const last = page.jobs[page.jobs.length - 1];
    if (!page.next_cursor || !last || Date.parse(last.created_at) < since) break;
    cursor = page.next_cursor;
  }
  return out;
}

async function drawJobs(durBox, passBox) {
  let jobs;
  try { jobs = await lastDayOfJobs(); } catch (e) { clear(durBox, h('p.error', e.message)); return; }
  const now = Date.now(), from = now - DAY;
  const byRepo = new Map();
  for (const j of jobs) {
    if (!j.finished_at || !j.duration_ms) continue;
    const repo = j.repo.replace(/^https?:\/\//, '');
    if (!byRepo.has(repo)) byRepo.set(repo, []);
    byRepo.get(repo).push([Date.parse(j.finished_at), j.duration_ms]);
  }
  const series = [...byRepo].map(([name, points]) => ({ name, points }));
  clear(durBox, series.length ? scatterOverTime('chart-durations', 'job durations per repository', series, from, now, (v) => duration(Math.round(v))) : h('p.muted', 'No finished jobs in the last day.'));
  const bucketMs = HOUR;
  const buckets = [];
  for (let t = from - (from % bucketMs); t < now; t += bucketMs) buckets.push({ t, counts: {} });
  for (const j of jobs) {
    if (!j.finished_at) continue;
    const t = Date.parse(j.finished_at);
    const b = buckets[Math.floor((t - buckets[0].t) / bucketMs)];
    if (b) b.counts[j.state] = (b.counts[j.state] || 0) + 1;
  }
  clear(passBox, jobs.some((j) => j.finished_at) ? stackedOverTime('chart-passfail', 'passed and failed jobs per hour', buckets, ['passed', 'failed', 'error', 'cancelled'], buckets[0].t, now, bucketMs) : h('p.muted', 'No finished jobs in the last day.'));
}

// kilnd's own record of the last hour's creates (GET /v1/stats/creates): bounded, whoever made them.
async function drawCreates(box) {
  let creates;
  try { creates = (await api('/v1/stats/creates')).creates; } catch (e) { clear(box, h('p.error', e.message)); return; }
  const times = creates.map((c) => c.ms);
  if (!times.length) return clear(box, h('p.muted', 'No sandbox was created in the last hour.'));
  const sorted = [...times].sort((a, b) => a - b);
  const pct = (p) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
  clear(box, histogram('chart-creates', 'sandbox create time distribution', times, 20, (v) => Math.round(v) + ' ms'),
    h('p.muted', `${times.length} creates · p50 ${Math.round(pct(0.5))} ms · p90 ${Math.round(pct(0.9))} ms · max ${Math.round(sorted[sorted.length - 1])} ms`));
}
