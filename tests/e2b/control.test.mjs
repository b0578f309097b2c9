// E2B's control plane through the unmodified SDK against a real kilnd (docs/e2b.md): create,
// getInfo, list with a metadata filter and paging, setTimeout and expiry, connect from a second
// client, kill, and what a wrong key, a wrong access token or another tenant's sandbox gets.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';

import { Sandbox, sdk, sdkName, sdkVersion, otherKey, ciKey, template, raw, killQuietly, sleep } from './kiln.mjs';

const run = randomUUID().slice(0, 8);  // this run's metadata, so lists see only its sandboxes

test(`${sdkName}: the SDK under test is the release asked for`, () => {
  assert.equal(sdkVersion, process.env.KILN_E2B_SDK_VERSION);
});

test(`${sdkName}: Sandbox.create() with E2B's default template, getInfo, kill`, async () => {
  let sandbox;
  try {
    sandbox = await Sandbox.create({ metadata: { run, case: 'default' }, envs: { GREETING: 'hi' } });
    assert.match(sandbox.sandboxId, /^sb-[0-9a-f]{12}$/);
    const info = await sandbox.getInfo();
    assert.equal(info.sandboxId, sandbox.sandboxId);
    assert.equal(info.templateId, 'base', "E2B's default template is Kiln's base");
    assert.equal(info.state, 'running');
    assert.deepEqual(info.metadata, { run, case: 'default' });
    assert.equal(info.envdVersion, '0.5.7');
    assert.ok(info.endAt > info.startedAt);
    assert.equal(await Sandbox.kill(sandbox.sandboxId), true);
    await assert.rejects(Sandbox.getInfo(sandbox.sandboxId), sdk.NotFoundError);
    assert.equal(await Sandbox.kill(sandbox.sandboxId), false, 'a second kill finds nothing');
    sandbox = undefined;
  } finally {
    await killQuietly(sandbox);
  }
});

test(`${sdkName}: list filters by metadata and pages with nextToken`, async () => {
  const made = [];
  try {
    for (const group of ['a', 'a', 'b'])
      made.push(await Sandbox.create(template, { metadata: { run, group }, timeoutMs: 120_000 }));
    const groupA = made.slice(0, 2).map((s) => s.sandboxId).sort();

    const all = await Sandbox.list({ query: { metadata: { run, group: 'a' } } }).nextItems();
    assert.deepEqual(all.map((s) => s.sandboxId).sort(), groupA);
    for (const s of all) {
      assert.equal(s.state, 'running');
      assert.equal(s.templateId, template);
      assert.deepEqual(s.metadata, { run, group: 'a' });
    }

    const pager = Sandbox.list({ query: { metadata: { run } }, limit: 2 });
    const seen = [];
    let pages = 0;
    while (pager.hasNext) {
      const items = await pager.nextItems();
      assert.ok(items.length <= 2);
      seen.push(...items.map((s) => s.sandboxId));
      pages += 1;
      assert.ok(pages <= 3, 'paging ends');
    }
    assert.equal(pages, 2);
    assert.deepEqual(seen.sort(), made.map((s) => s.sandboxId).sort());

    const paused = await Sandbox.list({ query: { metadata: { run }, state: ['paused'] } }).nextItems();
    assert.deepEqual(paused, [], 'nothing of this run is paused');

    // Another tenant sees none of them.
    const theirs = await Sandbox.list({ apiKey: otherKey, query: { metadata: { run } } }).nextItems();
    assert.deepEqual(theirs, []);
  } finally {
    for (const s of made) await killQuietly(s);
  }
});

test(`${sdkName}: setTimeout moves endAt, and the sandbox ends when it passes`, async () => {
  let sandbox;
  try {
    sandbox = await Sandbox.create(template, { metadata: { run }, timeoutMs: 300_000 });
    const before = await sandbox.getInfo();
    await sandbox.setTimeout(4_000);
    const after = await sandbox.getInfo();
    assert.ok(after.endAt < before.endAt, 'the timeout was shortened');
    assert.ok(Math.abs(after.endAt.getTime() - Date.now() - 4_000) < 3_000, `endAt ${after.endAt.toISOString()} is ~4 s away`);
    const deadline = Date.now() + 30_000;
    let gone = false;
    while (!gone && Date.now() < deadline) {
      await sleep(500);
      gone = await Sandbox.getInfo(sandbox.sandboxId).then(() => false, (e) => e instanceof sdk.NotFoundError);
    }
    assert.ok(gone, 'an expired sandbox is not found');
    assert.equal(await Sandbox.kill(sandbox.sandboxId), false);
    await assert.rejects(Sandbox.setTimeout(sandbox.sandboxId, 10_000), sdk.NotFoundError);
    sandbox = undefined;
  } finally {
    await killQuietly(sandbox);
  }
});

test(`${sdkName}: connect from a second client, and its timeout only extends`, async () => {
  let sandbox;
  try {
    sandbox = await Sandbox.create(template, { metadata: { run }, timeoutMs: 60_000 });
    const first = await sandbox.getInfo();
    const second = await Sandbox.connect(sandbox.sandboxId, { timeoutMs: 600_000 });
    assert.equal(second.sandboxId, sandbox.sandboxId);
    const extended = await second.getInfo();
    assert.ok(extended.endAt.getTime() > first.endAt.getTime() + 400_000, 'connect extended the timeout');
    await Sandbox.connect(sandbox.sandboxId, { timeoutMs: 10_000 });
    const kept = await second.getInfo();
    assert.equal(kept.endAt.getTime(), extended.endAt.getTime(), 'a shorter connect timeout does not cut it');
    assert.equal(kept.state, 'running');
  } finally {
    await killQuietly(sandbox);
  }
});

test(`${sdkName}: another key's sandbox is not found, and stays running`, async () => {
  let sandbox;
  try {
    sandbox = await Sandbox.create(template, { metadata: { run }, timeoutMs: 120_000 });
    const id = sandbox.sandboxId;
    await assert.rejects(Sandbox.getInfo(id, { apiKey: otherKey }), sdk.NotFoundError);
    await assert.rejects(Sandbox.connect(id, { apiKey: otherKey }), sdk.NotFoundError);
    await assert.rejects(Sandbox.setTimeout(id, 1_000, { apiKey: otherKey }), sdk.NotFoundError);
    assert.equal(await Sandbox.kill(id, { apiKey: otherKey }), false);
    assert.equal((await sandbox.getInfo()).state, 'running', "the owner's sandbox is untouched");
  } finally {
    await killQuietly(sandbox);
  }
});

test(`${sdkName}: a wrong or missing API key is refused, a key without the sandboxes scope is forbidden`, async () => {
  await assert.rejects(Sandbox.create(template, { apiKey: 'e2b_' + '0'.repeat(40) }), sdk.AuthenticationError);
  await assert.rejects(Sandbox.list({ apiKey: 'e2b_' + 'f'.repeat(40) }).nextItems(), sdk.AuthenticationError);
  const none = await raw('GET', '/v2/sandboxes', { key: null });
  assert.equal(none.status, 401);
  assert.equal(none.json.code, 401);
  assert.match(none.json.message, /X-API-KEY/);
  const forbidden = await raw('POST', '/v2/sandboxes', { key: ciKey, body: JSON.stringify({ templateID: template }) });
  assert.equal(forbidden.status, 403);
  assert.deepEqual(Object.keys(forbidden.json).sort(), ['code', 'message']);
});

test(`${sdkName}: envd requests need the sandbox's own access token`, async () => {
  let sandbox, other;
  try {
    sandbox = await Sandbox.create(template, { metadata: { run }, timeoutMs: 120_000 });
    other = await Sandbox.create(template, { metadata: { run }, timeoutMs: 120_000 });
    const id = sandbox.sandboxId;
    const probe = (token) => raw('POST', '/process.Process/List', {
      key: null, body: '{}', headers: { 'E2b-Sandbox-Id': id, ...(token === undefined ? {} : { 'X-Access-Token': token }) },
    });
    // A Connect call: HTTP 401 with Connect's error body {code: "unauthenticated", message}.
    const refused = (res) => {
      assert.equal(res.status, 401, res.text);
      assert.equal(res.json.code, 'unauthenticated', res.text);
    };
    refused(await probe(undefined));
    refused(await probe('0'.repeat(64)));
    // Another sandbox's token opens only that sandbox.
    assert.ok(other.envdAccessToken);
    refused(await probe(other.envdAccessToken));
    const own = await probe(sandbox.envdAccessToken);
    assert.equal(own.status, 200, own.text);
  } finally {
    await killQuietly(sandbox);
    await killQuietly(other);
  }
});

test(`${sdkName}: metrics are answered in E2B's error shape as not supported`, async () => {
  let sandbox;
  try {
    sandbox = await Sandbox.create(template, { metadata: { run }, timeoutMs: 120_000 });
    await assert.rejects(sandbox.getMetrics(), (e) => e instanceof sdk.SandboxError && /not supported/.test(e.message));
    assert.equal((await sandbox.getInfo()).state, 'running');
  } finally {
    await killQuietly(sandbox);
  }
});

test(`${sdkName}: bad input gets a clear error and the listener keeps serving`, async () => {
  const cases = [
    ['POST', '/v2/sandboxes', '{', 400],
    ['POST', '/v2/sandboxes', '[]', 400],
    ['POST', '/v2/sandboxes', JSON.stringify({}), 400],
    ['POST', '/v2/sandboxes', JSON.stringify({ templateID: template, timeout: 'soon' }), 400],
    ['POST', '/v2/sandboxes', JSON.stringify({ templateID: template, metadata: { a: 1 } }), 400],
    ['POST', '/v2/sandboxes', JSON.stringify({ templateID: template, network: { denyOut: ['10.0.0.0/8'] } }), 400],
    ['POST', '/v2/sandboxes', JSON.stringify({ templateID: template, mcp: { x: {} } }), 400],
    ['POST', '/v2/sandboxes', JSON.stringify({ templateID: 'no-such-template' }), 404],
    ['POST', '/v2/sandboxes', 'x'.repeat(2 << 20), 413],
    ['GET', '/v2/sandboxes?limit=0', undefined, 400],
    ['GET', '/v2/sandboxes?state=sleeping', undefined, 400],
    ['GET', '/v2/sandboxes?nextToken=%00%00', undefined, 400],
    ['GET', '/sandboxes/..%2F..%2Fetc', undefined, 404],
    ['POST', '/sandboxes/sb-000000000000/timeout', '{"timeout": -1}', 400],
    ['DELETE', '/sandboxes/sb-000000000000', undefined, 404],
    ['GET', '/no/such/route', undefined, 404],
  ];
  for (const [method, path, body, status] of cases) {
    const res = await raw(method, path, { body });
    assert.equal(res.status, status, `${method} ${path.slice(0, 40)}: ${res.text.slice(0, 200)}`);
    assert.equal(res.json?.code, status, `${method} ${path.slice(0, 40)} answers {code, message}`);
    assert.equal(typeof res.json.message, 'string');
  }
  let sandbox;
  try {
    sandbox = await Sandbox.create(template, { metadata: { run }, timeoutMs: 60_000 });
    assert.equal((await sandbox.getInfo()).state, 'running', 'still serving');
  } finally {
    await killQuietly(sandbox);
  }
});
