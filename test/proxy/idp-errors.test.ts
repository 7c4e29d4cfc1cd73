import t from 'tap'
import { startScriptedIdp, json } from '../helpers/scripted-idp.js'
import { startSidecarProcess, writeTempFile } from '../helpers/sidecar-process.js'
import { startUpstream } from '../helpers/upstream.js'
import { fetchThroughProxy, proxyAgent } from '../helpers/clients.js'

const USER_TOKEN = 'user-token-sentinel-3f9a'
const CLIENT_SECRET = 'client-secret-sentinel-77c1'

const idp = await startScriptedIdp()
const upstream = await startUpstream()
const routes = writeTempFile(
  'routes.yaml',
  `issuers:
  scripted:
    tokenEndpoint: ${idp.tokenEndpoint}
    clientId: orders-agent
    clientSecret: { env: SCRIPTED_SECRET }
routes:
  - name: orders
    host: ${upstream.authority}
    issuer: scripted
    audience: https://orders.example.com
    scopes: [orders.read]
`,
)
const sidecar = await startSidecarProcess(routes, ['--exchange-timeout', '1'], { SCRIPTED_SECRET: CLIENT_SECRET })
const agent = proxyAgent(sidecar.proxyUrl)
t.teardown(async () => {
  await agent.close()
  await sidecar.stop()
  await upstream.close()
  await idp.close()
})

// Each case uses its own user token so that no cached token from an earlier case is reused.
let tokenCounter = 0
async function callWith(responder: Parameters<typeof idp.respondWith>[0]) {
  idp.respondWith(responder)
  tokenCounter++
  const before = upstream.requests.length
  const response = await fetchThroughProxy(agent, `http://${upstream.authority}/orders`, {
    headers: { authorization: `Bearer ${USER_TOKEN}-${tokenCounter}` },
  })
  return { response, body: JSON.parse(response.body) as Record<string, unknown>, upstreamCalls: upstream.requests.length - before }
}

const cases: Array<{
  name: string
  responder: Parameters<typeof idp.respondWith>[0]
  status: number
  error: string
  code: string
  headers?: Record<string, string>
}> = [
  {
    name: 'invalid_grant becomes 401 invalid_token',
    responder: (_r, res) => json(res, 400, { error: 'invalid_grant', error_description: 'token expired' }),
    status: 401,
    error: 'invalid_grant',
    code: 'OBO_EXCHANGE_SUBJECT_REJECTED',
    headers: { 'www-authenticate': 'Bearer error="invalid_token"' },
  },
  {
    name: 'invalid_target becomes 403',
    responder: (_r, res) => json(res, 400, { error: 'invalid_target' }),
    status: 403,
    error: 'invalid_target',
    code: 'OBO_EXCHANGE_FORBIDDEN',
  },
  {
    name: 'invalid_scope becomes 403',
    responder: (_r, res) => json(res, 400, { error: 'invalid_scope' }),
    status: 403,
    error: 'invalid_scope',
    code: 'OBO_EXCHANGE_FORBIDDEN',
  },
  {
    name: 'consent_required becomes 403',
    responder: (_r, res) => json(res, 400, { error: 'consent_required' }),
    status: 403,
    error: 'consent_required',
    code: 'OBO_EXCHANGE_FORBIDDEN',
  },
  {
    name: 'invalid_client becomes 502',
    responder: (_r, res) => json(res, 401, { error: 'invalid_client' }, { 'www-authenticate': 'Basic' }),
    status: 502,
    error: 'invalid_client',
    code: 'OBO_EXCHANGE_CLIENT_REJECTED',
  },
  {
    name: 'unauthorized_client becomes 502',
    responder: (_r, res) => json(res, 400, { error: 'unauthorized_client' }),
    status: 502,
    error: 'unauthorized_client',
    code: 'OBO_EXCHANGE_CLIENT_REJECTED',
  },
  {
    name: 'invalid_request becomes 502',
    responder: (_r, res) => json(res, 400, { error: 'invalid_request' }),
    status: 502,
    error: 'invalid_request',
    code: 'OBO_EXCHANGE_CLIENT_REJECTED',
  },
  {
    name: 'IdP 503 becomes 502',
    responder: (_r, res) => json(res, 503, { error: 'temporarily_unavailable' }),
    status: 502,
    error: 'temporarily_unavailable',
    code: 'OBO_EXCHANGE_IDP_UNAVAILABLE',
  },
  {
    name: 'HTML error page becomes 502',
    responder: (_r, res) => {
      res.writeHead(502, { 'content-type': 'text/html' })
      res.end('<html><body>Bad Gateway</body></html>')
    },
    status: 502,
    error: 'idp_unavailable',
    code: 'OBO_EXCHANGE_IDP_UNAVAILABLE',
  },
  {
    name: 'HTML with status 200 becomes 502',
    responder: (_r, res) => {
      res.writeHead(200, { 'content-type': 'text/html' })
      res.end('<html><body>Sign in</body></html>')
    },
    status: 502,
    error: 'idp_bad_response',
    code: 'OBO_EXCHANGE_BAD_RESPONSE',
  },
  {
    name: 'token_type N_A is never forwarded',
    responder: (_r, res) =>
      json(res, 200, { access_token: 'not-usable-id-jag', token_type: 'N_A', issued_token_type: 'urn:ietf:params:oauth:token-type:id-jag', expires_in: 300 }),
    status: 502,
    error: 'idp_bad_response',
    code: 'OBO_EXCHANGE_BAD_RESPONSE',
  },
  {
    name: 'missing access_token becomes 502',
    responder: (_r, res) => json(res, 200, { token_type: 'Bearer', expires_in: 300 }),
    status: 502,
    error: 'idp_bad_response',
    code: 'OBO_EXCHANGE_BAD_RESPONSE',
  },
  {
    name: 'IdP 429 passes Retry-After on',
    responder: (_r, res) => json(res, 429, { error: 'slow_down' }, { 'retry-after': '17' }),
    status: 429,
    error: 'slow_down',
    code: 'OBO_EXCHANGE_THROTTLED',
    headers: { 'retry-after': '17' },
  },
  {
    name: 'silent IdP becomes 504',
    responder: () => {
      // Never responds: the sidecar's 1 s exchange timeout must end the wait.
    },
    status: 504,
    error: 'idp_timeout',
    code: 'OBO_EXCHANGE_TIMEOUT',
  },
]

for (const testCase of cases) {
  t.test(testCase.name, async (t) => {
    const { response, body, upstreamCalls } = await callWith(testCase.responder)
    t.equal(response.status, testCase.status, 'status')
    t.equal(body.error, testCase.error, 'error field')
    t.equal(body.code, testCase.code, 'code field')
    t.equal(typeof body.message, 'string', 'message present')
    t.equal(upstreamCalls, 0, 'nothing sent upstream')
    for (const [name, value] of Object.entries(testCase.headers ?? {})) {
      t.equal(response.headers[name], value, `${name} header`)
    }
    t.equal(response.headers['content-type'], 'application/json', 'JSON body')
  })
}

t.test('failures are not cached', async (t) => {
  idp.respondWith((_r, res) => json(res, 503, { error: 'temporarily_unavailable' }))
  const headers = { authorization: `Bearer ${USER_TOKEN}-retry` }
  const failed = await fetchThroughProxy(agent, `http://${upstream.authority}/orders`, { headers })
  t.equal(failed.status, 502)

  idp.respondWith((_r, res) => json(res, 200, { access_token: 'obo-after-recovery', token_type: 'Bearer', expires_in: 300 }))
  const recovered = await fetchThroughProxy(agent, `http://${upstream.authority}/orders`, { headers })
  t.equal(recovered.status, 200)
  t.equal(JSON.parse(recovered.body).authorization, 'Bearer obo-after-recovery')
})

t.test('unreachable IdP becomes 502', async (t) => {
  const closed = await startScriptedIdp()
  await closed.close()
  const deadRoutes = writeTempFile(
    'routes.yaml',
    `issuers:
  gone:
    tokenEndpoint: ${closed.tokenEndpoint}
    clientId: orders-agent
    clientAuth: none
routes:
  - host: ${upstream.authority}
    issuer: gone
`,
  )
  const deadSidecar = await startSidecarProcess(deadRoutes)
  const deadAgent = proxyAgent(deadSidecar.proxyUrl)
  t.teardown(async () => {
    await deadAgent.close()
    await deadSidecar.stop()
  })
  const response = await fetchThroughProxy(deadAgent, `http://${upstream.authority}/orders`, {
    headers: { authorization: `Bearer ${USER_TOKEN}` },
  })
  t.equal(response.status, 502)
  t.equal(JSON.parse(response.body).code, 'OBO_EXCHANGE_IDP_UNAVAILABLE')
})

t.test('no token or secret in logs or error bodies', async (t) => {
  const output = sidecar.stdoutLines.join('\n') + sidecar.stderr()
  t.notMatch(output, USER_TOKEN, 'user token absent from logs')
  t.notMatch(output, CLIENT_SECRET, 'client secret absent from logs')
  t.notMatch(output, 'not-usable-id-jag', 'issued token absent from logs')
  t.notMatch(output, 'obo-after-recovery', 'issued token absent from logs')
  t.match(output, /token exchange failed/, 'failures were logged')
})

t.test('failed exchanges count as cache misses', async (t) => {
  const misses = await sidecar.metric('obo_sidecar_token_cache_misses_total')
  t.ok(misses >= cases.length, `${misses} misses for ${cases.length} failed exchanges and more`)
  const outcomes = await sidecar.metric('obo_sidecar_token_exchanges_total{issuer="scripted",outcome="subject_rejected"}')
  t.equal(outcomes, 1, 'outcome label per error class')
})
