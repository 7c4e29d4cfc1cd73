/**
 * The error registry: every failure the sidecar reports has a class here with a stable `code`,
 * the HTTP status the agent receives, and a bounded `outcome` used as a metric label.
 *
 * Switch on `code`, not on `instanceof`: codes are part of the public contract and are listed in
 * the README. Messages never contain a token, secret or assertion.
 */

export type ErrorCode =
  | 'OBO_CONFIG_INVALID'
  | 'OBO_SECRET_UNAVAILABLE'
  | 'OBO_PROXY_BAD_REQUEST'
  | 'OBO_PROXY_MISSING_TOKEN'
  | 'OBO_PROXY_DUPLICATE_AUTHORIZATION'
  | 'OBO_PROXY_UNKNOWN_HOST'
  | 'OBO_PROXY_MISDIRECTED'
  | 'OBO_PROXY_CLIENT_CLOSED'
  | 'OBO_EGRESS_DENIED'
  | 'OBO_UPSTREAM_UNREACHABLE'
  | 'OBO_UPSTREAM_TLS_FAILED'
  | 'OBO_UPSTREAM_TIMEOUT'
  | 'OBO_EXCHANGE_SUBJECT_REJECTED'
  | 'OBO_EXCHANGE_FORBIDDEN'
  | 'OBO_EXCHANGE_CLIENT_REJECTED'
  | 'OBO_EXCHANGE_IDP_UNAVAILABLE'
  | 'OBO_EXCHANGE_BAD_RESPONSE'
  | 'OBO_EXCHANGE_TIMEOUT'
  | 'OBO_EXCHANGE_THROTTLED'
  | 'OBO_TLS_CA_INVALID'
  | 'OBO_TLS_SERVER_NAME_INVALID'
  | 'OBO_INTERNAL_ERROR'

/** The JSON body the sidecar sends the agent for any error it generates itself. */
export interface ErrorBody {
  /** The identity provider's OAuth error code when there is one, otherwise a snake_case reason. */
  error: string
  code: ErrorCode
  message: string
  /** Also in the sidecar's log line for this failure, to find one from the other. */
  requestId?: string
}

export abstract class OboError extends Error {
  abstract readonly code: ErrorCode
  /** HTTP status sent to the agent. */
  abstract readonly statusCode: number
  /** `error` field of the JSON body. */
  abstract readonly error: string

  constructor(message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = new.target.name
  }

  /**
   * The message in the agent's error body. Subclasses whose message names sidecar internals,
   * such as secret file paths, return a shorter one and leave the detail to the log.
   */
  get publicMessage(): string {
    return this.message
  }

  /** Extra response headers, such as `WWW-Authenticate` or `Retry-After`. */
  responseHeaders(): Record<string, string> {
    return {}
  }

  toBody(): ErrorBody {
    return { error: this.error, code: this.code, message: this.publicMessage }
  }
}

/** One problem found in a routes file, located by line and column (both 1-based). */
export interface ConfigProblem {
  file: string
  line: number
  col: number
  message: string
}

export function formatConfigProblem(problem: ConfigProblem): string {
  return `${problem.file}:${problem.line}:${problem.col}: ${problem.message}`
}

export class ConfigError extends OboError {
  readonly code = 'OBO_CONFIG_INVALID'
  readonly statusCode = 500
  readonly error = 'config_invalid'
  readonly problems: readonly ConfigProblem[]

  constructor(problems: readonly ConfigProblem[]) {
    super(problems.map(formatConfigProblem).join('\n'))
    this.problems = problems
  }
}

/** A client secret or actor token named in the config cannot be read. */
export class SecretUnavailableError extends OboError {
  readonly code = 'OBO_SECRET_UNAVAILABLE'
  readonly statusCode = 502
  readonly error = 'secret_unavailable'

  override get publicMessage(): string {
    return 'the sidecar cannot read one of its client secrets or actor tokens; its log names the file or variable'
  }
}

export class BadProxyRequestError extends OboError {
  readonly code = 'OBO_PROXY_BAD_REQUEST'
  readonly statusCode = 400
  readonly error = 'invalid_request'
}

/** RFC 6750 section 3.1: a protected resource responds 401 to a request without credentials. */
export class MissingTokenError extends OboError {
  readonly code = 'OBO_PROXY_MISSING_TOKEN'
  readonly statusCode = 401
  readonly error = 'invalid_token'

  override responseHeaders(): Record<string, string> {
    return { 'www-authenticate': 'Bearer' }
  }
}

export class DuplicateAuthorizationError extends OboError {
  readonly code = 'OBO_PROXY_DUPLICATE_AUTHORIZATION'
  readonly statusCode = 400
  readonly error = 'invalid_request'
}

/** An origin-form request whose `Host` matches no route: forwarding it would loop to the sidecar. */
export class UnknownHostError extends OboError {
  readonly code = 'OBO_PROXY_UNKNOWN_HOST'
  readonly statusCode = 421
  readonly error = 'misdirected_request'
}

/** A request inside a CONNECT tunnel whose `Host` names another authority than the tunnel's. */
export class MisdirectedRequestError extends OboError {
  readonly code = 'OBO_PROXY_MISDIRECTED'
  readonly statusCode = 421
  readonly error = 'misdirected_request'
}

/**
 * The agent closed its connection, or the shutdown grace time ran out, before the response was
 * complete. 499 is the status nginx uses for this in logs and metrics. It is never sent to the agent.
 */
export class ClientClosedError extends OboError {
  readonly code = 'OBO_PROXY_CLIENT_CLOSED'
  readonly statusCode = 499
  readonly error = 'client_closed_request'
}

/** The unrouted-traffic policy is `deny` and the request matched no route. */
export class EgressDeniedError extends OboError {
  readonly code = 'OBO_EGRESS_DENIED'
  readonly statusCode = 403
  readonly error = 'egress_denied'
}

/** The upstream's TLS certificate failed verification, or the TLS handshake failed. */
export class UpstreamTlsError extends OboError {
  readonly code = 'OBO_UPSTREAM_TLS_FAILED'
  readonly statusCode = 502
  readonly error = 'upstream_tls_failed'
}

export class UpstreamUnreachableError extends OboError {
  readonly code = 'OBO_UPSTREAM_UNREACHABLE'
  readonly statusCode = 502
  readonly error = 'upstream_unreachable'
}

export class UpstreamTimeoutError extends OboError {
  readonly code = 'OBO_UPSTREAM_TIMEOUT'
  readonly statusCode = 504
  readonly error = 'upstream_timeout'
}

/**
 * Base of every token-exchange failure. `outcome` is the `outcome` label of
 * `obo_sidecar_token_exchanges_total`; `idpError` is the IdP's OAuth error code, if it sent one.
 */
export abstract class ExchangeError extends OboError {
  abstract readonly outcome: string
  readonly idpError: string | undefined

  constructor(message: string, idpError?: string, options?: ErrorOptions) {
    super(message, options)
    this.idpError = idpError
  }
}

/** The IdP rejected the user's token (`invalid_grant`): the agent must get a fresh one. */
export class SubjectTokenRejectedError extends ExchangeError {
  readonly code = 'OBO_EXCHANGE_SUBJECT_REJECTED'
  readonly statusCode = 401
  readonly outcome = 'subject_rejected'

  get error(): string {
    return this.idpError ?? 'invalid_grant'
  }

  override responseHeaders(): Record<string, string> {
    return { 'www-authenticate': 'Bearer error="invalid_token"' }
  }
}

/** The IdP refused the target, scope or consent (`invalid_target`, `invalid_scope`, ...). */
export class ExchangeForbiddenError extends ExchangeError {
  readonly code = 'OBO_EXCHANGE_FORBIDDEN'
  readonly statusCode = 403
  readonly outcome = 'forbidden'

  get error(): string {
    return this.idpError ?? 'access_denied'
  }
}

/** The IdP rejected the sidecar's own client or request: a sidecar configuration problem. */
export class ClientRejectedError extends ExchangeError {
  readonly code = 'OBO_EXCHANGE_CLIENT_REJECTED'
  readonly statusCode = 502
  readonly outcome = 'client_rejected'

  get error(): string {
    return this.idpError ?? 'invalid_client'
  }
}

/** The IdP returned a 5xx status or could not be reached. */
export class IdpUnavailableError extends ExchangeError {
  readonly code = 'OBO_EXCHANGE_IDP_UNAVAILABLE'
  readonly statusCode = 502
  readonly outcome = 'idp_unavailable'

  get error(): string {
    return this.idpError ?? 'idp_unavailable'
  }
}

/** The IdP's response broke the protocol: not JSON, too large, or a token that cannot be used. */
export class IdpBadResponseError extends ExchangeError {
  readonly code = 'OBO_EXCHANGE_BAD_RESPONSE'
  readonly statusCode = 502
  readonly outcome = 'bad_response'

  get error(): string {
    return this.idpError ?? 'idp_bad_response'
  }
}

export class ExchangeTimeoutError extends ExchangeError {
  readonly code = 'OBO_EXCHANGE_TIMEOUT'
  readonly statusCode = 504
  readonly outcome = 'timeout'

  get error(): string {
    return 'idp_timeout'
  }
}

/** The IdP returned 429. Its `Retry-After` is passed on to the agent unchanged. */
export class ExchangeThrottledError extends ExchangeError {
  readonly code = 'OBO_EXCHANGE_THROTTLED'
  readonly statusCode = 429
  readonly outcome = 'throttled'
  readonly retryAfter: string | undefined

  constructor(message: string, retryAfter: string | undefined, idpError?: string) {
    super(message, idpError)
    this.retryAfter = retryAfter
  }

  get error(): string {
    return this.idpError ?? 'rate_limited'
  }

  override responseHeaders(): Record<string, string> {
    return this.retryAfter === undefined ? {} : { 'retry-after': this.retryAfter }
  }
}

/** The reason a CA certificate or key cannot be used to issue leaf certificates. */
export type CertificateAuthorityProblem =
  | 'unreadable'
  | 'malformed'
  | 'not_ca'
  | 'key_mismatch'
  | 'unsupported_key'
  | 'not_yet_valid'
  | 'expired'

/** The CA used for HTTPS interception cannot be loaded or can no longer sign. */
export class InvalidCertificateAuthorityError extends OboError {
  readonly code = 'OBO_TLS_CA_INVALID'
  readonly statusCode = 500
  readonly error = 'tls_ca_invalid'
  readonly problem: CertificateAuthorityProblem

  constructor(problem: CertificateAuthorityProblem, message: string, options?: ErrorOptions) {
    super(message, options)
    this.problem = problem
  }
}

/** A name the sidecar will not issue a leaf certificate for: not a hostname or IP literal, or a wildcard. */
export class InvalidServerNameError extends OboError {
  readonly code = 'OBO_TLS_SERVER_NAME_INVALID'
  readonly statusCode = 400
  readonly error = 'invalid_request'
}

/** A failure the sidecar did not anticipate; the log line with the same request carries the cause. */
export class InternalError extends OboError {
  readonly code = 'OBO_INTERNAL_ERROR'
  readonly statusCode = 500
  readonly error = 'internal_error'
}
