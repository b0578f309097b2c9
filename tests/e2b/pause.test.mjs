// Pause and resume through E2B's SDK (docs/e2b.md, docs/pause.md): sandbox.pause() saves and
// stops the sandbox, lists show it as paused, envd refuses it, Sandbox.connect() resumes it with
// its disk, memory and running processes; onTimeout 'pause' pauses at the end of the timeout instead of killing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';

import { Sandbox, sdkName, killQuietly, sleep } from './kiln.mjs';

const run = randomUUID().slice(0, 8);

const stateOf = async (id) => (await Sandbox.getInfo(id)).state;

test(`${sdkName}: pause, listed as paused, connect resumes it as it was`, async () => {
  let sandbox;
  try {
    sandbox = await Sandbox.create('base', { metadata: { run }, timeoutMs: 600_000 });
    const id = sandbox.sandboxId;
    await sandbox.files.write('/home/user/kept.txt', 'on disk');
    // /dev/shm is tmpfs: what is there lives in the guest's memory only.
    await sandbox.commands.run('echo in memory > /dev/shm/kept');
    // A background command (a kept process in the agent) that ticks into a file.
    const ticker = await sandbox.commands.run('while :; do echo t >> /tmp/ticks; sleep 0.2; done', { background: true });
    const ticks = async (s) => Number((await s.commands.run('wc -l < /tmp/ticks')).stdout.trim());
    for (let i = 0; i < 50 && (await ticks(sandbox)) === 0; i++) await sleep(200);

    assert.equal(await sandbox.pause(), true);
    assert.equal(await stateOf(id), 'paused');
    assert.equal(await sandbox.pause(), false, 'pausing a paused sandbox says so');
    const paused = await Sandbox.list({ query: { metadata: { run }, state: ['paused'] } }).nextItems();
    assert.deepEqual(paused.map((s) => s.sandboxId), [id]);
    const running = await Sandbox.list({ query: { metadata: { run }, state: ['running'] } }).nextItems();
    assert.deepEqual(running, []);
    await assert.rejects(sandbox.commands.run('true'), 'envd refuses a paused sandbox');

    const resumed = await Sandbox.connect(id, { timeoutMs: 300_000 });
    assert.equal(resumed.sandboxId, id);
    assert.equal(await stateOf(id), 'running');
    assert.equal(await resumed.files.read('/home/user/kept.txt'), 'on disk');
    assert.equal((await resumed.commands.run('cat /dev/shm/kept')).stdout, 'in memory\n', 'the memory survived the pause');
    assert.equal((await resumed.commands.run('echo hi')).stdout, 'hi\n');
    // The background command is still running: listed under its pid, still ticking, and killable.
    const listed = await resumed.commands.list();
    assert.ok(listed.some((p) => p.pid === ticker.pid), `pid ${ticker.pid} is listed after the resume`);
    const before = await ticks(resumed);
    await sleep(1500);
    assert.ok((await ticks(resumed)) > before, 'the background command kept ticking after the resume');
    assert.equal(await resumed.commands.kill(ticker.pid), true);
    assert.ok(!(await resumed.commands.list()).some((p) => p.pid === ticker.pid), 'killed, it is gone from the list');
  } finally {
    await killQuietly(sandbox);
  }
});

test(`${sdkName}: onTimeout 'pause' pauses at the end of the timeout, and connect resumes`, async () => {
  let sandbox;
  try {
    sandbox = await Sandbox.create('tiny', { metadata: { run }, timeoutMs: 4_000, lifecycle: { onTimeout: 'pause' } });
    const id = sandbox.sandboxId;
    const deadline = Date.now() + 120_000;
    let state = 'running';
    while (state !== 'paused' && Date.now() < deadline) {
      await sleep(1000);
      state = await stateOf(id);
    }
    assert.equal(state, 'paused', 'the end of the timeout paused it');
    await Sandbox.connect(id, { timeoutMs: 60_000 });
    assert.equal(await stateOf(id), 'running');
    assert.equal(await Sandbox.kill(id), true);
    await assert.rejects(Sandbox.getInfo(id));
    sandbox = undefined;
  } finally {
    await killQuietly(sandbox);
  }
});

test(`${sdkName}: a paused sandbox can be killed`, async () => {
  let sandbox;
  try {
    sandbox = await Sandbox.create('tiny', { metadata: { run }, timeoutMs: 120_000 });
    assert.equal(await sandbox.pause(), true);
    assert.equal(await Sandbox.kill(sandbox.sandboxId), true);
    await assert.rejects(Sandbox.getInfo(sandbox.sandboxId));
    sandbox = undefined;
  } finally {
    await killQuietly(sandbox);
  }
});
