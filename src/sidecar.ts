import { createServer, type IncomingMessage, type Server } from 'node:http'
import type { Duplex } from 'node:stream'
import type { AddressInfo } from 'node:net'
import { once } from 'node:events'
import { createProxyServer } from 'http-proxy-3'
import { createAdminServer } from './admin/server.js'
import { TokenCache } from './cache/token-cache.js'
import { loadRoutesFile } from './config/load.js'
import { SecretReader } from './config/secrets.js'
import type { RoutesConfig } from './config/types.js'
import { TokenExchanger } from './exchange/client.js'
import { TokenProvider } from './exchange/token-provider.js'
import type { Logger } from './observability/logger.js'
import { createMetrics } from './observability/metrics.js'
import { ConfigError } from './errors.js'
import { createConnectHandler, type InterceptMode } from './proxy/connect.js'
import { EgressPolicy, type UnroutedPolicy } from './proxy/egress-policy.js'
import { Forwarder } from './proxy/forward.js'
import { readCaFile } from './proxy/trust.js'
import { generateCertificateAuthority, loadCertificateAuthority, type CertificateAuthority } from './tls/ca.js'
import { writeCaFiles } from './tls/ca-bundle.js'
import { LeafCertificateCache } from './tls/leaf-certificates.js'
import { createRequestHandler, createUpgradeHandler } from './proxy/handler.js'

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
}

export interface RunningSidecar {
  readonly proxyAddress: AddressInfo
  readonly adminAddress: AddressInfo
  /** Stops accepting connections, lets in-flight requests finish within the grace time, and closes. */
  stop(): Promise<void>
}

/**
 * Checks every secret the routes reference, so that a missing secret file or variable stops
 * start-up naming its issuer rather than failing the first request that needs it.
 */
export function checkIssuerSecrets(config: RoutesConfig, secrets: SecretReader): void {
  for (const issuer of config.issuers.values()) {
    if (issuer.clientSecret !== undefined) secrets.read(issuer.clientSecret, `issuer "${issuer.name}" clientSecret`)
    if (issuer.actorToken !== undefined) secrets.read(issuer.actorToken.source, `issuer "${issuer.name}" actorToken`)
  }
}

/** Reads each route's `upstreamCaFile` once, so a missing or empty file stops start-up. */
export function checkUpstreamCaFiles(config: RoutesConfig): void {
  for (const route of config.routes) {
    if (route.upstreamCaFile !== undefined) readCaFile(route.upstreamCaFile)
  }
}

/** The `strip` policy recognizes the user's token by its issuer, so it needs the list of them. */
export function checkEgressPolicy(config: RoutesConfig, policy: UnroutedPolicy): void {
  if (policy === 'strip' && config.userTokenIssuers.length === 0) {
    throw new ConfigError([
      {
        file: config.file,
        line: 1,
        col: 1,
        message:
          'the unrouted policy is strip, which needs "userTokenIssuers": list the iss values of the users\' tokens, e.g. userTokenIssuers: [https://login.example.com]',
      },
    ])
  }
}

async function loadOrGenerateCa(settings: SidecarSettings): Promise<CertificateAuthority> {
  if (settings.caCertFile !== undefined && settings.caKeyFile !== undefined) {
    return loadCertificateAuthority(settings.caCertFile, settings.caKeyFile)
  }
  return generateCertificateAuthority()
}

/** Loads and checks the configuration, then starts the proxy and admin listeners. */
export async function startSidecar(settings: SidecarSettings, logger: Logger): Promise<RunningSidecar> {
  const routes = loadRoutesFile(settings.routesFile)
  const secrets = new SecretReader()
  checkIssuerSecrets(routes, secrets)
  checkUpstreamCaFiles(routes)
  checkEgressPolicy(routes, settings.unroutedPolicy)

  const metrics = createMetrics()
  const ca = await loadOrGenerateCa(settings)
  const certificates = new LeafCertificateCache({ ca, onMint: () => metrics.tlsCertificatesMinted.inc() })
  // The agent reads these files to trust intercepted TLS, so they exist before /readyz says 200.
  const caFiles = settings.caOutDir === undefined ? undefined : await writeCaFiles(settings.caOutDir, ca)
  const egressPolicy = new EgressPolicy(settings.unroutedPolicy, routes.userTokenIssuers, metrics)
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
  const forwarder = new Forwarder({ headersTimeoutMs: settings.upstreamHeadersTimeoutMs, keepAliveTimeoutMs: 30_000 })
  const webSocketProxy = createProxyServer({ ws: true, xfwd: false })
  const handlerOptions = {
    routes: () => routes,
    tokens: new TokenProvider({ cache, exchanger, metrics, logger }),
    egressPolicy,
    forwarder,
    webSocketProxy,
    metrics,
    logger,
  }

  let ready = false
  // requestTimeout 0: an upload or a streamed call may legitimately take longer than Node's
  // default 300 s; the agent's own timeouts end such requests.
  const proxy = createServer(
    { maxHeaderSize: settings.maxHeaderBytes, requestTimeout: 0 },
    createRequestHandler(handlerOptions),
  )
  // Upgraded connections leave the HTTP server's bookkeeping: closeAllConnections() misses them.
  const upgradedSockets = new Set<Duplex>()
  const handleUpgrade = createUpgradeHandler(handlerOptions)
  proxy.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    upgradedSockets.add(socket)
    socket.once('close', () => upgradedSockets.delete(socket))
    handleUpgrade(req, socket, head)
  })
  proxy.on('clientError', (error: NodeJS.ErrnoException, socket: Duplex) => {
    logger.info({ event: 'client_error', code: error.code }, 'malformed request from client')
    if (!socket.writable) {
      socket.destroy()
      return
    }
    const status = error.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : '400 Bad Request'
    socket.end(`HTTP/1.1 ${status}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`)
  })
  proxy.on(
    'connect',
    createConnectHandler({
      routes: () => routes,
      intercept: settings.intercept,
      egressPolicy,
      certificates,
      server: proxy,
      connectTimeoutMs: 10_000,
      metrics,
      logger,
    }),
  )
  const admin = createAdminServer({ registry: metrics.registry, isReady: () => ready, logger })

  const proxyAddress = await listen(proxy, settings.listen)
  const adminAddress = await listen(admin, settings.adminListen)
  ready = true
  logger.info(
    {
      event: 'start',
      proxy: formatAddress(proxyAddress),
      admin: formatAddress(adminAddress),
      routes_file: routes.file,
      routes: routes.routes.map((route) => route.name),
      issuers: [...routes.issuers.keys()],
      intercept: settings.intercept,
      unrouted_policy: settings.unroutedPolicy,
      ca: ca.source,
      ca_files: caFiles === undefined ? undefined : [caFiles.caFile, caFiles.bundleFile],
    },
    'sidecar started',
  )

  const stop = async (): Promise<void> => {
    ready = false
    const drained = Promise.all([closeServer(proxy), closeServer(admin)])
    proxy.closeIdleConnections()
    const timer = setTimeout(() => {
      proxy.closeAllConnections()
      for (const socket of upgradedSockets) socket.destroy()
    }, settings.shutdownGraceMs)
    await drained
    clearTimeout(timer)
    webSocketProxy.close()
    await Promise.all([forwarder.close(), exchanger.close()])
    logger.info({ event: 'stop' }, 'sidecar stopped')
  }
  return { proxyAddress, adminAddress, stop }
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
