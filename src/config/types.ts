/**
 * The validated, normalized form of a routes file. `loadRoutesFile()` produces it; nothing else
 * in the sidecar reads YAML. Objects are frozen after validation.
 */

/** RFC 8693 token exchange, or RFC 7523 jwt-bearer with `requested_token_use=on_behalf_of`. */
export type GrantType = 'token-exchange' | 'jwt-bearer'

/** Token endpoint client authentication, RFC 6749 section 2.3.1, or none. */
export type ClientAuthMethod = 'client_secret_basic' | 'client_secret_post' | 'none'

/** A secret's source: a file, re-read when it changes, or an environment variable. */
export type SecretRef = { readonly kind: 'file'; readonly path: string } | { readonly kind: 'env'; readonly name: string }

export const GRANT_TYPE_URI: Record<GrantType, string> = {
  'token-exchange': 'urn:ietf:params:oauth:grant-type:token-exchange',
  'jwt-bearer': 'urn:ietf:params:oauth:grant-type:jwt-bearer',
}

export const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token'
export const JWT_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:jwt'

export interface ActorTokenConfig {
  readonly source: SecretRef
  /** `actor_token_type`, a token-type URI. */
  readonly type: string
}

export interface IssuerConfig {
  /** The key under `issuers:`. */
  readonly name: string
  readonly tokenEndpoint: URL
  readonly grant: GrantType
  readonly clientId: string
  readonly clientAuth: ClientAuthMethod
  /** Present when `clientAuth` is not `none`. */
  readonly clientSecret: SecretRef | undefined
  /** `subject_token_type`; only sent with the token-exchange grant. */
  readonly subjectTokenType: string
  readonly actorToken: ActorTokenConfig | undefined
  /** `requested_token_type`; sent only when configured. */
  readonly requestedTokenType: string | undefined
}

/**
 * A host pattern: `orders.example.com`, `*.example.com`, either with an optional `:port`.
 * `hostname` is lowercase without a trailing dot; for a wildcard it is the suffix after `*`
 * (`.example.com`), so a wildcard never matches the bare domain.
 */
export interface HostPattern {
  readonly hostname: string
  readonly wildcard: boolean
  /** Undefined: every port. */
  readonly port: number | undefined
}

/** A route's destination when it differs from the requested scheme and authority. */
export interface UpstreamOverride {
  /** `https:` makes the sidecar originate TLS, verified against the system roots and `upstreamCaFile`. */
  readonly protocol: 'http:' | 'https:'
  /** `host:port` to connect to instead of the requested authority. Undefined keeps the requested host. */
  readonly authority: string | undefined
}

export interface RouteConfig {
  /** The metrics label: the configured name, or host and path prefix. */
  readonly name: string
  readonly host: HostPattern
  readonly pathPrefix: string | undefined
  readonly issuer: IssuerConfig
  readonly audience: readonly string[]
  readonly resource: readonly string[]
  readonly scopes: readonly string[]
  readonly upstream: UpstreamOverride | undefined
  /** Absolute path of extra CA certificates (PEM) trusted for this route's TLS upstream. */
  readonly upstreamCaFile: string | undefined
}

export interface RoutesConfig {
  /** Absolute path of the file this was loaded from. */
  readonly file: string
  readonly issuers: ReadonlyMap<string, IssuerConfig>
  /** In file order: the first match wins. */
  readonly routes: readonly RouteConfig[]
  /**
   * `iss` values of the users' own tokens. With the `strip` egress policy, a bearer JWT from one of
   * these issuers is removed from requests to hosts without a route.
   */
  readonly userTokenIssuers: readonly string[]
}
