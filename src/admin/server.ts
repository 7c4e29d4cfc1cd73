import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { Registry } from 'prom-client'
import type { Logger } from '../observability/logger.js'

export interface AdminServerOptions {
  registry: Registry
  /** True while the proxy accepts traffic: listening, configured, and not shutting down. */
  isReady: () => boolean
  logger: Logger
}

/**
 * Creates the admin listener: `/metrics` in the Prometheus text format, `/healthz` (the process is
 * alive) and `/readyz` (the proxy accepts traffic). It is separate from the proxy listener so that
 * metrics never share a port with agent traffic.
 */
export function createAdminServer(options: AdminServerOptions): Server {
  return createServer((req, res) => {
    routeAdminRequest(req, res, options).catch((error: unknown) => {
      options.logger.error({ event: 'admin_error', err: error instanceof Error ? error.message : String(error) }, 'admin request failed')
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' })
      res.end('internal error\n')
    })
  })
}

async function routeAdminRequest(req: IncomingMessage, res: ServerResponse, options: AdminServerOptions): Promise<void> {
  const path = (req.url ?? '/').split('?', 1)[0]
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' })
    res.end('method not allowed\n')
    return
  }
  switch (path) {
    case '/metrics': {
      const body = await options.registry.metrics()
      res.writeHead(200, { 'content-type': options.registry.contentType })
      res.end(body)
      return
    }
    case '/healthz':
      res.writeHead(200, { 'content-type': 'text/plain' })
      res.end('ok\n')
      return
    case '/readyz': {
      const ready = options.isReady()
      res.writeHead(ready ? 200 : 503, { 'content-type': 'text/plain' })
      res.end(ready ? 'ready\n' : 'not ready\n')
      return
    }
    default:
      res.writeHead(404, { 'content-type': 'text/plain' })
      res.end('not found: the admin listener serves /metrics, /healthz and /readyz\n')
  }
}
