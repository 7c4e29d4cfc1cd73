import type { IncomingMessage } from 'node:http'
import { decodeJwt } from 'jose'
import { EgressDeniedError } from '../errors.js'
import type { Metrics } from '../observability/metrics.js'

/**
 * The policies for requests that match no route:
 * - `forward`: sent on unchanged, with whatever credentials the agent put on them;
 * - `strip`: sent on without an `Authorization` bearer token that is a JWT from one of the
 *   user-token issuers in the routes file, while other credentials (API keys) pass untouched;
 * - `deny`: rejected with 403, and CONNECT tunnels to hosts without a route are refused.
 */
export const UNROUTED_POLICIES = ['forward', 'strip', 'deny'] as const
export type UnroutedPolicy = (typeof UNROUTED_POLICIES)[number]

/** The action on the `Authorization` fields of an unrouted request. */
export type AuthorizationAction = 'keep' | 'remove'

export class EgressPolicy {
  readonly policy: UnroutedPolicy
  /** Reads the current list, which a reload of the routes file can change. */
  readonly #userTokenIssuers: () => readonly string[]
  readonly #metrics: Metrics

  constructor(policy: UnroutedPolicy, userTokenIssuers: () => readonly string[], metrics: Metrics) {
    this.policy = policy
    this.#userTokenIssuers = userTokenIssuers
    this.#metrics = metrics
  }

  /**
   * Applies the policy to an unrouted request for `target` (authority and path); throws
   * EgressDeniedError under `deny`.
   */
  authorizationForUnrouted(req: IncomingMessage, target: string): AuthorizationAction {
    if (this.policy === 'forward') return 'keep'
    if (this.policy === 'deny') {
      this.#metrics.userTokenBlocked.inc({ reason: 'denied' })
      throw new EgressDeniedError(`no route matches ${target} and the unrouted policy is deny; add a route for it or change --unrouted-policy`)
    }
    const values = req.headersDistinct.authorization ?? []
    if (!values.some((value) => this.#isUserToken(value))) return 'keep'
    this.#metrics.userTokenBlocked.inc({ reason: 'stripped' })
    return 'remove'
  }

  /** Applies the policy to a CONNECT tunnel that will not be intercepted. */
  checkBlindTunnel(authority: string): void {
    if (this.policy !== 'deny') return
    this.#metrics.userTokenBlocked.inc({ reason: 'denied' })
    throw new EgressDeniedError(`no route matches ${authority} and the unrouted policy is deny; add a route for it or change --unrouted-policy`)
  }

  #isUserToken(authorization: string): boolean {
    const match = /^Bearer +(\S+)$/i.exec(authorization)
    if (match === null) return false
    try {
      const issuer = decodeJwt(match[1]).iss
      return issuer !== undefined && this.#userTokenIssuers().includes(issuer)
    } catch {
      // An opaque token cannot be attributed to an issuer, so it is not the user's JWT.
      return false
    }
  }
}
