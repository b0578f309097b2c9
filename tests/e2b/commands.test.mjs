// envd's process.Process through the unmodified e2b SDK against kilnd's E2B listener: buffered and
// streamed commands, exit codes, background commands listed, reconnected to and killed, stdin,
// env vars and cwd, users. Run by tests/e2b's harness (real kilnd, real VMs), which sets E2B_API_URL,
// E2B_SANDBOX_URL and E2B_API_KEY.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { Sandbox, CommandExitError } from 'e2b'

let sandbox

before(async () => {
  sandbox = await Sandbox.create('base', { timeoutMs: 600_000 })
})

after(async () => {
  if (sandbox) await sandbox.kill()
})

test('a buffered command returns stdout, stderr and exit code 0', async () => {
  const r = await sandbox.commands.run('echo out; echo err >&2')
  assert.equal(r.exitCode, 0)
  assert.equal(r.stdout, 'out\n')
  assert.equal(r.stderr, 'err\n')
})

test('a non-zero exit raises CommandExitError with its code and output', async () => {
  await assert.rejects(sandbox.commands.run('echo partial; exit 3'), (err) => {
    assert.ok(err instanceof CommandExitError, `got ${err}`)
    assert.equal(err.exitCode, 3)
    assert.equal(err.stdout, 'partial\n')
    return true
  })
})

test('streamed output arrives before the command ends', async () => {
  const chunks = []
  let firstChunkAt
  const started = Date.now()
  const r = await sandbox.commands.run('echo one; sleep 3; echo two', {
    onStdout: (data) => {
      if (firstChunkAt === undefined) firstChunkAt = Date.now()
      chunks.push(data)
    },
  })
  const ended = Date.now()
  assert.equal(r.stdout, 'one\ntwo\n')
  assert.ok(chunks.join('').includes('one'))
  // "one" came while the command was still sleeping, not with its end.
  assert.ok(firstChunkAt !== undefined && ended - firstChunkAt >= 2000,
    `first chunk ${firstChunkAt - started} ms after start, command ended after ${ended - started} ms`)
})

test('a background command is listed, reconnected to and killed', async () => {
  const handle = await sandbox.commands.run('echo ready; sleep 600', { background: true })
  assert.ok(handle.pid > 0)
  const listed = await sandbox.commands.list()
  const mine = listed.find((p) => p.pid === handle.pid)
  assert.ok(mine, `pid ${handle.pid} not in ${JSON.stringify(listed)}`)
  assert.equal(mine.cmd, '/bin/bash')
  assert.deepEqual(mine.args, ['-l', '-c', 'echo ready; sleep 600'])

  // A second watcher of the same process, then the first one leaves: the process goes on.
  await handle.disconnect()
  const again = await sandbox.commands.connect(handle.pid)
  assert.equal(again.pid, handle.pid)
  assert.ok((await sandbox.commands.list()).some((p) => p.pid === handle.pid))

  assert.equal(await sandbox.commands.kill(handle.pid), true)
  await assert.rejects(again.wait(), (err) => {
    assert.ok(err instanceof CommandExitError, `got ${err}`)
    assert.notEqual(err.exitCode, 0)
    return true
  })
  // Gone from the list, and killing it again says it was not found.
  assert.ok(!(await sandbox.commands.list()).some((p) => p.pid === handle.pid))
  assert.equal(await sandbox.commands.kill(handle.pid), false)
})

test('stdin is written and closed', async () => {
  const handle = await sandbox.commands.run('cat; echo "<eof>"', { background: true, stdin: true })
  await sandbox.commands.sendStdin(handle.pid, 'hello ')
  await handle.sendStdin('world\n')
  await handle.closeStdin()
  const r = await handle.wait()
  assert.equal(r.stdout, 'hello world\n<eof>\n')
})

test('env vars and cwd reach the command', async () => {
  const r = await sandbox.commands.run('echo "$GREETING" && pwd', { envs: { GREETING: 'hi there' }, cwd: '/tmp' })
  assert.equal(r.stdout, 'hi there\n/tmp\n')
})

test('commands run as E2B\'s default user in its home, or as the user asked for', async () => {
  const r = await sandbox.commands.run('id -un; pwd; echo "$HOME"')
  assert.equal(r.stdout, 'user\n/home/user\n/home/user\n')
  const root = await sandbox.commands.run('id -un; pwd', { user: 'root' })
  assert.equal(root.stdout, 'root\n/root\n')
})

test('a command that cannot start is an error, and the sandbox keeps serving', async () => {
  await assert.rejects(sandbox.commands.run('true', { cwd: '/no/such/dir' }))
  const r = await sandbox.commands.run('echo still here')
  assert.equal(r.stdout, 'still here\n')
})
