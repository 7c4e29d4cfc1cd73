import { createHash } from 'node:crypto'
import type { IssuerConfig, SecretRef } from '../config/types.js'

/** Everything besides the subject token that changes what the IdP issues. */
export interface ExchangeTarget {
  readonly issuer: IssuerConfig
  readonly audience: readonly string[]
  readonly resource: readonly string[]
  readonly scopes: readonly string[]
}

/**
 * Derives the cache key of one exchange: a SHA-256 hex digest over the subject token and every
 * setting that changes the issued token. The fields are hashed as one JSON array, which keeps
 * their boundaries unambiguous. Target and scope lists are sorted because their order does not
 * change the grant.
 *
 * The actor token is identified by where it is read from and its type, not by its value. Projected
 * service-account tokens rotate about hourly while naming the same workload, so hashing the value
 * would empty the cache at every rotation and read the secret on every lookup.
 */
export function exchangeCacheKey(subjectToken: string, target: ExchangeTarget): string {
  const { issuer } = target
  const fields = [
    subjectToken,
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
  return sha256Hex(JSON.stringify(fields))
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
  return createHash('sha256').update(text, 'utf8').digest('hex')
}
