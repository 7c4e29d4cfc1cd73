import { decodeJwt } from 'jose'
import { LRUCache } from 'lru-cache'
import type { IssuedToken } from '../exchange/response.js'

export interface TokenCacheOptions {
  /** Default 10,000 entries. */
  readonly maxEntries?: number
  /** Bound on the estimated size of all entries, in bytes. Default 64 MiB. */
  readonly maxBytes?: number
  /** A token counts as expired this many seconds before its expiry. Default 30. */
  readonly expirySkewSeconds?: number
  /** Clock in epoch milliseconds. Default `Date.now`. */
  readonly now?: () => number
}

export interface CacheLookup {
  readonly token: IssuedToken
  /** False when this call ran the exchange or waited for one already running. */
  readonly cacheHit: boolean
}

/** The subject token's expiry in epoch milliseconds, or a function that computes it when needed. */
export type SubjectExpiry = number | undefined | (() => number | undefined)

interface CacheEntry {
  readonly token: IssuedToken
  /** Epoch milliseconds after which the entry is not served. */
  readonly staleAt: number
}

export const DEFAULT_MAX_ENTRIES = 10_000
export const DEFAULT_MAX_BYTES = 64 * 1024 * 1024
export const DEFAULT_EXPIRY_SKEW_SECONDS = 30

/** Estimated bytes of an entry beyond its strings: the entry objects and the LRU bookkeeping. */
const ENTRY_OVERHEAD_BYTES = 256

/**
 * An in-memory, LRU-bounded store of issued tokens with single-flight exchanges: concurrent
 * callers for one key share one exchange and its result or failure. Failures are never stored.
 */
export class TokenCache {
  readonly #entries: LRUCache<string, CacheEntry>
  readonly #inflight = new Map<string, Promise<IssuedToken>>()
  readonly #skewMs: number
  readonly #now: () => number
  /** Bumped by `clear()`, so an exchange started before it cannot store its result after it. */
  #generation = 0

  constructor(options: TokenCacheOptions = {}) {
    this.#skewMs = (options.expirySkewSeconds ?? DEFAULT_EXPIRY_SKEW_SECONDS) * 1000
    this.#now = options.now ?? Date.now
    this.#entries = new LRUCache<string, CacheEntry>({
      max: options.maxEntries ?? DEFAULT_MAX_ENTRIES,
      maxSize: options.maxBytes ?? DEFAULT_MAX_BYTES,
      sizeCalculation: (entry, key) => estimateEntryBytes(key, entry.token),
    })
  }

  /**
   * Returns the cached token for `key` while it is fresh. Otherwise runs `exchange` (or joins the
   * one already running for `key`) and caches the result until the earlier of the token's expiry
   * and `subjectExpiresAt` (epoch milliseconds), less the skew.
   */
  async getOrExchange(
    key: string,
    subjectExpiresAt: SubjectExpiry,
    exchange: () => Promise<IssuedToken>,
  ): Promise<CacheLookup> {
    const cached = this.#getFresh(key)
    if (cached !== undefined) return { token: cached, cacheHit: true }

    let pending = this.#inflight.get(key)
    if (pending === undefined) {
      pending = this.#startExchange(key, subjectExpiresAt, exchange)
    }
    return { token: await pending, cacheHit: false }
  }

  /** Returns the cached token for `key` while it is fresh, without starting an exchange. */
  peek(key: string): IssuedToken | undefined {
    return this.#getFresh(key)
  }

  /** Removes one entry, e.g. after the upstream rejected its token. A running exchange is unaffected. */
  delete(key: string): void {
    this.#entries.delete(key)
  }

  /**
   * Removes the entries whose key starts with one of `prefixes` followed by a colon, for instance
   * the fingerprints of routes a reload changed. Returns how many were removed.
   */
  deleteByKeyPrefix(prefixes: ReadonlySet<string>): number {
    let removed = 0
    for (const key of [...this.#entries.keys()]) {
      const separator = key.indexOf(':')
      if (separator > 0 && prefixes.has(key.slice(0, separator))) {
        this.#entries.delete(key)
        removed += 1
      }
    }
    return removed
  }

  /** Removes every entry. Exchanges already running still return to their callers but are not stored. */
  clear(): void {
    this.#generation += 1
    this.#entries.clear()
    this.#inflight.clear()
  }

  /** Number of stored entries, including expired ones not yet evicted. */
  get size(): number {
    return this.#entries.size
  }

  /** Estimated bytes of all stored entries. */
  get calculatedSize(): number {
    return this.#entries.calculatedSize
  }

  /** Number of exchanges running now. */
  get inflight(): number {
    return this.#inflight.size
  }

  #getFresh(key: string): IssuedToken | undefined {
    const entry = this.#entries.get(key)
    if (entry === undefined) return undefined
    if (entry.staleAt <= this.#now()) {
      this.#entries.delete(key)
      return undefined
    }
    return entry.token
  }

  #startExchange(
    key: string,
    subjectExpiresAt: SubjectExpiry,
    exchange: () => Promise<IssuedToken>,
  ): Promise<IssuedToken> {
    const generation = this.#generation
    // Promise.resolve().then() turns a synchronous throw from `exchange` into a rejection, so the
    // inflight entry below is always removed.
    const pending = Promise.resolve()
      .then(exchange)
      .then((token) => {
        if (generation === this.#generation) this.#store(key, token, subjectExpiresAt)
        return token
      })
      .finally(() => {
        if (this.#inflight.get(key) === pending) this.#inflight.delete(key)
      })
    this.#inflight.set(key, pending)
    return pending
  }

  #store(key: string, token: IssuedToken, subjectExpiry: SubjectExpiry): void {
    // Evaluated only here, on a miss, so cache hits never decode the subject token.
    const subjectExpiresAt = typeof subjectExpiry === 'function' ? subjectExpiry() : subjectExpiry
    const expiresAt = Math.min(token.expiresAt, subjectExpiresAt ?? Number.POSITIVE_INFINITY)
    const staleAt = expiresAt - this.#skewMs
    if (staleAt <= this.#now()) return
    this.#entries.set(key, { token, staleAt })
  }
}

/**
 * Returns the subject token's `exp` in epoch milliseconds. The token is decoded without verifying
 * its signature, so use the result only to shorten cache lifetimes, never to accept a token.
 * Returns undefined for an opaque token or a token without a numeric `exp`.
 */
export function subjectTokenExpiry(token: string): number | undefined {
  try {
    const { exp } = decodeJwt(token)
    return typeof exp === 'number' && Number.isFinite(exp) ? exp * 1000 : undefined
  } catch {
    return undefined
  }
}

function estimateEntryBytes(key: string, token: IssuedToken): number {
  const strings = token.accessToken.length + key.length + (token.scope?.length ?? 0) + (token.issuedTokenType?.length ?? 0)
  return strings + ENTRY_OVERHEAD_BYTES
}
