/** Helpers for the demo's servers, all of which listen on 127.0.0.1 only. */
import { createServer as createNetServer } from 'node:net'
import type { AddressInfo, Server as NetServer } from 'node:net'
import type { Server } from 'node:http'

/** Listens on 127.0.0.1 and returns the bound port. Port 0 picks a free one. */
export function listenOnLoopback(server: NetServer, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject)
      resolve((server.address() as AddressInfo).port)
    })
  })
}

/** Stops listening and ends open connections, which keep-alive clients would otherwise hold open. */
export function closeServer(server: Server): Promise<void> {
  return new Promise((resolve, reject) => {
    server.close((error) => (error ? reject(error) : resolve()))
    server.closeAllConnections()
  })
}

/**
 * Returns a port that was free a moment ago, for a child process that needs its port number before
 * it starts. Another process may take the port first, so the caller must handle a bind failure.
 */
export async function findFreePort(): Promise<number> {
  const server = createNetServer()
  const port = await listenOnLoopback(server, 0)
  await new Promise<void>((resolve, reject) => server.close((error) => (error ? reject(error) : resolve())))
  return port
}
