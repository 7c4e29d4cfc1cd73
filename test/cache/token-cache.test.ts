import { Buffer } from 'node:buffer'
import t from 'tap'
import { exchangeCacheKey, exchangeTargetFingerprint, tokenFingerprint, type ExchangeTarget } from '../../src/cache/key.js'
import { subjectTokenExpiry, TokenCache } from '../../src/cache/token-cache.js'
import { ACCESS_TOKEN_TYPE, JWT_TOKEN_TYPE } from '../../src/config/types.js'
import { IdpUnavailableError } from '../../src/errors.js'
import type { IssuedToken } from '../../src/exchange/response.js'
import { issuerConfig } from '../helpers/issuer-config.js'

const START = 1_700_000_000_000

/** A settable clock for the cache's `now` option. */
class FakeClock {
  time = START
  readonly now = (): number => this.time
  advance(ms: number): void {
    this.time += ms
  }
}

function issuedToken(accessToken: string, expiresAt: number): IssuedToken {
  return { accessToken, tokenType: 'Bearer', expiresAt, scope: undefined, issuedTokenType: undefined }
}

/** An exchange function that counts its calls and issues `token-N` valid for `lifetimeMs`. */
function countingExchange(clock: FakeClock, lifetimeMs: number) {
  const exchange = {
    calls: 0,
    run: (): Promise<IssuedToken> => {
      exchange.calls += 1
      return Promise.resolve(issuedToken(`token-${exchange.calls}`, clock.time + lifetimeMs))
    },
  }
  return exchange
}

function unsignedJwt(claims: Record<string, unknown>): string {
  const encode = (value: object): string => Buffer.from(JSON.stringify(value)).toString('base64url')
  return `${encode({ alg: 'none' })}.${encode(claims)}.`
}

void t.test('hit after miss', async (t) => {
  const clock = new FakeClock()
  const cache = new TokenCache({ now: clock.now })
  const exchange = countingExchange(clock, 3_600_000)

  const first = await cache.getOrExchange('key-a', undefined, exchange.run)
  const second = await cache.getOrExchange('key-a', undefined, exchange.run)

  t.equal(first.cacheHit, false)
  t.equal(second.cacheHit, true)
  t.equal(second.token, first.token)
  t.equal(exchange.calls, 1)
  t.equal(cache.size, 1)
})

void t.test('different keys exchange separately', async (t) => {
  const clock = new FakeClock()
  const cache = new TokenCache({ now: clock.now })
  const exchange = countingExchange(clock, 3_600_000)

  const a = await cache.getOrExchange('key-a', undefined, exchange.run)
  const b = await cache.getOrExchange('key-b', undefined, exchange.run)

  t.equal(exchange.calls, 2)
  t.not(a.token.accessToken, b.token.accessToken)
  t.equal(cache.size, 2)
})

void t.test('entry expires at token expiry less skew', async (t) => {
  const clock = new FakeClock()
  const cache = new TokenCache({ now: clock.now, expirySkewSeconds: 30 })
  const exchange = countingExchange(clock, 60_000)

  await cache.getOrExchange('key', undefined, exchange.run)
  clock.advance(29_999)
  t.equal((await cache.getOrExchange('key', undefined, exchange.run)).cacheHit, true, 'fresh 1 ms before the skew')

  clock.advance(1)
  const refreshed = await cache.getOrExchange('key', undefined, exchange.run)
  t.equal(refreshed.cacheHit, false, 'stale once only the skew is left')
  t.equal(refreshed.token.accessToken, 'token-2')
  t.equal(exchange.calls, 2)
})

void t.test('subject token expiry bounds the entry', async (t) => {
  const clock = new FakeClock()
  const cache = new TokenCache({ now: clock.now, expirySkewSeconds: 30 })
  const exchange = countingExchange(clock, 3_600_000)
  const subjectExpiresAt = START + 120_000

  await cache.getOrExchange('key', subjectExpiresAt, exchange.run)
  clock.advance(89_999)
  t.equal((await cache.getOrExchange('key', subjectExpiresAt, exchange.run)).cacheHit, true)
  clock.advance(1)
  t.equal((await cache.getOrExchange('key', subjectExpiresAt, exchange.run)).cacheHit, false)
  t.equal(exchange.calls, 2)
})

void t.test('token shorter than the skew is not stored', async (t) => {
  const clock = new FakeClock()
  const cache = new TokenCache({ now: clock.now, expirySkewSeconds: 30 })

  for (const lifetimeMs of [20_000, 30_000, 0]) {
    const exchange = countingExchange(clock, lifetimeMs)
    const result = await cache.getOrExchange(`key-${lifetimeMs}`, undefined, exchange.run)
    t.equal(result.token.accessToken, 'token-1', `lifetime ${lifetimeMs} ms: token still returned`)
    t.equal(cache.size, 0, `lifetime ${lifetimeMs} ms: not stored`)
  }
})

void t.test('subject token already inside the skew is not stored', async (t) => {
  const clock = new FakeClock()
  const cache = new TokenCache({ now: clock.now, expirySkewSeconds: 30 })
  const exchange = countingExchange(clock, 3_600_000)

  await cache.getOrExchange('key', START + 10_000, exchange.run)
  t.equal(cache.size, 0)
})

void t.test('50 concurrent callers share one exchange', async (t) => {
  const clock = new FakeClock()
  const cache = new TokenCache({ now: clock.now })
  let calls = 0
  let release: (token: IssuedToken) => void = () => {}
  const exchange = (): Promise<IssuedToken> => {
    calls += 1
    return new Promise((resolve) => {
      release = resolve
    })
  }

  const callers = Array.from({ length: 50 }, () => cache.getOrExchange('key', undefined, exchange))
  await Promise.resolve()
  t.equal(cache.inflight, 1, 'one exchange in flight')
  release(issuedToken('shared-token', START + 3_600_000))
  const results = await Promise.all(callers)

  t.equal(calls, 1)
  t.ok(results.every((result) => result.token === results[0]?.token), 'every caller got the same token object')
  t.ok(results.every((result) => !result.cacheHit), 'none of them was a cache hit')
  t.equal(cache.inflight, 0)
  t.equal((await cache.getOrExchange('key', undefined, exchange)).cacheHit, true)
})

void t.test('failure is shared and not cached', async (t) => {
  const clock = new FakeClock()
  const cache = new TokenCache({ now: clock.now })
  const failure = new IdpUnavailableError('token exchange at issuer "corp" failed: the IdP returned HTTP 503')
  let calls = 0
  const failing = async (): Promise<IssuedToken> => {
    calls += 1
    await new Promise((resolve) => setImmediate(resolve))
    throw failure
  }

  const callers = Array.from({ length: 10 }, () => cache.getOrExchange('key', undefined, failing))
  const outcomes = await Promise.allSettled(callers)

  t.equal(calls, 1)
  t.ok(
    outcomes.every((outcome) => outcome.status === 'rejected' && outcome.reason === failure),
    'every caller got the same error',
  )
  t.equal(cache.size, 0)
  t.equal(cache.inflight, 0)

  const retry = await cache.getOrExchange('key', undefined, countingExchange(clock, 3_600_000).run)
  t.equal(retry.cacheHit, false, 'the next call exchanges again')
  t.equal(retry.token.accessToken, 'token-1')
})

void t.test('synchronous throw is a rejection', async (t) => {
  const cache = new TokenCache()
  const throwing = (): Promise<IssuedToken> => {
    throw new Error('secret file missing')
  }

  await t.rejects(cache.getOrExchange('key', undefined, throwing), { message: 'secret file missing' })
  t.equal(cache.inflight, 0)
})

void t.test('byte bound evicts least recently used entries', async (t) => {
  const clock = new FakeClock()
  const key = (index: number): string => `${index}`.padStart(64, '0')
  const accessToken = 'x'.repeat(1000)
  // Each entry is 1000 + 64 bytes of strings plus the fixed overhead, so three fit and four do not.
  const cache = new TokenCache({ now: clock.now, maxBytes: 4000 })
  const exchange = (): Promise<IssuedToken> => Promise.resolve(issuedToken(accessToken, START + 3_600_000))

  for (let index = 1; index <= 5; index += 1) await cache.getOrExchange(key(index), undefined, exchange)

  t.equal(cache.size, 3)
  t.ok(cache.calculatedSize <= 4000, `calculatedSize ${cache.calculatedSize} within the bound`)
  t.equal((await cache.getOrExchange(key(5), undefined, exchange)).cacheHit, true, 'newest entry kept')
  t.equal((await cache.getOrExchange(key(1), undefined, exchange)).cacheHit, false, 'oldest entry evicted')
})

void t.test('entry count bound evicts', async (t) => {
  const clock = new FakeClock()
  const cache = new TokenCache({ now: clock.now, maxEntries: 2 })
  const exchange = countingExchange(clock, 3_600_000)

  for (const key of ['a', 'b', 'c']) await cache.getOrExchange(key, undefined, exchange.run)
  t.equal(cache.size, 2)
})

void t.test('clear drops entries and running results', async (t) => {
  const clock = new FakeClock()
  const cache = new TokenCache({ now: clock.now })
  let release: (token: IssuedToken) => void = () => {}
  const slow = (): Promise<IssuedToken> =>
    new Promise((resolve) => {
      release = resolve
    })

  await cache.getOrExchange('stored', undefined, countingExchange(clock, 3_600_000).run)
  const running = cache.getOrExchange('running', undefined, slow)
  await Promise.resolve()
  cache.clear()
  release(issuedToken('late-token', START + 3_600_000))

  t.equal((await running).token.accessToken, 'late-token', 'the waiting caller still gets its token')
  t.equal(cache.size, 0)
  t.equal(cache.inflight, 0)
})

void t.test('delete removes one entry', async (t) => {
  const clock = new FakeClock()
  const cache = new TokenCache({ now: clock.now })
  const exchange = countingExchange(clock, 3_600_000)

  await cache.getOrExchange('key', undefined, exchange.run)
  cache.delete('key')
  t.equal((await cache.getOrExchange('key', undefined, exchange.run)).cacheHit, false)
})

void t.test('subjectTokenExpiry', (t) => {
  t.equal(subjectTokenExpiry(unsignedJwt({ exp: 1_700_000_100 })), 1_700_000_100_000)
  t.equal(subjectTokenExpiry('opaque-token'), undefined, 'opaque token')
  t.equal(subjectTokenExpiry(unsignedJwt({ sub: 'user' })), undefined, 'no exp')
  t.equal(subjectTokenExpiry(unsignedJwt({ exp: '1700000100' })), undefined, 'exp not a number')
  t.equal(subjectTokenExpiry('a.%%%.c'), undefined, 'payload not base64url')
  t.end()
})

function target(overrides: Partial<ExchangeTarget> = {}): ExchangeTarget {
  return { issuer: issuerConfig(), audience: ['a1', 'a2'], resource: ['r1'], scopes: ['s1', 's2'], ...overrides }
}

void t.test('exchangeCacheKey', (t) => {
  const base = exchangeCacheKey('subject', target())

  t.match(base, /^[A-Za-z0-9_-]{43}:[A-Za-z0-9_-]{43}$/)
  t.notOk(base.includes('subject'))
  t.equal(exchangeCacheKey('subject', target({ audience: ['a2', 'a1'], scopes: ['s2', 's1'] })), base, 'order-independent')

  const variants: [string, string][] = [
    ['subject token', exchangeCacheKey('other-subject', target())],
    ['issuer name', exchangeCacheKey('subject', target({ issuer: issuerConfig({ name: 'other' }) }))],
    [
      'token endpoint',
      exchangeCacheKey('subject', target({ issuer: issuerConfig({ tokenEndpoint: new URL('https://idp2.example.test/token') }) })),
    ],
    ['client id', exchangeCacheKey('subject', target({ issuer: issuerConfig({ clientId: 'other' }) }))],
    ['grant', exchangeCacheKey('subject', target({ issuer: issuerConfig({ grant: 'jwt-bearer' }) }))],
    ['subject token type', exchangeCacheKey('subject', target({ issuer: issuerConfig({ subjectTokenType: JWT_TOKEN_TYPE }) }))],
    [
      'requested token type',
      exchangeCacheKey('subject', target({ issuer: issuerConfig({ requestedTokenType: ACCESS_TOKEN_TYPE }) })),
    ],
    [
      'actor source',
      exchangeCacheKey(
        'subject',
        target({ issuer: issuerConfig({ actorToken: { source: { kind: 'env', name: 'ACTOR' }, type: JWT_TOKEN_TYPE } }) }),
      ),
    ],
    ['audience', exchangeCacheKey('subject', target({ audience: ['a1'] }))],
    ['resource', exchangeCacheKey('subject', target({ resource: [] }))],
    ['scopes', exchangeCacheKey('subject', target({ scopes: ['s1'] }))],
    ['list boundaries', exchangeCacheKey('subject', target({ audience: ['a1', 'a2', 'r1'], resource: [] }))],
  ]
  for (const [name, key] of variants) t.not(key, base, `${name} changes the key`)
  t.end()
})

void t.test('tokenFingerprint', (t) => {
  const fingerprint = tokenFingerprint('some-token')

  t.match(fingerprint, /^[0-9a-f]{12}$/)
  t.equal(tokenFingerprint('some-token'), fingerprint)
  t.not(tokenFingerprint('other-token'), fingerprint)
  t.end()
})

void t.test('deleteByKeyPrefix drops one target', async (t) => {
  const cache = new TokenCache()
  const issue = (value: string) => async () => ({ accessToken: value, tokenType: 'Bearer' as const, expiresAt: Date.now() + 60_000, scope: undefined, issuedTokenType: undefined })
  const kept = exchangeCacheKey('user', target({ audience: ['kept'] }))
  const dropped = exchangeCacheKey('user', target({ audience: ['dropped'] }))
  await cache.getOrExchange(kept, undefined, issue('k'))
  await cache.getOrExchange(dropped, undefined, issue('d'))
  t.equal(cache.deleteByKeyPrefix(new Set([exchangeTargetFingerprint(target({ audience: ['dropped'] }))])), 1)
  t.equal((await cache.getOrExchange(kept, undefined, issue('new'))).cacheHit, true, 'other target kept')
  t.equal((await cache.getOrExchange(dropped, undefined, issue('new'))).cacheHit, false, 'changed target dropped')
})
