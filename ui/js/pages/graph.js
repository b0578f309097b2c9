// A pipeline's jobs as a graph of `needs`, drawn as SVG: columns by depth (a job sits one column
// right of the deepest job it needs), edges from each needed job to the job that needs it.
import { s } from '../dom.js';

const W = 190, H = 34, GAP_X = 60, GAP_Y = 14, PAD = 10;

export function needsGraph(jobs) {
  const byId = new Map(jobs.map((j) => [j.id, j]));
  const depth = new Map();
  const depthOf = (j, seen = new Set()) => {
    if (depth.has(j.id)) return depth.get(j.id);
    if (seen.has(j.id)) return 0;  // a cycle cannot be planned; never loop on one
    seen.add(j.id);
    let d = 0;
    for (const n of j.needs || []) if (byId.has(n)) d = Math.max(d, depthOf(byId.get(n), seen) + 1);
    depth.set(j.id, d);
    return d;
  };
  const columns = [];
  for (const j of jobs) {
    const d = depthOf(j);
    (columns[d] = columns[d] || []).push(j);
  }
  const pos = new Map();
  columns.forEach((col, x) => col.forEach((j, y) => pos.set(j.id, { x: PAD + x * (W + GAP_X), y: PAD + y * (H + GAP_Y) })));
  const width = PAD * 2 + columns.length * W + Math.max(0, columns.length - 1) * GAP_X;
  const height = PAD * 2 + Math.max(...columns.map((c) => c.length), 1) * (H + GAP_Y) - GAP_Y;
  const svg = s('svg.graph#needs-graph', { viewBox: `0 0 ${width} ${height}`, width, height, role: 'img', 'aria-label': 'jobs and their needs' });
  for (const j of jobs) {
    const to = pos.get(j.id);
    for (const n of j.needs || []) {
      const from = pos.get(n);
      if (!from) continue;
      const x1 = from.x + W, y1 = from.y + H / 2, x2 = to.x, y2 = to.y + H / 2, mx = (x1 + x2) / 2;
      svg.append(s('path.edge', { d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}` }));
    }
  }
  for (const j of jobs) {
    const p = pos.get(j.id);
    const label = j.name || 'job';
    const shown = label.length > 24 ? label.slice(0, 23) + '…' : label;
    svg.append(s('a', { href: '/ui/jobs/' + j.id, 'data-job': j.id },
      s('title', `${label}: ${j.state}`),
      s('rect.node.state-' + j.state, { x: p.x, y: p.y, width: W, height: H, rx: 6 }),
      s('circle.dot.state-' + j.state, { cx: p.x + 14, cy: p.y + H / 2, r: 5 }),
      s('text.node-label', { x: p.x + 26, y: p.y + H / 2 + 4 }, shown)));
  }
  return svg;
}
