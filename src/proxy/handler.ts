import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import { randomUUID } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import type { ProxyServer, ProxyTarget } from 'http-proxy-3'
import type { RouteConfig, RoutesConfig } from '../config/types.js'
import { ClientClosedError, UnknownHostError, type OboError } from '../errors.js'
import type { TokenProvider } from '../exchange/token-provider.js'
import type { Logger } from '../observability/logger.js'
import { UNROUTED_LABEL, type Metrics } from '../observability/metrics.js'
import { extractBearerToken } from './bearer.js'
import type { Forwarder } from './forward.js'
import { buildUpstreamRequestHeaders } from './headers.js'
import { sendError, sendErrorOnSocket, toOboError } from './respond.js'
import { matchRoute } from './route-match.js'
import { resolveRequestTarget, type RequestTarget } from './target.js'
import { trustedCertificates } from './trust.js'
import { resolveUpstream, type UpstreamTarget } from './upstream.js'
import type { EgressPolicy } from './egress-policy.js'

export interface ProxyHandlerOptions {
  /** The current routes; read once per request, so a reload never changes a request midway. */
  routes: () => RoutesConfig
  tokens: TokenProvider
  egressPolicy: EgressPolicy
  forwarder: Forwarder
  webSocketProxy: ProxyServer
  metrics: Metrics
  logger: Logger
}

/** A request after routing: its target, the route that matched if any, and where it goes. */
interface RoutedRequest {
  target: RequestTarget
  route: RouteConfig | undefined
  upstream: UpstreamTarget
}

/**
 * Resolves a request's target and route. An origin-form request must match a route: its target is
 * the sidecar itself, so forwarding it unrouted would send it back to this listener.
 */
function routeRequest(req: IncomingMessage, routes: RoutesConfig): RoutedRequest {
  const target = resolveRequestTarget(req)
  const route = matchRoute(routes.routes, target.hostname, target.port, target.normalizedPath)
  if (route === undefined && !target.proxied) {
    throw new UnknownHostError(
      `no route matches Host ${target.authority} with path ${target.normalizedPath}; send absolute-form requests through HTTP_PROXY or add a route for this host and path`,
    )
  }
  return { target, route, upstream: resolveUpstream(target, route) }
}

/**
 * Returns the `Authorization` to send upstream. A routed request gets the exchanged token. For an
 * unrouted one the egress policy decides, and `undefined` keeps the agent's own fields while `null`
 * removes them.
 */
async function upstreamAuthorization(req: IncomingMessage, routed: RoutedRequest, options: ProxyHandlerOptions): Promise<string | null | undefined> {
  if (routed.route === undefined) {
    const action = options.egressPolicy.authorizationForUnrouted(req, `${routed.target.authority}${routed.target.normalizedPath}`)
    return action === 'remove' ? null : undefined
  }
  const subjectToken = extractBearerToken(req)
  const pending = options.tokens.tokenFor(routed.route, subjectToken)
  const issued = pending instanceof Promise ? await pending : pending
  return `${issued.tokenType} ${issued.accessToken}`
}

export function createRequestHandler(options: ProxyHandlerOptions): (req: IncomingMessage, res: ServerResponse) => void {
  const { metrics, logger } = options

  return (req, res) => {
    const started = performance.now()
    let routeLabel = UNROUTED_LABEL
    let authority: string | undefined

    const handle = async (): Promise<number> => {
      const routed = routeRequest(req, options.routes())
      authority = routed.upstream.authority
      if (routed.route !== undefined) routeLabel = routed.route.name
      const authorization = await upstreamAuthorization(req, routed, options)
      const headers = buildUpstreamRequestHeaders(req.rawHeaders, routed.upstream.authority, authorization)
      const status = await options.forwarder.forward(req, res, routed.upstream, routed.target.pathAndQuery, headers)
      metrics.proxyRequestDuration.observe({ route: routeLabel }, (performance.now() - started) / 1000)
      return status
    }

    handle().then(
      (status) => metrics.proxyRequests.inc({ route: routeLabel, code: String(status) }),
      (thrown: unknown) => {
        const error = toOboError(thrown, authority)
        const requestId = randomUUID()
        logRequestError(logger, req, error, { route: routeLabel, requestId, responseStarted: res.headersSent })
        metrics.proxyRequests.inc({ route: routeLabel, code: String(res.headersSent ? res.statusCode : error.statusCode) })
        sendError(res, error, requestId)
      },
    )
  }
}

/**
 * Handles `Upgrade` requests (WebSocket handshakes): the token is swapped on the handshake, then
 * http-proxy-3 relays the upgraded connection's bytes in both directions.
 */
export function createUpgradeHandler(options: ProxyHandlerOptions): (req: IncomingMessage, socket: Duplex, head: Buffer) => void {
  const { metrics, logger } = options

  return (req, socket, head) => {
    let routeLabel = UNROUTED_LABEL
    let authority: string | undefined
    socket.on('error', () => socket.destroy())

    const handle = async (): Promise<void> => {
      const routed = routeRequest(req, options.routes())
      const upstream = routed.upstream
      authority = upstream.authority
      if (routed.route !== undefined) routeLabel = routed.route.name
      const authorization = await upstreamAuthorization(req, routed, options)
      if (authorization === null) delete req.headers.authorization
      else if (authorization !== undefined) req.headers.authorization = authorization
      delete req.headers['proxy-authorization']
      delete req.headers['proxy-connection']
      req.headers.host = upstream.authority
      req.url = routed.target.pathAndQuery
      options.webSocketProxy.ws(req, socket, head, { target: webSocketTarget(upstream) }, (error) => {
        const oboError = toOboError(error, upstream.authority)
        const requestId = randomUUID()
        logRequestError(logger, req, oboError, { route: routeLabel, requestId, responseStarted: false })
        sendErrorOnSocket(socket, oboError, requestId)
      })
      // NOTE: counted as 101 when the handshake is handed to http-proxy-3, so an upstream that
      // rejects the handshake with another status is still counted as 101.
      metrics.proxyRequests.inc({ route: routeLabel, code: '101' })
    }

    handle().catch((thrown: unknown) => {
      const error = toOboError(thrown, authority)
      const requestId = randomUUID()
      logRequestError(logger, req, error, { route: routeLabel, requestId, responseStarted: false })
      metrics.proxyRequests.inc({ route: routeLabel, code: String(error.statusCode) })
      sendErrorOnSocket(socket, error, requestId)
    })
  }
}

/** Describes the upstream for http-proxy-3, which verifies a `wss:` target against `ca`. */
function webSocketTarget(upstream: UpstreamTarget): ProxyTarget {
  const url = new URL(upstream.origin)
  const secure = url.protocol === 'https:'
  const defaultPort = secure ? 443 : 80
  return {
    protocol: secure ? 'wss:' : 'ws:',
    host: url.hostname,
    hostname: url.hostname,
    port: url.port === '' ? defaultPort : Number(url.port),
    ca: secure ? trustedCertificates(upstream.caFile).join('\n') : undefined,
  }
}

interface RequestErrorContext {
  route: string
  requestId: string
  /** True when the upstream response had begun, so the agent gets a closed connection, not JSON. */
  responseStarted: boolean
}

/** Logs a failed request by method, route and code: never headers, query strings or bodies. */
function logRequestError(logger: Logger, req: IncomingMessage, error: OboError, context: RequestErrorContext): void {
  const fields = {
    event: 'proxy_error',
    request_id: context.requestId,
    method: req.method,
    route: context.route,
    code: error.code,
    status: error.statusCode,
    error: error.message,
    response_started: context.responseStarted,
    cause: error.cause instanceof Error ? error.cause.message : undefined,
  }
  if (error instanceof ClientClosedError) logger.info(fields, 'agent closed the connection')
  else if (error.statusCode >= 500) logger.error(fields, 'proxy request failed')
  else logger.warn(fields, 'proxy request rejected')
}
