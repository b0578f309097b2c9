// envd's filesystem.Filesystem and /files through the unmodified e2b SDK against kilnd's E2B
// listener: write and read (text and binary), list with depth, exists, makeDir, rename, remove,
// watch. Run by tests/e2b's harness (real kilnd, real VMs).
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { Sandbox, FileType, NotFoundError } from 'e2b'

let sandbox
const dir = '/tmp/e2b-files'

before(async () => {
  sandbox = await Sandbox.create('base', { timeoutMs: 600_000 })
})

after(async () => {
  if (sandbox) await sandbox.kill()
})

test('text files are written and read back', async () => {
  const info = await sandbox.files.write(`${dir}/hello.txt`, 'hello, kiln\n')
  assert.equal(info.path, `${dir}/hello.txt`)
  assert.equal(info.name, 'hello.txt')
  assert.equal(await sandbox.files.read(`${dir}/hello.txt`), 'hello, kiln\n')
  // The command side sees the same file.
  assert.equal((await sandbox.commands.run(`cat ${dir}/hello.txt`)).stdout, 'hello, kiln\n')
})

test('binary files survive both ways', async () => {
  const bytes = new Uint8Array(70_000)
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7919) % 256
  await sandbox.files.write(`${dir}/blob.bin`, bytes.buffer)
  const back = await sandbox.files.read(`${dir}/blob.bin`, { format: 'bytes' })
  assert.equal(back.length, bytes.length)
  assert.deepEqual(Buffer.from(back), Buffer.from(bytes))
  const sum = (await sandbox.commands.run(`sha256sum ${dir}/blob.bin`)).stdout.split(' ')[0]
  const { createHash } = await import('node:crypto')
  assert.equal(sum, createHash('sha256').update(bytes).digest('hex'))
})

test('several files in one upload', async () => {
  const infos = await sandbox.files.write([
    { path: `${dir}/multi/a.txt`, data: 'A' },
    { path: `${dir}/multi/b.txt`, data: 'B' },
  ])
  assert.deepEqual(infos.map((i) => i.name).sort(), ['a.txt', 'b.txt'])
  assert.equal(await sandbox.files.read(`${dir}/multi/b.txt`), 'B')
})

test('exists, makeDir, list with depth, getInfo', async () => {
  assert.equal(await sandbox.files.exists(`${dir}/nothing-here`), false)
  assert.equal(await sandbox.files.makeDir(`${dir}/tree/sub`), true)
  assert.equal(await sandbox.files.makeDir(`${dir}/tree/sub`), false)  // already there
  await sandbox.files.write(`${dir}/tree/sub/leaf.txt`, 'leaf')
  assert.equal(await sandbox.files.exists(`${dir}/tree/sub/leaf.txt`), true)

  const top = await sandbox.files.list(`${dir}/tree`)
  assert.deepEqual(top.map((e) => e.name), ['sub'])
  assert.equal(top[0].type, FileType.DIR)
  const deep = await sandbox.files.list(`${dir}/tree`, { depth: 2 })
  assert.deepEqual(deep.map((e) => e.path).sort(), [`${dir}/tree/sub`, `${dir}/tree/sub/leaf.txt`])

  const info = await sandbox.files.getInfo(`${dir}/tree/sub/leaf.txt`)
  assert.equal(info.type, FileType.FILE)
  assert.equal(info.size, 4)
  assert.ok(info.modifiedTime instanceof Date)
  await assert.rejects(sandbox.files.getInfo(`${dir}/missing`), NotFoundError)
  await assert.rejects(sandbox.files.read(`${dir}/missing`), NotFoundError)
})

test('rename and remove', async () => {
  await sandbox.files.write(`${dir}/old-name.txt`, 'moving')
  const moved = await sandbox.files.rename(`${dir}/old-name.txt`, `${dir}/new-name.txt`)
  assert.equal(moved.path, `${dir}/new-name.txt`)
  assert.equal(await sandbox.files.exists(`${dir}/old-name.txt`), false)
  assert.equal(await sandbox.files.read(`${dir}/new-name.txt`), 'moving')
  await assert.rejects(sandbox.files.rename(`${dir}/gone.txt`, `${dir}/x.txt`), NotFoundError)

  await sandbox.files.remove(`${dir}/new-name.txt`)
  assert.equal(await sandbox.files.exists(`${dir}/new-name.txt`), false)
  await sandbox.files.remove(`${dir}/tree`)  // a folder, with what is in it
  assert.equal(await sandbox.files.exists(`${dir}/tree`), false)
})

test('watchDir reports a created file', async () => {
  await sandbox.files.makeDir(`${dir}/watched`)
  const events = []
  let resolveSeen
  const seen = new Promise((resolve) => { resolveSeen = resolve })
  const handle = await sandbox.files.watchDir(`${dir}/watched`, (event) => {
    events.push(event)
    if (event.name === 'new.txt') resolveSeen()
  })
  try {
    await sandbox.files.write(`${dir}/watched/new.txt`, 'x')
    await Promise.race([seen, new Promise((_, reject) => setTimeout(() => reject(new Error(`no event in 20 s: ${JSON.stringify(events)}`)), 20_000))])
    assert.ok(events.some((e) => e.name === 'new.txt' && e.type === 'create'), JSON.stringify(events))
  } finally {
    await handle.stop()
  }
})
