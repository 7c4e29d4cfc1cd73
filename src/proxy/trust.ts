import { readFileSync } from 'node:fs'
import { getCACertificates } from 'node:tls'
import { UpstreamTlsError } from '../errors.js'

let systemAndDefault: string[] | undefined

/**
 * Returns the CA certificates (PEM) trusted for TLS upstreams: Node's default set (its bundled
 * Mozilla roots plus any NODE_EXTRA_CA_CERTS), the operating system's store, and the PEM file
 * `caFile` when a route names one.
 */
export function trustedCertificates(caFile: string | undefined): string[] {
  systemAndDefault ??= [...new Set([...getCACertificates('default'), ...getCACertificates('system')])]
  if (caFile === undefined) return systemAndDefault
  return [...systemAndDefault, readCaFile(caFile)]
}

/** Reads a route's `upstreamCaFile`; start-up calls this for every route so a bad path stops it early. */
export function readCaFile(caFile: string): string {
  let text: string
  try {
    text = readFileSync(caFile, 'utf8')
  } catch (cause) {
    const reason = cause instanceof Error ? cause.message : String(cause)
    throw new UpstreamTlsError(`cannot read upstreamCaFile ${caFile}: ${reason}`, { cause })
  }
  if (!text.includes('-----BEGIN CERTIFICATE-----')) {
    throw new UpstreamTlsError(`upstreamCaFile ${caFile} contains no PEM certificate ("-----BEGIN CERTIFICATE-----")`)
  }
  return text
}
