// The timed part of e2b_bench.py: rounds that alternate (a) E2B's unmodified SDK,
// `Sandbox.create()` (E2B's default template, Kiln's base) to the first `commands.run('echo hi')`
// output, through kilnd's E2B listener, and (b) the same through Kiln's own REST API (POST
// /v1/sandboxes with template base, then POST /v1/sandboxes/{id}/exec of the command envd runs for
// it, /bin/bash -l -c 'echo hi'). Sandboxes are killed after each round, outside the timing.
// Prints one JSON line {e2b: [ms...], kiln: [ms...]}.
import { pathToFileURL } from 'node:url';

const { KILN_E2B_SDK_ENTRY, KILN_API_URL, KILN_TOKEN } = process.env;
const rounds = Number(process.env.KILN_BENCH_E2B_ROUNDS || 20);
const { Sandbox } = await import(pathToFileURL(KILN_E2B_SDK_ENTRY).href);

async function kiln(method, path, body) {
  const res = await fetch(KILN_API_URL + path, {
    method,
    headers: { Authorization: `Bearer ${KILN_TOKEN}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text.slice(0, 300)}`);
  return text ? JSON.parse(text) : undefined;
}

async function viaE2b() {
  const t0 = performance.now();
  const sandbox = await Sandbox.create();
  const r = await sandbox.commands.run('echo hi');
  const ms = performance.now() - t0;
  if (r.stdout !== 'hi\n') throw new Error(`E2B: unexpected output ${JSON.stringify(r.stdout)}`);
  await sandbox.kill();
  return ms;
}

async function viaKiln() {
  const t0 = performance.now();
  const sandbox = await kiln('POST', '/v1/sandboxes', { template: 'base' });
  const r = await kiln('POST', `/v1/sandboxes/${sandbox.id}/exec`, { argv: ['/bin/bash', '-l', '-c', 'echo hi'] });
  const ms = performance.now() - t0;
  if (r.stdout !== 'hi\n') throw new Error(`Kiln: unexpected output ${JSON.stringify(r.stdout)}`);
  await kiln('DELETE', `/v1/sandboxes/${sandbox.id}`);
  return ms;
}

// Untimed warm-up of both paths (the first create of base bakes it; the first SDK call loads code).
await viaKiln();
await viaE2b();
const out = { e2b: [], kiln: [] };
for (let i = 0; i < rounds; i++) {
  // Alternating which goes first, so neither always follows the other's teardown.
  if (i % 2 === 0) {
    out.e2b.push(await viaE2b());
    out.kiln.push(await viaKiln());
  } else {
    out.kiln.push(await viaKiln());
    out.e2b.push(await viaE2b());
  }
}
console.log(JSON.stringify(out));
