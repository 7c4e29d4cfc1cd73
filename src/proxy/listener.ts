import { createServer, type IncomingMessage, type Server } from 'node:http'
import type { Duplex } from 'node:stream'
import type { Logger } from '../observability/logger.js'
import { createConnectHandler, type ConnectHandlerOptions } from './connect.js'
import { createRequestHandler, createUpgradeHandler, type ProxyHandlerOptions } from './handler.js'

export interface ProxyListenerOptions {
  handler: ProxyHandlerOptions
  connect: Omit<ConnectHandlerOptions, 'server'>
  maxHeaderBytes: number
  logger: Logger
}

/** How often idle keep-alive connections are closed while draining. */
const DRAIN_SWEEP_MS = 250

/**
 * The proxy listener: one HTTP server for plain proxy requests, WebSocket upgrades, CONNECT
 * tunnels, and the connections of intercepted tunnels that it is handed back.
 */
export class ProxyListener {
  readonly server: Server
  /**
   * Upgraded and CONNECT sockets leave the HTTP server's bookkeeping, so closeAllConnections()
   * misses them. They are tracked here so that a drain that runs out of time can end them.
   */
  readonly #detachedSockets = new Set<Duplex>()

  constructor(options: ProxyListenerOptions) {
    const { logger } = options
    // requestTimeout 0: an upload or a streamed call may legitimately take longer than Node's
    // default 300 s; the agent's own timeouts end such requests.
    this.server = createServer({ maxHeaderSize: options.maxHeaderBytes, requestTimeout: 0 }, createRequestHandler(options.handler))
    const handleUpgrade = createUpgradeHandler(options.handler)
    const handleConnect = createConnectHandler({ ...options.connect, server: this.server })
    this.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      this.#track(socket)
      handleUpgrade(req, socket, head)
    })
    this.server.on('connect', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      this.#track(socket)
      handleConnect(req, socket, head)
    })
    this.server.on('clientError', (error: NodeJS.ErrnoException, socket: Duplex) => {
      logger.info({ event: 'client_error', code: error.code }, 'malformed request from client')
      if (!socket.writable) {
        socket.destroy()
        return
      }
      const status = error.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : '400 Bad Request'
      socket.end(`HTTP/1.1 ${status}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`)
    })
  }

  #track(socket: Duplex): void {
    this.#detachedSockets.add(socket)
    socket.once('close', () => this.#detachedSockets.delete(socket))
  }

  /**
   * Stops accepting connections and waits for open ones to finish, closing each keep-alive
   * connection once it is idle. After `graceMs` every remaining connection, stream and tunnel is
   * closed. Resolves when none is left.
   */
  async drain(graceMs: number): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()))
    this.server.closeIdleConnections()
    const sweeper = setInterval(() => this.server.closeIdleConnections(), DRAIN_SWEEP_MS)
    const deadline = setTimeout(() => this.#closeEverything(), graceMs)
    // Tunnels and WebSockets have no idle state to wait for; they end with their peers or at the deadline.
    try {
      await closed
    } finally {
      clearInterval(sweeper)
      clearTimeout(deadline)
    }
  }

  /** Closes every connection at once, for a second SIGTERM or the end of the grace time. */
  #closeEverything(): void {
    this.server.closeAllConnections()
    for (const socket of this.#detachedSockets) socket.destroy()
  }

  closeNow(): void {
    this.#closeEverything()
  }
}
