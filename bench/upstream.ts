/**
 * The benchmark's upstream: a node:http server on 127.0.0.1 started as its own process, so its CPU
 * use is separate from the proxy's. It sends its port to the parent over IPC.
 *
 * - `GET /small`: a 40-byte text response, the cache-hit and latency workload.
 * - `GET /sse?delay=MS`: an event stream whose headers go out at once and whose first event
 *   follows after MS milliseconds, then three more events 2 ms apart.
 * - `POST /upload`: reads the body, discards it and returns its length as JSON.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

const SMALL_BODY = Buffer.from('hello from the obo-sidecar benchmark :)\n')
const SSE_EVENT_GAP_MS = 2
const SSE_EVENTS_AFTER_FIRST = 3
const MAX_SSE_DELAY_MS = 5_000

function handle(req: IncomingMessage, res: ServerResponse): void {
  const url = new URL(req.url ?? '/', 'http://upstream.invalid')
  if (req.method === 'GET' && url.pathname === '/small') {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': SMALL_BODY.length })
    res.end(SMALL_BODY)
  } else if (req.method === 'GET' && url.pathname === '/sse') {
    const delayMs = Math.min(MAX_SSE_DELAY_MS, Math.max(0, Number(url.searchParams.get('delay') ?? '0') || 0))
    streamEvents(res, delayMs)
  } else if (req.method === 'POST' && url.pathname === '/upload') {
    let bytes = 0
    req.on('data', (chunk: Buffer) => {
      bytes += chunk.length
    })
    req.on('end', () => {
      const body = JSON.stringify({ bytes })
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
      res.end(body)
    })
  } else {
    req.resume()
    res.writeHead(404, { 'content-type': 'text/plain' })
    res.end('not found\n')
  }
}

function streamEvents(res: ServerResponse, delayMs: number): void {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
  res.flushHeaders()
  let sent = 0
  const sendNext = (): void => {
    if (res.destroyed) return
    sent += 1
    res.write(`id: ${sent}\ndata: event ${sent}\n\n`)
    if (sent > SSE_EVENTS_AFTER_FIRST) res.end()
    else setTimeout(sendNext, SSE_EVENT_GAP_MS)
  }
  setTimeout(sendNext, delayMs)
}

const server = createServer({ keepAliveTimeout: 120_000, headersTimeout: 130_000, requestTimeout: 300_000 }, handle)
server.listen(0, '127.0.0.1', () => {
  process.send?.({ type: 'ready', port: (server.address() as AddressInfo).port })
})
const shutdown = (): void => {
  server.close()
  server.closeAllConnections()
  process.exit(0)
}
process.on('SIGTERM', shutdown)
process.on('SIGINT', shutdown)
// The parent's IPC channel closes when it exits, so an orphaned upstream stops by itself.
process.on('disconnect', shutdown)
