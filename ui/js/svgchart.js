// Small SVG charts drawn from API data: points over time, a histogram, stacked bars over time.
// Each mark carries what it stands for in data-* attributes (data-value, data-count, data-state)
// and each chart its totals, so a test can check the picture against the API.
import { s, h } from './dom.js';

const W = 640, H = 220, L = 56, R = 12, T = 12, B = 28;
export const PALETTE = ['#2f6fdf', '#d9480f', '#2b8a3e', '#9c36b5', '#e67700', '#0b7285', '#c2255c', '#5c940d'];

function frame(id, label) {
  return s('svg.chart', { id, viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': label, preserveAspectRatio: 'xMidYMid meet' });
}

function axes(svg, x0, x1, y1, fmtX, fmtY) {
  svg.append(s('line.axis', { x1: L, y1: H - B, x2: W - R, y2: H - B }), s('line.axis', { x1: L, y1: T, x2: L, y2: H - B }));
  for (let i = 0; i <= 4; i++) {
    const y = H - B - ((H - B - T) * i) / 4;
    svg.append(s('line.grid', { x1: L, y1: y, x2: W - R, y2: y }), s('text.tick', { x: L - 6, y: y + 4, 'text-anchor': 'end' }, fmtY((y1 * i) / 4)));
  }
  for (let i = 0; i <= 4; i++) {
    const x = L + ((W - L - R) * i) / 4;
    svg.append(s('text.tick', { x, y: H - 8, 'text-anchor': 'middle' }, fmtX(x0 + ((x1 - x0) * i) / 4)));
  }
}

const hhmm = (t) => new Date(t).toTimeString().slice(0, 5);
// A count's axis labels whole numbers only (a top of 2 has grid lines at 0.5 and 1.5: unlabelled).
const wholeCount = (v) => (Number.isInteger(v) ? String(v) : '');

// series: [{name, points: [[t, v], ...]}]; time on x from `from` to `to`.
export function scatterOverTime(id, label, series, from, to, fmtY) {
  const svg = frame(id, label);
  const maxY = Math.max(1, ...series.flatMap((se) => se.points.map((p) => p[1])));
  axes(svg, from, to, maxY, hhmm, fmtY);
  const sx = (t) => L + ((t - from) / (to - from)) * (W - L - R);
  const sy = (v) => H - B - (v / maxY) * (H - B - T);
  series.forEach((se, i) => {
    const colour = PALETTE[i % PALETTE.length];
    for (const [t, v] of se.points) {
      const c = s('circle.point', { cx: sx(t), cy: sy(v), r: 3.5, fill: colour, 'data-series': se.name, 'data-t': t, 'data-value': v });
      c.append(s('title', `${se.name}: ${fmtY(v)} at ${new Date(t).toLocaleTimeString()}`));
      svg.append(c);
    }
  });
  svg.setAttribute('data-count', series.reduce((n, se) => n + se.points.length, 0));
  return h('figure', svg, legend(series.map((se) => se.name)));
}

// values: numbers; bins of equal width from 0 to the largest.
export function histogram(id, label, values, bins, fmtX) {
  const svg = frame(id, label);
  const max = Math.max(1, ...values);
  const width = max / bins;
  const counts = new Array(bins).fill(0);
  for (const v of values) counts[Math.min(bins - 1, Math.floor(v / width))]++;
  const top = Math.max(1, ...counts);
  axes(svg, 0, max, top, fmtX, wholeCount);
  const bw = (W - L - R) / bins;
  counts.forEach((c, i) => {
    const hgt = (c / top) * (H - B - T);
    const r = s('rect.bar', { x: L + i * bw + 1, y: H - B - hgt, width: Math.max(1, bw - 2), height: hgt,
      'data-from': i * width, 'data-to': (i + 1) * width, 'data-count': c });
    r.append(s('title', `${fmtX(i * width)}–${fmtX((i + 1) * width)}: ${c}`));
    svg.append(r);
  });
  svg.setAttribute('data-count', values.length);
  return h('figure', svg);
}

// buckets: [{t, counts: {passed, failed, ...}}], stacked in `keys` order.
export function stackedOverTime(id, label, buckets, keys, from, to, bucketMs) {
  const svg = frame(id, label);
  const top = Math.max(1, ...buckets.map((b) => keys.reduce((n, k) => n + (b.counts[k] || 0), 0)));
  axes(svg, from, to, top, hhmm, wholeCount);
  const bw = ((W - L - R) * bucketMs) / (to - from);
  for (const b of buckets) {
    let y = H - B;
    const x = Math.min(W - R - bw, L + ((b.t - from) / (to - from)) * (W - L - R));
    for (const k of keys) {
      const n = b.counts[k] || 0;
      if (!n) continue;
      const hgt = (n / top) * (H - B - T);
      y -= hgt;
      const r = s('rect.bar.state-' + k, { x: x + 1, y, width: Math.max(1, bw - 2), height: hgt, 'data-t': b.t, 'data-state': k, 'data-count': n });
      r.append(s('title', `${hhmm(b.t)}: ${n} ${k}`));
      svg.append(r);
    }
  }
  const totals = Object.fromEntries(keys.map((k) => [k, buckets.reduce((n, b) => n + (b.counts[k] || 0), 0)]));
  svg.setAttribute('data-totals', JSON.stringify(totals));
  return h('figure', svg, legend(keys, keys.map((k) => 'state-' + k)));
}

function legend(names, classes) {
  return h('figcaption.legend', names.map((n, i) => h('span.legend-item',
    classes ? h('span.swatch.' + classes[i]) : swatch(PALETTE[i % PALETTE.length]), n)));
}

function swatch(colour) {
  const sw = s('svg.swatch-svg', { width: 10, height: 10, viewBox: '0 0 10 10' });
  sw.append(s('rect', { width: 10, height: 10, fill: colour }));
  return sw;
}
