import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { once } from 'node:events'
import { createProxyServer } from 'http-proxy-3'
import { createAdminServer } from './admin/server.js'
import { exchangeTargetFingerprint } from './cache/key.js'
import { TokenCache } from './cache/token-cache.js'
import { loadRoutesFile } from './config/load.js'
import { RoutesReloader } from './config/reloader.js'
import { SecretReader } from './config/secrets.js'
import type { RoutesConfig } from './config/types.js'
import { TokenExchanger } from './exchange/client.js'
import { TokenProvider } from './exchange/token-provider.js'
import type { Logger } from './observability/logger.js'
import { createMetrics } from './observability/metrics.js'
import type { InterceptMode } from './proxy/connect.js'
import { EgressPolicy, type UnroutedPolicy } from './proxy/egress-policy.js'
import { Forwarder } from './proxy/forward.js'
import { generateCertificateAuthority, loadCertificateAuthority, type CertificateAuthority } from './tls/ca.js'
import { writeCaFiles } from './tls/ca-bundle.js'
import { LeafCertificateCache } from './tls/leaf-certificates.js'
import { checkRoutesEnvironment } from './startup-checks.js'
import { ProxyListener } from './proxy/listener.js'

export interface ListenAddress {
  host: string
  port: number
}

export interface SidecarSettings {
  routesFile: string
  listen: ListenAddress
  adminListen: ListenAddress
  exchangeTimeoutMs: number
  defaultTokenLifetimeSeconds: number
  maxTokenLifetimeSeconds: number
  cacheExpirySkewSeconds: number
  cacheMaxEntries: number
  cacheMaxBytes: number
  upstreamHeadersTimeoutMs: number
  /** Largest request header section accepted from the agent; user tokens can be tens of KiB. */
  maxHeaderBytes: number
  /** How long in-flight requests may run after SIGTERM before the process exits anyway. */
  shutdownGraceMs: number
  intercept: InterceptMode
  unroutedPolicy: UnroutedPolicy
  /** PEM files of the CA that signs intercepted leaf certificates; both or neither. */
  caCertFile: string | undefined
  caKeyFile: string | undefined
  /** Directory that receives `ca.crt` and `ca-bundle.crt` for the agent to trust. */
  caOutDir: string | undefined
  /** How often the routes file is re-read in case a file-system event was missed. */
  configPollIntervalMs: number
}

export interface RunningSidecar {
  readonly proxyAddress: AddressInfo
  readonly adminAddress: AddressInfo
  /** Stops accepting connections, lets in-flight requests finish within the grace time, and closes. */
  stop(): Promise<void>
  /** Closes every connection at once; a running `stop()` then completes. */
  stopNow(): void
  /** Re-reads the routes file, as on SIGHUP. Returns true when new routes took effect. */
  reload(): boolean
}

async function loadOrGenerateCa(settings: SidecarSettings): Promise<CertificateAuthority> {
  if (settings.caCertFile !== undefined && settings.caKeyFile !== undefined) {
    return loadCertificateAuthority(settings.caCertFile, settings.caKeyFile)
  }
  return generateCertificateAuthority()
}

/** Drops cached tokens of exchange targets that a reload removed or changed. */
function dropChangedTargets(cache: TokenCache, previous: RoutesConfig, next: RoutesConfig, logger: Logger): void {
  const kept = new Set(next.routes.map((route) => exchangeTargetFingerprint(route)))
  const changed = new Set(previous.routes.map((route) => exchangeTargetFingerprint(route)).filter((fingerprint) => !kept.has(fingerprint)))
  if (changed.size === 0) return
  const removed = cache.deleteByKeyPrefix(changed)
  logger.info({ event: 'config_reload', dropped_tokens: removed }, 'dropped cached tokens of changed routes')
}

/** Loads and checks the configuration, then starts the proxy and admin listeners. */
export async function startSidecar(settings: SidecarSettings, logger: Logger): Promise<RunningSidecar> {
  const initialRoutes = loadRoutesFile(settings.routesFile)
  const secrets = new SecretReader()
  checkRoutesEnvironment(initialRoutes, secrets, settings.unroutedPolicy)

  const metrics = createMetrics()
  const ca = await loadOrGenerateCa(settings)
  const certificates = new LeafCertificateCache({ ca, onMint: () => metrics.tlsCertificatesMinted.inc() })
  // The agent reads these files to trust intercepted TLS, so they exist before /readyz returns 200.
  const caFiles = settings.caOutDir === undefined ? undefined : await writeCaFiles(settings.caOutDir, ca)
  const exchanger = new TokenExchanger({
    timeoutMs: settings.exchangeTimeoutMs,
    defaultLifetimeSeconds: settings.defaultTokenLifetimeSeconds,
    maxLifetimeSeconds: settings.maxTokenLifetimeSeconds,
    secrets,
  })
  const cache = new TokenCache({
    maxEntries: settings.cacheMaxEntries,
    maxBytes: settings.cacheMaxBytes,
    expirySkewSeconds: settings.cacheExpirySkewSeconds,
  })
  metrics.observeTokenCache(cache)
  const reloader = new RoutesReloader({
    initial: initialRoutes,
    check: (config) => checkRoutesEnvironment(config, secrets, settings.unroutedPolicy),
    onChange: (previous, next) => dropChangedTargets(cache, previous, next, logger),
    pollIntervalMs: settings.configPollIntervalMs,
    metrics,
    logger,
  })
  const routes = (): RoutesConfig => reloader.current
  const egressPolicy = new EgressPolicy(settings.unroutedPolicy, () => routes().userTokenIssuers, metrics)
  const forwarder = new Forwarder({ headersTimeoutMs: settings.upstreamHeadersTimeoutMs, keepAliveTimeoutMs: 30_000 })
  const webSocketProxy = createProxyServer({ ws: true, xfwd: false })
  const listener = new ProxyListener({
    handler: {
      routes,
      tokens: new TokenProvider({ cache, exchanger, metrics, logger }),
      egressPolicy,
      forwarder,
      webSocketProxy,
      metrics,
      logger,
    },
    connect: { routes, intercept: settings.intercept, egressPolicy, certificates, connectTimeoutMs: 10_000, metrics, logger },
    maxHeaderBytes: settings.maxHeaderBytes,
    logger,
  })

  let ready = false
  const admin = createAdminServer({ registry: metrics.registry, isReady: () => ready, logger })
  let proxyAddress: AddressInfo
  let adminAddress: AddressInfo
  try {
    proxyAddress = await listen(listener.server, settings.listen)
    adminAddress = await listen(admin, settings.adminListen)
  } catch (error) {
    // A half-started sidecar would proxy without readiness, metrics or a way to drain it.
    listener.server.close()
    admin.close()
    await Promise.all([forwarder.close(), exchanger.close()])
    throw error
  }
  reloader.start()
  ready = true
  logger.info(
    {
      event: 'start',
      proxy: formatAddress(proxyAddress),
      admin: formatAddress(adminAddress),
      routes_file: initialRoutes.file,
      routes: initialRoutes.routes.map((route) => route.name),
      issuers: [...initialRoutes.issuers.keys()],
      intercept: settings.intercept,
      unrouted_policy: settings.unroutedPolicy,
      ca: ca.source,
      ca_files: caFiles === undefined ? undefined : [caFiles.caFile, caFiles.bundleFile],
    },
    'sidecar started',
  )

  const stop = async (): Promise<void> => {
    // /readyz fails first, so Kubernetes stops sending new traffic while in-flight requests finish.
    ready = false
    reloader.close()
    await listener.drain(settings.shutdownGraceMs)
    admin.closeAllConnections()
    await closeServer(admin)
    webSocketProxy.close()
    await Promise.all([forwarder.close(), exchanger.close()])
    logger.info({ event: 'stop' }, 'sidecar stopped')
  }
  return {
    proxyAddress,
    adminAddress,
    stop,
    stopNow: () => listener.closeNow(),
    reload: () => reloader.reload('signal'),
  }
}

async function listen(server: Server, address: ListenAddress): Promise<AddressInfo> {
  server.listen(address.port, address.host)
  await once(server, 'listening')
  return server.address() as AddressInfo
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()))
}

export function formatAddress(address: AddressInfo): string {
  return address.family === 'IPv6' ? `[${address.address}]:${address.port}` : `${address.address}:${address.port}`
}
