import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'

/**
 * Every Prometheus metric the sidecar exports, registered up front so a scrape before any traffic
 * already lists them. Names are a public contract for dashboards. Label values are bounded: route
 * names from the routes file, issuer names, outcome classes and status codes, never a request host,
 * path or user.
 */
export interface Metrics {
  readonly registry: Registry
  readonly tokenExchanges: Counter<'issuer' | 'outcome'>
  readonly tokenExchangeDuration: Histogram<'issuer'>
  readonly tokenCacheHits: Counter
  readonly tokenCacheMisses: Counter
  readonly proxyRequests: Counter<'route' | 'code'>
  readonly proxyRequestDuration: Histogram<'route'>
  readonly userTokenBlocked: Counter<'reason'>
  readonly tlsHandshakes: Counter<'result'>
  readonly tlsCertificatesMinted: Counter
  readonly tunnelsOpen: Gauge<'kind'>
  readonly configReloads: Counter<'result'>
  /** Makes the token cache gauges report `cache` at each scrape. */
  observeTokenCache(cache: TokenCacheSize): void
}

/** The token cache figures the gauges report. */
export interface TokenCacheSize {
  readonly size: number
  readonly calculatedSize: number
}

/** The `route` label of requests that match no route. */
export const UNROUTED_LABEL = '_unrouted'

export function createMetrics(): Metrics {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })
  let tokenCache: TokenCacheSize | undefined
  new Gauge({
    name: 'obo_sidecar_token_cache_entries',
    help: 'Exchanged tokens in the cache, including expired ones not yet evicted.',
    registers: [registry],
    collect() {
      this.set(tokenCache?.size ?? 0)
    },
  })
  new Gauge({
    name: 'obo_sidecar_token_cache_bytes',
    help: 'Estimated size of the cached tokens and their keys, the figure --cache-max-bytes bounds.',
    registers: [registry],
    collect() {
      this.set(tokenCache?.calculatedSize ?? 0)
    },
  })

  return {
    registry,
    observeTokenCache(cache) {
      tokenCache = cache
    },
    tokenExchanges: new Counter({
      name: 'obo_sidecar_token_exchanges_total',
      help: 'Token exchanges sent to an identity provider, by issuer and outcome (success or an error class).',
      labelNames: ['issuer', 'outcome'],
      registers: [registry],
    }),
    tokenExchangeDuration: new Histogram({
      name: 'obo_sidecar_token_exchange_duration_seconds',
      help: 'Time from sending a token exchange request to processing its response.',
      labelNames: ['issuer'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    tokenCacheHits: new Counter({
      name: 'obo_sidecar_token_cache_hits_total',
      help: 'Routed requests served with a cached exchanged token, or by an exchange another request had started (whether it succeeded or failed).',
      registers: [registry],
    }),
    tokenCacheMisses: new Counter({
      name: 'obo_sidecar_token_cache_misses_total',
      help: 'Routed requests that started a token exchange, whether it succeeded or failed.',
      registers: [registry],
    }),
    proxyRequests: new Counter({
      name: 'obo_sidecar_proxy_requests_total',
      help: 'Requests handled by the proxy listener, by route name (_unrouted when none matched) and response status code.',
      labelNames: ['route', 'code'],
      registers: [registry],
    }),
    proxyRequestDuration: new Histogram({
      name: 'obo_sidecar_proxy_request_duration_seconds',
      help: 'Time from receiving a request to receiving the upstream response headers, by route name.',
      labelNames: ['route'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    userTokenBlocked: new Counter({
      name: 'obo_sidecar_user_token_blocked_total',
      help: 'Unrouted requests and tunnels stopped by the unrouted policy: reason stripped (user token removed) or denied.',
      labelNames: ['reason'],
      registers: [registry],
    }),
    tlsHandshakes: new Counter({
      name: 'obo_sidecar_tls_handshakes_total',
      help: 'TLS handshakes with agents on intercepted CONNECT tunnels, by result (success or failure).',
      labelNames: ['result'],
      registers: [registry],
    }),
    tlsCertificatesMinted: new Counter({
      name: 'obo_sidecar_tls_certificates_minted_total',
      help: 'Leaf certificates minted for intercepted host names.',
      registers: [registry],
    }),
    configReloads: new Counter({
      name: 'obo_sidecar_config_reloads_total',
      help: 'Attempts to apply a changed routes file, by result (success, or failure when the running routes were kept).',
      labelNames: ['result'],
      registers: [registry],
    }),
    tunnelsOpen: new Gauge({
      name: 'obo_sidecar_tunnels_open',
      help: 'CONNECT tunnels currently open, by kind (blind or intercepted).',
      labelNames: ['kind'],
      registers: [registry],
    }),
  }
}
