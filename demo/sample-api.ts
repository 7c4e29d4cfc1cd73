/**
 * A sample protected API for the demo and the tests. Every request must carry a Bearer JWT that
 * verifies against the token service's JWKS with the expected issuer and audience.
 *
 * - `GET /events`: server-sent events, written one at a time with a delay between them.
 *   `?count=N&intervalMs=M` sets how many (1 to 100, default 3) and the delay (0 to 5000 ms, default 50).
 * - `POST /upload`: counts the request body as it streams in and returns `{ bytes }`.
 * - Any other request returns `{ path, claims }`.
 *
 * A missing or invalid token gets 401 with a JSON body and an RFC 6750 `WWW-Authenticate` header.
 */
import { createServer } from 'node:http'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { setTimeout as delay } from 'node:timers/promises'

import { createRemoteJWKSet, jwtVerify } from 'jose'
import type { JWTPayload } from 'jose'

import { closeServer, listenOnLoopback } from './loopback.js'

export interface SampleApiOptions {
  /** Port on 127.0.0.1. 0 or undefined picks a free port. */
  port?: number
  jwksUri: string
  issuer: string
  /** Expected `aud`. A token passes when its `aud` contains any of these. */
  audience: string | string[]
  /** Oldest entries of `requests` are dropped past this count. Default 1000. */
  maxRecordedRequests?: number
}

export interface RecordedRequest {
  method: string
  /** The request target: path and query string. */
  path: string
  /** The Authorization header exactly as received, so tests can see which token arrived. */
  authorization?: string
  /** The verified token's claims. Absent when the request was rejected. */
  claims?: JWTPayload
}

export interface SampleApi {
  /** `http://127.0.0.1:PORT` */
  url: string
  port: number
  /** Requests in arrival order, including rejected ones. */
  requests: RecordedRequest[]
  close(): Promise<void>
}

type TokenVerifier = (token: string) => Promise<JWTPayload>

const DEFAULT_MAX_RECORDED_REQUESTS = 1000
const MAX_EVENT_COUNT = 100
const MAX_EVENT_INTERVAL_MS = 5000

export async function startSampleApi(options: SampleApiOptions): Promise<SampleApi> {
  const requests: RecordedRequest[] = []
  const maxRecorded = options.maxRecordedRequests ?? DEFAULT_MAX_RECORDED_REQUESTS
  const verify = createVerifier(options)

  const server = createServer((request, response) => {
    const record: RecordedRequest = { method: request.method ?? 'GET', path: request.url ?? '/' }
    if (request.headers.authorization !== undefined) {
      record.authorization = request.headers.authorization
    }
    requests.push(record)
    if (requests.length > maxRecorded) {
      requests.shift()
    }
    handleRequest(verify, record, request, response).catch((error: unknown) => sendServerError(response, error))
  })

  const port = await listenOnLoopback(server, options.port ?? 0)
  return { url: `http://127.0.0.1:${port}`, port, requests, close: () => closeServer(server) }
}

function createVerifier(options: SampleApiOptions): TokenVerifier {
  const jwks = createRemoteJWKSet(new URL(options.jwksUri))
  return async (token) => {
    const { payload } = await jwtVerify(token, jwks, { issuer: options.issuer, audience: options.audience })
    return payload
  }
}

async function handleRequest(verify: TokenVerifier, record: RecordedRequest, request: IncomingMessage, response: ServerResponse): Promise<void> {
  const claims = await authenticate(verify, request, response)
  if (claims === undefined) {
    return
  }
  record.claims = claims

  const url = new URL(record.path, 'http://127.0.0.1')
  if (request.method === 'GET' && url.pathname === '/events') {
    await sendEvents(url, response)
  } else if (request.method === 'POST' && url.pathname === '/upload') {
    await countUpload(request, response)
  } else {
    sendJson(response, 200, { path: record.path, claims })
  }
}

/** Returns the token's claims, or sends 401 and returns undefined. */
async function authenticate(verify: TokenVerifier, request: IncomingMessage, response: ServerResponse): Promise<JWTPayload | undefined> {
  const match = /^Bearer +(\S+)\s*$/i.exec(request.headers.authorization ?? '')
  if (match === null) {
    // RFC 6750 section 3.1: a request without credentials gets a challenge with no error code.
    response.setHeader('www-authenticate', 'Bearer realm="sample-api"')
    sendJson(response, 401, { error: 'invalid_request', message: 'missing Bearer token in the Authorization header' })
    return undefined
  }
  try {
    return await verify(match[1])
  } catch (error) {
    const reason = error instanceof Error ? error.message : 'verification failed'
    response.setHeader('www-authenticate', 'Bearer realm="sample-api", error="invalid_token"')
    sendJson(response, 401, { error: 'invalid_token', message: `Bearer token rejected: ${reason}` })
    return undefined
  }
}

async function sendEvents(url: URL, response: ServerResponse): Promise<void> {
  const count = boundedInteger(url.searchParams.get('count'), 3, 1, MAX_EVENT_COUNT)
  const intervalMs = boundedInteger(url.searchParams.get('intervalMs'), 50, 0, MAX_EVENT_INTERVAL_MS)

  response.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
  response.flushHeaders()
  for (let sequence = 1; sequence <= count && !response.destroyed; sequence += 1) {
    if (sequence > 1) {
      await delay(intervalMs)
    }
    // Each write goes out as its own chunk, so a client sees each event when it is written.
    response.write(`id: ${sequence}\nevent: tick\ndata: ${JSON.stringify({ sequence, sentAt: Date.now() })}\n\n`)
  }
  response.end()
}

async function countUpload(request: IncomingMessage, response: ServerResponse): Promise<void> {
  let bytes = 0
  for await (const chunk of request) {
    bytes += (chunk as Buffer).length
  }
  sendJson(response, 200, { bytes })
}

function boundedInteger(value: string | null, fallback: number, minimum: number, maximum: number): number {
  const parsed = value === null ? Number.NaN : Number.parseInt(value, 10)
  if (!Number.isFinite(parsed)) {
    return fallback
  }
  return Math.min(maximum, Math.max(minimum, parsed))
}

function sendJson(response: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body)
  response.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) })
  response.end(text)
}

function sendServerError(response: ServerResponse, error: unknown): void {
  if (response.headersSent) {
    response.destroy()
    return
  }
  const reason = error instanceof Error ? error.message : String(error)
  sendJson(response, 500, { error: 'server_error', message: `sample API failed: ${reason}` })
}

