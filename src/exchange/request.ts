import { Buffer } from 'node:buffer'
import type { SecretReader } from '../config/secrets.js'
import { GRANT_TYPE_URI, type IssuerConfig } from '../config/types.js'
import { SecretUnavailableError } from '../errors.js'

/** The parameters of one exchange: one route's targets and scopes for one user token. */
export interface ExchangeInput {
  readonly issuer: IssuerConfig
  /** The user's bearer token: `subject_token`, or `assertion` with the jwt-bearer grant. */
  readonly subjectToken: string
  readonly audience: readonly string[]
  readonly resource: readonly string[]
  readonly scopes: readonly string[]
}

/** A token endpoint POST, ready to send. The body and headers contain credentials. */
export interface ExchangeRequest {
  readonly url: URL
  readonly headers: Record<string, string>
  readonly body: string
}

/** The `requested_token_use` value Microsoft Entra requires for its on-behalf-of flow. */
const ON_BEHALF_OF = 'on_behalf_of'

/**
 * Builds the token endpoint request for one exchange. Client secrets and actor tokens are read
 * through `secrets` on every call, because mounted secrets and projected tokens rotate in place.
 *
 * @throws SecretUnavailableError when a configured secret cannot be read.
 */
export function buildExchangeRequest(input: ExchangeInput, secrets: SecretReader): ExchangeRequest {
  const { issuer } = input
  const form = new URLSearchParams()
  form.append('grant_type', GRANT_TYPE_URI[issuer.grant])

  if (issuer.grant === 'token-exchange') {
    appendTokenExchangeParameters(form, input, secrets)
  } else {
    appendJwtBearerParameters(form, input)
  }

  const headers: Record<string, string> = {
    'content-type': 'application/x-www-form-urlencoded',
    accept: 'application/json',
  }
  appendClientAuthentication(form, headers, issuer, secrets)

  return { url: new URL(issuer.tokenEndpoint), headers, body: form.toString() }
}

/** RFC 8693 section 2.1. Optional parameters are sent only when the issuer or route sets them. */
function appendTokenExchangeParameters(form: URLSearchParams, input: ExchangeInput, secrets: SecretReader): void {
  const { issuer } = input
  form.append('subject_token', input.subjectToken)
  form.append('subject_token_type', issuer.subjectTokenType)

  if (issuer.actorToken !== undefined) {
    form.append('actor_token', secrets.read(issuer.actorToken.source, `issuer "${issuer.name}" actorToken`))
    form.append('actor_token_type', issuer.actorToken.type)
  }

  for (const audience of input.audience) form.append('audience', audience)
  for (const resource of input.resource) form.append('resource', resource)
  appendScope(form, input.scopes)

  if (issuer.requestedTokenType !== undefined) {
    form.append('requested_token_type', issuer.requestedTokenType)
  }
}

/**
 * RFC 7523 section 2.1 in the form Microsoft Entra's on-behalf-of flow expects. The grant has no
 * `audience`, `resource` or actor parameters, so those settings are not sent with it.
 */
function appendJwtBearerParameters(form: URLSearchParams, input: ExchangeInput): void {
  form.append('assertion', input.subjectToken)
  appendScope(form, input.scopes)
  form.append('requested_token_use', ON_BEHALF_OF)

  if (input.issuer.requestedTokenType !== undefined) {
    form.append('requested_token_type', input.issuer.requestedTokenType)
  }
}

/** RFC 6749 section 3.3: one space-delimited `scope` parameter. */
function appendScope(form: URLSearchParams, scopes: readonly string[]): void {
  if (scopes.length > 0) form.append('scope', scopes.join(' '))
}

/** Applies exactly one client authentication method, because servers reject requests that use two. */
function appendClientAuthentication(
  form: URLSearchParams,
  headers: Record<string, string>,
  issuer: IssuerConfig,
  secrets: SecretReader,
): void {
  switch (issuer.clientAuth) {
    case 'client_secret_basic': {
      const secret = readClientSecret(issuer, secrets)
      headers.authorization = basicAuthorization(issuer.clientId, secret)
      return
    }
    case 'client_secret_post':
      form.append('client_id', issuer.clientId)
      form.append('client_secret', readClientSecret(issuer, secrets))
      return
    case 'none':
      form.append('client_id', issuer.clientId)
      return
  }
}

function readClientSecret(issuer: IssuerConfig, secrets: SecretReader): string {
  const purpose = `issuer "${issuer.name}" clientSecret`
  if (issuer.clientSecret === undefined) {
    throw new SecretUnavailableError(
      `${purpose}: clientAuth is ${issuer.clientAuth} but no client secret is configured; set clientSecret or use clientAuth none`,
    )
  }
  return secrets.read(issuer.clientSecret, purpose)
}

/**
 * RFC 6749 section 2.3.1: the client id and secret are each form-urlencoded before they are joined
 * with ':' and base64-encoded, so a ':' or '%' inside either value survives the round trip.
 */
function basicAuthorization(clientId: string, clientSecret: string): string {
  const credentials = `${formUrlEncode(clientId)}:${formUrlEncode(clientSecret)}`
  return `Basic ${Buffer.from(credentials, 'utf8').toString('base64')}`
}

/** Encodes one value with the application/x-www-form-urlencoded serializer: ' ' becomes '+'. */
function formUrlEncode(value: string): string {
  return new URLSearchParams([['v', value]]).toString().slice('v='.length)
}
