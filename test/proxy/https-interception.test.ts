import t from 'tap'
import { execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { connect as connectTls } from 'node:tls'
import { EnvHttpProxyAgent, request } from 'undici'
import { curlThroughProxy } from '../helpers/clients.js'
import { rawExchange } from '../helpers/raw-socket.js'
import { startTlsFixture } from '../helpers/tls-fixture.js'
import { textFrame } from '../helpers/upstream.js'

const fixture = await startTlsFixture()
const { upstream, sidecar } = fixture
t.teardown(() => fixture.close())

const apiUrl = `https://127.0.0.1:${upstream.port}/api`

/** True when the upstream's last request carried an exchanged token rather than `userToken`. */
function lastRequestWasSwapped(userToken: string): boolean {
  const authorization = upstream.requests.at(-1)?.authorization ?? []
  return authorization.length === 1 && authorization[0].startsWith('Bearer ') && !authorization[0].includes(userToken)
}

interface ProcessResult {
  code: number | null
  stdout: string
  stderr: string
}

function run(command: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<ProcessResult> {
  return new Promise((resolve) => {
    execFile(command, args, { env: { ...process.env, ...env }, timeout: 30_000 }, (error, stdout, stderr) => {
      let code = 0
      if (error !== null) code = typeof error.code === 'number' ? error.code : 1
      resolve({ code, stdout, stderr })
    })
  })
}

t.test('CA files are written for the agent', async (t) => {
  const ca = readFileSync(fixture.caFile, 'utf8')
  const bundle = readFileSync(fixture.bundleFile, 'utf8')
  t.match(ca, /^-----BEGIN CERTIFICATE-----/)
  t.ok(bundle.includes(ca.trim()), 'the bundle contains the sidecar CA')
  t.ok(bundle.split('BEGIN CERTIFICATE').length > 100, 'the bundle contains the system roots')
  t.notMatch(ca + bundle, 'PRIVATE KEY', 'no key is written')
})

t.test('curl: IP target without SNI is intercepted', async (t) => {
  const userToken = await fixture.userToken()
  const response = await curlThroughProxy(sidecar.proxyUrl, `${apiUrl}/orders`, [
    '--cacert',
    fixture.caFile,
    '-H',
    `Authorization: Bearer ${userToken}`,
  ])
  t.equal(response.status, 200)
  t.ok(lastRequestWasSwapped(userToken), 'the upstream received the exchanged token')
})

t.test('curl: DNS name with SNI, sent to the route upstream', async (t) => {
  const userToken = await fixture.userToken()
  const response = await curlThroughProxy(sidecar.proxyUrl, 'https://orders.example.com/orders/7', [
    '--cacert',
    fixture.bundleFile,
    '-H',
    `Authorization: Bearer ${userToken}`,
  ])
  t.equal(response.status, 200)
  t.equal(JSON.parse(response.body).path, '/orders/7')
  t.ok(lastRequestWasSwapped(userToken))
  t.equal(upstream.requests.at(-1)!.headers.host, `127.0.0.1:${upstream.port}`, 'Host names the upstream URL authority')
})

t.test('curl: Expect 100-continue inside interception', async (t) => {
  const userToken = await fixture.userToken()
  const response = await curlThroughProxy(sidecar.proxyUrl, `${apiUrl}/upload`, [
    '--cacert',
    fixture.caFile,
    '-H',
    `Authorization: Bearer ${userToken}`,
    '-H',
    'Expect: 100-continue',
    '--data-binary',
    'q'.repeat(5000),
  ])
  t.equal(response.status, 200)
  t.equal(JSON.parse(response.body).bytes, 5000)
  t.ok(lastRequestWasSwapped(userToken))
})

const PYTHON_REQUESTS = `
import json, sys, requests
session = requests.Session()
session.trust_env = False
proxy = sys.argv[1]
response = session.get(sys.argv[2], headers={"Authorization": "Bearer " + sys.argv[3]},
                       proxies={"http": proxy, "https": proxy}, verify=sys.argv[4], timeout=20)
print(json.dumps({"status": response.status_code, "body": response.json()}))
`

t.test('Python requests through interception', async (t) => {
  const userToken = await fixture.userToken()
  const result = await run('/usr/bin/python3', ['-c', PYTHON_REQUESTS, sidecar.proxyUrl, `${apiUrl}/py-requests`, userToken, fixture.bundleFile])
  t.equal(result.code, 0, result.stderr)
  t.equal(JSON.parse(result.stdout).status, 200)
  t.ok(lastRequestWasSwapped(userToken))
})

// python3-httpx in Debian 12 is 0.23, which takes `proxies=`.
const PYTHON_HTTPX = `
import json, sys, httpx
with httpx.Client(proxies=sys.argv[1], verify=sys.argv[4], trust_env=False, timeout=20) as client:
    response = client.get(sys.argv[2], headers={"Authorization": "Bearer " + sys.argv[3]})
    print(json.dumps({"status": response.status_code, "body": response.json()}))
`

t.test('Python httpx through interception', async (t) => {
  const userToken = await fixture.userToken()
  const result = await run('/usr/bin/python3', ['-c', PYTHON_HTTPX, sidecar.proxyUrl, `${apiUrl}/py-httpx`, userToken, fixture.bundleFile])
  t.equal(result.code, 0, result.stderr)
  t.equal(JSON.parse(result.stdout).status, 200)
  t.ok(lastRequestWasSwapped(userToken))
})

const NODE_FETCH = `
const response = await fetch(process.argv[1], { headers: { authorization: 'Bearer ' + process.argv[2] } })
console.log(JSON.stringify({ status: response.status, body: await response.json() }))
`

t.test('Node fetch with NODE_USE_ENV_PROXY and NODE_EXTRA_CA_CERTS', async (t) => {
  const userToken = await fixture.userToken()
  const result = await run(process.execPath, ['--input-type=module', '-e', NODE_FETCH, `${apiUrl}/node-fetch`, userToken], {
    NODE_USE_ENV_PROXY: '1',
    HTTPS_PROXY: sidecar.proxyUrl,
    HTTP_PROXY: sidecar.proxyUrl,
    NO_PROXY: '',
    no_proxy: '',
    NODE_EXTRA_CA_CERTS: fixture.caFile,
  })
  t.equal(result.code, 0, result.stderr)
  t.equal(JSON.parse(result.stdout).status, 200)
  t.ok(lastRequestWasSwapped(userToken))
})

t.test('Node fetch sends http:// as plain HTTP in a CONNECT tunnel', async (t) => {
  const userToken = await fixture.userToken()
  const result = await run(
    process.execPath,
    ['--input-type=module', '-e', NODE_FETCH, `http://localhost:${upstream.port}/origination/node`, userToken],
    { NODE_USE_ENV_PROXY: '1', HTTPS_PROXY: sidecar.proxyUrl, HTTP_PROXY: sidecar.proxyUrl, NO_PROXY: '', no_proxy: '' },
  )
  t.equal(result.code, 0, result.stderr)
  t.equal(JSON.parse(result.stdout).status, 200)
  t.equal(upstream.requests.at(-1)!.url, '/origination/node')
  t.ok(lastRequestWasSwapped(userToken), 'swapped, then sent over TLS by the route upstream')
})

t.test('undici EnvHttpProxyAgent through interception', async (t) => {
  const agent = new EnvHttpProxyAgent({
    httpProxy: sidecar.proxyUrl,
    httpsProxy: sidecar.proxyUrl,
    noProxy: '',
    requestTls: { ca: readFileSync(fixture.caFile, 'utf8') },
  })
  t.teardown(() => agent.close())
  const userToken = await fixture.userToken()
  const response = await request(`${apiUrl}/undici`, { dispatcher: agent, headers: { authorization: `Bearer ${userToken}` } })
  t.equal(response.statusCode, 200)
  await response.body.text()
  t.ok(lastRequestWasSwapped(userToken))

  // Server-sent events stream through the intercepted TLS connection event by event.
  const events = await request(`${apiUrl}/sse?events=3&delay=250`, { dispatcher: agent, headers: { authorization: `Bearer ${userToken}` } })
  const arrivals: number[] = []
  const started = Date.now()
  let text = ''
  for await (const chunk of events.body) {
    text += String(chunk)
    while (arrivals.length < text.split('\n\n').length - 1) arrivals.push(Date.now() - started)
  }
  t.equal(arrivals.length, 3)
  for (let i = 1; i < arrivals.length; i++) t.ok(arrivals[i] - arrivals[i - 1] >= 120, `event ${i + 1} came separately`)
})

t.test('TLS origination for a plain http:// request', async (t) => {
  const userToken = await fixture.userToken()
  const response = await curlThroughProxy(sidecar.proxyUrl, `http://localhost:${upstream.port}/origination/curl`, [
    '-H',
    `Authorization: Bearer ${userToken}`,
  ])
  t.equal(response.status, 200)
  t.equal(upstream.requests.at(-1)!.url, '/origination/curl')
  t.ok(lastRequestWasSwapped(userToken))
})

t.test('agent that does not trust the CA gets a TLS failure', async (t) => {
  const before = upstream.requests.length
  const failuresBefore = await sidecar.metric('obo_sidecar_tls_handshakes_total{result="failure"}')
  const result = await run('curl', ['-sS', '--noproxy', '', '-x', sidecar.proxyUrl, '--cacert', upstream.caFile!, `${apiUrl}/x`])
  t.equal(result.code, 60, 'curl: peer certificate cannot be verified')
  t.equal(upstream.requests.length, before, 'nothing reached the upstream')
  await new Promise((resolve) => setTimeout(resolve, 100))
  t.ok((await sidecar.metric('obo_sidecar_tls_handshakes_total{result="failure"}')) > failuresBefore, 'counted as a failed handshake')
})

t.test('upstream with an untrusted certificate gets 502', async (t) => {
  const userToken = await fixture.userToken()
  const response = await curlThroughProxy(sidecar.proxyUrl, `https://127.0.0.1:${upstream.port}/untrusted/x`, [
    '--cacert',
    fixture.caFile,
    '-H',
    `Authorization: Bearer ${userToken}`,
  ])
  t.equal(response.status, 502)
  const body = JSON.parse(response.body)
  t.equal(body.code, 'OBO_UPSTREAM_TLS_FAILED')
  t.match(body.message, /upstreamCaFile/)
})

t.test('Host naming another authority inside a tunnel gets 421', async (t) => {
  const userToken = await fixture.userToken()
  const before = upstream.requests.length
  const response = await curlThroughProxy(sidecar.proxyUrl, `${apiUrl}/x`, [
    '--cacert',
    fixture.caFile,
    '-H',
    'Host: elsewhere.example.com',
    '-H',
    `Authorization: Bearer ${userToken}`,
  ])
  t.equal(response.status, 421)
  t.equal(JSON.parse(response.body).code, 'OBO_PROXY_MISDIRECTED')
  t.equal(upstream.requests.length, before)
})

t.test('WebSocket through intercepted TLS', async (t) => {
  const userToken = await fixture.userToken()
  const { hostname, port } = new URL(sidecar.proxyUrl)
  const { connect } = await import('node:net')
  const raw = connect(Number(port), hostname)
  await new Promise((resolve) => raw.once('connect', resolve))
  raw.write(`CONNECT 127.0.0.1:${upstream.port} HTTP/1.1\r\nHost: 127.0.0.1:${upstream.port}\r\n\r\n`)
  const established = await new Promise<string>((resolve) => raw.once('data', (chunk: Buffer) => resolve(chunk.toString())))
  t.match(established, /^HTTP\/1\.1 200/)

  const secure = connectTls({ socket: raw, ca: readFileSync(fixture.caFile, 'utf8'), servername: undefined, checkServerIdentity: () => undefined })
  t.teardown(() => secure.destroy())
  await new Promise((resolve) => secure.once('secureConnect', resolve))
  t.equal(secure.alpnProtocol, false, 'no ALPN was requested, none chosen')
  secure.write(
    `GET /api/ws HTTP/1.1\r\nHost: 127.0.0.1:${upstream.port}\r\nAuthorization: Bearer ${userToken}\r\n` +
      'Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
  )
  let received = ''
  const deadline = Date.now() + 5000
  while (!received.includes('Bearer ') && Date.now() < deadline) {
    received += await new Promise<string>((resolve) => {
      secure.once('data', (chunk: Buffer) => resolve(chunk.toString('latin1')))
      setTimeout(() => resolve(''), 500)
    })
  }
  t.match(received, /^HTTP\/1\.1 101/)
  t.ok(lastRequestWasSwapped(userToken), 'the handshake carried the exchanged token')
  t.ok(received.includes(textFrame(upstream.requests.at(-1)!.authorization[0]).toString('latin1')), 'frames are relayed')
})

t.test('CONNECT to an unreachable host gets 502 before any 200', async (t) => {
  const response = await rawExchange(sidecar.proxyUrl, 'CONNECT 127.0.0.1:1 HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n')
  t.match(response, /^HTTP\/1\.1 502/)
  t.notMatch(response, /200 Connection Established/)
  t.match(response, /OBO_UPSTREAM_UNREACHABLE/)
})

t.test('CONNECT to a malformed target gets 400', async (t) => {
  for (const target of ['no-port.example.com', 'example.com:0', 'example.com:99999', '[zz::1]:443', 'user@example.com:443']) {
    const response = await rawExchange(sidecar.proxyUrl, `CONNECT ${target} HTTP/1.1\r\nHost: x\r\n\r\n`)
    t.match(response, /^HTTP\/1\.1 400/, target)
  }
})

t.test('client that disconnects mid-handshake leaves the proxy serving', async (t) => {
  for (let i = 0; i < 5; i++) {
    await rawExchange(
      sidecar.proxyUrl,
      Buffer.concat([Buffer.from(`CONNECT 127.0.0.1:${upstream.port} HTTP/1.1\r\nHost: x\r\n\r\n`), Buffer.from([0x16, 0x03, 0x01, 0x00])]),
      (text) => text.includes('\r\n\r\n'),
      2000,
    )
  }
  const userToken = await fixture.userToken()
  const response = await curlThroughProxy(sidecar.proxyUrl, `${apiUrl}/after`, ['--cacert', fixture.caFile, '-H', `Authorization: Bearer ${userToken}`])
  t.equal(response.status, 200)
})

t.test('TLS metrics are exported', async (t) => {
  t.ok((await sidecar.metric('obo_sidecar_tls_handshakes_total{result="success"}')) > 0)
  t.ok((await sidecar.metric('obo_sidecar_tls_certificates_minted_total')) >= 2, 'a leaf for 127.0.0.1 and one for orders.example.com')
  const text = await (await fetch(`${sidecar.adminUrl}/metrics`)).text()
  t.match(text, /# TYPE obo_sidecar_tunnels_open gauge/)
})
