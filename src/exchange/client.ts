import { Buffer } from 'node:buffer'
import { Agent, request, type Dispatcher } from 'undici'
import type { SecretReader } from '../config/secrets.js'
import { ExchangeTimeoutError, IdpBadResponseError, IdpUnavailableError } from '../errors.js'
import { buildExchangeRequest, type ExchangeInput } from './request.js'
import { DEFAULT_MAX_LIFETIME_SECONDS, processExchangeResponse, type IssuedToken } from './response.js'

export interface TokenExchangerOptions {
  /** Deadline for one exchange: connect, send, and read the whole response. */
  readonly timeoutMs: number
  /** Lifetime of a token that has neither `expires_in` nor a JWT `exp` claim. */
  readonly defaultLifetimeSeconds: number
  /** Upper bound on any token's lifetime. Default 24 hours. */
  readonly maxLifetimeSeconds?: number
  /** Larger response bodies are rejected. Default 1 MiB. */
  readonly maxResponseBytes?: number
  readonly secrets: SecretReader
  /** Replaces the exchanger's own connection pool. The caller keeps ownership and closes it. */
  readonly dispatcher?: Dispatcher
}

export const DEFAULT_MAX_RESPONSE_BYTES = 1024 * 1024

/** How long an idle connection to the token endpoint stays open for the next exchange. */
const KEEP_ALIVE_TIMEOUT_MS = 30_000

/** Error codes from undici and Node that mean the deadline passed rather than the IdP failing. */
const TIMEOUT_CODES = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'ETIMEDOUT'])

/**
 * POSTs token exchange requests to IdP token endpoints. It never follows redirects and never
 * retries, because the caller decides whether a failure is worth another attempt.
 */
export class TokenExchanger {
  readonly #timeoutMs: number
  readonly #defaultLifetimeSeconds: number
  readonly #maxLifetimeSeconds: number
  readonly #maxResponseBytes: number
  readonly #secrets: SecretReader
  readonly #dispatcher: Dispatcher
  /** The pool this exchanger created and so must close. Undefined when the caller passed one. */
  readonly #ownAgent: Agent | undefined

  constructor(options: TokenExchangerOptions) {
    this.#timeoutMs = options.timeoutMs
    this.#defaultLifetimeSeconds = options.defaultLifetimeSeconds
    this.#maxLifetimeSeconds = options.maxLifetimeSeconds ?? DEFAULT_MAX_LIFETIME_SECONDS
    this.#maxResponseBytes = options.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES
    this.#secrets = options.secrets

    if (options.dispatcher === undefined) {
      // A dedicated Agent rather than the global dispatcher, so no proxy settings in the
      // environment can send token endpoint traffic through the sidecar itself.
      this.#ownAgent = new Agent({ keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS, connectTimeout: options.timeoutMs })
      this.#dispatcher = this.#ownAgent
    } else {
      this.#ownAgent = undefined
      this.#dispatcher = options.dispatcher
    }
  }

  /**
   * Exchanges the user's token for one scoped to the route's targets.
   *
   * @throws ExchangeError subclasses for every IdP and transport failure, and
   *   SecretUnavailableError when a client secret or actor token cannot be read.
   */
  async exchange(input: ExchangeInput): Promise<IssuedToken> {
    const issuerName = input.issuer.name
    const exchangeRequest = buildExchangeRequest(input, this.#secrets)
    const signal = AbortSignal.timeout(this.#timeoutMs)

    let status: number
    let headers: Dispatcher.ResponseData['headers']
    let bodyText: string
    try {
      const response = await request(exchangeRequest.url, {
        method: 'POST',
        headers: exchangeRequest.headers,
        body: exchangeRequest.body,
        dispatcher: this.#dispatcher,
        signal,
        headersTimeout: this.#timeoutMs,
        bodyTimeout: this.#timeoutMs,
      })
      status = response.statusCode
      headers = response.headers
      bodyText = await this.#readBody(response, issuerName)
    } catch (cause) {
      throw this.#transportError(cause, signal, issuerName)
    }

    return processExchangeResponse(
      { status, headers, bodyText, contentType: firstHeaderValue(headers['content-type']) },
      {
        issuerName,
        now: Date.now(),
        defaultLifetimeSeconds: this.#defaultLifetimeSeconds,
        maxLifetimeSeconds: this.#maxLifetimeSeconds,
        requestedTokenType: input.issuer.requestedTokenType,
      },
    )
  }

  /** Closes the exchanger's own connection pool. A dispatcher passed in is left open. */
  async close(): Promise<void> {
    await this.#ownAgent?.close()
  }

  /** Reads the body as UTF-8, aborting the transfer once it passes `maxResponseBytes`. */
  async #readBody(response: Dispatcher.ResponseData, issuerName: string): Promise<string> {
    const tooLarge = (): IdpBadResponseError =>
      new IdpBadResponseError(
        `token exchange at issuer "${issuerName}" failed: the IdP's response body exceeds ${this.#maxResponseBytes} bytes`,
      )

    const declaredLength = Number(firstHeaderValue(response.headers['content-length']))
    if (declaredLength > this.#maxResponseBytes) {
      discardBody(response.body)
      throw tooLarge()
    }

    const chunks: Buffer[] = []
    let received = 0
    for await (const chunk of response.body as AsyncIterable<Buffer>) {
      received += chunk.length
      if (received > this.#maxResponseBytes) {
        discardBody(response.body)
        throw tooLarge()
      }
      chunks.push(chunk)
    }
    return Buffer.concat(chunks, received).toString('utf8')
  }

  /** Classifies a failure to get a complete response. Errors already classified pass through. */
  #transportError(cause: unknown, signal: AbortSignal, issuerName: string): Error {
    if (cause instanceof IdpBadResponseError) return cause

    const prefix = `token exchange at issuer "${issuerName}" failed`
    const code = errorCode(cause)
    if (signal.aborted || (code !== undefined && TIMEOUT_CODES.has(code))) {
      return new ExchangeTimeoutError(
        `${prefix}: the IdP did not respond within ${this.#timeoutMs} ms, so retry later`,
        undefined,
        { cause },
      )
    }
    const reason = code === undefined ? '' : ` (${code})`
    return new IdpUnavailableError(
      `${prefix}: the token endpoint could not be reached${reason}, so check tokenEndpoint and retry later`,
      undefined,
      { cause },
    )
  }
}

/**
 * Aborts the transfer and closes its connection. undici reports the abort as an 'error' event,
 * which would be an uncaught exception without a listener, so one is added first.
 */
function discardBody(body: Dispatcher.ResponseData['body']): void {
  body.on('error', () => {})
  body.destroy()
}

/** Returns the `code` of an undici or Node system error, e.g. `ECONNREFUSED`. */
function errorCode(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null || !('code' in error)) return undefined
  const { code } = error
  return typeof code === 'string' ? code : undefined
}

function firstHeaderValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value
}
