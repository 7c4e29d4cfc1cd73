import { hash } from 'node:crypto'
import type { IssuerConfig, SecretRef } from '../config/types.js'

/** Everything besides the subject token that changes what the IdP issues. */
export interface ExchangeTarget {
  readonly issuer: IssuerConfig
  readonly audience: readonly string[]
  readonly resource: readonly string[]
  readonly scopes: readonly string[]
}

const targetFingerprints = new WeakMap<ExchangeTarget, string>()

/**
 * Derives the cache key of one exchange: the target's fingerprint, a colon, and the SHA-256 of
 * the subject token, both base64url-encoded (87 characters in all). The fingerprint comes first so that all entries of one target can be found by
 * prefix when a reload changes it.
 */
export function exchangeCacheKey(subjectToken: string, target: ExchangeTarget): string {
  return `${exchangeTargetFingerprint(target)}:${hash('sha256', subjectToken, 'base64url')}`
}

/**
 * Returns a base64url SHA-256 digest over every setting besides the subject token that changes the
 * issued token, memoized per target object. The fields are hashed as one JSON array, which keeps
 * their boundaries unambiguous. Target and scope lists are sorted because their order does not
 * change the grant. Equal settings give equal fingerprints, so a route left unchanged by a reload
 * keeps its cached tokens.
 *
 * The actor token is identified by where it is read from and its type, not by its value. Projected
 * service-account tokens rotate about hourly while naming the same workload, so hashing the value
 * would empty the cache at every rotation and read the secret on every lookup.
 */
export function exchangeTargetFingerprint(target: ExchangeTarget): string {
  let fingerprint = targetFingerprints.get(target)
  if (fingerprint !== undefined) return fingerprint
  const { issuer } = target
  const fields = [
    issuer.name,
    issuer.tokenEndpoint.href,
    issuer.clientId,
    issuer.grant,
    issuer.subjectTokenType,
    issuer.requestedTokenType ?? null,
    issuer.actorToken === undefined ? null : [describeSecretSource(issuer.actorToken.source), issuer.actorToken.type],
    sorted(target.audience),
    sorted(target.resource),
    sorted(target.scopes),
  ]
  fingerprint = hash('sha256', JSON.stringify(fields), 'base64url')
  targetFingerprints.set(target, fingerprint)
  return fingerprint
}

/** Returns the first 12 hex digits of the token's SHA-256: enough to correlate log lines, not to recover it. */
export function tokenFingerprint(token: string): string {
  return sha256Hex(token).slice(0, 12)
}

function describeSecretSource(source: SecretRef): string {
  return source.kind === 'file' ? `file:${source.path}` : `env:${source.name}`
}

function sorted(values: readonly string[]): string[] {
  return [...values].sort()
}

function sha256Hex(text: string): string {
  return hash('sha256', text, 'hex')
}
