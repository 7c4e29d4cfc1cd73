import { isIPv4 } from 'node:net'

/**
 * Checks that `text` has the syntax of an absolute URI (RFC 3986 section 4.3): a scheme, `:` and at
 * least one more character, all printable ASCII without spaces. Nothing beyond the syntax is checked.
 */
export function isAbsoluteUri(text: string): boolean {
  return /^[A-Za-z][A-Za-z0-9+.-]*:[\x21-\x7e]+$/.test(text)
}

/** Checks that a `URL.hostname` names the local machine: 127.0.0.0/8, [::1] or localhost. */
export function isLoopbackHostname(hostname: string): boolean {
  const name = hostname.endsWith('.') ? hostname.slice(0, -1) : hostname
  return name === 'localhost' || name === '[::1]' || (isIPv4(name) && name.startsWith('127.'))
}
