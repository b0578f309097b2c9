// What the control-plane tests share: the listener they talk to and the keys, from the environment
// test_e2b_sdk.py sets (a real kilnd with KILN_E2B_LISTEN; E2B_API_URL, E2B_SANDBOX_URL and
// E2B_API_KEY are set there too, as a user of E2B's SDK sets them). The SDK is E2B's own,
// unmodified (package.json); 'e2b' is the release under test (select_sdk.mjs).
import { readFileSync } from 'node:fs';

const need = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run these tests through tests/e2b/test_e2b_sdk.py`);
  return value;
};

export const listener = need('KILN_E2B_URL');   // http://127.0.0.1:PORT, the listener's origin
export const apiKey = need('KILN_E2B_KEY');     // an e2b_ key with the sandboxes scope
export const otherKey = need('KILN_E2B_KEY2');  // another tenant's key
export const ciKey = need('KILN_E2B_CI_KEY');   // a key without the sandboxes scope
export const sdkName = process.env.KILN_E2B_SDK || 'e2b';  // 'e2b' (2.51.0) or 'e2b-old' (2.50.0)
if (process.env.E2B_API_URL !== listener || process.env.E2B_SANDBOX_URL !== listener)
  throw new Error('E2B_API_URL and E2B_SANDBOX_URL must both be the listener (test_e2b_sdk.py sets them)');
// A small template for the tests that need no particular guest; E2B's default `base` is tested too.
export const template = process.env.KILN_E2B_TEMPLATE || 'tiny';

export const sdk = await import('e2b');
// The release that 'e2b' resolved to, from its package.json.
export const sdkVersion = JSON.parse(readFileSync(new URL('../package.json', import.meta.resolve('e2b')))).version;
export const { Sandbox } = sdk;

// A raw request to the listener, for what the SDK never sends (bad input) and headers it hides.
export async function raw(method, path, { body, headers = {}, key = apiKey } = {}) {
  const h = { ...headers };
  if (key) h['X-API-KEY'] = key;
  if (body !== undefined && !h['Content-Type']) h['Content-Type'] = 'application/json';
  const res = await fetch(listener + path, { method, headers: h, body });
  const text = await res.text();
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: res.status, headers: res.headers, text, json };
}

// Kills what a test made even when it failed half-way.
export async function killQuietly(sandbox) {
  if (!sandbox) return;
  try { await sandbox.kill(); } catch { /* already gone */ }
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
