import type { HostPattern, RouteConfig } from '../config/types.js'

/**
 * Returns the first route, in file order, whose host pattern and path prefix match, or undefined.
 *
 * `hostname` must be lowercase without a trailing dot; `path` must have its dot segments resolved
 * so that `/v1/../admin` cannot pass as `/v1/`.
 */
export function matchRoute(
  routes: readonly RouteConfig[],
  hostname: string,
  port: number,
  path: string,
): RouteConfig | undefined {
  for (const route of routes) {
    if (!matchesHost(route.host, hostname, port)) continue
    if (route.pathPrefix !== undefined && !path.startsWith(route.pathPrefix)) continue
    return route
  }
  return undefined
}

/** True when any route names this host, whatever its path prefix. */
export function hasRouteForHost(routes: readonly RouteConfig[], hostname: string, port: number): boolean {
  return routes.some((route) => matchesHost(route.host, hostname, port))
}

export function matchesHost(pattern: HostPattern, hostname: string, port: number): boolean {
  if (pattern.port !== undefined && pattern.port !== port) return false
  // A wildcard's hostname is the suffix including its leading dot, so `*.example.com` matches
  // `a.example.com` and `a.b.example.com` but never `example.com` itself.
  return pattern.wildcard ? hostname.endsWith(pattern.hostname) : hostname === pattern.hostname
}
