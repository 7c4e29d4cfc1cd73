import { connect } from 'node:net'

/**
 * Writes raw bytes to `url`'s host and port and collects what comes back until `done` returns true
 * for the text so far, the peer closes, or `timeoutMs` passes. For what ordinary clients cannot
 * send: duplicate fields, pipelined requests, hand-made upgrades.
 */
export function rawExchange(
  url: string,
  request: string | Buffer,
  done: (received: string) => boolean = () => false,
  timeoutMs = 5000,
): Promise<string> {
  const { hostname, port } = new URL(url)
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname)
    let received = ''
    const finish = (): void => {
      clearTimeout(timer)
      socket.destroy()
      resolve(received)
    }
    const timer = setTimeout(finish, timeoutMs)
    socket.on('connect', () => socket.write(request))
    socket.on('data', (chunk: Buffer) => {
      received += chunk.toString('latin1')
      if (done(received)) finish()
    })
    socket.on('end', finish)
    socket.on('error', (error) => {
      clearTimeout(timer)
      reject(error)
    })
  })
}
