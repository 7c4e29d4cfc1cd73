import { createServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'

export interface TokenRequest {
  headers: IncomingHttpHeaders
  form: URLSearchParams
}

/** Writes the token endpoint's response to one request. */
export type TokenResponder = (request: TokenRequest, res: ServerResponse) => void

export interface ScriptedIdp {
  readonly tokenEndpoint: string
  readonly requests: TokenRequest[]
  /** Replaces the responder for the following requests. */
  respondWith(responder: TokenResponder): void
  close(): Promise<void>
}

/**
 * A token endpoint on loopback whose responses each test scripts. It stands in for identity
 * provider failures that the real authorization server in these tests cannot be made to produce:
 * 5xx, HTML error pages, throttling, silence, `token_type: N_A`.
 */
export async function startScriptedIdp(): Promise<ScriptedIdp> {
  const requests: TokenRequest[] = []
  let responder: TokenResponder = (_request, res) => json(res, 500, { error: 'server_error' })

  const server = createServer((req, res) => {
    let body = ''
    req.setEncoding('utf8')
    req.on('data', (chunk: string) => (body += chunk))
    req.on('end', () => {
      const request = { headers: req.headers, form: new URLSearchParams(body) }
      requests.push(request)
      responder(request, res)
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const port = (server.address() as AddressInfo).port

  return {
    tokenEndpoint: `http://127.0.0.1:${port}/token`,
    requests,
    respondWith(next) {
      responder = next
    },
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}

export function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', ...headers })
  res.end(JSON.stringify(body))
}
