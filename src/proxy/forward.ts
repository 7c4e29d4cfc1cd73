import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http'
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
  forward(req: IncomingMessage, res: ServerResponse, upstream: UpstreamTarget, path: string, headers: string[]): Promise<number> {
    return new Promise((resolve, reject) => {
      const relay = new ResponseRelay(res, resolve, reject)
      this.#agentFor(upstream.caFile).dispatch(
        {
          origin: upstream.origin,
          path,
          method: req.method as Dispatcher.HttpMethod,
          headers,
          body: hasRequestBody(req) ? req : null,
        },
        relay,
      )
    })
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

/**
 * Relays one upstream response into the agent's response: an undici dispatch handler, which costs
 * less per request than `stream()` with an AbortSignal. Backpressure from the agent pauses the
 * upstream, and an agent that goes away aborts it.
 */
class ResponseRelay implements Dispatcher.DispatchHandler {
  readonly #res: ServerResponse
  readonly #resolve: (statusCode: number) => void
  readonly #reject: (error: Error) => void
  #statusCode = 0

  constructor(res: ServerResponse, resolve: (statusCode: number) => void, reject: (error: Error) => void) {
    this.#res = res
    this.#resolve = resolve
    this.#reject = reject
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    const abortIfUnfinished = (): void => {
      if (!this.#res.writableFinished && !controller.aborted) controller.abort(clientClosed())
    }
    if (this.#res.destroyed) abortIfUnfinished()
    else this.#res.once('close', abortIfUnfinished)
  }

  onResponseStart(_controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders): void {
    this.#statusCode = statusCode
    this.#res.writeHead(statusCode, buildClientResponseHeaders(headers))
    // A response without Content-Length streams (server-sent events, chunked tool output), and
    // its first chunk may come much later, so its headers go out now. Others go out with the
    // body in one write.
    if (headers['content-length'] === undefined) this.#res.flushHeaders()
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.#res.write(chunk)) return
    controller.pause()
    this.#res.once('drain', () => controller.resume())
  }

  onResponseEnd(): void {
    this.#res.end()
    this.#resolve(this.#statusCode)
  }

  onResponseError(_controller: Dispatcher.DispatchController, error: Error): void {
    this.#reject(error)
  }
}

function clientClosed(): Error {
  const error = new Error('the agent closed the connection')
  error.name = 'AbortError'
  return error
}
