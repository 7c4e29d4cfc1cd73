import type { RouteConfig } from '../config/types.js'
import type { RequestTarget } from './target.js'

/** The destination of a forwarded request: the origin to connect to, and the `Host` it carries. */
export interface UpstreamTarget {
  /** `scheme://host[:port]`, as undici takes it. */
  readonly origin: string
  /** The authority of `origin`, sent as `Host` (RFC 9112 section 3.2). */
  readonly authority: string
  /** Extra CA certificates for a TLS upstream, from the route's `upstreamCaFile`. */
  readonly caFile: string | undefined
}

const DEFAULT_PORTS: Record<string, number> = { 'http:': 80, 'https:': 443 }

/**
 * Resolves where a request goes. Without an `upstream` override it is the requested authority
 * over the requested scheme. `upstream: https` originates TLS to the requested host, so the
 * default port 80 becomes 443 and an explicit port is kept. An `upstream` URL replaces scheme and
 * authority, and its host is the name the upstream's certificate is verified against.
 */
export function resolveUpstream(target: RequestTarget, route: RouteConfig | undefined): UpstreamTarget {
  const override = route?.upstream
  const caFile = route?.upstreamCaFile
  if (override === undefined) {
    return { origin: `${target.protocol}//${target.authority}`, authority: target.authority, caFile }
  }
  if (override.authority !== undefined) {
    return { origin: `${override.protocol}//${override.authority}`, authority: override.authority, caFile }
  }
  const explicitPort = target.port !== DEFAULT_PORTS[target.protocol]
  const authority = explicitPort ? `${target.hostname}:${target.port}` : target.hostname
  return { origin: `${override.protocol}//${authority}`, authority, caFile }
}
