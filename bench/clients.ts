/**
 * Request helpers that run inside the harness: sequential latency probes, the token endpoint timed
 * on its own, server-sent events, a large upload, and filling the sidecar's cache. Each works
 * against any target (the upstream directly, squid or the sidecar) over keep-alive connections.
 */
import { Buffer } from 'node:buffer'
import { performance } from 'node:perf_hooks'
import { Readable } from 'node:stream'
import { Pool } from 'undici'
import { ACCESS_TOKEN_TYPE, AUDIENCE, CLIENT_ID, SCOPE, TOKEN_EXCHANGE_GRANT } from './shared.js'

export type TargetName = 'direct' | 'squid' | 'sidecar'

/** One system under test: the address to connect to and the form of request target it takes. */
export interface Target {
  readonly name: TargetName
  /** host:port the connections go to. */
  readonly connectTo: string
  /** The upstream's host:port, sent as Host. */
  readonly upstreamHost: string
  /** True for a proxy: the request line carries the absolute-form target. */
  readonly viaProxy: boolean
}

export function requestTargetFor(target: Target, path: string): string {
  return target.viaProxy ? `http://${target.upstreamHost}${path}` : path
}

const REQUEST_TIMEOUT_MS = 30_000

/** A keep-alive connection pool to one target, with the request shapes the scenarios need. */
export class TargetClient {
  readonly target: Target
  readonly #pool: Pool

  constructor(target: Target, connections: number) {
    this.target = target
    this.#pool = new Pool(`http://${target.connectTo}`, {
      connections,
      pipelining: 1,
      keepAliveTimeout: 60_000,
      headersTimeout: REQUEST_TIMEOUT_MS,
      bodyTimeout: REQUEST_TIMEOUT_MS,
    })
  }

  /** Sends one GET with the user's token and returns its latency in milliseconds to the end of the body. */
  get(path: string, token: string): Promise<number> {
    return this.#described(`GET ${path}`, () => this.#get(path, token))
  }

  async #get(path: string, token: string): Promise<number> {
    const started = performance.now()
    const response = await this.#pool.request({
      path: requestTargetFor(this.target, path),
      method: 'GET',
      headers: { host: this.target.upstreamHost, authorization: `Bearer ${token}` },
    })
    const body = await response.body.text()
    const elapsed = performance.now() - started
    if (response.statusCode !== 200) {
      throw new Error(`${this.target.name}: GET ${path} returned ${response.statusCode}: ${body.slice(0, 300)}`)
    }
    return elapsed
  }

  /**
   * Requests the upstream's event stream and returns the time in milliseconds from sending the
   * request to receiving the whole first event. Reads the rest of the stream before returning,
   * so the connection is reused.
   */
  firstEventMs(path: string, token: string): Promise<number> {
    return this.#described(`GET ${path} (event stream)`, () => this.#firstEventMs(path, token))
  }

  async #firstEventMs(path: string, token: string): Promise<number> {
    const started = performance.now()
    const response = await this.#pool.request({
      path: requestTargetFor(this.target, path),
      method: 'GET',
      headers: { host: this.target.upstreamHost, authorization: `Bearer ${token}`, accept: 'text/event-stream' },
    })
    if (response.statusCode !== 200) {
      await response.body.dump()
      throw new Error(`${this.target.name}: GET ${path} returned ${response.statusCode}`)
    }
    let text = ''
    let firstEventAt: number | undefined
    for await (const chunk of response.body as AsyncIterable<Buffer>) {
      if (firstEventAt === undefined) {
        text += chunk.toString('utf8')
        // An event ends with a blank line (the WHATWG server-sent events format).
        if (text.includes('data:') && text.includes('\n\n')) firstEventAt = performance.now()
      }
    }
    if (firstEventAt === undefined) throw new Error(`${this.target.name}: the event stream ended without an event`)
    return firstEventAt - started
  }

  /**
   * POSTs `totalBytes` (sent in 1 MiB chunks of one reused buffer) and returns the seconds from the
   * start to the end of the upstream's reply, which states how many bytes arrived.
   */
  upload(path: string, token: string, totalBytes: number): Promise<number> {
    return this.#described(`POST ${path} (${totalBytes} bytes)`, () => this.#upload(path, token, totalBytes))
  }

  async #upload(path: string, token: string, totalBytes: number): Promise<number> {
    const chunk = Buffer.alloc(1024 * 1024, 0x61)
    function* body(): Generator<Buffer> {
      for (let sent = 0; sent < totalBytes; sent += chunk.length) {
        yield sent + chunk.length <= totalBytes ? chunk : chunk.subarray(0, totalBytes - sent)
      }
    }
    const started = performance.now()
    const response = await this.#pool.request({
      path: requestTargetFor(this.target, path),
      method: 'POST',
      headers: {
        host: this.target.upstreamHost,
        authorization: `Bearer ${token}`,
        'content-type': 'application/octet-stream',
        'content-length': String(totalBytes),
      },
      body: Readable.from(body(), { objectMode: false }),
    })
    const reply = await response.body.text()
    const seconds = (performance.now() - started) / 1000
    if (response.statusCode !== 200) throw new Error(`${this.target.name}: upload returned ${response.statusCode}: ${reply.slice(0, 300)}`)
    const received = (JSON.parse(reply) as { bytes: number }).bytes
    if (received !== totalBytes) throw new Error(`${this.target.name}: upstream received ${received} of ${totalBytes} bytes`)
    return seconds
  }

  /**
   * Sends one GET per token with `concurrency` requests in flight, each token once, and stops at
   * `timeLimitMs`. Returns how many succeeded and failed, and the seconds taken.
   */
  async sendEachToken(path: string, tokens: readonly string[], concurrency: number, timeLimitMs: number): Promise<{ ok: number; failed: number; seconds: number; firstError?: string }> {
    const started = performance.now()
    const deadline = started + timeLimitMs
    let next = 0
    let ok = 0
    let failed = 0
    let firstError: string | undefined
    const worker = async (): Promise<void> => {
      while (next < tokens.length && performance.now() < deadline) {
        const token = tokens[next++]
        try {
          await this.get(path, token)
          ok += 1
        } catch (error) {
          failed += 1
          firstError ??= error instanceof Error ? error.message : String(error)
        }
      }
    }
    await Promise.all(Array.from({ length: concurrency }, worker))
    if (next < tokens.length) throw new Error(`${this.target.name}: sent ${next} of ${tokens.length} tokens before the ${timeLimitMs} ms limit`)
    return { ok, failed, seconds: (performance.now() - started) / 1000, firstError }
  }

  async close(): Promise<void> {
    await this.#pool.destroy()
  }

  /** Runs `operation`, naming the target and the request in any error it throws. */
  async #described<T>(request: string, operation: () => Promise<T>): Promise<T> {
    try {
      return await operation()
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error)
      if (message.startsWith(`${this.target.name}:`)) throw error
      const code = (error as { code?: unknown }).code
      throw new Error(`${this.target.name}: ${request} failed: ${message}${typeof code === 'string' ? ` (${code})` : ''}`, { cause: error })
    }
  }
}

/**
 * Calls the token endpoint directly with the request the sidecar sends for the benchmark route
 * (RFC 8693 form, client_secret_basic), to time the endpoint on its own.
 */
export class TokenEndpointClient {
  readonly #pool: Pool
  readonly #path: string
  readonly #authorization: string

  constructor(tokenEndpoint: string, clientSecret: string) {
    const url = new URL(tokenEndpoint)
    this.#pool = new Pool(url.origin, { connections: 4, pipelining: 1, keepAliveTimeout: 60_000, headersTimeout: REQUEST_TIMEOUT_MS, bodyTimeout: REQUEST_TIMEOUT_MS })
    this.#path = url.pathname
    this.#authorization = `Basic ${Buffer.from(`${encodeURIComponent(CLIENT_ID)}:${encodeURIComponent(clientSecret)}`).toString('base64')}`
  }

  /** Exchanges `subjectToken` and returns the latency in milliseconds and the issued token's length. */
  async exchange(subjectToken: string): Promise<{ ms: number; issuedLength: number }> {
    const form = new URLSearchParams()
    form.append('grant_type', TOKEN_EXCHANGE_GRANT)
    form.append('subject_token', subjectToken)
    form.append('subject_token_type', ACCESS_TOKEN_TYPE)
    form.append('audience', AUDIENCE)
    form.append('scope', SCOPE)
    const started = performance.now()
    const response = await this.#pool.request({
      path: this.#path,
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json', authorization: this.#authorization },
      body: form.toString(),
    })
    const text = await response.body.text()
    const ms = performance.now() - started
    if (response.statusCode !== 200) throw new Error(`token endpoint returned ${response.statusCode}: ${text.slice(0, 300)}`)
    const accessToken = (JSON.parse(text) as { access_token?: unknown }).access_token
    return { ms, issuedLength: typeof accessToken === 'string' ? accessToken.length : Number.NaN }
  }

  async close(): Promise<void> {
    await this.#pool.destroy()
  }
}
