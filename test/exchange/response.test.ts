import { Buffer } from 'node:buffer'
import t from 'tap'
import { ExchangeError, ExchangeThrottledError, type ErrorCode } from '../../src/errors.js'
import {
  processExchangeResponse,
  type ExchangeResponse,
  type IssuedToken,
  type ResponseContext,
} from '../../src/exchange/response.js'

const NOW = 1_700_000_000_000
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token'

const context: ResponseContext = {
  issuerName: 'corp',
  now: NOW,
  defaultLifetimeSeconds: 300,
  maxLifetimeSeconds: 86_400,
  requestedTokenType: undefined,
}

/** Builds an unsigned JWT, which is enough because the response parser never verifies claims. */
function unsignedJwt(claims: Record<string, unknown>): string {
  const encode = (value: object): string => Buffer.from(JSON.stringify(value)).toString('base64url')
  return `${encode({ alg: 'none', typ: 'JWT' })}.${encode(claims)}.`
}

function jsonResponse(status: number, body: unknown, headers: Record<string, string> = {}): ExchangeResponse {
  return {
    status,
    headers: { 'content-type': 'application/json', ...headers },
    bodyText: JSON.stringify(body),
    contentType: 'application/json',
  }
}

function textResponse(status: number, contentType: string | undefined, bodyText: string): ExchangeResponse {
  return { status, headers: contentType === undefined ? {} : { 'content-type': contentType }, bodyText, contentType }
}

function tokenBody(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return { access_token: 'issued-token', token_type: 'Bearer', expires_in: 3600, ...overrides }
}

function catchExchangeError(response: ExchangeResponse, ctx: ResponseContext = context): ExchangeError {
  try {
    processExchangeResponse(response, ctx)
  } catch (error) {
    if (error instanceof ExchangeError) return error
    throw error
  }
  throw new Error(`expected HTTP ${response.status} to raise an ExchangeError`)
}

void t.test('successful responses', (t) => {
  const cases: { name: string; body: Record<string, unknown>; expected: Partial<IssuedToken> }[] = [
    {
      name: 'full RFC 8693 response',
      body: tokenBody({ scope: 'orders:read', issued_token_type: ACCESS_TOKEN_TYPE }),
      expected: { expiresAt: NOW + 3_600_000, scope: 'orders:read', issuedTokenType: ACCESS_TOKEN_TYPE },
    },
    { name: 'token_type lowercase', body: tokenBody({ token_type: 'bearer' }), expected: { tokenType: 'Bearer' } },
    { name: 'token_type uppercase', body: tokenBody({ token_type: 'BEARER' }), expected: { tokenType: 'Bearer' } },
    { name: 'expires_in numeric string', body: tokenBody({ expires_in: '3599' }), expected: { expiresAt: NOW + 3_599_000 } },
    { name: 'expires_in float', body: tokenBody({ expires_in: 59.5 }), expected: { expiresAt: NOW + 59_500 } },
    { name: 'expires_in zero', body: tokenBody({ expires_in: 0 }), expected: { expiresAt: NOW } },
    { name: 'expires_in negative', body: tokenBody({ expires_in: -5 }), expected: { expiresAt: NOW } },
    { name: 'expires_in negative string', body: tokenBody({ expires_in: '-5' }), expected: { expiresAt: NOW } },
    { name: 'expires_in huge is clamped', body: tokenBody({ expires_in: 1e12 }), expected: { expiresAt: NOW + 86_400_000 } },
    {
      name: 'expires_in missing uses the JWT exp',
      body: tokenBody({ expires_in: undefined, access_token: unsignedJwt({ exp: NOW / 1000 + 1200 }) }),
      expected: { expiresAt: NOW + 1_200_000 },
    },
    {
      name: 'expires_in null uses the JWT exp',
      body: tokenBody({ expires_in: null, access_token: unsignedJwt({ exp: NOW / 1000 + 1200 }) }),
      expected: { expiresAt: NOW + 1_200_000 },
    },
    {
      name: 'JWT exp far ahead is clamped',
      body: tokenBody({ expires_in: undefined, access_token: unsignedJwt({ exp: NOW / 1000 + 10 * 86_400 }) }),
      expected: { expiresAt: NOW + 86_400_000 },
    },
    {
      name: 'JWT exp in the past means use once',
      body: tokenBody({ expires_in: undefined, access_token: unsignedJwt({ exp: NOW / 1000 - 60 }) }),
      expected: { expiresAt: NOW },
    },
    {
      name: 'JWT without exp uses the default',
      body: tokenBody({ expires_in: undefined, access_token: unsignedJwt({ sub: 'user' }) }),
      expected: { expiresAt: NOW + 300_000 },
    },
    {
      name: 'opaque token without expires_in uses the default',
      body: tokenBody({ expires_in: undefined, access_token: 'opaque-token' }),
      expected: { expiresAt: NOW + 300_000 },
    },
    { name: 'scope array is joined', body: tokenBody({ scope: ['a', 'b'] }), expected: { scope: 'a b' } },
    { name: 'scope missing', body: tokenBody(), expected: { scope: undefined } },
    { name: 'scope of another type is ignored', body: tokenBody({ scope: 42 }), expected: { scope: undefined } },
  ]

  for (const testCase of cases) {
    const token = processExchangeResponse(jsonResponse(200, testCase.body), context)
    t.match(token, testCase.expected, testCase.name)
    t.equal(token.tokenType, 'Bearer', `${testCase.name}: token type`)
  }
  t.end()
})

void t.test('JSON content types with parameters and +json', (t) => {
  const body = JSON.stringify(tokenBody())
  for (const contentType of ['application/json; charset=utf-8', 'Application/JSON', 'application/token+json']) {
    const token = processExchangeResponse(textResponse(200, contentType, body), context)
    t.equal(token.accessToken, 'issued-token', contentType)
  }
  t.end()
})

void t.test('unknown fields and refresh_token are dropped', (t) => {
  const body = tokenBody({
    refresh_token: 'refresh-token-value',
    ext_expires_in: 7200,
    id_token: 'id-token-value',
    session_state: 'abc',
  })
  const token = processExchangeResponse(jsonResponse(200, body), context)

  t.same(Object.keys(token).sort(), ['accessToken', 'expiresAt', 'issuedTokenType', 'scope', 'tokenType'])
  t.notMatch(JSON.stringify(token), /refresh-token-value|id-token-value/)
  t.end()
})

void t.test('issued_token_type matching the request is accepted', (t) => {
  const ctx = { ...context, requestedTokenType: ACCESS_TOKEN_TYPE }
  const token = processExchangeResponse(jsonResponse(200, tokenBody({ issued_token_type: ACCESS_TOKEN_TYPE })), ctx)
  t.equal(token.issuedTokenType, ACCESS_TOKEN_TYPE)
  t.end()
})

interface FailureCase {
  name: string
  response: ExchangeResponse
  ctx?: ResponseContext
  code: ErrorCode
  statusCode: number
  idpError: string | undefined
  message: string | RegExp
}

const PREFIX = 'token exchange at issuer "corp" failed: '

function oauthError(status: number, error: unknown, headers: Record<string, string> = {}): ExchangeResponse {
  return jsonResponse(status, { error, error_description: 'something went wrong' }, headers)
}

const failureCases: FailureCase[] = [
  {
    name: 'invalid_grant',
    response: oauthError(400, 'invalid_grant'),
    code: 'OBO_EXCHANGE_SUBJECT_REJECTED',
    statusCode: 401,
    idpError: 'invalid_grant',
    message: `${PREFIX}the IdP returned HTTP 400 invalid_grant (the user's token was rejected, so the agent must obtain a fresh token)`,
  },
  ...['invalid_target', 'invalid_scope', 'access_denied', 'consent_required', 'interaction_required'].map(
    (error): FailureCase => ({
      name: error,
      response: oauthError(400, error),
      code: 'OBO_EXCHANGE_FORBIDDEN',
      statusCode: 403,
      idpError: error,
      message: new RegExp(`^${PREFIX}the IdP returned HTTP 400 ${error} \\(the IdP refused the requested audience`),
    }),
  ),
  ...['invalid_client', 'unauthorized_client', 'invalid_request', 'unsupported_grant_type'].map(
    (error): FailureCase => ({
      name: error,
      response: oauthError(400, error),
      code: 'OBO_EXCHANGE_CLIENT_REJECTED',
      statusCode: 502,
      idpError: error,
      message: new RegExp(`^${PREFIX}the IdP returned HTTP 400 ${error} \\(the IdP rejected the sidecar's client`),
    }),
  ),
  {
    name: 'invalid_client with 401',
    response: oauthError(401, 'invalid_client', { 'www-authenticate': 'Basic' }),
    code: 'OBO_EXCHANGE_CLIENT_REJECTED',
    statusCode: 502,
    idpError: 'invalid_client',
    message: /HTTP 401 invalid_client/,
  },
  {
    name: 'unrecognised 4xx code',
    response: oauthError(400, 'use_dpop_nonce'),
    code: 'OBO_EXCHANGE_CLIENT_REJECTED',
    statusCode: 502,
    idpError: 'use_dpop_nonce',
    message: /HTTP 400 use_dpop_nonce, an error code the sidecar does not recognise/,
  },
  {
    name: '429 with Retry-After',
    response: oauthError(429, 'slow_down', { 'retry-after': '30' }),
    code: 'OBO_EXCHANGE_THROTTLED',
    statusCode: 429,
    idpError: 'slow_down',
    message: /HTTP 429 slow_down \(the IdP is rate limiting/,
  },
  {
    name: '429 HTML without Retry-After',
    response: textResponse(429, 'text/html', '<html>Too many</html>'),
    code: 'OBO_EXCHANGE_THROTTLED',
    statusCode: 429,
    idpError: undefined,
    message: /HTTP 429 \(the IdP is rate limiting/,
  },
  {
    name: '500 HTML',
    response: textResponse(500, 'text/html', '<html>Internal error</html>'),
    code: 'OBO_EXCHANGE_IDP_UNAVAILABLE',
    statusCode: 502,
    idpError: undefined,
    message: `${PREFIX}the IdP returned HTTP 500 (the IdP is unavailable, so retry later)`,
  },
  {
    name: '503 temporarily_unavailable',
    response: oauthError(503, 'temporarily_unavailable'),
    code: 'OBO_EXCHANGE_IDP_UNAVAILABLE',
    statusCode: 502,
    idpError: 'temporarily_unavailable',
    message: /HTTP 503 temporarily_unavailable/,
  },
  {
    name: '400 server_error',
    response: oauthError(400, 'server_error'),
    code: 'OBO_EXCHANGE_IDP_UNAVAILABLE',
    statusCode: 502,
    idpError: 'server_error',
    message: /HTTP 400 server_error/,
  },
  {
    name: '400 HTML',
    response: textResponse(400, 'text/html', '<html>Bad request</html>'),
    code: 'OBO_EXCHANGE_BAD_RESPONSE',
    statusCode: 502,
    idpError: undefined,
    message: /HTTP 400 without an OAuth error code/,
  },
  {
    name: '404 plain text',
    response: textResponse(404, 'text/plain', 'Not Found'),
    code: 'OBO_EXCHANGE_BAD_RESPONSE',
    statusCode: 502,
    idpError: undefined,
    message: /HTTP 404 without an OAuth error code; check that tokenEndpoint/,
  },
  {
    name: '302 redirect',
    response: textResponse(302, undefined, ''),
    code: 'OBO_EXCHANGE_BAD_RESPONSE',
    statusCode: 502,
    idpError: undefined,
    message: /HTTP 302, a redirect, which the sidecar does not follow/,
  },
  {
    name: '201 instead of 200',
    response: jsonResponse(201, tokenBody()),
    code: 'OBO_EXCHANGE_BAD_RESPONSE',
    statusCode: 502,
    idpError: undefined,
    message: /HTTP 201 instead of 200/,
  },
  {
    name: 'error code with a forbidden character',
    response: oauthError(400, 'invalid\\grant'),
    code: 'OBO_EXCHANGE_BAD_RESPONSE',
    statusCode: 502,
    idpError: undefined,
    message: /without an OAuth error code/,
  },
  {
    name: 'error code too long',
    response: oauthError(400, 'x'.repeat(65)),
    code: 'OBO_EXCHANGE_BAD_RESPONSE',
    statusCode: 502,
    idpError: undefined,
    message: /without an OAuth error code/,
  },
  {
    name: 'error code not a string',
    response: oauthError(400, 7),
    code: 'OBO_EXCHANGE_BAD_RESPONSE',
    statusCode: 502,
    idpError: undefined,
    message: /without an OAuth error code/,
  },
  {
    name: '200 HTML',
    response: textResponse(200, 'text/html; charset=utf-8', '<html>Sign in</html>'),
    code: 'OBO_EXCHANGE_BAD_RESPONSE',
    statusCode: 502,
    idpError: undefined,
    message: `${PREFIX}the IdP returned HTTP 200 with "text/html" instead of JSON; check that tokenEndpoint is the IdP's token endpoint`,
  },
  {
    name: '200 without content type',
    response: textResponse(200, undefined, JSON.stringify(tokenBody())),
    code: 'OBO_EXCHANGE_BAD_RESPONSE',
    statusCode: 502,
    idpError: undefined,
    message: /HTTP 200 with an unrecognised content type instead of JSON/,
  },
  {
    name: '200 JSON content type with HTML body',
    response: textResponse(200, 'application/json', '<html></html>'),
    code: 'OBO_EXCHANGE_BAD_RESPONSE',
    statusCode: 502,
    idpError: undefined,
    message: /body that is not valid JSON/,
  },
  ...[
    ['array', [1, 2]],
    ['string', 'token'],
    ['null', null],
  ].map(
    ([kind, body]): FailureCase => ({
      name: `200 JSON ${String(kind)}`,
      response: jsonResponse(200, body),
      code: 'OBO_EXCHANGE_BAD_RESPONSE',
      statusCode: 502,
      idpError: undefined,
      message: /JSON body that is not an object/,
    }),
  ),
  ...[undefined, '', 42].map(
    (accessToken): FailureCase => ({
      name: `access_token ${JSON.stringify(accessToken)}`,
      response: jsonResponse(200, tokenBody({ access_token: accessToken })),
      code: 'OBO_EXCHANGE_BAD_RESPONSE',
      statusCode: 502,
      idpError: undefined,
      message: /HTTP 200 without an access_token/,
    }),
  ),
  ...['N_A', 'n_a'].map(
    (tokenType): FailureCase => ({
      name: `token_type ${tokenType}`,
      response: jsonResponse(200, tokenBody({ token_type: tokenType })),
      code: 'OBO_EXCHANGE_BAD_RESPONSE',
      statusCode: 502,
      idpError: undefined,
      message: /token_type N_A, which is not an access token and is never forwarded/,
    }),
  ),
  {
    name: 'token_type DPoP',
    response: jsonResponse(200, tokenBody({ token_type: 'DPoP' })),
    code: 'OBO_EXCHANGE_BAD_RESPONSE',
    statusCode: 502,
    idpError: undefined,
    message: `${PREFIX}the IdP issued a token with "DPoP", but the sidecar supports only Bearer tokens`,
  },
  {
    name: 'token_type MAC',
    response: jsonResponse(200, tokenBody({ token_type: 'mac' })),
    code: 'OBO_EXCHANGE_BAD_RESPONSE',
    statusCode: 502,
    idpError: undefined,
    message: /"mac", but the sidecar supports only Bearer tokens/,
  },
  {
    name: 'token_type missing',
    response: jsonResponse(200, tokenBody({ token_type: undefined })),
    code: 'OBO_EXCHANGE_BAD_RESPONSE',
    statusCode: 502,
    idpError: undefined,
    message: /without a token_type/,
  },
  ...['soon', true, '1e3', ''].map(
    (expiresIn): FailureCase => ({
      name: `expires_in ${JSON.stringify(expiresIn)}`,
      response: jsonResponse(200, tokenBody({ expires_in: expiresIn })),
      code: 'OBO_EXCHANGE_BAD_RESPONSE',
      statusCode: 502,
      idpError: undefined,
      message: /expires_in that is not a number/,
    }),
  ),
  {
    name: 'issued_token_type other than requested',
    response: jsonResponse(200, tokenBody({ issued_token_type: 'urn:ietf:params:oauth:token-type:jwt' })),
    ctx: { ...context, requestedTokenType: ACCESS_TOKEN_TYPE },
    code: 'OBO_EXCHANGE_BAD_RESPONSE',
    statusCode: 502,
    idpError: undefined,
    message: `${PREFIX}the IdP issued "urn:ietf:params:oauth:token-type:jwt" but "${ACCESS_TOKEN_TYPE}" was requested; check the issuer's requestedTokenType`,
  },
  {
    name: 'ID token issued unrequested',
    response: jsonResponse(200, tokenBody({ issued_token_type: 'urn:ietf:params:oauth:token-type:id_token' })),
    code: 'OBO_EXCHANGE_BAD_RESPONSE',
    statusCode: 502,
    idpError: undefined,
    message: /issued "urn:ietf:params:oauth:token-type:id_token", which is not an access token/,
  },
]

void t.test('failure mapping', (t) => {
  for (const testCase of failureCases) {
    const error = catchExchangeError(testCase.response, testCase.ctx)
    t.equal(error.code, testCase.code, `${testCase.name}: code`)
    t.equal(error.statusCode, testCase.statusCode, `${testCase.name}: statusCode`)
    t.equal(error.idpError, testCase.idpError, `${testCase.name}: idpError`)
    if (typeof testCase.message === 'string') t.equal(error.message, testCase.message, `${testCase.name}: message`)
    else t.match(error.message, testCase.message, `${testCase.name}: message`)
  }
  t.end()
})

void t.test('429 passes Retry-After on unchanged', (t) => {
  for (const retryAfter of ['30', 'Wed, 21 Oct 2026 07:28:00 GMT']) {
    const error = catchExchangeError(oauthError(429, 'slow_down', { 'retry-after': retryAfter }))
    t.ok(error instanceof ExchangeThrottledError)
    t.equal((error as ExchangeThrottledError).retryAfter, retryAfter)
    t.same(error.responseHeaders(), { 'retry-after': retryAfter })
  }
  const withoutHeader = catchExchangeError(textResponse(429, 'text/plain', 'slow down'))
  t.equal((withoutHeader as ExchangeThrottledError).retryAfter, undefined)
  t.same(withoutHeader.responseHeaders(), {})
  t.end()
})

void t.test('agent-facing error field carries the IdP code', (t) => {
  t.equal(catchExchangeError(oauthError(400, 'invalid_grant')).error, 'invalid_grant')
  t.equal(catchExchangeError(oauthError(400, 'consent_required')).error, 'consent_required')
  t.equal(catchExchangeError(textResponse(502, 'text/html', '<html/>')).error, 'idp_unavailable')
  t.end()
})

void t.test('no token or description reaches a message', (t) => {
  // A JWT-shaped sentinel of realistic length, as an IdP might echo the subject token back.
  const sentinel = unsignedJwt({
    iss: 'https://idp.example.test/',
    sub: 'SENTINEL-subject-token',
    aud: 'sidecar',
    exp: NOW / 1000 + 60,
    scp: 'orders:read orders:write',
  })
  const leakyResponses: ExchangeResponse[] = [
    jsonResponse(400, { error: 'invalid_grant', error_description: `bad token ${sentinel}`, error_uri: sentinel }),
    jsonResponse(400, { error: sentinel }),
    jsonResponse(401, { error: 'invalid_client', error_description: `client secret ${sentinel} is wrong` }),
    jsonResponse(429, { error: 'slow_down', error_description: sentinel }),
    jsonResponse(503, { error: 'temporarily_unavailable', error_description: sentinel }),
    textResponse(500, 'text/html', `<html>${sentinel}</html>`),
    textResponse(200, 'text/html', `<html>${sentinel}</html>`),
    textResponse(200, `text/${sentinel}`, sentinel),
    textResponse(200, 'application/json', `{"access_token":"${sentinel}"`),
    jsonResponse(200, { access_token: sentinel, token_type: 'DPoP' }),
    jsonResponse(200, { access_token: sentinel, token_type: sentinel }),
    jsonResponse(200, { access_token: sentinel, token_type: 'N_A' }),
    jsonResponse(200, { access_token: sentinel, token_type: 'Bearer', expires_in: sentinel }),
    jsonResponse(200, { access_token: sentinel, token_type: 'Bearer', issued_token_type: sentinel }),
    jsonResponse(200, { access_token: sentinel, token_type: 'Bearer', issued_token_type: `urn:${sentinel}` }),
  ]
  const ctx = { ...context, requestedTokenType: ACCESS_TOKEN_TYPE }

  for (const [index, response] of leakyResponses.entries()) {
    const error = catchExchangeError(response, ctx)
    t.notOk(error.message.includes('SENTINEL'), `response ${index}: message`)
    t.notOk(error.message.includes(sentinel.slice(0, 20)), `response ${index}: message has no token prefix`)
    t.notOk(JSON.stringify(error.toBody()).includes(sentinel.slice(0, 20)), `response ${index}: agent body`)
  }
  t.end()
})
