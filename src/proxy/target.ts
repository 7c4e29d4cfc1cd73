import type { IncomingMessage } from 'node:http'
import { BadProxyRequestError } from '../errors.js'

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
  /** True when the request named the target itself (absolute-form), as clients of a proxy do. */
  readonly absoluteForm: boolean
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
  const requestTarget = req.url ?? ''
  if (requestTarget.startsWith('/')) return resolveOriginForm(requestTarget, req.headers.host)
  if (/^https?:\/\//i.test(requestTarget)) return resolveAbsoluteForm(requestTarget)
  throw new BadProxyRequestError(
    `request target ${JSON.stringify(truncate(requestTarget))} is neither absolute-form (http://host/path) nor origin-form (/path)`,
  )
}

function resolveAbsoluteForm(requestTarget: string): RequestTarget {
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

function parseUrl(text: string): URL {
  try {
    return new URL(text)
  } catch {
    throw new BadProxyRequestError(`request target ${JSON.stringify(truncate(text))} is not a valid URL`)
  }
}

function fromUrl(url: URL, absoluteForm: boolean): RequestTarget {
  const protocol = url.protocol
  const port = url.port === '' ? (DEFAULT_PORTS[protocol] ?? 80) : Number(url.port)
  return {
    protocol,
    hostname: url.hostname.replace(/\.$/, ''),
    port,
    authority: url.host,
    pathAndQuery: `${url.pathname}${url.search}`,
    normalizedPath: url.pathname,
    absoluteForm,
  }
}

/** Keeps a client-supplied value short enough to quote in an error message. */
function truncate(value: string): string {
  return value.length > 200 ? `${value.slice(0, 200)}...` : value
}
