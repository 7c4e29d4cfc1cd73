import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import { randomUUID } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import type { ProxyServer } from 'http-proxy-3'
import type { RouteConfig, RoutesConfig } from '../config/types.js'
import { UnknownHostError, type OboError } from '../errors.js'
import type { TokenProvider } from '../exchange/token-provider.js'
import type { Logger } from '../observability/logger.js'
import { UNROUTED_LABEL, type Metrics } from '../observability/metrics.js'
import { extractBearerToken } from './bearer.js'
import type { Forwarder } from './forward.js'
import { buildUpstreamRequestHeaders } from './headers.js'
import { sendError, sendErrorOnSocket, toOboError } from './respond.js'
import { matchRoute } from './route-match.js'
import { resolveRequestTarget, type RequestTarget } from './target.js'

export interface ProxyHandlerOptions {
  /** The current routes; read once per request, so a reload never changes a request midway. */
  routes: () => RoutesConfig
  tokens: TokenProvider
  forwarder: Forwarder
  webSocketProxy: ProxyServer
  metrics: Metrics
  logger: Logger
}

/** A request after routing: its target, and the route that matched, if any. */
interface RoutedRequest {
  target: RequestTarget
  route: RouteConfig | undefined
}

/**
 * Resolves a request's target and route. An origin-form request must match a route: its target is
 * the sidecar itself, so forwarding it unrouted would send it back to this listener.
 */
function routeRequest(req: IncomingMessage, routes: RoutesConfig): RoutedRequest {
  const target = resolveRequestTarget(req)
  const route = matchRoute(routes.routes, target.hostname, target.port, target.normalizedPath)
  if (route === undefined && !target.absoluteForm) {
    throw new UnknownHostError(
      `no route matches Host ${target.authority}${target.normalizedPath}; send absolute-form requests through HTTP_PROXY or add a route for this host`,
    )
  }
  return { target, route }
}

/**
 * Returns the `Authorization` value to send upstream: the exchanged token on a routed request,
 * `undefined` (the client's own headers unchanged) on an unrouted one.
 */
async function upstreamAuthorization(req: IncomingMessage, route: RouteConfig | undefined, tokens: TokenProvider): Promise<string | undefined> {
  if (route === undefined) return undefined
  const subjectToken = extractBearerToken(req)
  const issued = await tokens.tokenFor(route, subjectToken)
  return `${issued.tokenType} ${issued.accessToken}`
}

export function createRequestHandler(options: ProxyHandlerOptions): (req: IncomingMessage, res: ServerResponse) => void {
  const { metrics, logger } = options

  return (req, res) => {
    const started = performance.now()
    let routeLabel = UNROUTED_LABEL
    let authority: string | undefined

    const handle = async (): Promise<number> => {
      const { target, route } = routeRequest(req, options.routes())
      authority = target.authority
      if (route !== undefined) routeLabel = route.name
      const authorization = await upstreamAuthorization(req, route, options.tokens)
      const headers = buildUpstreamRequestHeaders(req.rawHeaders, target.authority, authorization)
      const status = await options.forwarder.forward(req, res, target, headers)
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
      const { target, route } = routeRequest(req, options.routes())
      authority = target.authority
      if (route !== undefined) routeLabel = route.name
      const authorization = await upstreamAuthorization(req, route, options.tokens)
      if (authorization !== undefined) req.headers.authorization = authorization
      delete req.headers['proxy-authorization']
      delete req.headers['proxy-connection']
      req.headers.host = target.authority
      req.url = target.pathAndQuery
      const wsProtocol = target.protocol === 'https:' ? 'wss:' : 'ws:'
      options.webSocketProxy.ws(req, socket, head, { target: `${wsProtocol}//${target.authority}` }, (error) => {
        const oboError = toOboError(error, target.authority)
        const requestId = randomUUID()
        logRequestError(logger, req, oboError, { route: routeLabel, requestId, responseStarted: false })
        sendErrorOnSocket(socket, oboError, requestId)
      })
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

interface RequestErrorContext {
  route: string
  requestId: string
  /** True when the upstream response had begun, so the agent sees a cut connection, not JSON. */
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
  if (error.statusCode >= 500) logger.error(fields, 'proxy request failed')
  else logger.warn(fields, 'proxy request rejected')
}
