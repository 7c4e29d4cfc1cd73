/**
 * A development OAuth authorization server for the demo and the tests: oidc-provider handles
 * client authentication, parameter parsing, error responses and the JWKS endpoint, and this
 * module adds the two on-behalf-of grants the sidecar uses.
 *
 * - RFC 8693 token exchange (`urn:ietf:params:oauth:grant-type:token-exchange`).
 * - RFC 7523 jwt-bearer with `requested_token_use=on_behalf_of`, the Microsoft Entra on-behalf-of
 *   flow (`urn:ietf:params:oauth:grant-type:jwt-bearer`).
 *
 * Subject tokens, assertions and actor tokens must be JWTs signed by this service's own key, which
 * `issueUserToken()` uses to mint them. The key pair is generated at start and lives in memory only.
 */
import { randomUUID } from 'node:crypto'
import { createServer } from 'node:http'

import { SignJWT, exportJWK, generateKeyPair, jwtVerify } from 'jose'
import type { CryptoKey, JWK, JWTPayload } from 'jose'
import Provider, { errors } from 'oidc-provider'
import type { Adapter, AdapterPayload, ClientMetadata, Configuration, KoaContextWithOIDC, TokenEndpointGrantContext } from 'oidc-provider'

import { closeServer, listenOnLoopback } from './loopback.js'

export const TOKEN_EXCHANGE_GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange'
export const JWT_BEARER_GRANT = 'urn:ietf:params:oauth:grant-type:jwt-bearer'
export const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token'
export const JWT_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:jwt'

const SIGNING_ALGORITHM = 'ES256'
const DEFAULT_ACCESS_TOKEN_TTL_SECONDS = 300
const DEFAULT_USER_TOKEN_TTL_SECONDS = 3600

/** Token types this service accepts as `subject_token_type` and `actor_token_type`, and issues. */
const SUPPORTED_TOKEN_TYPES: ReadonlySet<string> = new Set([ACCESS_TOKEN_TYPE, JWT_TOKEN_TYPE])

export type ClientAuthMethod = 'client_secret_basic' | 'client_secret_post' | 'none'

export interface TokenServiceClient {
  clientId: string
  /** Required unless `authMethod` is `none`. */
  clientSecret?: string
  authMethod: ClientAuthMethod
}

export interface TokenServiceOptions {
  /** Port on 127.0.0.1. 0 or undefined picks a free port. */
  port?: number
  clients: TokenServiceClient[]
  /** Allowed `audience` and `resource` values. Undefined accepts any value. */
  audiences?: string[]
  /** `aud` of a token when the request names no target. Defaults to the first of `audiences`. */
  defaultAudience?: string
  /** Allowed scope values. Undefined accepts any scope. */
  scopes?: string[]
  /** Lifetime of issued access tokens. Default 300. */
  accessTokenTtlSeconds?: number
  /**
   * OAuth error code for an invalid token-exchange `subject_token` or `actor_token`. Default
   * `invalid_grant`, the code RFC 7523 section 3.1 sets for a rejected assertion. RFC 8693 section
   * 2.2.2 names `invalid_request` instead, which this option selects. A rejected jwt-bearer
   * assertion is always `invalid_grant`.
   */
  rejectedSubjectError?: 'invalid_grant' | 'invalid_request'
  /** Receives one line per issued token, rejected token request and server error. Nothing is logged without it. */
  log?: (message: string) => void
}

/** Claims of a user token. `expiresInSeconds` (default 3600) may be negative to mint an expired token. */
export interface UserTokenClaims {
  sub: string
  aud?: string | string[]
  scope?: string
  expiresInSeconds?: number
  [claim: string]: unknown
}

export interface TokenService {
  /** `http://127.0.0.1:PORT`, the `iss` of every token this service signs. */
  issuer: string
  tokenEndpoint: string
  jwksUri: string
  /** Mints a JWT for a signed-in user, signed with the same key as the issued access tokens. */
  issueUserToken(claims: UserTokenClaims): Promise<string>
  /** Number of access tokens issued by either grant. */
  exchangeCount(): number
  /** Number of requests for either grant that reached its handler after client authentication, issued or rejected. */
  tokenRequestCount(): number
  close(): Promise<void>
}

interface SigningKey {
  kid: string
  privateKey: CryptoKey
  publicKey: CryptoKey
  /** The private JWK that oidc-provider's keystore loads, so its JWKS endpoint publishes the public part. */
  privateJwk: JWK
}

type ParamValue = string | string[] | undefined

interface TokenExchangeParams {
  subject_token: ParamValue
  subject_token_type: ParamValue
  actor_token: ParamValue
  actor_token_type: ParamValue
  audience: ParamValue
  resource: ParamValue
  scope: ParamValue
  requested_token_type: ParamValue
}

interface JwtBearerParams {
  assertion: ParamValue
  scope: ParamValue
  requested_token_use: ParamValue
}

/** The subject, audience, scope and actor of an access token that a grant handler accepted. */
interface AccessTokenRequest {
  subject: JWTPayload & { sub: string }
  audience: string | string[]
  scope: string | undefined
  clientId: string
  actorSubject: string
}

interface IssuedAccessToken {
  value: string
  expiresIn: number
}

/** The state shared by the grant handlers of one service. */
interface ServiceContext {
  issuer: string
  key: SigningKey
  options: TokenServiceOptions
  counters: { exchanges: number; requests: number }
}

export async function startTokenService(options: TokenServiceOptions): Promise<TokenService> {
  validateOptions(options)

  const key = await generateSigningKey()
  const server = createServer()
  const port = await listenOnLoopback(server, options.port ?? 0)
  const issuer = `http://127.0.0.1:${port}`
  const context: ServiceContext = { issuer, key, options, counters: { exchanges: 0, requests: 0 } }

  let provider: Provider
  try {
    provider = createProvider(context)
  } catch (error) {
    await closeServer(server)
    throw error
  }
  const handleRequest = provider.callback()
  // Koa's request handler sends its own error responses, so its promise never rejects.
  server.on('request', (request, response) => void handleRequest(request, response))

  return {
    issuer,
    tokenEndpoint: provider.urlFor('token'),
    jwksUri: provider.urlFor('jwks'),
    issueUserToken: (claims) => signUserToken(context, claims),
    exchangeCount: () => context.counters.exchanges,
    tokenRequestCount: () => context.counters.requests,
    close: () => closeServer(server),
  }
}

function validateOptions(options: TokenServiceOptions): void {
  if (options.clients.length === 0) {
    throw new Error('token service: options.clients is empty; configure at least one client')
  }
  const ttl = options.accessTokenTtlSeconds
  if (ttl !== undefined && (!Number.isSafeInteger(ttl) || ttl <= 0)) {
    throw new Error(`token service: accessTokenTtlSeconds must be a positive whole number of seconds, got ${ttl}`)
  }
  for (const client of options.clients) {
    if (client.authMethod !== 'none' && !client.clientSecret) {
      throw new Error(`token service: client "${client.clientId}" uses ${client.authMethod} but has no clientSecret`)
    }
  }
}

async function generateSigningKey(): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair(SIGNING_ALGORITHM, { extractable: true })
  const kid = randomUUID()
  const privateJwk = { ...(await exportJWK(privateKey)), kid, alg: SIGNING_ALGORITHM, use: 'sig' }
  return { kid, privateKey, publicKey, privateJwk }
}

function createProvider(context: ServiceContext): Provider {
  const provider = new Provider(context.issuer, providerConfiguration(context))

  provider.registerGrantType<TokenExchangeParams>(
    TOKEN_EXCHANGE_GRANT,
    (grantContext) => handleTokenExchange(context, grantContext),
    ['subject_token', 'subject_token_type', 'actor_token', 'actor_token_type', 'audience', 'resource', 'scope', 'requested_token_type'],
    // RFC 8693 section 2.1 allows several audience and resource parameters.
    ['audience', 'resource'],
  )
  provider.registerGrantType<JwtBearerParams>(
    JWT_BEARER_GRANT,
    (grantContext) => handleJwtBearer(context, grantContext),
    ['assertion', 'scope', 'requested_token_use'],
  )

  const { log } = context.options
  if (log) {
    provider.on('grant.error', (ctx, error) => {
      const clientId = ctx.oidc?.client?.clientId ?? 'unknown client'
      log(`token service: rejected a token request from ${clientId}: ${error.error} (${String(error.error_description)})`)
    })
    provider.on('server_error', (_ctx, error) => log(`token service: server error: ${error.message}`))
  }
  return provider
}

function providerConfiguration(context: ServiceContext): Configuration {
  return {
    clients: context.options.clients.map(toClientMetadata),
    jwks: { keys: [context.key.privateJwk] },
    adapter: StatelessAdapter,
    features: { devInteractions: { enabled: false } },
    clientDefaults: { id_token_signed_response_alg: SIGNING_ALGORITHM },
    enabledJWA: { idTokenSigningAlgValues: [SIGNING_ALGORITHM] },
    // oidc-provider renders errors as HTML for browsers. A token endpoint client always gets JSON.
    renderError: (ctx, out) => {
      ctx.type = 'json'
      ctx.body = out
    },
  }
}

function toClientMetadata(client: TokenServiceClient): ClientMetadata {
  const metadata: ClientMetadata = {
    client_id: client.clientId,
    token_endpoint_auth_method: client.authMethod,
    grant_types: [TOKEN_EXCHANGE_GRANT, JWT_BEARER_GRANT],
    response_types: [],
    redirect_uris: [],
  }
  if (client.authMethod !== 'none') {
    metadata.client_secret = client.clientSecret
  }
  return metadata
}

function accessTokenTtl(options: TokenServiceOptions): number {
  return options.accessTokenTtlSeconds ?? DEFAULT_ACCESS_TOKEN_TTL_SECONDS
}

/**
 * An adapter that stores nothing, because this service keeps no state: it issues self-contained
 * JWTs and its clients are static. Without an adapter oidc-provider picks its in-memory one and
 * prints a warning.
 */
class StatelessAdapter implements Adapter {
  upsert(id: string, _payload: AdapterPayload): Promise<void> {
    return Promise.reject(new Error(`token service keeps no state, so it cannot store ${id}`))
  }
  find(_id: string): Promise<undefined> {
    return Promise.resolve(undefined)
  }
  findByUserCode(_userCode: string): Promise<undefined> {
    return Promise.resolve(undefined)
  }
  findByUid(_uid: string): Promise<undefined> {
    return Promise.resolve(undefined)
  }
  consume(_id: string): Promise<void> {
    return Promise.resolve()
  }
  destroy(_id: string): Promise<void> {
    return Promise.resolve()
  }
  revokeByGrantId(_grantId: string): Promise<void> {
    return Promise.resolve()
  }
}

// ---------------------------------------------------------------------------------------------
// Grant handlers

async function handleTokenExchange(context: ServiceContext, ctx: TokenEndpointGrantContext<TokenExchangeParams>): Promise<void> {
  checkClientAuthMethod(ctx)
  context.counters.requests += 1
  const { params } = ctx.oidc

  const subjectToken = requireSingle(params, 'subject_token')
  requireTokenType(params, 'subject_token_type')
  const actorToken = optionalSingle(params, 'actor_token')
  if (actorToken !== undefined) {
    requireTokenType(params, 'actor_token_type')
  } else if (optionalSingle(params, 'actor_token_type') !== undefined) {
    // RFC 8693 section 2.1: actor_token_type must not be sent without actor_token.
    throw new errors.InvalidRequest('actor_token_type was sent without actor_token')
  }
  const requestedTokenType = optionalSingle(params, 'requested_token_type') ?? ACCESS_TOKEN_TYPE
  if (!SUPPORTED_TOKEN_TYPES.has(requestedTokenType)) {
    throw new errors.InvalidRequest(`requested_token_type must be ${ACCESS_TOKEN_TYPE} or ${JWT_TOKEN_TYPE}`)
  }

  const rejectedCode = context.options.rejectedSubjectError ?? 'invalid_grant'
  const subject = await verifyOwnToken(context, subjectToken, 'subject_token', rejectedCode)
  const actor = actorToken === undefined ? undefined : await verifyOwnToken(context, actorToken, 'actor_token', rejectedCode)

  const audiences = toList(params.audience)
  const resources = toList(params.resource)
  resources.forEach(checkResourceSyntax)
  ;[...audiences, ...resources].forEach((target) => checkTargetAllowed(context.options, target))
  const scope = checkScopes(context.options, optionalSingle(params, 'scope'))

  const request: AccessTokenRequest = {
    subject,
    audience: pickAudience(context.options, audiences.length > 0 ? audiences : resources),
    scope,
    clientId: ctx.oidc.client.clientId,
    actorSubject: actor?.sub ?? ctx.oidc.client.clientId,
  }
  const issued = await issueAccessToken(context, request)

  ctx.body = {
    access_token: issued.value,
    issued_token_type: requestedTokenType,
    token_type: 'Bearer',
    expires_in: issued.expiresIn,
    ...(scope === undefined ? {} : { scope }),
  }
}

async function handleJwtBearer(context: ServiceContext, ctx: TokenEndpointGrantContext<JwtBearerParams>): Promise<void> {
  checkClientAuthMethod(ctx)
  context.counters.requests += 1
  const { params } = ctx.oidc

  if (optionalSingle(params, 'requested_token_use') !== 'on_behalf_of') {
    throw new errors.InvalidRequest('requested_token_use must be on_behalf_of; this service supports only the on-behalf-of jwt-bearer flow')
  }
  const assertion = requireSingle(params, 'assertion')
  // The scope names the target API (see splitEntraScopes), so this service requires it.
  const requestedScope = requireSingle(params, 'scope')

  const subject = await verifyOwnToken(context, assertion, 'assertion', 'invalid_grant')
  const target = splitEntraScopes(requestedScope)
  if (target.audience !== undefined) {
    checkTargetAllowed(context.options, target.audience)
  }
  const scope = checkScopes(context.options, target.scope)

  const request: AccessTokenRequest = {
    subject,
    audience: pickAudience(context.options, target.audience === undefined ? [] : [target.audience]),
    scope,
    clientId: ctx.oidc.client.clientId,
    actorSubject: ctx.oidc.client.clientId,
  }
  const issued = await issueAccessToken(context, request)

  // Microsoft Entra's on-behalf-of response has no issued_token_type.
  ctx.body = {
    access_token: issued.value,
    token_type: 'Bearer',
    expires_in: issued.expiresIn,
    scope,
  }
}

// ---------------------------------------------------------------------------------------------
// Parameter checks

/**
 * Rejects a secret sent by the other secret method than the client's registered one. oidc-provider
 * 9 accepts a secret in either the Authorization header or the body for both methods, and a
 * test of the sidecar needs to see which one it used.
 */
function checkClientAuthMethod(ctx: KoaContextWithOIDC): void {
  const registered = ctx.oidc.client?.clientAuthMethod
  const usedBasic = ctx.headers.authorization !== undefined
  if ((registered === 'client_secret_basic' && !usedBasic) || (registered === 'client_secret_post' && usedBasic)) {
    const error = new errors.InvalidClientAuth()
    error.error_description = `client authentication failed: the client is registered for ${registered}`
    throw error
  }
}

function toList(value: ParamValue): string[] {
  if (value === undefined) {
    return []
  }
  return Array.isArray(value) ? value : [value]
}

function optionalSingle<Params extends object>(params: Params, name: keyof Params & string): string | undefined {
  const value = params[name] as ParamValue
  if (Array.isArray(value)) {
    throw new errors.InvalidRequest(`${name} must not be provided twice`)
  }
  return value
}

function requireSingle<Params extends object>(params: Params, name: keyof Params & string): string {
  const value = optionalSingle(params, name)
  if (value === undefined) {
    throw new errors.InvalidRequest(`missing required parameter '${name}'`)
  }
  return value
}

function requireTokenType<Params extends object>(params: Params, name: keyof Params & string): void {
  const value = requireSingle(params, name)
  if (!SUPPORTED_TOKEN_TYPES.has(value)) {
    throw new errors.InvalidRequest(`${name} must be ${ACCESS_TOKEN_TYPE} or ${JWT_TOKEN_TYPE}, got ${value}`)
  }
}

/** RFC 8693 section 2.1 and RFC 8707 section 2: a resource is an absolute URI without a fragment. */
function checkResourceSyntax(resource: string): void {
  const url = URL.parse(resource)
  if (url === null || url.hash !== '') {
    throw new errors.InvalidTarget(`resource "${resource}" is not an absolute URI without a fragment`)
  }
}

function checkTargetAllowed(options: TokenServiceOptions, target: string): void {
  if (options.audiences !== undefined && !options.audiences.includes(target)) {
    throw new errors.InvalidTarget(`audience or resource "${target}" is not allowed for token exchange`)
  }
}

/** Returns the normalized scope string, or undefined when none was requested. */
function checkScopes(options: TokenServiceOptions, scope: string | undefined): string | undefined {
  const requested = (scope ?? '').split(' ').filter((value) => value !== '')
  if (requested.length === 0) {
    return undefined
  }
  const allowed = options.scopes
  const rejected = allowed === undefined ? [] : requested.filter((value) => !allowed.includes(value))
  if (rejected.length > 0) {
    throw new errors.InvalidScope(`scope not allowed: ${rejected.join(' ')}`, rejected.join(' '))
  }
  return [...new Set(requested)].join(' ')
}

function pickAudience(options: TokenServiceOptions, requested: string[]): string | string[] {
  if (requested.length === 1) {
    return requested[0]
  }
  if (requested.length > 1) {
    return [...new Set(requested)]
  }
  const fallback = options.defaultAudience ?? options.audiences?.[0]
  if (fallback === undefined) {
    throw new errors.InvalidTarget('the request names no audience or resource and the token service has no default audience')
  }
  return fallback
}

/**
 * Splits scopes of the form Microsoft Entra v2 uses, where a URI prefix names the target API:
 * `https://orders.example.com/orders.read` requests `orders.read` at `https://orders.example.com`.
 * Scopes without a URI prefix select the default audience. All prefixed scopes must name one API.
 */
function splitEntraScopes(scope: string): { audience: string | undefined; scope: string } {
  const audiences = new Set<string>()
  const names: string[] = []
  for (const value of scope.split(' ').filter((part) => part !== '')) {
    const slash = value.lastIndexOf('/')
    if (value.includes('://') && slash > value.indexOf('://') + 2) {
      audiences.add(value.slice(0, slash))
      names.push(value.slice(slash + 1))
    } else {
      names.push(value)
    }
  }
  if (audiences.size > 1) {
    throw new errors.InvalidScope('scopes must all name the same API', scope)
  }
  return { audience: [...audiences][0], scope: names.join(' ') }
}

// ---------------------------------------------------------------------------------------------
// Tokens

async function signUserToken(context: ServiceContext, claims: UserTokenClaims): Promise<string> {
  const { sub, aud, expiresInSeconds, ...otherClaims } = claims
  const now = Math.floor(Date.now() / 1000)
  const jwt = new SignJWT(otherClaims)
    .setProtectedHeader({ alg: SIGNING_ALGORITHM, kid: context.key.kid, typ: 'JWT' })
    .setIssuer(context.issuer)
    .setSubject(sub)
    .setIssuedAt(now)
    .setExpirationTime(now + (expiresInSeconds ?? DEFAULT_USER_TOKEN_TTL_SECONDS))
    .setJti(randomUUID())
  if (aud !== undefined) {
    jwt.setAudience(aud)
  }
  return jwt.sign(context.key.privateKey)
}

/** Verifies a JWT signed by this service. The error description never contains the token. */
async function verifyOwnToken(
  context: ServiceContext,
  token: string,
  parameter: string,
  rejectedCode: 'invalid_grant' | 'invalid_request',
): Promise<JWTPayload & { sub: string }> {
  let payload: JWTPayload
  try {
    ;({ payload } = await jwtVerify(token, context.key.publicKey, { issuer: context.issuer, algorithms: [SIGNING_ALGORITHM] }))
  } catch (error) {
    const reason = error instanceof Error ? error.message : 'verification failed'
    throw rejectedTokenError(rejectedCode, `${parameter} is invalid: ${reason}`)
  }
  if (typeof payload.sub !== 'string' || payload.sub === '') {
    throw rejectedTokenError(rejectedCode, `${parameter} has no sub claim`)
  }
  return { ...payload, sub: payload.sub }
}

function rejectedTokenError(code: 'invalid_grant' | 'invalid_request', description: string): Error {
  if (code === 'invalid_request') {
    return new errors.InvalidRequest(description)
  }
  const error = new errors.InvalidGrant()
  // InvalidGrant takes no description argument and defaults to 'grant request is invalid'.
  error.error_description = description
  return error
}

async function issueAccessToken(context: ServiceContext, request: AccessTokenRequest): Promise<IssuedAccessToken> {
  const expiresIn = accessTokenTtl(context.options)
  const now = Math.floor(Date.now() / 1000)
  const claims: JWTPayload = {
    client_id: request.clientId,
    act: actorClaim(request),
    ...(request.scope === undefined ? {} : { scope: request.scope }),
  }
  const value = await new SignJWT(claims)
    // RFC 9068 section 2.1: JWT access tokens carry typ "at+jwt".
    .setProtectedHeader({ alg: SIGNING_ALGORITHM, kid: context.key.kid, typ: 'at+jwt' })
    .setIssuer(context.issuer)
    .setSubject(request.subject.sub)
    .setAudience(request.audience)
    .setIssuedAt(now)
    .setExpirationTime(now + expiresIn)
    .setJti(randomUUID())
    .sign(context.key.privateKey)

  context.counters.exchanges += 1
  context.options.log?.(
    `token service: issued a token for sub=${request.subject.sub} aud=${String(request.audience)} client=${request.clientId}`,
  )
  return { value, expiresIn }
}

/**
 * RFC 8693 section 4.1: `act` names the current actor. An `act` already in the subject token
 * is an earlier actor in the delegation chain, so it is nested inside the new one.
 */
function actorClaim(request: AccessTokenRequest): Record<string, unknown> {
  const previous = request.subject.act
  if (previous !== null && typeof previous === 'object') {
    return { sub: request.actorSubject, act: previous }
  }
  return { sub: request.actorSubject }
}
