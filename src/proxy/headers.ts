import type { IncomingHttpHeaders } from 'node:http'

/**
 * Hop-by-hop fields (RFC 9110 section 7.6.1) apply to one connection only and are not forwarded.
 * `proxy-authorization` is meant for this proxy, this proxy's HTTP server handles `expect`,
 * and `host` is rewritten from the resolved target.
 */
const REQUEST_FIELDS_NOT_FORWARDED = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'expect',
  'host',
])

const RESPONSE_FIELDS_NOT_FORWARDED = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
])

/** Names listed in `Connection` are hop-by-hop for this message as well (RFC 9110 section 7.6.1). */
function connectionOptions(connection: string | string[] | undefined): Set<string> {
  const options = new Set<string>()
  if (connection === undefined) return options
  for (const value of Array.isArray(connection) ? connection : [connection]) {
    for (const option of value.split(',')) {
      const name = option.trim().toLowerCase()
      if (name !== '') options.add(name)
    }
  }
  return options
}

/**
 * Builds the header list sent upstream from the client's raw headers, in their original order and
 * case, without hop-by-hop fields. A string `authorization` replaces the client's `Authorization`
 * fields, `null` removes them, and `undefined` keeps them.
 */
export function buildUpstreamRequestHeaders(
  rawHeaders: readonly string[],
  authority: string,
  authorization: string | null | undefined,
): string[] {
  const dropped = connectionOptions(findRawHeader(rawHeaders, 'connection'))
  const headers = ['host', authority]
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]
    const lowerName = name.toLowerCase()
    if (REQUEST_FIELDS_NOT_FORWARDED.has(lowerName) || dropped.has(lowerName)) continue
    if (lowerName === 'authorization' && authorization !== undefined) continue
    headers.push(name, rawHeaders[i + 1])
  }
  if (typeof authorization === 'string') headers.push('authorization', authorization)
  return headers
}

/** Copies an upstream response's headers without hop-by-hop fields, for `writeHead`. */
export function buildClientResponseHeaders(upstream: IncomingHttpHeaders | Record<string, string | string[] | undefined>): Record<string, string | string[]> {
  const dropped = connectionOptions(upstream.connection)
  const headers: Record<string, string | string[]> = {}
  for (const [name, value] of Object.entries(upstream)) {
    if (value === undefined || RESPONSE_FIELDS_NOT_FORWARDED.has(name) || dropped.has(name)) continue
    headers[name] = value
  }
  return headers
}

function findRawHeader(rawHeaders: readonly string[], lowerName: string): string[] | undefined {
  let values: string[] | undefined
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if (rawHeaders[i].toLowerCase() === lowerName) (values ??= []).push(rawHeaders[i + 1])
  }
  return values
}
