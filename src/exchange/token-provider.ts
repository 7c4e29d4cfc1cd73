import { performance } from 'node:perf_hooks'
import { decodeJwt } from 'jose'
import type { RouteConfig } from '../config/types.js'
import { exchangeCacheKey, tokenFingerprint } from '../cache/key.js'
import { subjectTokenExpiry, type TokenCache } from '../cache/token-cache.js'
import { ExchangeError } from '../errors.js'
import type { Logger } from '../observability/logger.js'
import type { Metrics } from '../observability/metrics.js'
import type { TokenExchanger } from './client.js'
import type { IssuedToken } from './response.js'

export interface TokenProviderOptions {
  cache: TokenCache
  exchanger: TokenExchanger
  metrics: Metrics
  logger: Logger
}

/**
 * Supplies the on-behalf-of token for a routed request: from the cache, from an exchange already
 * in flight for the same key, or from a new exchange. Each exchange is counted, timed and written
 * to the audit log once, however many requests share it.
 */
export class TokenProvider {
  readonly #cache: TokenCache
  readonly #exchanger: TokenExchanger
  readonly #metrics: Metrics
  readonly #logger: Logger

  constructor(options: TokenProviderOptions) {
    this.#cache = options.cache
    this.#exchanger = options.exchanger
    this.#metrics = options.metrics
    this.#logger = options.logger
  }

  /**
   * Returns the token at once on a cache hit, so the common case allocates no promise, and a
   * promise when the token must come from an exchange.
   */
  tokenFor(route: RouteConfig, subjectToken: string): IssuedToken | Promise<IssuedToken> {
    const key = exchangeCacheKey(subjectToken, route)
    const cached = this.#cache.peek(key)
    if (cached !== undefined) {
      this.#metrics.tokenCacheHits.inc()
      return cached
    }
    return this.#acquire(route, subjectToken, key)
  }

  async #acquire(route: RouteConfig, subjectToken: string, key: string): Promise<IssuedToken> {
    // A miss is a request that started an exchange, whatever its outcome; a request served by an
    // exchange another request started counts as a hit.
    let started = false
    try {
      const { token } = await this.#cache.getOrExchange(key, () => subjectTokenExpiry(subjectToken), () => {
        started = true
        return this.#exchange(route, subjectToken)
      })
      return token
    } finally {
      if (started) this.#metrics.tokenCacheMisses.inc()
      else this.#metrics.tokenCacheHits.inc()
    }
  }

  async #exchange(route: RouteConfig, subjectToken: string): Promise<IssuedToken> {
    const issuer = route.issuer.name
    const started = performance.now()
    let outcome = 'success'
    let token: IssuedToken | undefined
    try {
      token = await this.#exchanger.exchange({
        issuer: route.issuer,
        subjectToken,
        audience: route.audience,
        resource: route.resource,
        scopes: route.scopes,
      })
      return token
    } catch (error) {
      outcome = error instanceof ExchangeError ? error.outcome : 'error'
      throw error
    } finally {
      const seconds = (performance.now() - started) / 1000
      this.#metrics.tokenExchanges.inc({ issuer, outcome })
      this.#metrics.tokenExchangeDuration.observe({ issuer }, seconds)
      this.#logAudit(route, subjectToken, token, outcome, seconds)
    }
  }

  /** Logs one audit line per exchange: the client, the user, the target and the outcome, never the tokens. */
  #logAudit(route: RouteConfig, subjectToken: string, token: IssuedToken | undefined, outcome: string, seconds: number): void {
    const subject = readClaims(subjectToken)
    const issued = token === undefined ? undefined : readClaims(token.accessToken)
    const fields = {
      event: 'token_exchange',
      route: route.name,
      issuer: route.issuer.name,
      grant: route.issuer.grant,
      sub: typeof subject?.sub === 'string' ? subject.sub : undefined,
      act: actorOf(issued?.act),
      audience: route.audience,
      resource: route.resource,
      scopes: route.scopes,
      granted_scope: token?.scope,
      outcome,
      cache: 'miss',
      duration_ms: Math.round(seconds * 1000 * 10) / 10,
      subject_fingerprint: tokenFingerprint(subjectToken),
      issued_fingerprint: token === undefined ? undefined : tokenFingerprint(token.accessToken),
    }
    if (outcome === 'success') this.#logger.info(fields, 'token exchanged')
    else this.#logger.warn(fields, 'token exchange failed')
  }
}

/** Decodes a JWT's claims for the audit log only; an opaque token has none. Never trusted. */
function readClaims(token: string): Record<string, unknown> | undefined {
  try {
    return decodeJwt(token)
  } catch {
    return undefined
  }
}

/** Returns the current actor of an RFC 8693 section 4.1 `act` claim, its outermost `sub`. */
function actorOf(act: unknown): string | undefined {
  if (typeof act !== 'object' || act === null) return undefined
  const sub = (act as Record<string, unknown>).sub
  return typeof sub === 'string' ? sub : undefined
}
