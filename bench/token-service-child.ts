/**
 * Runs the development token service (demo/token-service.ts, oidc-provider) in its own process, so
 * its CPU use is separate from the harness's. The parent controls it over IPC:
 *
 * - `{type: 'mint', id, count, prefix, file}` writes `count` user tokens, one a line, to `file`
 *   and replies `{type: 'minted', id, count, meanLength}`.
 * - `{type: 'counters', id}` replies `{type: 'counters', id, exchanges, requests}`.
 */
import { createWriteStream } from 'node:fs'
import { once } from 'node:events'
import { startTokenService, type TokenService } from '../demo/token-service.js'
import { AUDIENCE, CLIENT_ID, CLIENT_SECRET_VARIABLE, SCOPE, subjectFor } from './shared.js'
import type { ChildMessage } from './processes.js'

/** Issued tokens outlive the longest benchmark run, so no cached entry expires during it. */
const ACCESS_TOKEN_TTL_SECONDS = 3600
const USER_TOKEN_TTL_SECONDS = 3 * 3600
const MINT_BATCH = 256
const MAX_MINT_COUNT = 1_000_000

async function main(): Promise<void> {
  const clientSecret = process.env[CLIENT_SECRET_VARIABLE]
  if (clientSecret === undefined || clientSecret === '') throw new Error(`${CLIENT_SECRET_VARIABLE} is not set`)
  const service = await startTokenService({
    clients: [{ clientId: CLIENT_ID, clientSecret, authMethod: 'client_secret_basic' }],
    audiences: [AUDIENCE],
    scopes: [SCOPE],
    accessTokenTtlSeconds: ACCESS_TOKEN_TTL_SECONDS,
  })

  process.on('message', (message: ChildMessage) => {
    void reply(service, message).catch((error: unknown) => {
      process.send?.({ type: 'error', id: message.id, message: error instanceof Error ? error.message : String(error) })
    })
  })
  const shutdown = (): void => {
    void service.close().finally(() => process.exit(0))
  }
  process.on('SIGTERM', shutdown)
  process.on('SIGINT', shutdown)
  process.on('disconnect', shutdown)
  process.send?.({ type: 'ready', issuer: service.issuer, tokenEndpoint: service.tokenEndpoint })
}

async function reply(service: TokenService, message: ChildMessage): Promise<void> {
  if (message.type === 'counters') {
    process.send?.({ type: 'counters', id: message.id, exchanges: service.exchangeCount(), requests: service.tokenRequestCount() })
  } else if (message.type === 'mint') {
    const total = Number(message.count)
    if (!Number.isSafeInteger(total) || total < 1 || total > MAX_MINT_COUNT) throw new Error(`mint count must be 1-${MAX_MINT_COUNT}`)
    const { count, totalLength } = await mintTokens(service, total, String(message.prefix), String(message.file))
    process.send?.({ type: 'minted', id: message.id, count, meanLength: totalLength / count })
  } else {
    throw new Error(`unknown message type "${message.type}"`)
  }
}

/** Mints `total` user tokens in batches and writes them to `file`, one a line. */
async function mintTokens(service: TokenService, total: number, prefix: string, file: string): Promise<{ count: number; totalLength: number }> {
  const output = createWriteStream(file)
  let totalLength = 0
  for (let start = 0; start < total; start += MINT_BATCH) {
    const batch = Math.min(MINT_BATCH, total - start)
    const tokens = await Promise.all(
      Array.from({ length: batch }, (_, offset) =>
        service.issueUserToken({ sub: subjectFor(prefix, start + offset), expiresInSeconds: USER_TOKEN_TTL_SECONDS }),
      ),
    )
    for (const token of tokens) totalLength += token.length
    if (!output.write(`${tokens.join('\n')}\n`)) await once(output, 'drain')
  }
  output.end()
  await once(output, 'finish')
  return { count: total, totalLength }
}

main().catch((error: unknown) => {
  process.send?.({ type: 'error', message: error instanceof Error ? error.message : String(error) })
  process.exit(1)
})
