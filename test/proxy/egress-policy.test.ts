import t from 'tap'
import { curlThroughProxy } from '../helpers/clients.js'
import { rawExchange } from '../helpers/raw-socket.js'
import { startTlsFixture } from '../helpers/tls-fixture.js'
import { startUpstream } from '../helpers/upstream.js'

// A second API with no route: the user's token must not leak to it.
const unrouted = await startUpstream()
const unroutedTls = await startUpstream({ tls: { names: ['127.0.0.1'] } })
t.teardown(async () => {
  await unrouted.close()
  await unroutedTls.close()
})

t.test('forward: unrouted requests keep their Authorization', async (t) => {
  const fixture = await startTlsFixture(['--unrouted-policy', 'forward'])
  t.teardown(() => fixture.close())
  const userToken = await fixture.userToken()
  const response = await curlThroughProxy(fixture.sidecar.proxyUrl, `http://${unrouted.authority}/x`, ['-H', `Authorization: Bearer ${userToken}`])
  t.equal(response.status, 200)
  t.same(unrouted.requests.at(-1)!.authorization, [`Bearer ${userToken}`])
})

t.test('strip: the user token is removed, API keys pass', async (t) => {
  const fixture = await startTlsFixture(['--unrouted-policy', 'strip'])
  t.teardown(() => fixture.close())
  const userToken = await fixture.userToken()

  const stripped = await curlThroughProxy(fixture.sidecar.proxyUrl, `http://${unrouted.authority}/x`, ['-H', `Authorization: Bearer ${userToken}`])
  t.equal(stripped.status, 200)
  t.same(unrouted.requests.at(-1)!.authorization, [], 'the user token did not reach the unrouted host')

  const apiKey = await curlThroughProxy(fixture.sidecar.proxyUrl, `http://${unrouted.authority}/y`, ['-H', 'Authorization: Bearer sk-live-api-key'])
  t.equal(apiKey.status, 200)
  t.same(unrouted.requests.at(-1)!.authorization, ['Bearer sk-live-api-key'], 'an opaque API key passes')

  const foreign = await fixture.tokenService.issueUserToken({ sub: 'x' })
  t.ok(foreign.length > 0)
  t.equal(await fixture.sidecar.metric('obo_sidecar_user_token_blocked_total{reason="stripped"}'), 1)
})

t.test('strip with --intercept all reaches inside HTTPS to unrouted hosts', async (t) => {
  // NODE_EXTRA_CA_CERTS makes the sidecar trust the unrouted API's private CA, as an operator
  // would for an internal service.
  const fixture = await startTlsFixture(['--unrouted-policy', 'strip', '--intercept', 'all'], {
    NODE_EXTRA_CA_CERTS: unroutedTls.caFile,
  })
  t.teardown(() => fixture.close())
  const userToken = await fixture.userToken()
  const url = `https://127.0.0.1:${unroutedTls.port}/inside-tls`

  const stripped = await curlThroughProxy(fixture.sidecar.proxyUrl, url, ['--cacert', fixture.caFile, '-H', `Authorization: Bearer ${userToken}`])
  t.equal(stripped.status, 200)
  t.same(unroutedTls.requests.at(-1)!.authorization, [], 'the user token was removed inside TLS')

  const apiKey = await curlThroughProxy(fixture.sidecar.proxyUrl, url, ['--cacert', fixture.caFile, '-H', 'Authorization: Bearer sk-api-key'])
  t.equal(apiKey.status, 200)
  t.same(unroutedTls.requests.at(-1)!.authorization, ['Bearer sk-api-key'])
  t.equal(await fixture.sidecar.metric('obo_sidecar_user_token_blocked_total{reason="stripped"}'), 1)
})

t.test('intercepted unrouted upstream with an unknown CA fails closed', async (t) => {
  const fixture = await startTlsFixture(['--unrouted-policy', 'forward', '--intercept', 'all'])
  t.teardown(() => fixture.close())
  const userToken = await fixture.userToken()
  const before = unroutedTls.requests.length
  const response = await curlThroughProxy(fixture.sidecar.proxyUrl, `https://127.0.0.1:${unroutedTls.port}/z`, [
    '--cacert',
    fixture.caFile,
    '-H',
    `Authorization: Bearer ${userToken}`,
  ])
  t.equal(response.status, 502)
  t.equal(JSON.parse(response.body).code, 'OBO_UPSTREAM_TLS_FAILED')
  t.equal(unroutedTls.requests.length, before, 'never sent without verification')
})

t.test('deny: unrouted requests and tunnels get 403', async (t) => {
  const fixture = await startTlsFixture(['--unrouted-policy', 'deny'])
  t.teardown(() => fixture.close())
  const before = unrouted.requests.length

  const plain = await curlThroughProxy(fixture.sidecar.proxyUrl, `http://${unrouted.authority}/x`)
  t.equal(plain.status, 403)
  t.equal(JSON.parse(plain.body).code, 'OBO_EGRESS_DENIED')
  t.equal(unrouted.requests.length, before)

  const tunnel = await rawExchange(fixture.sidecar.proxyUrl, `CONNECT ${unroutedTls.authority} HTTP/1.1\r\nHost: ${unroutedTls.authority}\r\n\r\n`)
  t.match(tunnel, /^HTTP\/1\.1 403/)
  t.match(tunnel, /OBO_EGRESS_DENIED/)

  // Routed traffic is unaffected.
  const userToken = await fixture.userToken()
  const routed = await curlThroughProxy(fixture.sidecar.proxyUrl, `https://127.0.0.1:${fixture.upstream.port}/api/ok`, [
    '--cacert',
    fixture.caFile,
    '-H',
    `Authorization: Bearer ${userToken}`,
  ])
  t.equal(routed.status, 200)
  t.equal(await fixture.sidecar.metric('obo_sidecar_user_token_blocked_total{reason="denied"}'), 2)
})

t.test('blind tunnel for an unrouted host under forward', async (t) => {
  const fixture = await startTlsFixture()
  t.teardown(() => fixture.close())
  // The agent trusts the upstream's own CA: the sidecar relays bytes without terminating TLS.
  const response = await curlThroughProxy(fixture.sidecar.proxyUrl, `https://127.0.0.1:${unroutedTls.port}/blind`, [
    '--cacert',
    unroutedTls.caFile!,
    '-H',
    'Authorization: Bearer api-key-for-unrouted',
  ])
  t.equal(response.status, 200)
  t.same(unroutedTls.requests.at(-1)!.authorization, ['Bearer api-key-for-unrouted'])
  t.equal(await fixture.sidecar.metric('obo_sidecar_tls_certificates_minted_total'), 0, 'no certificate minted for a blind tunnel')
})

t.test('strip without userTokenIssuers stops start-up', async (t) => {
  const { runCli, writeTempFile } = await import('../helpers/sidecar-process.js')
  const routes = writeTempFile(
    'routes.yaml',
    'issuers:\n  a:\n    tokenEndpoint: http://127.0.0.1:9/token\n    clientId: c\n    clientAuth: none\nroutes:\n  - host: a.example.com\n    issuer: a\n',
  )
  const result = await runCli(['run', '--routes', routes, '--unrouted-policy', 'strip', '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0'])
  t.equal(result.code, 1)
  t.match(result.stderr, /userTokenIssuers/)
})
