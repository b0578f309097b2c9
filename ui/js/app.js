// The dashboard's entry: who is signed in (GET /ui/session), the sign-in form, the navigation and
// the router that draws the page for the address (every /ui/... address is this same shell).
import { api, ApiError, setCsrf } from './api.js';
import { clear, h } from './dom.js';
import { pipelinesPage } from './pages/pipelines.js';
import { pipelinePage } from './pages/pipeline.js';
import { jobsPage } from './pages/jobs.js';
import { jobPage } from './pages/job.js';
import { sandboxesPage } from './pages/sandboxes.js';
import { templatesPage } from './pages/templates.js';
import { chartsPage } from './pages/charts.js';

const main = document.getElementById('main');
let session = null;
let cleanup = null;  // the current page's timers and streams

// What the token's scopes allow (docs/tenants.md): the pages offer only that.
export function can(what) {
  const scopes = new Set(session?.token?.scopes || []);
  if (scopes.has('admin')) return true;
  switch (what) {
    case 'ci': return scopes.has('ci:submit') || scopes.has('ci:trusted') || scopes.has('ci:read');
    case 'ci:submit': return scopes.has('ci:submit') || scopes.has('ci:trusted');
    case 'sandboxes': return scopes.has('sandboxes');
    default: return false;
  }
}
export function tokenId() { return session?.token?.id; }
export function isAdmin() { return (session?.token?.scopes || []).includes('admin'); }

const routes = [
  [/^\/ui\/?$/, () => (can('ci') ? pipelinesPage : can('sandboxes') ? sandboxesPage : nothingPage)],
  [/^\/ui\/pipelines\/?$/, () => pipelinesPage],
  [/^\/ui\/pipelines\/([^/]+)$/, () => pipelinePage],
  [/^\/ui\/jobs\/?$/, () => jobsPage],
  [/^\/ui\/jobs\/([^/]+)$/, () => jobPage],
  [/^\/ui\/sandboxes\/?$/, () => sandboxesPage],
  [/^\/ui\/templates\/?$/, () => templatesPage],
  [/^\/ui\/charts\/?$/, () => chartsPage],
];

function nothingPage(el) {
  clear(el, h('p', 'This token has no scope the dashboard can show.'));
}

function notFound(el) {
  clear(el, h('h1', 'Not found'), h('p', 'No page at this address. ', h('a', { href: '/ui/' }, 'Go to the start.')));
}

export function navigate(path, replace = false) {
  if (replace) history.replaceState(null, '', path); else history.pushState(null, '', path);
  route();
}

function route() {
  if (cleanup) { cleanup(); cleanup = null; }
  const path = location.pathname;
  if (!session) return signInPage();
  for (const [re, page] of routes) {
    const m = path.match(re);
    if (m) {
      const fn = page();
      const params = new URLSearchParams(location.search);
      cleanup = fn(main, m[1] ? decodeURIComponent(m[1]) : null, params) || null;
      markNav(path);
      return;
    }
  }
  notFound(main);
}

function markNav(path) {
  for (const a of document.querySelectorAll('#nav a')) {
    const section = a.dataset.nav;
    const on = section === 'pipelines' ? /^\/ui\/(pipelines.*)?$/.test(path) : path.startsWith('/ui/' + section);
    a.classList.toggle('current', on);
  }
}

function showChrome() {
  const nav = document.getElementById('nav');
  nav.hidden = !session;
  for (const a of nav.querySelectorAll('a')) {
    const section = a.dataset.nav;
    const allowed = section === 'sandboxes' || section === 'templates' ? can('sandboxes') : can('ci');
    a.hidden = !allowed;
  }
  const who = document.getElementById('who');
  if (!session) return clear(who);
  clear(who,
    h('span.token', { title: 'scopes: ' + session.token.scopes.join(', ') }, session.token.name),
    h('button#signout.link', { type: 'button', onclick: signOut }, 'Sign out'));
}

async function signOut() {
  try { await api('/ui/session', { method: 'DELETE' }); } catch { /* the session may already be gone */ }
  session = null;
  setCsrf('');
  showChrome();
  route();
}

function signInPage() {
  const input = h('input#token', { type: 'password', name: 'token', autocomplete: 'off', placeholder: 'kiln_…', required: true });
  const error = h('p#signin-error.error', { role: 'alert' });
  const form = h('form#signin.card', {
    onsubmit: async (ev) => {
      ev.preventDefault();
      error.textContent = '';
      try {
        session = await api('/ui/session', { method: 'POST', body: { token: input.value.trim() } });
        setCsrf(session.csrf);
        input.value = '';
        showChrome();
        route();  // the page that was asked for: a link from a commit status lands here
      } catch (e) {
        error.textContent = e instanceof ApiError && e.status === 401 ? 'That token is not valid (unknown or revoked).' : 'Sign-in failed: ' + e.message;
      }
    },
  },
  h('h1', 'Sign in to Kiln'),
  h('p.muted', 'Paste an API token (kilnd token create). It is exchanged for a session cookie and not kept by the page.'),
  h('label', { for: 'token' }, 'Token'), input,
  h('button#signin-submit', { type: 'submit' }, 'Sign in'), error);
  clear(main, form);
  input.focus();
}

async function start() {
  // Links inside the dashboard are followed without reloading the shell.
  document.addEventListener('click', (ev) => {
    const a = ev.target.closest('a');
    if (!a || a.target || a.hasAttribute('download') || ev.ctrlKey || ev.metaKey || ev.shiftKey || ev.button !== 0) return;
    const url = new URL(a.href, location.href);
    if (url.origin !== location.origin || !url.pathname.startsWith('/ui') || url.pathname.startsWith('/ui/a/')) return;
    ev.preventDefault();
    navigate(url.pathname + url.search);
  });
  window.addEventListener('popstate', route);
  try {
    const s = await api('/ui/session');
    if (s.signed_in) {
      session = s;
      setCsrf(s.csrf);
    }
  } catch { /* shown as signed out */ }
  showChrome();
  route();
}

start();
