import type { IncomingMessage, Server } from 'node:http'
import { connect as connectTcp, type Socket } from 'node:net'
import { duplexPair, type Duplex } from 'node:stream'
import { randomUUID } from 'node:crypto'
import { TLSSocket, type SecureContext } from 'node:tls'
import type { RoutesConfig } from '../config/types.js'
import { BadProxyRequestError, type OboError } from '../errors.js'
import type { Logger } from '../observability/logger.js'
import type { Metrics } from '../observability/metrics.js'
import type { EgressPolicy } from './egress-policy.js'
import { sendErrorOnSocket, toOboError } from './respond.js'
import { hasRouteForHost } from './route-match.js'
import { registerTunnel, type TunnelTarget } from './target.js'

/** `routed`: intercept CONNECT tunnels to hosts with a route. `all`: intercept every tunnel. */
export const INTERCEPT_MODES = ['routed', 'all'] as const
export type InterceptMode = (typeof INTERCEPT_MODES)[number]

/** Supplies the TLS server context, with a leaf certificate, for a host name or IP address. */
export interface ServerContextSource {
  secureContextFor(name: string): Promise<SecureContext>
}

export interface ConnectHandlerOptions {
  routes: () => RoutesConfig
  intercept: InterceptMode
  egressPolicy: EgressPolicy
  certificates: ServerContextSource
  /** The proxy's own HTTP server: intercepted tunnels are handed to it as new connections. */
  server: Server
  connectTimeoutMs: number
  metrics: Metrics
  logger: Logger
}

// The first byte of a TLS record carrying a handshake message (RFC 8446 section 5.1).
const TLS_HANDSHAKE_RECORD = 0x16
const CONNECTION_ESTABLISHED = 'HTTP/1.1 200 Connection Established\r\n\r\n'
/** How long an intercepted tunnel may stay silent, or take to finish its TLS handshake, before it is closed. */
const TUNNEL_SETUP_TIMEOUT_MS = 30_000

/**
 * Parses a CONNECT request target, which must be authority-form `host:port` (RFC 9112
 * section 3.2.3), into the normalized form routes use.
 */
export function parseConnectTarget(requestTarget: string): TunnelTarget {
  const match = /^(\[[0-9A-Fa-f:.]+\]|[^\s/?#@[\]:]+):(\d{1,5})$/.exec(requestTarget)
  const port = match === null ? NaN : Number(match[2])
  if (match === null || port < 1 || port > 65535) {
    throw new BadProxyRequestError(
      `CONNECT target ${JSON.stringify(requestTarget.slice(0, 200))} is not host:port; expected e.g. CONNECT orders.example.com:443`,
    )
  }
  let hostname: string
  try {
    hostname = new URL(`http://${match[1]}`).hostname.replace(/\.$/, '')
  } catch {
    throw new BadProxyRequestError(`CONNECT target host ${JSON.stringify(match[1])} is not a valid host name or address`)
  }
  return { protocol: 'https:', hostname, port }
}

/**
 * Handles CONNECT. A tunnel to a host with a route (or to any host with `--intercept all`) is
 * intercepted: the sidecar responds 200, then terminates TLS with a leaf certificate for the
 * requested name, or reads plain HTTP when the agent sends no TLS ClientHello, and hands the
 * connection to its own HTTP server, which swaps tokens as for plain proxy requests. Any other
 * tunnel is relayed blind, unless the unrouted policy is `deny`.
 */
export function createConnectHandler(options: ConnectHandlerOptions): (req: IncomingMessage, socket: Duplex, head: Buffer) => void {
  return (req, socket, head) => {
    socket.on('error', () => socket.destroy())
    let target: TunnelTarget
    try {
      target = parseConnectTarget(req.url ?? '')
    } catch (error) {
      rejectTunnel(options, socket, toOboError(error))
      return
    }
    const intercept = options.intercept === 'all' || hasRouteForHost(options.routes().routes, target.hostname, target.port)
    if (intercept) {
      interceptTunnel(options, socket, head, target)
      return
    }
    try {
      options.egressPolicy.checkBlindTunnel(`${target.hostname}:${target.port}`)
    } catch (error) {
      rejectTunnel(options, socket, toOboError(error))
      return
    }
    openBlindTunnel(options, socket, head, target)
  }
}

function rejectTunnel(options: ConnectHandlerOptions, socket: Duplex, error: OboError): void {
  const requestId = randomUUID()
  const fields = { event: 'connect_error', request_id: requestId, code: error.code, status: error.statusCode, error: error.message }
  if (error.statusCode >= 500) options.logger.error(fields, 'CONNECT failed')
  else options.logger.warn(fields, 'CONNECT rejected')
  sendErrorOnSocket(socket, error, requestId)
}

/**
 * Relays bytes between the agent and the target. The upstream connection is made before the 200,
 * so an unreachable target gets 502 as the response to the CONNECT itself.
 */
function openBlindTunnel(options: ConnectHandlerOptions, socket: Duplex, head: Buffer, target: TunnelTarget): void {
  const host = target.hostname.replace(/^\[(.*)\]$/, '$1')
  const upstream = connectTcp({ host, port: target.port, timeout: options.connectTimeoutMs })
  const authority = `${target.hostname}:${target.port}`
  const fail = (error: Error): void => {
    upstream.destroy()
    rejectTunnel(options, socket, toOboError(error, authority))
  }
  upstream.once('timeout', () => fail(Object.assign(new Error('connect timed out'), { code: 'ETIMEDOUT' })))
  upstream.once('error', fail)
  upstream.once('connect', () => {
    upstream.off('error', fail)
    upstream.setTimeout(0)
    upstream.on('error', () => socket.destroy())
    socket.on('close', () => upstream.destroy())
    upstream.on('close', () => socket.destroy())
    options.metrics.tunnelsOpen.inc({ kind: 'blind' })
    upstream.once('close', () => options.metrics.tunnelsOpen.dec({ kind: 'blind' }))
    socket.write(CONNECTION_ESTABLISHED)
    if (head.length > 0) upstream.write(head)
    socket.pipe(upstream)
    upstream.pipe(socket)
  })
}

/**
 * Responds 200, then reads the agent's first bytes: a TLS handshake record is terminated with a
 * leaf certificate; anything else is plain HTTP inside the tunnel, which Node's fetch sends for
 * `http://` URLs through HTTPS_PROXY-style tunnelling.
 */
function interceptTunnel(options: ConnectHandlerOptions, socket: Duplex, head: Buffer, target: TunnelTarget): void {
  options.metrics.tunnelsOpen.inc({ kind: 'intercepted' })
  socket.once('close', () => options.metrics.tunnelsOpen.dec({ kind: 'intercepted' }))
  socket.write(CONNECTION_ESTABLISHED)

  const dispatch = (firstBytes: Buffer): void => {
    if (firstBytes[0] === TLS_HANDSHAKE_RECORD) {
      socket.unshift(firstBytes)
      terminateTls(options, socket as Socket, target)
    } else {
      servePlainHttp(options, socket, firstBytes, target)
    }
  }
  if (head.length > 0) {
    dispatch(head)
    return
  }
  const silent = setTimeout(() => socket.destroy(), TUNNEL_SETUP_TIMEOUT_MS)
  socket.once('close', () => clearTimeout(silent))
  socket.once('data', (chunk: Buffer) => {
    clearTimeout(silent)
    socket.pause()
    dispatch(chunk)
  })
}

/**
 * Serves plain HTTP inside the tunnel. The HTTP server reads a net.Socket's native handle
 * directly, which would skip the bytes already read to tell HTTP from TLS, so it gets one end of an
 * in-memory duplex pair instead, fed from the socket starting with those bytes.
 */
function servePlainHttp(options: ConnectHandlerOptions, socket: Duplex, firstBytes: Buffer, target: TunnelTarget): void {
  const [inner, outer] = duplexPair()
  outer.write(firstBytes)
  socket.pipe(outer).pipe(socket)
  socket.resume()
  const destroyBoth = (): void => {
    socket.destroy()
    inner.destroy()
  }
  socket.once('close', destroyBoth)
  inner.once('close', destroyBoth)
  outer.on('error', destroyBoth)
  registerTunnel(inner, { ...target, protocol: 'http:' })
  options.server.emit('connection', inner)
}

/**
 * Terminates the agent's TLS. The certificate is for the SNI name the agent sends, or for the
 * CONNECT host when it sends none (clients send no SNI for IP addresses). Only HTTP/1.1 is offered
 * in ALPN because the intercepted connection is served by an HTTP/1.1 server.
 */
function terminateTls(options: ConnectHandlerOptions, socket: Socket, target: TunnelTarget): void {
  const { certificates, metrics, logger } = options
  certificates.secureContextFor(target.hostname).then(
    (secureContext) => {
      const tlsSocket = new TLSSocket(socket, {
        isServer: true,
        secureContext,
        ALPNProtocols: ['http/1.1'],
        SNICallback: (servername, callback) => {
          certificates.secureContextFor(servername).then(
            (context) => callback(null, context),
            (error: Error) => callback(error),
          )
        },
      })
      let established = false
      const handshakeTimer = setTimeout(() => tlsSocket.destroy(), TUNNEL_SETUP_TIMEOUT_MS)
      tlsSocket.once('close', () => clearTimeout(handshakeTimer))
      tlsSocket.once('secure', () => {
        clearTimeout(handshakeTimer)
        established = true
        metrics.tlsHandshakes.inc({ result: 'success' })
        registerTunnel(tlsSocket, target)
        options.server.emit('connection', tlsSocket)
      })
      tlsSocket.on('error', (error: NodeJS.ErrnoException) => {
        if (!established) {
          // Typically an agent that does not trust the sidecar's CA, or one that went away.
          metrics.tlsHandshakes.inc({ result: 'failure' })
          logger.info({ event: 'tls_handshake_failed', code: error.code, host: target.hostname }, 'TLS handshake with agent failed')
        }
        tlsSocket.destroy()
      })
    },
    (error: unknown) => {
      logger.error({ event: 'certificate_failed', host: target.hostname, err: error instanceof Error ? error.message : String(error) }, 'cannot mint a certificate')
      socket.destroy()
    },
  )
}
