import { isIPv4, isIPv6 } from 'node:net'
import { domainToASCII } from 'node:url'
import type { HostPattern } from './types.js'

export type HostPatternResult = { readonly pattern: HostPattern } | { readonly error: string }

const EXPECTED = 'expected "name.example.com", "*.example.com" or either with ":port"'

/**
 * Parses a route's `host`: an exact host name, IPv4 address or bracketed IPv6 address, or
 * `*.` followed by a domain of at least two labels, each with an optional `:port`.
 *
 * The hostname is stored as WHATWG URL parsing would give it (`URL.hostname`): lowercase, without a
 * trailing dot, internationalized names in punycode, IPv6 bracketed and compressed.
 * `error` is the complete message after the field path.
 */
export function parseHostPattern(text: string): HostPatternResult {
  const reason = rejectNonHost(text)
  if (reason !== undefined) return invalid(text, reason)

  const lower = text.toLowerCase()
  const split = lower.startsWith('[') ? splitBracketed(lower) : splitPort(lower)
  if (split === undefined || typeof split === 'string') return invalid(text, split)

  const port = parsePort(split.portText)
  if (port === null) return invalid(text, 'the port must be a number from 1 to 65535')

  if (split.ipv6 !== undefined) return { pattern: { hostname: split.ipv6, wildcard: false, port } }
  return parseName(text, split.name, port)
}

/** Formats a pattern the way the routes file writes it, e.g. `*.example.com:8443`. */
export function formatHostPattern(pattern: HostPattern): string {
  const port = pattern.port === undefined ? '' : `:${pattern.port}`
  return `${pattern.wildcard ? '*' : ''}${pattern.hostname}${port}`
}

/**
 * Returns whether `earlier` matches every host and port that `later` matches. It mirrors
 * `matchesHost` in src/proxy/route-match.ts, where a wildcard matches any host ending in its suffix.
 */
export function hostPatternCovers(earlier: HostPattern, later: HostPattern): boolean {
  if (earlier.port !== undefined && earlier.port !== later.port) return false
  if (earlier.wildcard) return later.hostname.endsWith(earlier.hostname)
  return !later.wildcard && later.hostname === earlier.hostname
}

function invalid(text: string, reason: string | undefined): HostPatternResult {
  const detail = reason === undefined ? `; ${EXPECTED}` : `: ${reason}`
  return { error: `${JSON.stringify(text)} is not a valid host pattern${detail}` }
}

/** Explains the usual mix-ups, a URL or a host with a path where only a host belongs. */
function rejectNonHost(text: string): string | undefined {
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(text)
  if (scheme !== null) return `remove the scheme "${scheme[1]}://"; a host pattern is a host name with an optional port`
  if (text.includes('/')) return 'a host pattern has no path; put the path in pathPrefix'
  return undefined
}

interface SplitHost {
  /** Set for a bracketed IPv6 literal, in canonical bracketed form. */
  readonly ipv6: string | undefined
  readonly name: string
  readonly portText: string | undefined
}

function splitBracketed(lower: string): SplitHost | string {
  const close = lower.indexOf(']')
  const address = lower.slice(1, close)
  const rest = lower.slice(close + 1)
  if (close < 0 || !isIPv6(address) || address.includes('%') || (rest !== '' && !rest.startsWith(':'))) {
    return 'expected an IPv6 address in brackets, e.g. "[2001:db8::1]" or "[::1]:8443"'
  }
  // The URL parser writes IPv6 in the compressed form that request hostnames will have.
  const canonical = new URL(`http://[${address}]/`).hostname
  return { ipv6: canonical, name: canonical, portText: rest === '' ? undefined : rest.slice(1) }
}

function splitPort(lower: string): SplitHost | string | undefined {
  const colons = lower.split(':').length - 1
  if (colons > 1) {
    return isIPv6(lower) ? `write an IPv6 address in brackets: "[${lower}]"` : undefined
  }
  const [name = '', portText] = lower.split(':')
  return { ipv6: undefined, name, portText }
}

/** Returns undefined for no port and null for an invalid one. */
function parsePort(portText: string | undefined): number | undefined | null {
  if (portText === undefined) return undefined
  if (!/^[0-9]{1,5}$/.test(portText)) return null
  const port = Number(portText)
  return port >= 1 && port <= 65535 ? port : null
}

function parseName(text: string, name: string, port: number | undefined): HostPatternResult {
  const wildcard = name.startsWith('*.')
  const withoutStar = wildcard ? name.slice(2) : name
  const domain = withoutStar.endsWith('.') ? withoutStar.slice(0, -1) : withoutStar
  if (domain.includes('*')) return invalid(text, undefined)

  const ascii = /^[\x20-\x7e]*$/.test(domain) ? domain : domainToASCII(domain)
  if (ascii === '' || !ascii.split('.').every(isValidLabel)) return invalid(text, undefined)
  if (ascii.length > 253) return invalid(text, 'a host name has at most 253 characters')

  const lastLabel = ascii.slice(ascii.lastIndexOf('.') + 1)
  // WHATWG URL parsing reads a numeric last label, decimal or 0x hex, as an IPv4 address.
  if (/^(?:[0-9]+|0x[0-9a-f]*)$/.test(lastLabel)) return parseIPv4(text, ascii, wildcard, port)
  if (wildcard && !ascii.includes('.')) {
    return invalid(text, `a wildcard needs at least two labels after "*.", such as "*.example.com"; "*.${ascii}" would match every host under a top-level domain`)
  }
  return { pattern: { hostname: wildcard ? `.${ascii}` : ascii, wildcard, port } }
}

/** A host whose last label is numeric is an IPv4 address to the URL parser, so it must be one. */
function parseIPv4(text: string, address: string, wildcard: boolean, port: number | undefined): HostPatternResult {
  if (wildcard) return invalid(text, 'a wildcard cannot cover an IP address; list each address as its own route')
  if (!isIPv4(address)) return invalid(text, 'expected an IPv4 address as four numbers from 0 to 255, e.g. "10.0.0.7"')
  return { pattern: { hostname: address, wildcard: false, port } }
}

/**
 * Checks a DNS label: 1 to 63 letters, digits, `-` or `_`, not starting or ending with `-`.
 * `_` is outside the hostname rules of RFC 1123 but common in internal service names.
 */
function isValidLabel(label: string): boolean {
  return label.length <= 63 && /^[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?$/.test(label)
}
