// ANSI SGR colours (ESC [ ... m) to styled spans. Other escape sequences are dropped. The state
// (colours, bold) carries from one line to the next, as on a terminal: each stored line keeps the
// state it starts with, so any line can be drawn alone (the log view draws only what is visible).
const ESC_RE = /\x1b\[([0-9;?]*)([A-Za-z])/g;

export const PLAIN = Object.freeze({ fg: null, bg: null, bold: false, dim: false, italic: false, underline: false });

function colour(n, base) {
  // 30-37 / 90-97 (bright) -> classes ansi-fg-0..15
  if (n >= base && n <= base + 7) return n - base;
  if (n >= base + 60 && n <= base + 67) return n - base - 60 + 8;
  return null;
}

// The state after applying one SGR parameter list to `st` (a new object when it changes).
function apply(st, params) {
  const codes = params === '' ? [0] : params.split(';').map((p) => parseInt(p || '0', 10));
  let next = { ...st };
  for (let i = 0; i < codes.length; i++) {
    const c = codes[i];
    if (c === 0) next = { ...PLAIN };
    else if (c === 1) next.bold = true;
    else if (c === 2) next.dim = true;
    else if (c === 3) next.italic = true;
    else if (c === 4) next.underline = true;
    else if (c === 22) { next.bold = false; next.dim = false; }
    else if (c === 23) next.italic = false;
    else if (c === 24) next.underline = false;
    else if (c === 39) next.fg = null;
    else if (c === 49) next.bg = null;
    else if (c === 38 || c === 48) {
      // 256 colours (5;n) and true colour (2;r;g;b): the 16 basic ones map to classes, others to rgb.
      let value = null;
      if (codes[i + 1] === 5) { value = xterm256(codes[i + 2]); i += 2; }
      else if (codes[i + 1] === 2) { value = `rgb(${codes[i + 2] | 0},${codes[i + 3] | 0},${codes[i + 4] | 0})`; i += 4; }
      if (c === 38) next.fg = value; else next.bg = value;
    } else {
      const f = colour(c, 30), b = colour(c, 40);
      if (f !== null) next.fg = f;
      else if (b !== null) next.bg = b;
    }
  }
  return next;
}

function xterm256(n) {
  if (!(n >= 0 && n <= 255)) return null;
  if (n < 16) return n;
  if (n >= 232) { const g = 8 + (n - 232) * 10; return `rgb(${g},${g},${g})`; }
  const i = n - 16, r = Math.floor(i / 36), g = Math.floor(i / 6) % 6, b = i % 6;
  const v = (x) => (x ? 55 + x * 40 : 0);
  return `rgb(${v(r)},${v(g)},${v(b)})`;
}

// The state at the end of `text` when it starts in `st` (cheap: only SGR codes are looked at).
export function advance(st, text) {
  if (text.indexOf('\x1b') < 0) return st;
  ESC_RE.lastIndex = 0;
  let m;
  while ((m = ESC_RE.exec(text))) if (m[2] === 'm') st = apply(st, m[1]);
  return st;
}

function styled(text, st) {
  const plain = st.fg === null && st.bg === null && !st.bold && !st.dim && !st.italic && !st.underline;
  if (plain) return document.createTextNode(text);
  const span = document.createElement('span');
  span.textContent = text;
  if (typeof st.fg === 'number') span.classList.add('ansi-fg-' + st.fg);
  else if (st.fg) span.style.color = st.fg;
  if (typeof st.bg === 'number') span.classList.add('ansi-bg-' + st.bg);
  else if (st.bg) span.style.backgroundColor = st.bg;
  if (st.bold) span.classList.add('ansi-bold');
  if (st.dim) span.classList.add('ansi-dim');
  if (st.italic) span.classList.add('ansi-italic');
  if (st.underline) span.classList.add('ansi-underline');
  return span;
}

// Appends `text` (one line, starting in state `st`) to `el` as text and spans.
export function render(el, text, st) {
  if (text.indexOf('\x1b') < 0) {
    el.append(styled(text, st));
    return;
  }
  ESC_RE.lastIndex = 0;
  let last = 0, m;
  while ((m = ESC_RE.exec(text))) {
    if (m.index > last) el.append(styled(text.slice(last, m.index), st));
    if (m[2] === 'm') st = apply(st, m[1]);
    last = ESC_RE.lastIndex;
  }
  if (last < text.length) el.append(styled(text.slice(last), st));
}
