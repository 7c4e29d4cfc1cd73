/** Names and sizes that the harness and its child processes must agree on. */

/** The client the sidecar authenticates as at the development token service. */
export const CLIENT_ID = 'bench-agent'
/** Environment variable that passes the client secret to the token service child and the sidecar. */
export const CLIENT_SECRET_VARIABLE = 'OBO_BENCH_CLIENT_SECRET'
/** `audience` of the benchmark route. The `.invalid` name is a claim value only and is never contacted. */
export const AUDIENCE = 'https://upstream.bench.invalid'
export const SCOPE = 'bench.read'
export const ROUTE_NAME = 'bench-upstream'

export const TOKEN_EXCHANGE_GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange'
export const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token'

/**
 * Length of each user's `sub`. The issued token copies it, and with this length the issued token
 * (the one the sidecar caches) is about 1,020 characters, the "about 1 KB" that the memory
 * scenario calls for. The user token is about 870 characters.
 */
export const SUBJECT_LENGTH = 390

/** Returns user number `index`'s `sub`, padded to SUBJECT_LENGTH characters. */
export function subjectFor(prefix: string, index: number): string {
  const head = `${prefix}-${String(index).padStart(7, '0')}-`
  return head + 'u'.repeat(Math.max(0, SUBJECT_LENGTH - head.length))
}
