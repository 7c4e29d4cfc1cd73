import type { IncomingMessage } from 'node:http'
import { BadProxyRequestError, MisdirectedRequestError } from '../errors.js'

/** The destination of a request, resolved from its request line and `Host` header. */
export interface RequestTarget {
  /** `http:` or `https:`. */
  readonly protocol: string
  /** Lowercase; IPv6 literals keep their brackets, as in URLs and route patterns. */
  readonly hostname: string
  readonly port: number
  /** The authority sent upstream as `Host` (RFC 9112 section 3.2). */
  readonly authority: string
  /** Path and query, as sent upstream. */
  readonly pathAndQuery: string
  /** Path with dot segments resolved, for route matching only. */
  readonly normalizedPath: string
  /**
   * True for requests sent to the sidecar as a proxy: absolute-form, or inside a CONNECT tunnel.
   * False for origin-form requests that addressed the sidecar directly.
   */
  readonly proxied: boolean
}

/** The destination a CONNECT tunnel was opened to, which decides where requests inside it go. */
export interface TunnelTarget {
  /** `https:` when the sidecar terminated TLS inside the tunnel, `http:` for plain HTTP in it. */
  readonly protocol: 'http:' | 'https:'
  readonly hostname: string
  readonly port: number
}

// Requests arrive on the socket the HTTP server parses: the TLS socket of an intercepted tunnel,
// or the client socket of a plain-HTTP one. A WeakMap lets the entry go with the socket.
const tunnelTargets = new WeakMap<object, TunnelTarget>()

/** Marks `socket` as the inside of a CONNECT tunnel to `target`. */
export function registerTunnel(socket: object, target: TunnelTarget): void {
  tunnelTargets.set(socket, target)
}

const DEFAULT_PORTS: Record<string, number> = { 'http:': 80, 'https:': 443 }

/**
 * Resolves the target of a request received by the proxy listener.
 *
 * Clients of a forward proxy send absolute-form (`GET http://host/path`, RFC 9112 section 3.2.2).
 * An agent pointed straight at the sidecar sends origin-form (`GET /path` with `Host`). Both
 * resolve to the same shape, and only absolute-form may name `https:`.
 */
export function resolveRequestTarget(req: IncomingMessage): RequestTarget {
  const tunnel = tunnelTargets.get(req.socket)
  if (tunnel !== undefined) return resolveTunneled(req, tunnel)
  const requestTarget = req.url ?? ''
  if (requestTarget.startsWith('/')) return resolveOriginForm(requestTarget, req.headers.host)
  if (/^https?:\/\//i.test(requestTarget)) return resolveAbsoluteForm(requestTarget)
  throw new BadProxyRequestError(
    `request target ${JSON.stringify(truncate(requestTarget))} is neither absolute-form (http://host/path) nor origin-form (/path)`,
  )
}

/**
 * Matches the common absolute-form target that URL parsing would return unchanged: `http://`, a
 * lowercase host name or IPv4 address, an optional port, and a path and query of characters that
 * need no percent-encoding, without dot segments. Everything else goes through the URL parser.
 */
const PLAIN_ABSOLUTE_FORM = /^http:\/\/([a-z0-9-]+(?:\.[a-z0-9-]+)*)(?::(\d{1,5}))?(\/[A-Za-z0-9\-._~!$&()*+,;=:@/%]*)(\?[A-Za-z0-9\-._~!$&()*+,;=:@/%?]*)?$/

const IPV4_OCTET = '(?:25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)'
const CANONICAL_IPV4 = new RegExp(`^${IPV4_OCTET}(?:\\.${IPV4_OCTET}){3}$`)

function resolvePlainAbsoluteForm(requestTarget: string): RequestTarget | undefined {
  const match = PLAIN_ABSOLUTE_FORM.exec(requestTarget)
  if (match === null) return undefined
  const [, hostname, portText, path, query = ''] = match as unknown as [string, string, string | undefined, string, string | undefined]
  // Dot segments (also percent-encoded ones) and a port of 80, which URL would drop, take the slow path.
  if (path.includes('/.') || /%2e/i.test(path) || portText === '80' || (portText !== undefined && portText.startsWith('0'))) return undefined
  // URL reads a host whose last label starts with a digit as IPv4 and normalizes shorthand such as
  // 127.1 to 127.0.0.1. Only an address already in canonical form may skip it. Otherwise a route
  // for 127.0.0.1 could be bypassed by writing the address differently.
  const lastLabel = hostname.slice(hostname.lastIndexOf('.') + 1)
  if (/^\d/.test(lastLabel) && !CANONICAL_IPV4.test(hostname)) return undefined
  const port = portText === undefined ? 80 : Number(portText)
  if (port < 1 || port > 65535) return undefined
  return {
    protocol: 'http:',
    hostname,
    port,
    authority: portText === undefined ? hostname : `${hostname}:${portText}`,
    pathAndQuery: `${path}${query}`,
    normalizedPath: path,
    proxied: true,
  }
}

function resolveAbsoluteForm(requestTarget: string): RequestTarget {
  const plain = resolvePlainAbsoluteForm(requestTarget)
  if (plain !== undefined) return plain
  const url = parseUrl(requestTarget)
  if (url.hostname === '') throw new BadProxyRequestError('absolute-form request target has no host')
  if (url.username !== '' || url.password !== '') {
    throw new BadProxyRequestError('request target must not contain user information (user:password@)')
  }
  return fromUrl(url, true)
}

function resolveOriginForm(requestTarget: string, host: string | undefined): RequestTarget {
  if (host === undefined || host === '') {
    throw new BadProxyRequestError('origin-form request has no Host header; send absolute-form or set Host')
  }
  if (/[/?#@\\\s]/.test(host)) {
    throw new BadProxyRequestError(`Host header ${JSON.stringify(truncate(host))} is not a valid authority`)
  }
  return fromUrl(parseUrl(`http://${host}${requestTarget}`), false)
}

/**
 * Resolves a request inside a CONNECT tunnel. The tunnel's target decides where it goes, and a
 * `Host` naming another authority is rejected rather than followed: the agent's TLS session and
 * the route were chosen for the CONNECT target.
 */
function resolveTunneled(req: IncomingMessage, tunnel: TunnelTarget): RequestTarget {
  const requestTarget = req.url ?? ''
  const host = req.headers.host
  if (host === undefined || host === '') {
    throw new BadProxyRequestError('request inside the CONNECT tunnel has no Host header')
  }
  const url = requestTarget.startsWith('/')
    ? parseUrl(`${tunnel.protocol}//${host}${requestTarget}`)
    : parseUrl(requestTarget)
  const resolved = fromUrl(url, true)
  if (resolved.hostname !== tunnel.hostname || resolved.port !== tunnel.port) {
    throw new MisdirectedRequestError(
      `request for ${resolved.authority} inside a CONNECT tunnel to ${tunnel.hostname}:${tunnel.port}; open a tunnel to ${resolved.authority} for it`,
    )
  }
  return { ...resolved, protocol: tunnel.protocol }
}

function parseUrl(text: string): URL {
  try {
    return new URL(text)
  } catch {
    throw new BadProxyRequestError(`request target ${JSON.stringify(truncate(text))} is not a valid URL`)
  }
}

function fromUrl(url: URL, proxied: boolean): RequestTarget {
  const protocol = url.protocol
  const port = url.port === '' ? (DEFAULT_PORTS[protocol] ?? 80) : Number(url.port)
  return {
    protocol,
    hostname: url.hostname.replace(/\.$/, ''),
    port,
    authority: url.host,
    pathAndQuery: `${url.pathname}${url.search}`,
    normalizedPath: url.pathname,
    proxied,
  }
}

/** Keeps a client-supplied value short enough to quote in an error message. */
function truncate(value: string): string {
  return value.length > 200 ? `${value.slice(0, 200)}...` : value
}
