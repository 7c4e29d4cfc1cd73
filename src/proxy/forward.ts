import type { IncomingMessage, ServerResponse } from 'node:http'
import { Agent, type Dispatcher } from 'undici'
import { buildClientResponseHeaders } from './headers.js'
import type { RequestTarget } from './target.js'

export interface ForwarderOptions {
  /** Time to wait for the upstream's response headers. */
  headersTimeoutMs: number
  /** How long an idle upstream connection is kept for reuse. */
  keepAliveTimeoutMs: number
}

/**
 * Forwards plain HTTP requests upstream over pooled keep-alive connections with undici, streaming
 * both bodies without buffering. Redirects are passed to the agent, never followed here: a
 * followed redirect could carry the exchanged token to another host.
 */
export class Forwarder {
  readonly #agent: Agent

  constructor(options: ForwarderOptions) {
    this.#agent = new Agent({
      headersTimeout: options.headersTimeoutMs,
      // No idle limit between body chunks: server-sent events and long tool calls can stay silent
      // for minutes. The agent's own timeout ends such a request by closing its connection.
      bodyTimeout: 0,
      keepAliveTimeout: options.keepAliveTimeoutMs,
    })
  }

  /**
   * Sends the request to `target` with `headers` and streams the response into `res`.
   * Resolves with the upstream status code once the response body has been written.
   */
  async forward(req: IncomingMessage, res: ServerResponse, target: RequestTarget, headers: string[]): Promise<number> {
    const abort = new AbortController()
    const onClose = (): void => {
      if (!res.writableFinished) abort.abort()
    }
    res.once('close', onClose)
    let statusCode = 0
    try {
      await this.#agent.stream(
        {
          origin: `${target.protocol}//${target.authority}`,
          path: target.pathAndQuery,
          method: req.method as Dispatcher.HttpMethod,
          headers,
          body: hasRequestBody(req) ? req : null,
          signal: abort.signal,
        },
        (data) => {
          statusCode = data.statusCode
          res.writeHead(data.statusCode, buildClientResponseHeaders(data.headers))
          // Sends the headers now: an event stream's first event may come much later.
          res.flushHeaders()
          return res
        },
      )
      return statusCode
    } finally {
      res.off('close', onClose)
    }
  }

  async close(): Promise<void> {
    await this.#agent.close()
  }
}

/** RFC 9112 section 6.3: a request has a body when it has Content-Length or Transfer-Encoding. */
function hasRequestBody(req: IncomingMessage): boolean {
  const contentLength = req.headers['content-length']
  return req.headers['transfer-encoding'] !== undefined || (contentLength !== undefined && contentLength !== '0')
}
