// @peculiar/x509 2.x loads tsyringe, which needs the Reflect metadata API before it is imported.
import 'reflect-metadata'
import * as x509 from '@peculiar/x509'
import { LRUCache } from 'lru-cache'
import { isIP } from 'node:net'
import tls from 'node:tls'
import { InvalidCertificateAuthorityError, InvalidServerNameError } from '../errors.js'
import { randomSerialNumber, type CertificateAuthority } from './ca.js'

export interface LeafCertificateCacheOptions {
  readonly ca: CertificateAuthority
  /** Bound on cached leaf certificates, beyond which the least recently used is evicted. Default 1000. */
  readonly maxEntries?: number
  /** Seconds from issue to notAfter, at most 86,400 (24 hours). Default 86,400. */
  readonly lifetimeSeconds?: number
  /** A cached leaf is re-minted once it is this many seconds from notAfter. Default 3600. */
  readonly renewBeforeSeconds?: number
  /** Clock in epoch milliseconds. Default `Date.now`. */
  readonly now?: () => number
  /** Called with the normalized name after each leaf certificate is minted, for metrics. */
  readonly onMint?: (name: string) => void
}

/** A validated TLS server name: a lowercase DNS name, or an IP address in canonical text form. */
export interface ServerName {
  readonly kind: 'dns' | 'ip'
  readonly value: string
}

export const MAX_LEAF_LIFETIME_SECONDS = 24 * 3600
export const DEFAULT_LEAF_MAX_ENTRIES = 1000
export const DEFAULT_RENEW_BEFORE_SECONDS = 3600

const LEAF_KEY_ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256' } as const
/** Backdating of notBefore, so clients whose clocks run a little behind accept a new leaf. */
const NOT_BEFORE_BACKDATE_MS = 5 * 60_000
/** RFC 5280 upper bound on the length of a commonName (ub-common-name). */
const MAX_COMMON_NAME_LENGTH = 64
/** RFC 1035 limits a name to 255 octets on the wire, which is 253 characters as text without the final dot. */
const MAX_DNS_NAME_LENGTH = 253
const DNS_LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/

interface LeafEntry {
  readonly context: tls.SecureContext
  /** Epoch milliseconds from which the entry is re-minted rather than served. */
  readonly renewAt: number
}

/**
 * Mints and caches the leaf certificates the sidecar presents when it terminates TLS for an
 * intercepted CONNECT. Each leaf has a fresh ECDSA P-256 key, is signed by the CA and is served
 * with the CA certificate as its chain. Concurrent requests for one name share one mint.
 */
export class LeafCertificateCache {
  readonly #ca: CertificateAuthority
  readonly #entries: LRUCache<string, LeafEntry>
  readonly #inflight = new Map<string, Promise<LeafEntry>>()
  readonly #lifetimeMs: number
  readonly #renewBeforeMs: number
  readonly #now: () => number
  readonly #onMint: ((name: string) => void) | undefined
  #mintedCount = 0

  constructor(options: LeafCertificateCacheOptions) {
    const maxEntries = options.maxEntries ?? DEFAULT_LEAF_MAX_ENTRIES
    const lifetimeSeconds = options.lifetimeSeconds ?? MAX_LEAF_LIFETIME_SECONDS
    const renewBeforeSeconds = options.renewBeforeSeconds ?? DEFAULT_RENEW_BEFORE_SECONDS
    checkOptions(maxEntries, lifetimeSeconds, renewBeforeSeconds)

    this.#ca = options.ca
    this.#entries = new LRUCache<string, LeafEntry>({ max: maxEntries })
    this.#lifetimeMs = lifetimeSeconds * 1000
    this.#renewBeforeMs = renewBeforeSeconds * 1000
    this.#now = options.now ?? Date.now
    this.#onMint = options.onMint
  }

  /**
   * Returns a secure context with a leaf certificate for `name`, a DNS name or an IP literal,
   * minting one unless a cached leaf is still outside its renewal window. Rejects with
   * InvalidServerNameError for a name that is not a hostname or IP literal, or is a wildcard, and
   * with InvalidCertificateAuthorityError once the CA has expired.
   */
  async secureContextFor(name: string): Promise<tls.SecureContext> {
    const serverName = parseServerName(name)
    const cached = this.#entries.get(serverName.value)
    if (cached !== undefined && this.#now() < cached.renewAt) return cached.context

    const pending = this.#inflight.get(serverName.value) ?? this.#startMint(serverName)
    return (await pending).context
  }

  /** Number of leaf certificates minted since construction. */
  get mintedCount(): number {
    return this.#mintedCount
  }

  /** Number of cached leaf certificates. */
  get size(): number {
    return this.#entries.size
  }

  #startMint(serverName: ServerName): Promise<LeafEntry> {
    const key = serverName.value
    // Promise.resolve().then() turns a synchronous throw from #mint into a rejection, so the
    // inflight entry below is always removed.
    const pending = Promise.resolve()
      .then(() => this.#mint(serverName))
      .then((entry) => {
        this.#entries.set(key, entry)
        this.#mintedCount += 1
        this.#onMint?.(key)
        return entry
      })
      .finally(() => {
        if (this.#inflight.get(key) === pending) this.#inflight.delete(key)
      })
    this.#inflight.set(key, pending)
    return pending
  }

  async #mint(serverName: ServerName): Promise<LeafEntry> {
    const now = this.#now()
    const caNotAfter = this.#ca.certificate.notAfter.getTime()
    if (caNotAfter <= now) {
      throw new InvalidCertificateAuthorityError(
        'expired',
        `The ${this.#ca.source} expired at ${this.#ca.certificate.notAfter.toISOString()}, so no ` +
          'leaf certificate can be issued. Replace the CA certificate and key, then restart.',
      )
    }

    const keys = await crypto.subtle.generateKey(LEAF_KEY_ALGORITHM, true, ['sign', 'verify'])
    const certificate = await x509.X509CertificateGenerator.create({
      serialNumber: randomSerialNumber(),
      subject: subjectOf(serverName),
      issuer: this.#ca.certificate.subjectName,
      notBefore: new Date(now - NOT_BEFORE_BACKDATE_MS),
      notAfter: new Date(Math.min(now + this.#lifetimeMs, caNotAfter)),
      publicKey: keys.publicKey,
      signingKey: this.#ca.signingKey,
      signingAlgorithm: this.#ca.signingAlgorithm,
      extensions: leafExtensions(serverName, this.#ca.keyIdentifier),
    })

    const privateKey = await crypto.subtle.exportKey('pkcs8', keys.privateKey)
    const context = tls.createSecureContext({
      key: x509.PemConverter.encode(privateKey, 'PRIVATE KEY'),
      cert: `${certificate.toString('pem')}\n${this.#ca.certificatePem}`,
    })
    // The encoded notAfter has whole seconds, so the entry is timed from the certificate itself.
    return { context, renewAt: certificate.notAfter.getTime() - this.#renewBeforeMs }
  }
}

/**
 * Validates and normalizes a name to mint a leaf certificate for: a DNS name of letters, digits
 * and hyphens, or an IPv4 or IPv6 literal (brackets allowed, zone identifiers not). Throws
 * InvalidServerNameError otherwise, and for every wildcard.
 */
export function parseServerName(name: string): ServerName {
  if (name.length === 0) throw invalidServerName(name, 'the name is empty')
  if (name.length > MAX_DNS_NAME_LENGTH) {
    throw invalidServerName(name, `the name is longer than ${MAX_DNS_NAME_LENGTH} characters`)
  }
  if (name.includes('*')) throw invalidServerName(name, 'wildcard certificates are never issued')

  const bracketed = name.startsWith('[') && name.endsWith(']')
  const literal = bracketed ? name.slice(1, -1) : name
  const ipVersion = isIP(literal)
  if (ipVersion === 6 && literal.includes('%')) {
    throw invalidServerName(name, 'an IPv6 zone identifier cannot appear in a certificate')
  }
  if (ipVersion === 6) return { kind: 'ip', value: canonicalIpv6(literal) }
  if (bracketed) throw invalidServerName(name, 'the text in brackets is not an IPv6 address')
  if (ipVersion === 4) return { kind: 'ip', value: literal }

  const value = name.toLowerCase()
  const labels = value.split('.')
  if (!labels.every((label) => DNS_LABEL.test(label))) {
    throw invalidServerName(
      name,
      'it is not a hostname (dot-separated labels of 1 to 63 letters, digits and hyphens, ' +
        'neither starting nor ending with a hyphen) or an IP address',
    )
  }
  if (/^[0-9]+$/.test(labels.at(-1)!)) {
    throw invalidServerName(name, 'its last label is numeric, but it is not an IPv4 address')
  }
  return { kind: 'dns', value }
}

function checkOptions(maxEntries: number, lifetimeSeconds: number, renewBeforeSeconds: number): void {
  if (!Number.isInteger(maxEntries) || maxEntries < 1) {
    throw new RangeError(`maxEntries must be a positive integer, got ${maxEntries}`)
  }
  if (!(lifetimeSeconds > 0 && lifetimeSeconds <= MAX_LEAF_LIFETIME_SECONDS)) {
    throw new RangeError(
      `lifetimeSeconds must be greater than 0 and at most ${MAX_LEAF_LIFETIME_SECONDS}, got ${lifetimeSeconds}`,
    )
  }
  if (!(renewBeforeSeconds >= 0 && renewBeforeSeconds < lifetimeSeconds)) {
    throw new RangeError(
      `renewBeforeSeconds must be at least 0 and less than lifetimeSeconds (${lifetimeSeconds}), ` +
        `got ${renewBeforeSeconds}`,
    )
  }
}

/** Compresses an IPv6 address with the WHATWG URL serializer, so one address has one cache key. */
function canonicalIpv6(address: string): string {
  return new URL(`http://[${address}]/`).hostname.slice(1, -1)
}

/**
 * Returns CN=name when the name fits in a commonName. Longer names get an empty subject, which
 * RFC 5280 section 4.2.1.6 allows when subjectAltName is critical.
 */
function subjectOf(serverName: ServerName): x509.JsonName {
  if (serverName.value.length > MAX_COMMON_NAME_LENGTH) return []
  return [{ CN: [serverName.value] }]
}

function leafExtensions(serverName: ServerName, authorityKeyIdentifier: string): x509.Extension[] {
  const emptySubject = serverName.value.length > MAX_COMMON_NAME_LENGTH
  return [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth], false),
    new x509.SubjectAlternativeNameExtension(
      [{ type: serverName.kind, value: serverName.value }],
      emptySubject,
    ),
    new x509.AuthorityKeyIdentifierExtension(authorityKeyIdentifier, false),
  ]
}

function invalidServerName(name: string, reason: string): InvalidServerNameError {
  const displayedName = name.length > MAX_DNS_NAME_LENGTH ? `${name.slice(0, 64)}…` : name
  return new InvalidServerNameError(
    `Cannot issue a TLS certificate for ${JSON.stringify(displayedName)}: ${reason}.`,
  )
}
