import { decodeJwt } from 'jose'
import {
  ClientRejectedError,
  ExchangeForbiddenError,
  ExchangeThrottledError,
  IdpBadResponseError,
  IdpUnavailableError,
  SubjectTokenRejectedError,
  type ExchangeError,
} from '../errors.js'

/** A token the sidecar may put in the upstream request's `Authorization: Bearer` header. */
export interface IssuedToken {
  readonly accessToken: string
  readonly tokenType: 'Bearer'
  /**
   * Epoch milliseconds when the token stops being usable. Equal to the time the response arrived
   * when the IdP issued it with no lifetime left: such a token serves one request and is not cached.
   */
  readonly expiresAt: number
  /** Granted scope, space-delimited. Undefined means the requested scope (RFC 8693 section 2.2.1). */
  readonly scope: string | undefined
  /** `issued_token_type`, which Microsoft Entra's on-behalf-of responses leave out. */
  readonly issuedTokenType: string | undefined
}

/** A token endpoint response with its body already read. Header names are lowercase. */
export interface ExchangeResponse {
  readonly status: number
  readonly headers: Readonly<Record<string, string | string[] | undefined>>
  readonly bodyText: string
  readonly contentType: string | undefined
}

export interface ResponseContext {
  /** Issuer name from the config, used in error messages. */
  readonly issuerName: string
  /** Epoch milliseconds when the response arrived. Lifetimes count from here. */
  readonly now: number
  /** Lifetime of a token that has neither `expires_in` nor a JWT `exp` claim. */
  readonly defaultLifetimeSeconds: number
  /** Upper bound on any token's lifetime, whatever the IdP reports. */
  readonly maxLifetimeSeconds: number
  /** The `requested_token_type` that was sent, if any. */
  readonly requestedTokenType: string | undefined
}

export const DEFAULT_MAX_LIFETIME_SECONDS = 24 * 60 * 60

type JsonObject = Record<string, unknown>

/** RFC 6749 section 5.2: `error` values use %x20-21 / %x23-5B / %x5D-7E. */
const OAUTH_ERROR_CODE = /^[\x20-\x21\x23-\x5B\x5D-\x7E]+$/
const MAX_ERROR_CODE_LENGTH = 64

/** RFC 6749 section 7.1 `type-name` characters, as a bound on what a message may quote. */
const TOKEN_TYPE_NAME = /^[A-Za-z0-9._-]{1,40}$/
/** Token-type URIs (RFC 8693 section 3): the longest registered one has 67 characters. */
const QUOTABLE_URI = /^(?=.{1,80}$)[A-Za-z][A-Za-z0-9+.-]*:[\x21-\x7E]+$/
const MEDIA_TYPE = /^[\w.+-]{1,60}\/[\w.+-]{1,60}$/

const TOKEN_TYPE_PREFIX = 'urn:ietf:params:oauth:token-type:'
/** Issued token types that are not access tokens and must never reach a resource server unasked. */
const NON_ACCESS_TOKEN_TYPES = new Set(['refresh_token', 'id_token', 'id-jag'].map((name) => TOKEN_TYPE_PREFIX + name))

const SUBJECT_REJECTED_CODES = new Set(['invalid_grant'])
const FORBIDDEN_CODES = new Set([
  'invalid_target',
  'invalid_scope',
  'access_denied',
  'consent_required',
  'interaction_required',
])
const CLIENT_REJECTED_CODES = new Set(['invalid_client', 'unauthorized_client', 'invalid_request', 'unsupported_grant_type'])
const UNAVAILABLE_CODES = new Set(['server_error', 'temporarily_unavailable'])

/**
 * Turns a token endpoint response into an issued token, or throws the `ExchangeError` the agent
 * should see. Messages quote only the status, the OAuth error code and short protocol values, never
 * `error_description` or the body, because IdPs echo tokens and assertions in those.
 */
export function processExchangeResponse(response: ExchangeResponse, context: ResponseContext): IssuedToken {
  if (response.status === 200) return parseIssuedToken(response, context)
  throw classifyFailure(response, context)
}

function parseIssuedToken(response: ExchangeResponse, context: ResponseContext): IssuedToken {
  const body = parseSuccessBody(response, context)
  const accessToken = body.access_token
  if (typeof accessToken !== 'string' || accessToken === '') {
    throw badResponse(context, 'the IdP returned HTTP 200 without an access_token')
  }
  checkTokenType(body.token_type, context)
  const issuedTokenType = typeof body.issued_token_type === 'string' ? body.issued_token_type : undefined
  checkIssuedTokenType(issuedTokenType, context)

  return {
    accessToken,
    tokenType: 'Bearer',
    expiresAt: resolveExpiresAt(body.expires_in, accessToken, context),
    scope: intern(normalizeScope(body.scope)),
    issuedTokenType: intern(issuedTokenType),
  }
}

/** RFC 6749 section 5.1: the parameters are top-level members of an `application/json` object. */
function parseSuccessBody(response: ExchangeResponse, context: ResponseContext): JsonObject {
  if (!isJsonMediaType(response.contentType)) {
    const mediaType = describe(mediaTypeOf(response.contentType), MEDIA_TYPE, 'an unrecognised content type')
    throw badResponse(
      context,
      `the IdP returned HTTP 200 with ${mediaType} instead of JSON; check that tokenEndpoint is the IdP's token endpoint`,
    )
  }
  const parsed = parseJson(response.bodyText)
  if (parsed === undefined) {
    throw badResponse(context, 'the IdP returned HTTP 200 with a body that is not valid JSON')
  }
  if (!isJsonObject(parsed)) {
    throw badResponse(context, 'the IdP returned HTTP 200 with a JSON body that is not an object')
  }
  return parsed
}

/** RFC 8693 section 2.2.1: `token_type` is compared case-insensitively. */
function checkTokenType(tokenType: unknown, context: ResponseContext): void {
  if (typeof tokenType !== 'string') {
    throw badResponse(context, 'the IdP returned HTTP 200 without a token_type')
  }
  const normalized = tokenType.toLowerCase()
  if (normalized === 'bearer') return
  if (normalized === 'n_a') {
    throw badResponse(
      context,
      'the IdP issued a token with token_type N_A, which is not an access token and is never forwarded; check the issuer\'s requestedTokenType',
    )
  }
  const quoted = describe(tokenType, TOKEN_TYPE_NAME, 'an unrecognised token_type')
  throw badResponse(context, `the IdP issued a token with ${quoted}, but the sidecar supports only Bearer tokens`)
}

/**
 * Rejects a token of another type than the one requested, and, when no type was requested, a
 * refresh token, ID token or ID-JAG: forwarding one of those as an access token would leak it.
 */
function checkIssuedTokenType(issuedTokenType: string | undefined, context: ResponseContext): void {
  if (issuedTokenType === undefined) return
  const { requestedTokenType } = context
  if (requestedTokenType !== undefined && issuedTokenType !== requestedTokenType) {
    const issued = describe(issuedTokenType, QUOTABLE_URI, 'an unrecognised type')
    throw badResponse(
      context,
      `the IdP issued ${issued} but "${requestedTokenType}" was requested; check the issuer's requestedTokenType`,
    )
  }
  if (requestedTokenType === undefined && NON_ACCESS_TOKEN_TYPES.has(issuedTokenType)) {
    throw badResponse(
      context,
      `the IdP issued "${issuedTokenType}", which is not an access token and is never forwarded; set the issuer's requestedTokenType to an access token type`,
    )
  }
}

/**
 * Computes when the token expires. Sources, in order: `expires_in` (a number or numeric string),
 * the issued JWT's `exp` claim read without verification, then the default lifetime. Every result
 * is capped at `maxLifetimeSeconds` from now, and a lifetime of zero or less yields `now`.
 */
function resolveExpiresAt(expiresIn: unknown, accessToken: string, context: ResponseContext): number {
  const { now } = context
  const latest = now + context.maxLifetimeSeconds * 1000
  const lifetimeSeconds = parseExpiresIn(expiresIn, context)
  if (lifetimeSeconds !== undefined) {
    return lifetimeSeconds <= 0 ? now : Math.min(now + Math.floor(lifetimeSeconds * 1000), latest)
  }

  const jwtExpiresAt = jwtExpiry(accessToken)
  if (jwtExpiresAt !== undefined) return Math.max(now, Math.min(jwtExpiresAt, latest))

  return Math.min(now + context.defaultLifetimeSeconds * 1000, latest)
}

const NUMERIC_STRING = /^\s*-?\d+(\.\d+)?\s*$/

/** Returns seconds, or undefined when `expires_in` is absent or null. */
function parseExpiresIn(value: unknown, context: ResponseContext): number | undefined {
  if (value === undefined || value === null) return undefined
  if (typeof value === 'number' && Number.isFinite(value)) return value
  if (typeof value === 'string' && NUMERIC_STRING.test(value)) return Number(value)
  throw badResponse(context, 'the IdP returned HTTP 200 with an expires_in that is not a number')
}

/** Returns the `exp` claim in epoch milliseconds, or undefined for an opaque token or a bad claim. */
function jwtExpiry(token: string): number | undefined {
  try {
    const { exp } = decodeJwt(token)
    return typeof exp === 'number' && Number.isFinite(exp) ? exp * 1000 : undefined
  } catch {
    return undefined
  }
}

/** RFC 6749 uses a space-delimited string. Some IdPs return a JSON array instead. */
// Every cached token carries its scope and token type, which repeat across users. Sharing one copy
// of each saves about 100 bytes per cache entry. The bound keeps an IdP that varies them from
// growing the table without limit.
const internedStrings = new Map<string, string>()
const MAX_INTERNED_STRINGS = 1000

function intern(value: string | undefined): string | undefined {
  if (value === undefined) return undefined
  const shared = internedStrings.get(value)
  if (shared !== undefined) return shared
  if (internedStrings.size < MAX_INTERNED_STRINGS) internedStrings.set(value, value)
  return value
}

function normalizeScope(scope: unknown): string | undefined {
  if (typeof scope === 'string') return scope
  if (Array.isArray(scope)) return scope.filter((item): item is string => typeof item === 'string').join(' ')
  return undefined
}

/** Maps a non-200 response to the `ExchangeError` subclass whose status fits the agent's next step. */
function classifyFailure(response: ExchangeResponse, context: ResponseContext): ExchangeError {
  const { status } = response
  const idpError = readOAuthErrorCode(response.bodyText)
  const returned = `the IdP returned HTTP ${status}${idpError === undefined ? '' : ` ${idpError}`}`

  if (status === 429) {
    return new ExchangeThrottledError(
      failed(context, `${returned} (the IdP is rate limiting token exchanges, so retry after the Retry-After interval)`),
      firstHeaderValue(response.headers['retry-after']),
      idpError,
    )
  }
  if (status >= 300 && status < 400) {
    return badResponse(
      context,
      `${returned}, a redirect, which the sidecar does not follow; set tokenEndpoint to the final URL`,
    )
  }
  if (status >= 500 || (idpError !== undefined && UNAVAILABLE_CODES.has(idpError))) {
    return new IdpUnavailableError(failed(context, `${returned} (the IdP is unavailable, so retry later)`), idpError)
  }
  if (status < 400) {
    return badResponse(context, `${returned} instead of 200`)
  }
  return classifyClientError(returned, idpError, context)
}

/** Maps a 4xx response (other than 429) by its RFC 6749 section 5.2 error code. */
function classifyClientError(returned: string, idpError: string | undefined, context: ResponseContext): ExchangeError {
  if (idpError === undefined) {
    return badResponse(
      context,
      `${returned} without an OAuth error code; check that tokenEndpoint is the IdP's token endpoint`,
    )
  }
  if (SUBJECT_REJECTED_CODES.has(idpError)) {
    return new SubjectTokenRejectedError(
      failed(context, `${returned} (the user's token was rejected, so the agent must obtain a fresh token)`),
      idpError,
    )
  }
  if (FORBIDDEN_CODES.has(idpError)) {
    return new ExchangeForbiddenError(
      failed(
        context,
        `${returned} (the IdP refused the requested audience, resource or scope for this user; check the route's targets and scopes and the user's consent)`,
      ),
      idpError,
    )
  }
  // Unrecognised codes map here too, because a well-formed OAuth error means the IdP rejected the
  // sidecar's own request rather than the user's token.
  const note = CLIENT_REJECTED_CODES.has(idpError) ? '' : ', an error code the sidecar does not recognise,'
  return new ClientRejectedError(
    failed(
      context,
      `${returned}${note} (the IdP rejected the sidecar's client or request; check the issuer's clientId, client secret, clientAuth and grant)`,
    ),
    idpError,
  )
}

/** Returns the body's OAuth `error` code when it is well formed, whatever the content type. */
function readOAuthErrorCode(bodyText: string): string | undefined {
  const parsed = parseJson(bodyText)
  if (!isJsonObject(parsed)) return undefined
  const code = parsed.error
  if (typeof code !== 'string' || code.length > MAX_ERROR_CODE_LENGTH || !OAUTH_ERROR_CODE.test(code)) {
    return undefined
  }
  return code
}

function failed(context: ResponseContext, detail: string): string {
  return `token exchange at issuer "${context.issuerName}" failed: ${detail}`
}

function badResponse(context: ResponseContext, detail: string): IdpBadResponseError {
  return new IdpBadResponseError(failed(context, detail))
}

/** Quotes a value from the IdP only when it matches `pattern`, so no token can reach a message. */
function describe(value: string | undefined, pattern: RegExp, fallback: string): string {
  return value !== undefined && pattern.test(value) ? `"${value}"` : fallback
}

function firstHeaderValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value
}

function mediaTypeOf(contentType: string | undefined): string | undefined {
  return contentType?.split(';', 1)[0]?.trim().toLowerCase()
}

/** `application/json` or a structured `+json` type, with any parameters. */
function isJsonMediaType(contentType: string | undefined): boolean {
  const mediaType = mediaTypeOf(contentType)
  if (mediaType === undefined) return false
  return mediaType === 'application/json' || /^application\/[\w.-]+\+json$/.test(mediaType)
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown
  } catch {
    return undefined
  }
}

function isJsonObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}
