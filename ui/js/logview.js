// A job's log as a virtual list: every line is kept (text, its starting ANSI state, its kind) but
// only the lines in view are in the DOM, so 100,000 lines scroll as smoothly as 100. New lines are
// drawn at most once a frame; the view follows the end while the reader is at the bottom.
import { advance, PLAIN, render } from './ansi.js';
import { h } from './dom.js';

const LINE_PX = 18;
const OVERSCAN = 30;

// The shard (0-based) an event came from; null for the job's own VM.
function shardOf(e) { return typeof e.shard === 'number' && e.shard >= 0 ? e.shard : null; }

export class LogView {
  constructor() {
    this.lines = [];          // {text, st, kind, step, shard}
    // Per source (step, stream and shard: shards run at once, their output interleaves): the ANSI
    // state its next line starts in, and its unfinished last line.
    this.state = new Map();
    this.partial = new Map();
    this.follow = true;
    this.scheduled = false;
    this.spacer = h('div.log-spacer');
    this.window = h('div.log-window');
    this.el = h('div.log', { tabindex: 0, 'aria-label': 'job log', onscroll: () => this.onScroll() },
      this.spacer, this.window);
    this.count = h('span.log-count', '0 lines');
  }

  onScroll() {
    const atBottom = this.el.scrollTop + this.el.clientHeight >= this.el.scrollHeight - LINE_PX * 2;
    this.follow = atBottom;
    this.draw();
  }

  // Events of the job's NDJSON log (output chunks and the job's own events).
  addEvents(events) {
    for (const e of events) {
      if (e.type === 'output') this.addOutput(e.step || '', e.stream || 'stdout', String(e.data ?? ''), shardOf(e));
      else this.addMeta(e);
    }
    this.schedule();
  }

  addOutput(step, stream, data, shard) {
    const key = JSON.stringify([step, stream, shard]);
    let st = this.state.get(key) || PLAIN;
    const text = (this.partial.get(key) || '') + data;
    const parts = text.split('\n');
    const rest = parts.pop();
    for (const raw of parts) {
      const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
      this.lines.push({ text: line, st, kind: stream === 'stderr' ? 'stderr' : 'stdout', step, shard });
      st = advance(st, line);
    }
    this.state.set(key, st);
    this.partial.set(key, rest);
  }

  flushPartials() {
    for (const [key, rest] of this.partial) {
      if (!rest) continue;
      const [step, stream, shard] = JSON.parse(key);
      this.lines.push({ text: rest, st: this.state.get(key) || PLAIN, kind: stream === 'stderr' ? 'stderr' : 'stdout', step, shard });
      this.partial.set(key, '');
    }
  }

  addMeta(e) {
    this.flushPartials();
    const { type, ts, ...rest } = e;
    let text;
    if (type === 'step_started') text = `▶ step ${rest.step ?? ''}`;
    else if (type === 'step_finished') text = `■ step ${rest.step ?? ''}: ${rest.state ?? ''}${rest.exit_code !== undefined ? ' (exit ' + rest.exit_code + ')' : ''}`;
    else if (type === 'end') text = `● job ended: ${rest.state ?? ''}${rest.error ? ' – ' + rest.error : ''}`;
    else text = `· ${type}` + (Object.keys(rest).length ? ' ' + JSON.stringify(rest) : '');
    this.lines.push({ text, st: PLAIN, kind: type === 'warning' ? 'warn' : 'meta', step: rest.step || '', shard: shardOf(e) });
  }

  finish() {
    this.flushPartials();
    this.schedule();
  }

  schedule() {
    if (this.scheduled) return;
    this.scheduled = true;
    requestAnimationFrame(() => {
      this.scheduled = false;
      this.spacer.style.height = this.lines.length * LINE_PX + 'px';
      this.count.textContent = this.lines.length.toLocaleString() + ' lines';
      if (this.follow) this.el.scrollTop = this.el.scrollHeight;
      this.drawn = null;  // lines were added: the range in view may be the same but not its lines
      this.draw();
    });
  }

  draw() {
    const first = Math.max(0, Math.floor(this.el.scrollTop / LINE_PX) - OVERSCAN);
    const visible = Math.ceil((this.el.clientHeight || 600) / LINE_PX) + 2 * OVERSCAN;
    const last = Math.min(this.lines.length, first + visible);
    if (this.drawn && this.drawn[0] === first && this.drawn[1] === last) return;
    this.drawn = [first, last];
    const frag = document.createDocumentFragment();
    for (let i = first; i < last; i++) {
      const l = this.lines[i];
      const row = document.createElement('div');
      row.className = 'log-line ' + l.kind;
      const num = document.createElement('span');
      num.className = 'log-num';
      num.textContent = String(i + 1);
      if (l.shard !== null) {
        const tag = document.createElement('span');
        tag.className = 'log-shard';
        tag.textContent = 's' + l.shard;
        tag.title = 'shard ' + l.shard;
        row.append(num, tag);
      } else {
        row.append(num);
      }
      const text = document.createElement('span');
      text.className = 'log-text';
      render(text, l.text, l.st);
      row.append(text);
      frag.append(row);
    }
    this.window.style.transform = `translateY(${first * LINE_PX}px)`;
    this.window.replaceChildren(frag);
  }
}
