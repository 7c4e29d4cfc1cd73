import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startTokenService, type TokenService } from '../../demo/token-service.js'
import { startSidecarProcess, writeTempFile, type SidecarProcess } from './sidecar-process.js'
import { startUpstream, type Upstream } from './upstream.js'

export interface TlsFixture {
  tokenService: TokenService
  /** HTTPS API with a certificate for 127.0.0.1 and localhost from its own private CA. */
  upstream: Upstream
  sidecar: SidecarProcess
  /** `--ca-out` directory: `ca.crt` and `ca-bundle.crt`. */
  caDir: string
  caFile: string
  bundleFile: string
  userToken(sub?: string): Promise<string>
  close(): Promise<void>
}

export const TLS_FIXTURE_SECRET = 'tls+fixture/secret:%'

/**
 * Starts the token service, an HTTPS upstream and a sidecar that intercepts it. Routes:
 * - `api`: `127.0.0.1:PORT/api/` (the upstream by IP address, trusted through upstreamCaFile);
 * - `orders`: `orders.example.com`, sent to `https://127.0.0.1:PORT`, so tests can use a DNS name
 *   without resolving it;
 * - `untrusted`: `127.0.0.1:PORT/untrusted/` without upstreamCaFile, so its TLS fails;
 * - `plain-to-tls`: `localhost:PORT/origination/` with `upstream: https`.
 */
export async function startTlsFixture(extraArgs: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<TlsFixture> {
  const tokenService = await startTokenService({
    clients: [{ clientId: 'tls-agent', clientSecret: TLS_FIXTURE_SECRET, authMethod: 'client_secret_basic' }],
    audiences: ['https://api.example.com'],
  })
  const upstream = await startUpstream({ tls: { names: ['127.0.0.1', 'localhost'] } })
  const caDir = mkdtempSync(join(tmpdir(), 'obo-sidecar-ca-out-'))
  const routes = writeTempFile(
    'routes.yaml',
    `userTokenIssuers: [${tokenService.issuer}]
issuers:
  dev:
    tokenEndpoint: ${tokenService.tokenEndpoint}
    clientId: tls-agent
    clientSecret: { env: TLS_FIXTURE_SECRET }
routes:
  - name: api
    host: 127.0.0.1:${upstream.port}
    pathPrefix: /api/
    issuer: dev
    audience: https://api.example.com
    upstreamCaFile: ${upstream.caFile}
  - name: untrusted
    host: 127.0.0.1:${upstream.port}
    pathPrefix: /untrusted/
    issuer: dev
    audience: https://api.example.com
  - name: orders
    host: orders.example.com
    issuer: dev
    audience: https://api.example.com
    upstream: https://127.0.0.1:${upstream.port}
    upstreamCaFile: ${upstream.caFile}
  - name: plain-to-tls
    host: localhost:${upstream.port}
    pathPrefix: /origination/
    issuer: dev
    audience: https://api.example.com
    upstream: https
    upstreamCaFile: ${upstream.caFile}
`,
  )
  const sidecar = await startSidecarProcess(routes, ['--ca-out', caDir, ...extraArgs], { TLS_FIXTURE_SECRET, ...env })
  return {
    tokenService,
    upstream,
    sidecar,
    caDir,
    caFile: join(caDir, 'ca.crt'),
    bundleFile: join(caDir, 'ca-bundle.crt'),
    userToken: (sub = 'alice') => tokenService.issueUserToken({ sub }),
    async close() {
      await sidecar.stop()
      await upstream.close()
      await tokenService.close()
    },
  }
}
