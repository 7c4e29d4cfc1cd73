import { startTokenService, type TokenService } from '../../demo/token-service.js'
import { startSidecarProcess, writeTempFile, type SidecarProcess } from './sidecar-process.js'
import { startUpstream, type Upstream } from './upstream.js'

export interface ProxyFixture {
  tokenService: TokenService
  upstream: Upstream
  sidecar: SidecarProcess
  /** A fresh user token for `sub`. */
  userToken(sub?: string): Promise<string>
  close(): Promise<void>
}

export const FIXTURE_CLIENT_SECRET = 'fixture+secret/with:odd%chars'

/**
 * Starts the usual test setup: the development token service, one upstream API, and the sidecar with a
 * route for `/api/` on that upstream (other paths on it are unrouted).
 */
export async function startProxyFixture(extraArgs: string[] = []): Promise<ProxyFixture> {
  const tokenService = await startTokenService({
    clients: [{ clientId: 'fixture-agent', clientSecret: FIXTURE_CLIENT_SECRET, authMethod: 'client_secret_basic' }],
    audiences: ['https://api.example.com'],
  })
  const upstream = await startUpstream()
  const routes = writeTempFile(
    'routes.yaml',
    `issuers:
  dev:
    tokenEndpoint: ${tokenService.tokenEndpoint}
    clientId: fixture-agent
    clientSecret: { env: FIXTURE_CLIENT_SECRET }
routes:
  - name: api
    host: ${upstream.authority}
    pathPrefix: /api/
    issuer: dev
    audience: https://api.example.com
`,
  )
  const sidecar = await startSidecarProcess(routes, extraArgs, { FIXTURE_CLIENT_SECRET })
  return {
    tokenService,
    upstream,
    sidecar,
    userToken: (sub = 'alice') => tokenService.issueUserToken({ sub }),
    async close() {
      await sidecar.stop()
      await upstream.close()
      await tokenService.close()
    },
  }
}
