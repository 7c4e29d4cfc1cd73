import type { IncomingMessage } from 'node:http'
import { DuplicateAuthorizationError, MissingTokenError } from '../errors.js'

// RFC 6750 section 2.1: the scheme is case-insensitive and the credential is a token68.
const BEARER_CREDENTIALS = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i

/**
 * Returns the bearer token of a routed request.
 *
 * Node keeps only the first of duplicate `Authorization` fields in `req.headers`, so the raw
 * header list is read instead: two credentials make it ambiguous whose token to exchange.
 */
export function extractBearerToken(req: IncomingMessage): string {
  const values = authorizationValues(req.rawHeaders)
  if (values.length === 0) {
    throw new MissingTokenError('the route requires the user\'s token: send "Authorization: Bearer <token>"')
  }
  if (values.length > 1) {
    throw new DuplicateAuthorizationError(
      `the request has ${values.length} Authorization header fields; send exactly one "Authorization: Bearer <token>"`,
    )
  }
  const match = BEARER_CREDENTIALS.exec(values[0])
  if (match === null) {
    throw new MissingTokenError(
      'the Authorization header is not a Bearer token; the route requires "Authorization: Bearer <token>"',
    )
  }
  return match[1]
}

/** Collects every `Authorization` value from Node's flat [name, value, ...] header list. */
function authorizationValues(rawHeaders: readonly string[]): string[] {
  const values: string[] = []
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]
    if (name.length === 13 && name.toLowerCase() === 'authorization') values.push(rawHeaders[i + 1])
  }
  return values
}
