import t from 'tap'
import { request } from 'undici'
import { curlThroughProxy, fetchThroughProxy, proxyAgent } from '../helpers/clients.js'
import { startProxyFixture } from '../helpers/fixture.js'
import { rawExchange } from '../helpers/raw-socket.js'
import { textFrame } from '../helpers/upstream.js'

const fixture = await startProxyFixture()
const { upstream, sidecar } = fixture
const agent = proxyAgent(sidecar.proxyUrl)
t.teardown(async () => {
  await agent.close()
  await fixture.close()
})

const api = `http://${upstream.authority}/api`

function isExchanged(authorization: string | undefined, userToken: string): boolean {
  return authorization !== undefined && authorization.startsWith('Bearer ') && !authorization.includes(userToken)
}

t.test('routed request without a token gets 401 and nothing upstream', async (t) => {
  const before = upstream.requests.length
  const response = await fetchThroughProxy(agent, `${api}/orders`)
  t.equal(response.status, 401)
  t.equal(response.headers['www-authenticate'], 'Bearer')
  t.equal(JSON.parse(response.body).code, 'OBO_PROXY_MISSING_TOKEN')
  t.equal(upstream.requests.length, before)
})

t.test('routed request with Basic credentials gets 401', async (t) => {
  const before = upstream.requests.length
  const response = await fetchThroughProxy(agent, `${api}/orders`, { headers: { authorization: 'Basic dXNlcjpwYXNz' } })
  t.equal(response.status, 401)
  t.equal(upstream.requests.length, before)
})

t.test('two Authorization fields get 400', async (t) => {
  const userToken = await fixture.userToken()
  const before = upstream.requests.length
  const response = await curlThroughProxy(sidecar.proxyUrl, `${api}/orders`, [
    '-H',
    `Authorization: Bearer ${userToken}`,
    '-H',
    'Authorization: Bearer second-token',
  ])
  t.equal(response.status, 400)
  t.equal(JSON.parse(response.body).code, 'OBO_PROXY_DUPLICATE_AUTHORIZATION')
  t.equal(upstream.requests.length, before)
})

t.test('unrouted request is forwarded unchanged', async (t) => {
  const response = await fetchThroughProxy(agent, `http://${upstream.authority}/public/info`, {
    headers: { authorization: 'Bearer some-api-key' },
  })
  t.equal(response.status, 200)
  t.same(upstream.requests.at(-1)!.authorization, ['Bearer some-api-key'])
})

t.test('origin-form request with a routed Host is swapped', async (t) => {
  const userToken = await fixture.userToken()
  const response = await request(`${sidecar.proxyUrl}/api/direct`, {
    headers: { host: upstream.authority, authorization: `Bearer ${userToken}` },
  })
  t.equal(response.statusCode, 200)
  await response.body.text()
  const received = upstream.requests.at(-1)!
  t.equal(received.url, '/api/direct')
  t.ok(isExchanged(received.authorization[0], userToken))
})

t.test('origin-form request with an unknown Host gets 421', async (t) => {
  const before = upstream.requests.length
  const response = await request(`${sidecar.proxyUrl}/anything`, { headers: { host: 'unknown.example.com' } })
  t.equal(response.statusCode, 421)
  t.equal(((await response.body.json()) as { code: string }).code, 'OBO_PROXY_UNKNOWN_HOST')
  t.equal(upstream.requests.length, before)
})

t.test('dot segments cannot escape the path prefix', async (t) => {
  const userToken = await fixture.userToken()
  const response = await rawExchange(
    sidecar.proxyUrl,
    `GET http://${upstream.authority}/public/../api/secret HTTP/1.1\r\nHost: ${upstream.authority}\r\n` +
      `Authorization: Bearer ${userToken}\r\nConnection: close\r\n\r\n`,
  )
  t.match(response, /^HTTP\/1\.1 200/)
  const received = upstream.requests.at(-1)!
  t.equal(received.url, '/api/secret', 'the resolved path is forwarded')
  t.ok(isExchanged(received.authorization[0], userToken), 'and it is routed')
})

t.test('hop-by-hop and proxy fields are not forwarded', async (t) => {
  const userToken = await fixture.userToken()
  await curlThroughProxy(sidecar.proxyUrl, `${api}/hop`, [
    '-H',
    `Authorization: Bearer ${userToken}`,
    '-H',
    'Proxy-Authorization: Basic cHJveHk6cGFzcw==',
    '-H',
    'Connection: keep-alive, X-Hop',
    '-H',
    'X-Hop: drop-me',
    '-H',
    'X-Keep: keep-me',
  ])
  const headers = upstream.requests.at(-1)!.headers
  t.equal(headers['proxy-authorization'], undefined)
  t.equal(headers['x-hop'], undefined, 'fields named in Connection are dropped')
  t.equal(headers['x-keep'], 'keep-me')
  t.equal(headers.host, upstream.authority)
})

t.test('Expect: 100-continue with a body is swapped', async (t) => {
  const userToken = await fixture.userToken()
  const response = await curlThroughProxy(sidecar.proxyUrl, `${api}/upload`, [
    '-H',
    `Authorization: Bearer ${userToken}`,
    '-H',
    'Expect: 100-continue',
    '--data-binary',
    'x'.repeat(4096),
  ])
  t.equal(response.status, 200)
  t.equal(JSON.parse(response.body).bytes, 4096)
  t.ok(isExchanged(upstream.requests.at(-1)!.authorization[0], userToken))
})

t.test('chunked request body is swapped and streamed', async (t) => {
  const userToken = await fixture.userToken()
  const response = await curlThroughProxy(sidecar.proxyUrl, `${api}/upload`, [
    '-H',
    `Authorization: Bearer ${userToken}`,
    '-H',
    'Transfer-Encoding: chunked',
    '--data-binary',
    'y'.repeat(10_000),
  ])
  t.equal(response.status, 200)
  t.equal(JSON.parse(response.body).bytes, 10_000)
  t.ok(isExchanged(upstream.requests.at(-1)!.authorization[0], userToken))
})

t.test('pipelined requests are each swapped', async (t) => {
  const userToken = await fixture.userToken()
  const before = upstream.requests.length
  const one = `GET http://${upstream.authority}/api/first HTTP/1.1\r\nHost: ${upstream.authority}\r\nAuthorization: Bearer ${userToken}\r\n\r\n`
  const two = `GET http://${upstream.authority}/api/second HTTP/1.1\r\nHost: ${upstream.authority}\r\nAuthorization: Bearer ${userToken}\r\nConnection: close\r\n\r\n`
  const response = await rawExchange(sidecar.proxyUrl, one + two)
  t.equal(response.match(/HTTP\/1\.1 200/g)?.length, 2, 'two responses')
  const received = upstream.requests.slice(before)
  t.same(received.map((r) => r.url), ['/api/first', '/api/second'])
  t.ok(received.every((r) => isExchanged(r.authorization[0], userToken)))
})

t.test('WebSocket upgrade is swapped and relayed', async (t) => {
  const userToken = await fixture.userToken()
  const handshake =
    `GET http://${upstream.authority}/api/ws HTTP/1.1\r\nHost: ${upstream.authority}\r\n` +
    `Authorization: Bearer ${userToken}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
    'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n'
  const response = await rawExchange(sidecar.proxyUrl, handshake, (text) => text.includes('\r\n\r\n') && text.length > text.indexOf('\r\n\r\n') + 10)
  t.match(response, /^HTTP\/1\.1 101/)
  t.match(response, /sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK\+xOo=/i)
  const received = upstream.requests.at(-1)!
  t.ok(isExchanged(received.authorization[0], userToken), 'the handshake carried the exchanged token')
  const frame = textFrame(received.authorization[0]).toString('latin1')
  t.ok(response.endsWith(frame) || response.includes(frame), 'the upstream frame was relayed')
})

t.test('WebSocket upgrade without a token gets 401', async (t) => {
  const handshake =
    `GET http://${upstream.authority}/api/ws HTTP/1.1\r\nHost: ${upstream.authority}\r\n` +
    'Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n'
  const response = await rawExchange(sidecar.proxyUrl, handshake)
  t.match(response, /^HTTP\/1\.1 401/)
  t.match(response, /www-authenticate: Bearer/i)
})

t.test('redirects are passed to the agent, not followed', async (t) => {
  const response = await fetchThroughProxy(agent, `http://${upstream.authority}/status/302`)
  t.equal(response.status, 302)
})

t.test('unreachable upstream gets 502', async (t) => {
  const response = await fetchThroughProxy(agent, 'http://127.0.0.1:1/nothing-listens-here')
  t.equal(response.status, 502)
  t.equal(JSON.parse(response.body).code, 'OBO_UPSTREAM_UNREACHABLE')
})

t.test('malformed request line gets 400 and the proxy keeps serving', async (t) => {
  const response = await rawExchange(sidecar.proxyUrl, 'NOT A REQUEST\r\n\r\n')
  t.match(response, /^HTTP\/1\.1 400/)
  const relative = await rawExchange(sidecar.proxyUrl, 'GET ftp://example.com/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
  t.match(relative, /^HTTP\/1\.1 400/)
  const after = await fetchThroughProxy(agent, `http://${upstream.authority}/public/ok`)
  t.equal(after.status, 200)
})

t.test('proxy metrics count requests by route and code', async (t) => {
  t.ok((await sidecar.metric('obo_sidecar_proxy_requests_total{route="api",code="200"}')) > 0)
  t.ok((await sidecar.metric('obo_sidecar_proxy_requests_total{route="api",code="401"}')) > 0)
  t.ok((await sidecar.metric('obo_sidecar_proxy_requests_total{route="_unrouted",code="200"}')) > 0)
})

t.test('error bodies carry the request id of their log line', async (t) => {
  const response = await fetchThroughProxy(agent, `${api}/orders`)
  const body = JSON.parse(response.body) as { requestId: string }
  t.match(body.requestId, /^[0-9a-f-]{36}$/)
  await new Promise((resolve) => setTimeout(resolve, 200))
  const line = sidecar.stdoutLines.find((entry) => entry.includes(body.requestId))
  t.ok(line, 'the log has a line with the same request id')
  t.match(line, /"code":"OBO_PROXY_MISSING_TOKEN"/)
})

t.test('oversized header section gets 431', async (t) => {
  const response = await rawExchange(
    sidecar.proxyUrl,
    `GET http://${upstream.authority}/api/big HTTP/1.1\r\nHost: ${upstream.authority}\r\nAuthorization: Bearer ${'a'.repeat(70_000)}\r\n\r\n`,
  )
  t.match(response, /^HTTP\/1\.1 431/)
})

t.test('a 20 KiB user token is accepted', async (t) => {
  const userToken = await fixture.tokenService.issueUserToken({ sub: 'large', groups: 'g'.repeat(20_000) })
  const response = await fetchThroughProxy(agent, `${api}/large`, { headers: { authorization: `Bearer ${userToken}` } })
  t.equal(response.status, 200)
  t.ok(isExchanged(upstream.requests.at(-1)!.authorization[0], userToken))
})
