import type { IncomingMessage, ServerResponse } from 'node:http'
import { Agent, type Dispatcher } from 'undici'
import { buildClientResponseHeaders } from './headers.js'
import { trustedCertificates } from './trust.js'
import type { UpstreamTarget } from './upstream.js'

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
  readonly #options: ForwarderOptions
  readonly #defaultAgent: Agent
  /** One connection pool per extra CA file, since undici fixes the trusted roots per pool. */
  readonly #agentsByCaFile = new Map<string, Agent>()

  constructor(options: ForwarderOptions) {
    this.#options = options
    this.#defaultAgent = this.#createAgent(trustedCertificates(undefined))
  }

  #createAgent(ca: string[]): Agent {
    return new Agent({
      headersTimeout: this.#options.headersTimeoutMs,
      // No idle limit between body chunks: server-sent events and long tool calls can stay silent
      // for minutes. The agent's own timeout ends such a request by closing its connection.
      bodyTimeout: 0,
      keepAliveTimeout: this.#options.keepAliveTimeoutMs,
      connect: { ca, rejectUnauthorized: true },
    })
  }

  #agentFor(caFile: string | undefined): Agent {
    if (caFile === undefined) return this.#defaultAgent
    let agent = this.#agentsByCaFile.get(caFile)
    if (agent === undefined) {
      agent = this.#createAgent(trustedCertificates(caFile))
      this.#agentsByCaFile.set(caFile, agent)
    }
    return agent
  }

  /**
   * Sends the request to `upstream` with `headers` and streams the response into `res`.
   * Resolves with the upstream status code once the response body has been written.
   */
  async forward(req: IncomingMessage, res: ServerResponse, upstream: UpstreamTarget, path: string, headers: string[]): Promise<number> {
    const abort = new AbortController()
    const onClose = (): void => {
      if (!res.writableFinished) abort.abort()
    }
    res.once('close', onClose)
    let statusCode = 0
    try {
      await this.#agentFor(upstream.caFile).stream(
        {
          origin: upstream.origin,
          path,
          method: req.method as Dispatcher.HttpMethod,
          headers,
          body: hasRequestBody(req) ? req : null,
          signal: abort.signal,
        },
        (data) => {
          statusCode = data.statusCode
          res.writeHead(data.statusCode, buildClientResponseHeaders(data.headers))
          // A response without Content-Length streams (server-sent events, chunked tool output), and
          // its first chunk may come much later, so its headers go out now. Others go out with the
          // body in one write.
          if (data.headers['content-length'] === undefined) res.flushHeaders()
          return res
        },
      )
      return statusCode
    } finally {
      res.off('close', onClose)
    }
  }

  async close(): Promise<void> {
    await Promise.all([this.#defaultAgent.close(), ...[...this.#agentsByCaFile.values()].map((agent) => agent.close())])
  }
}

/** RFC 9112 section 6.3: a request has a body when it has Content-Length or Transfer-Encoding. */
function hasRequestBody(req: IncomingMessage): boolean {
  const contentLength = req.headers['content-length']
  return req.headers['transfer-encoding'] !== undefined || (contentLength !== undefined && contentLength !== '0')
}
