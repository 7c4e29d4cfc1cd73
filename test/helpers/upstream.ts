import { createHash } from 'node:crypto'
import { createServer, type IncomingHttpHeaders, type RequestListener, type Server, type ServerResponse } from 'node:http'
import { createServer as createHttpsServer, type ServerOptions as HttpsServerOptions } from 'node:https'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { isIP } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Duplex } from 'node:stream'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'

export interface ReceivedRequest {
  method: string
  url: string
  headers: IncomingHttpHeaders
  /** Every Authorization value received, in order. */
  authorization: string[]
  bodyBytes: number
}

export interface Upstream {
  readonly server: Server
  readonly port: number
  /** `127.0.0.1:PORT` */
  readonly authority: string
  readonly requests: ReceivedRequest[]
  /** With `tls`: a PEM file of the CA that signed the upstream's certificate. */
  readonly caFile: string | undefined
  close(): Promise<void>
}

export interface UpstreamOptions {
  /** Serve HTTPS with a certificate for these names (DNS names or IP addresses) from a new CA. */
  tls?: { names: string[] }
}

/**
 * Creates, with the openssl CLI, a CA for the upstream alone and a server certificate for `names`
 * (DNS names or IP addresses), the way a private API would have them.
 */
function upstreamTls(options: { names: string[] }): { serverOptions: HttpsServerOptions; caFile: string } {
  const dir = mkdtempSync(join(tmpdir(), 'obo-sidecar-upstream-'))
  const file = (name: string) => join(dir, name)
  const openssl = (...args: string[]) => execFileSync('openssl', args, { stdio: 'pipe' })
  openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1',
    '-subj', '/CN=test upstream CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign',
    '-keyout', file('ca.key'), '-out', file('ca.crt'))
  const altNames = options.names.map((name) => (isIP(name) === 0 ? `DNS:${name}` : `IP:${name}`)).join(',')
  openssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', `/CN=${options.names[0]}`,
    '-keyout', file('server.key'), '-out', file('server.csr'))
  writeFileSync(file('server.ext'), `subjectAltName=${altNames}\nextendedKeyUsage=serverAuth\n`)
  openssl('x509', '-req', '-in', file('server.csr'), '-CA', file('ca.crt'), '-CAkey', file('ca.key'), '-CAcreateserial',
    '-days', '1', '-extfile', file('server.ext'), '-out', file('server.crt'))
  return {
    serverOptions: { key: readFileSync(file('server.key')), cert: readFileSync(file('server.crt')) },
    caFile: file('ca.crt'),
  }
}

const WEBSOCKET_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'

/**
 * A plain HTTP server on loopback standing in for the API an agent calls. It records what it
 * received, including every Authorization value, and offers:
 * - a path ending in `/sse` (`?events=N&delay=MS`): server-sent events, each written when due;
 * - a path ending in `/status/CODE`: responds with that status;
 * - a WebSocket handshake on any path, after which it sends one text frame with the
 *   Authorization value it saw and then echoes raw bytes;
 * - anything else: reads the body while counting its bytes, then answers JSON with the method,
 *   path, Authorization and byte count it saw.
 */
export async function startUpstream(options: UpstreamOptions = {}): Promise<Upstream> {
  const requests: ReceivedRequest[] = []
  // Upgraded connections leave the HTTP server's bookkeeping, so close() ends them itself.
  const upgradedSockets = new Set<Duplex>()
  const tls = options.tls === undefined ? undefined : upstreamTls(options.tls)

  const handler: RequestListener = (req, res) => {
    const record: ReceivedRequest = {
      method: req.method ?? '',
      url: req.url ?? '',
      headers: req.headers,
      authorization: req.headersDistinct.authorization ?? [],
      bodyBytes: 0,
    }
    requests.push(record)
    req.on('data', (chunk: Buffer) => (record.bodyBytes += chunk.length))

    const url = new URL(req.url ?? '/', 'http://upstream.invalid')
    if (url.pathname.endsWith('/sse')) {
      streamEvents(res, Number(url.searchParams.get('events') ?? 3), Number(url.searchParams.get('delay') ?? 100))
      req.resume()
      return
    }
    const status = /\/status\/(\d{3})$/.exec(url.pathname)
    req.on('end', () => {
      const body = JSON.stringify({
        method: req.method,
        path: req.url,
        authorization: req.headers.authorization ?? null,
        bytes: record.bodyBytes,
      })
      res.writeHead(status === null ? 200 : Number(status[1]), { 'content-type': 'application/json' })
      res.end(body)
    })
  }
  const server = tls === undefined ? createServer(handler) : createHttpsServer(tls.serverOptions, handler)

  server.on('upgrade', (req, socket) => {
    requests.push({
      method: req.method ?? '',
      url: req.url ?? '',
      headers: req.headers,
      authorization: req.headersDistinct.authorization ?? [],
      bodyBytes: 0,
    })
    const key = req.headers['sec-websocket-key'] ?? ''
    const accept = createHash('sha1').update(key + WEBSOCKET_GUID).digest('base64')
    socket.write(
      'HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n' +
        `sec-websocket-accept: ${accept}\r\n\r\n`,
    )
    socket.write(textFrame(req.headers.authorization ?? ''))
    upgradedSockets.add(socket)
    socket.on('close', () => upgradedSockets.delete(socket))
    socket.on('data', (chunk: Buffer) => socket.write(chunk))
    // The HTTP server leaves upgraded sockets half-open; a WebSocket server closes its side too.
    socket.on('end', () => socket.end())
    socket.on('error', () => socket.destroy())
  })

  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const port = (server.address() as AddressInfo).port
  return {
    server,
    port,
    authority: `127.0.0.1:${port}`,
    requests,
    caFile: tls?.caFile,
    close: () =>
      new Promise((resolve) => {
        for (const socket of upgradedSockets) socket.destroy()
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}

function streamEvents(res: ServerResponse, count: number, delayMs: number): void {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
  res.flushHeaders()
  let sent = 0
  const timer = setInterval(() => {
    sent++
    res.write(`id: ${sent}\ndata: event ${sent} at ${Date.now()}\n\n`)
    if (sent >= count) {
      clearInterval(timer)
      res.end()
    }
  }, delayMs)
  res.on('close', () => clearInterval(timer))
}

/** Encodes an unmasked WebSocket text frame (RFC 6455 section 5.2), as a server sends it. */
export function textFrame(text: string): Buffer {
  const payload = Buffer.from(text)
  if (payload.length < 126) return Buffer.concat([Buffer.from([0x81, payload.length]), payload])
  const header = Buffer.alloc(4)
  header[0] = 0x81
  header[1] = 126
  header.writeUInt16BE(payload.length, 2)
  return Buffer.concat([header, payload])
}
