// Bad input on envd's routes of kilnd's E2B listener: malformed Connect envelopes, a wrong content
// type, an oversized message, an unknown process. Each gets a clear Connect error and kilnd keeps
// serving the same sandbox. Raw fetch for what the SDK would never send; the SDK for the rest.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { Sandbox } from 'e2b'

let sandbox
let base
let headers

before(async () => {
  sandbox = await Sandbox.create('base', { timeoutMs: 600_000 })
  base = process.env.E2B_SANDBOX_URL
  headers = { 'E2b-Sandbox-Id': sandbox.sandboxId, 'X-Access-Token': sandbox.envdAccessToken ?? '' }
})

after(async () => {
  if (sandbox) await sandbox.kill()
})

function envelope(flags, payload) {
  const body = Buffer.from(payload)
  const head = Buffer.alloc(5)
  head[0] = flags
  head.writeUInt32BE(body.length, 1)
  return Buffer.concat([head, body])
}

// A streaming call's error: HTTP 200 and an end-of-stream envelope holding {error: {code, message}}.
async function streamError(path, body, contentType = 'application/connect+json') {
  const res = await fetch(`${base}${path}`, { method: 'POST', headers: { ...headers, 'Content-Type': contentType }, body })
  const bytes = Buffer.from(await res.arrayBuffer())
  assert.equal(res.status, 200)
  assert.ok(bytes.length >= 5, `short answer ${bytes.toString()}`)
  assert.equal(bytes[0], 0x02, 'an end-of-stream envelope')
  assert.equal(bytes.readUInt32BE(1), bytes.length - 5)
  return JSON.parse(bytes.subarray(5).toString()).error
}

test('malformed envelopes get invalid_argument and kilnd keeps serving', async () => {
  const cases = [
    Buffer.from([0, 0]),                                   // shorter than a header
    Buffer.concat([envelope(0, '{}').subarray(0, 6)]),     // payload cut short
    Buffer.concat([envelope(0, '{}'), envelope(0, '{}')]), // two messages
    envelope(0, '{"process":'),                            // not JSON
    envelope(0, '[1,2]'),                                  // not an object
    envelope(2, '{}'),                                     // an end-of-stream from the client
  ]
  for (const body of cases) {
    const error = await streamError('/process.Process/Start', body)
    assert.equal(error.code, 'invalid_argument', JSON.stringify(error))
    assert.ok(error.message.length > 0)
  }
  const compressed = await streamError('/process.Process/Start', envelope(1, '{}'))
  assert.equal(compressed.code, 'unimplemented')
  const wrongType = await streamError('/process.Process/Start', envelope(0, '{}'), 'application/proto')
  assert.equal(wrongType.code, 'invalid_argument')
  assert.match(wrongType.message, /application\/connect\+json/)
  assert.equal((await sandbox.commands.run('echo alive')).stdout, 'alive\n')
})

test('an oversized message gets resource_exhausted, unary and streamed', async () => {
  const big = JSON.stringify({ path: 'x'.repeat(2 * 1024 * 1024) })
  const unary = await fetch(`${base}/filesystem.Filesystem/Stat`, {
    method: 'POST', headers: { ...headers, 'Content-Type': 'application/json' }, body: big,
  })
  assert.equal(unary.status, 429)
  const body = await unary.json()
  assert.equal(body.code, 'resource_exhausted')
  assert.match(body.message, /over the limit/)
  // The envelope's declared length alone is enough to refuse it.
  const head = Buffer.from([0, 0x7f, 0xff, 0xff, 0xff])
  const streamed = await streamError('/process.Process/Start', Buffer.concat([head, Buffer.from('{}')]))
  assert.equal(streamed.code, 'resource_exhausted')
  assert.equal((await sandbox.commands.run('echo alive')).stdout, 'alive\n')
})

test('unary errors have Connect shape and status', async () => {
  const bad = await fetch(`${base}/filesystem.Filesystem/Stat`, {
    method: 'POST', headers: { ...headers, 'Content-Type': 'application/json' }, body: '{"path":',
  })
  assert.equal(bad.status, 400)
  assert.equal((await bad.json()).code, 'invalid_argument')
  const pty = await fetch(`${base}/process.Process/Update`, {
    method: 'POST', headers: { ...headers, 'Content-Type': 'application/json' }, body: '{"process":{"pid":1}}',
  })
  assert.equal(pty.status, 501)
  assert.equal((await pty.json()).code, 'unimplemented')
  const missing = await fetch(`${base}/process.Process/SendSignal`, {
    method: 'POST', headers: { ...headers, 'Content-Type': 'application/json' },
    body: '{"process":{"pid":999999},"signal":"SIGNAL_SIGKILL"}',
  })
  assert.equal(missing.status, 404)
  assert.equal((await missing.json()).code, 'not_found')
})

test('/files errors are envd\'s {code, message}', async () => {
  const res = await fetch(`${base}/files?path=/no/such/file`, { headers })
  assert.equal(res.status, 404)
  const body = await res.json()
  assert.equal(body.code, 404)
  assert.match(body.message, /does not exist/)
  const health = await fetch(`${base}/health`, { headers })
  assert.equal(health.status, 204)
})

test("another port of a sandbox (code-interpreter's 49999) gets a clear 501; an unknown call a 404", async () => {
  const jupyter = await fetch(`${base}/execute`, {
    method: 'POST',
    headers: { ...headers, 'E2b-Sandbox-Port': '49999', 'Content-Type': 'application/json' },
    body: '{"code": "1+1"}',
  })
  assert.equal(jupyter.status, 501)
  const body = await jupyter.json()
  assert.match(body.message, /49999/)
  assert.match(body.message, /code-interpreter/)
  const unknown = await fetch(`${base}/no/such/call`, { headers })
  assert.equal(unknown.status, 404)
  assert.match((await unknown.json()).message, /no E2B call GET \/no\/such\/call/)
  assert.equal((await sandbox.commands.run('echo alive')).stdout, 'alive\n')
})
