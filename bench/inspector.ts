/**
 * A minimal client for a Node process's inspector (started with `--inspect=127.0.0.1:PORT`), used
 * to force a full garbage collection before a memory reading, so the reading shows the live heap
 * rather than garbage that V8 has not collected yet.
 */
import { request, WebSocket } from 'undici'

const CALL_TIMEOUT_MS = 60_000

export class InspectorSession {
  readonly #socket: WebSocket
  readonly #pending = new Map<number, (reply: { error?: { message: string } }) => void>()
  #nextId = 1

  private constructor(socket: WebSocket) {
    this.#socket = socket
    socket.addEventListener('message', (event) => {
      const reply = JSON.parse(String(event.data)) as { id?: number; error?: { message: string } }
      if (reply.id === undefined) return
      this.#pending.get(reply.id)?.(reply)
      this.#pending.delete(reply.id)
    })
  }

  /** Connects to the inspector on 127.0.0.1:`port`, waiting up to `timeoutMs` for it to listen. */
  static async open(port: number, timeoutMs: number): Promise<InspectorSession> {
    const deadline = Date.now() + timeoutMs
    let targets: Array<{ webSocketDebuggerUrl: string }> | undefined
    while (targets === undefined) {
      try {
        const response = await request(`http://127.0.0.1:${port}/json/list`, { headersTimeout: 2_000, bodyTimeout: 2_000 })
        targets = (await response.body.json()) as Array<{ webSocketDebuggerUrl: string }>
      } catch (error) {
        if (Date.now() > deadline) throw new Error(`no inspector on 127.0.0.1:${port}`, { cause: error })
        await new Promise((resolve) => setTimeout(resolve, 100))
      }
    }
    if (targets.length === 0) throw new Error(`the inspector on 127.0.0.1:${port} lists no target`)
    const socket = new WebSocket(targets[0].webSocketDebuggerUrl)
    await new Promise<void>((resolve, reject) => {
      socket.addEventListener('open', () => resolve(), { once: true })
      socket.addEventListener('error', () => reject(new Error(`could not connect to the inspector on 127.0.0.1:${port}`)), { once: true })
    })
    return new InspectorSession(socket)
  }

  /** Sends one Chrome DevTools Protocol command and waits for its reply. */
  call(method: string, params: Record<string, unknown> = {}): Promise<void> {
    const id = this.#nextId++
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id)
        reject(new Error(`inspector command ${method} got no reply within ${CALL_TIMEOUT_MS} ms`))
      }, CALL_TIMEOUT_MS)
      this.#pending.set(id, (reply) => {
        clearTimeout(timer)
        if (reply.error === undefined) resolve()
        else reject(new Error(`inspector command ${method} failed: ${reply.error.message}`))
      })
      this.#socket.send(JSON.stringify({ id, method, params }))
    })
  }

  /** Runs a full, compacting garbage collection in the inspected process. */
  collectGarbage(): Promise<void> {
    return this.call('HeapProfiler.collectGarbage')
  }

  close(): void {
    this.#socket.close()
  }
}
