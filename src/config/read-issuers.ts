import { readSecretRef } from './read-secret-ref.js'
import { ACCESS_TOKEN_TYPE } from './types.js'
import type { ActorTokenConfig, ClientAuthMethod, GrantType, IssuerConfig, SecretRef } from './types.js'
import { isAbsoluteUri, isLoopbackHostname } from './uri.js'
import { quote } from './yaml-fields.js'
import type { Field, FieldMap, FieldReader } from './yaml-fields.js'

const ISSUER_KEYS = [
  'tokenEndpoint',
  'grant',
  'clientId',
  'clientAuth',
  'clientSecret',
  'subjectTokenType',
  'actorToken',
  'requestedTokenType',
] as const

const TOKEN_ENDPOINT_HINT = 'set it to the identity provider\'s token endpoint URL, e.g. "https://idp.example.com/oauth2/token"'
const GRANTS: readonly GrantType[] = ['token-exchange', 'jwt-bearer']
const CLIENT_AUTH_METHODS: readonly ClientAuthMethod[] = ['client_secret_basic', 'client_secret_post', 'none']

/** The part of an issuer that route checks use, kept even when the issuer itself has problems. */
export interface IssuerDraft {
  readonly name: string
  /** Undefined when `grant` is invalid. */
  readonly grant: GrantType | undefined
  /** Undefined when the issuer has any problem. */
  readonly config: IssuerConfig | undefined
}

/** Reads the `issuers` mapping. Every key is returned, invalid issuers included, so routes can name them. */
export function readIssuers(reader: FieldReader, field: Field): Map<string, IssuerDraft> {
  const drafts = new Map<string, IssuerDraft>()
  const entries = reader.mapping(field)
  if (entries === undefined) return drafts
  if (entries.size === 0 && field.node !== undefined) {
    reader.report(field, 'no issuers defined; add at least one')
  }
  for (const [name, issuerField] of entries) {
    if (!/^[A-Za-z0-9_.-]+$/.test(name)) {
      reader.reportAt(issuerField.keyOffset, `issuers: name ${quote(name)} is invalid; use only letters, digits, "-", "_" and "."`)
    }
    drafts.set(name, readIssuer(reader, name, issuerField))
  }
  return drafts
}

function readIssuer(reader: FieldReader, name: string, field: Field): IssuerDraft {
  const problemsBefore = reader.problems.length
  const fields = reader.mapping(field, ISSUER_KEYS)
  if (fields === undefined) return { name, grant: undefined, config: undefined }

  const grant = reader.optional(fields, 'grant', (value) => reader.oneOf(value, GRANTS), 'token-exchange')
  const clientAuth = reader.optional(fields, 'clientAuth', (value) => reader.oneOf(value, CLIENT_AUTH_METHODS), 'client_secret_basic')
  const tokenEndpoint = reader.required(field, fields, 'tokenEndpoint', TOKEN_ENDPOINT_HINT, (value) =>
    readTokenEndpoint(reader, value),
  )
  const clientId = reader.required(field, fields, 'clientId', 'set it to the client ID the identity provider issued to this sidecar', (value) =>
    reader.string(value),
  )
  const clientSecret = readClientSecret(reader, field, fields, clientAuth)
  const subjectTokenType = readSubjectTokenType(reader, fields, grant)
  const actorToken = readActorToken(reader, fields, grant)
  const requestedTokenType = reader.optional(fields, 'requestedTokenType', (value) => readUri(reader, value), undefined)

  const incomplete = { name, grant, config: undefined }
  if (reader.problems.length > problemsBefore) return incomplete
  // Only narrows the types: each of these is undefined only after a reported problem.
  if (grant === undefined || clientAuth === undefined || tokenEndpoint === undefined || clientId === undefined || subjectTokenType === undefined) {
    return incomplete
  }

  const config: IssuerConfig = {
    name,
    tokenEndpoint,
    grant,
    clientId,
    clientAuth,
    clientSecret,
    subjectTokenType,
    actorToken,
    requestedTokenType,
  }
  return { name, grant, config }
}

/**
 * Reads the token endpoint URL. The endpoint receives the client secret and the user's token, so it
 * must use TLS unless the identity provider runs on the same machine.
 */
function readTokenEndpoint(reader: FieldReader, field: Field): URL | undefined {
  const text = reader.string(field)
  if (text === undefined) return undefined
  if (!URL.canParse(text)) {
    reader.report(field, `${quote(text)} is not an absolute URL; expected e.g. "https://idp.example.com/oauth2/token"`)
    return undefined
  }
  const url = new URL(text)
  // Not echoed: the user info may contain a password.
  if (url.username !== '' || url.password !== '') {
    reader.report(field, 'the URL contains user info ("user:password@"), which is not shown; remove it and use clientId and clientSecret')
    return undefined
  }
  if (text.includes('#')) {
    reader.report(field, `${quote(text)} has a fragment ("#..."); remove it`)
    return undefined
  }
  if (url.protocol === 'https:' || (url.protocol === 'http:' && isLoopbackHostname(url.hostname))) return url
  const detail = url.protocol === 'http:' ? 'uses http' : `has the scheme "${url.protocol}"`
  reader.report(field, `${quote(text)} ${detail}; use https (http is allowed only for a loopback host: 127.0.0.0/8, [::1] or localhost)`)
  return undefined
}

function readClientSecret(
  reader: FieldReader,
  issuerField: Field,
  fields: FieldMap,
  clientAuth: ClientAuthMethod | undefined,
): SecretRef | undefined {
  const field = fields.get('clientSecret')
  if (clientAuth === 'none') {
    if (field !== undefined) {
      reader.report(field, 'not allowed with clientAuth "none"; remove it, or set clientAuth to client_secret_basic or client_secret_post')
    }
    return undefined
  }
  if (field === undefined) {
    if (clientAuth !== undefined) {
      reader.reportMissing(
        issuerField,
        'clientSecret',
        `add clientSecret: { file: /path } or { env: NAME }, or set clientAuth: none if the client has no secret`,
      )
    }
    return undefined
  }
  return readSecretRef(reader, field).ref
}

/** Reads subjectTokenType, an RFC 8693 parameter that the jwt-bearer grant does not have. */
function readSubjectTokenType(reader: FieldReader, fields: FieldMap, grant: GrantType | undefined): string | undefined {
  const field = fields.get('subjectTokenType')
  if (field === undefined) return ACCESS_TOKEN_TYPE
  if (grant === 'jwt-bearer') {
    reader.report(field, 'applies only to grant token-exchange, but this issuer uses jwt-bearer; remove it')
    return undefined
  }
  return readUri(reader, field)
}

/** Reads actorToken, an RFC 8693 parameter that the jwt-bearer grant does not have. */
function readActorToken(reader: FieldReader, fields: FieldMap, grant: GrantType | undefined): ActorTokenConfig | undefined {
  const field = fields.get('actorToken')
  if (field === undefined) return undefined
  if (grant === 'jwt-bearer') {
    reader.report(field, 'applies only to grant token-exchange, but this issuer uses jwt-bearer; remove it')
    return undefined
  }
  const { ref, fields: actorFields } = readSecretRef(reader, field, ['type'])
  if (actorFields === undefined) return undefined
  const typeField = actorFields.get('type')
  if (typeField === undefined) {
    reader.reportMissing(field, 'type', `set it to the actor token's type URI, e.g. "urn:ietf:params:oauth:token-type:jwt"`)
    return undefined
  }
  const type = readUri(reader, { ...typeField, sensitive: false })
  if (ref === undefined || type === undefined) return undefined
  return { source: ref, type }
}

function readUri(reader: FieldReader, field: Field): string | undefined {
  const text = reader.string(field)
  if (text === undefined) return undefined
  if (!isAbsoluteUri(text)) {
    reader.report(field, `${quote(text)} is not an absolute URI; expected e.g. "urn:ietf:params:oauth:token-type:access_token"`)
    return undefined
  }
  return text
}
