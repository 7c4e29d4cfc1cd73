// @peculiar/x509 2.x loads tsyringe, which needs the Reflect metadata API before it is imported.
import 'reflect-metadata'
import * as x509 from '@peculiar/x509'
import {
  createPrivateKey,
  randomBytes,
  X509Certificate as NodeX509Certificate,
  type KeyObject,
  type webcrypto,
} from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { InvalidCertificateAuthorityError } from '../errors.js'

x509.cryptoProvider.set(crypto)

/**
 * A CA that signs the leaf certificates the sidecar presents to the agent. Only
 * `certificatePem` is for use outside src/tls.
 */
export interface CertificateAuthority {
  /** The CA certificate in PEM form, for clients to trust. */
  readonly certificatePem: string
  readonly certificate: x509.X509Certificate
  /** Non-extractable private key of the CA. */
  readonly signingKey: webcrypto.CryptoKey
  readonly signingAlgorithm: webcrypto.Algorithm | webcrypto.EcdsaParams | webcrypto.RsaHashedImportParams
  /** Hexadecimal key identifier that leaf certificates carry in authorityKeyIdentifier. */
  readonly keyIdentifier: string
  /** The certificate file, or a description of a generated CA, for error messages. */
  readonly source: string
}

export interface LoadCertificateAuthorityOptions {
  /** Clock in epoch milliseconds for the validity check. Default `Date.now`. */
  readonly now?: () => number
}

export interface GenerateCertificateAuthorityOptions {
  /** Days from now to notAfter. Default 3650. */
  readonly validityDays?: number
  /** Clock in epoch milliseconds. Default `Date.now`. */
  readonly now?: () => number
}

/**
 * The private key of a generated CA exists only in this process, so no certificate can be issued
 * with it after the process exits. A long validity therefore costs nothing, and it keeps a
 * long-running sidecar from outliving its own CA.
 */
export const DEFAULT_GENERATED_CA_VALIDITY_DAYS = 3650

const ECDSA_P256_SHA256 = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const
const SERIAL_NUMBER_BYTES = 16
const HOUR_MS = 3_600_000
const DAY_MS = 24 * HOUR_MS

/**
 * Loads a CA from a PEM certificate file and a PEM private key file (PKCS#8, SEC1 or PKCS#1).
 * Rejects with InvalidCertificateAuthorityError when a file cannot be read or parsed, the
 * certificate is not a CA or not valid now, or the key does not match the certificate.
 */
export async function loadCertificateAuthority(
  certFile: string,
  keyFile: string,
  options: LoadCertificateAuthorityOptions = {},
): Promise<CertificateAuthority> {
  const certificatePem = await readPemFile(certFile, 'CA certificate file')
  const privateKeyPem = await readPemFile(keyFile, 'CA private key file')

  const certificate = parseCaCertificate(certFile, certificatePem)
  const privateKey = parsePrivateKey(keyFile, privateKeyPem)

  checkIsCertificateAuthority(certFile, certificate)
  checkValidity(certFile, certificate, (options.now ?? Date.now)())
  if (!certificate.checkPrivateKey(privateKey)) {
    throw new InvalidCertificateAuthorityError(
      'key_mismatch',
      `CA private key file ${keyFile} does not match the public key of CA certificate ${certFile}. ` +
        'Provide the private key the certificate was issued for.',
    )
  }

  const signer = importSigningKey(keyFile, privateKey)
  const parsed = new x509.X509Certificate(certificate.raw)
  return {
    certificatePem: parsed.toString('pem'),
    certificate: parsed,
    signingKey: signer.key,
    signingAlgorithm: signer.algorithm,
    keyIdentifier: await keyIdentifierOf(parsed),
    source: `CA certificate ${certFile}`,
  }
}

/**
 * Generates a self-signed ECDSA P-256 CA whose private key is non-extractable and kept only in
 * memory. The CA can sign end-entity certificates only (pathLenConstraint 0).
 */
export async function generateCertificateAuthority(
  options: GenerateCertificateAuthorityOptions = {},
): Promise<CertificateAuthority> {
  const now = (options.now ?? Date.now)()
  const validityDays = options.validityDays ?? DEFAULT_GENERATED_CA_VALIDITY_DAYS
  const keys = await crypto.subtle.generateKey(ECDSA_P256_SHA256, false, ['sign', 'verify'])
  const subjectKeyIdentifier = await x509.SubjectKeyIdentifierExtension.create(keys.publicKey)

  const certificate = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerialNumber(),
    name: [{ CN: [`obo-sidecar local CA ${randomBytes(4).toString('hex')}`] }],
    notBefore: new Date(now - HOUR_MS),
    notAfter: new Date(now + validityDays * DAY_MS),
    keys,
    signingAlgorithm: ECDSA_P256_SHA256,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      subjectKeyIdentifier,
    ],
  })

  return {
    certificatePem: certificate.toString('pem'),
    certificate,
    signingKey: keys.privateKey,
    signingAlgorithm: ECDSA_P256_SHA256,
    keyIdentifier: subjectKeyIdentifier.keyId,
    source: `generated CA "${certificate.subject}"`,
  }
}

/**
 * Returns a random positive 16-octet certificate serial number in hexadecimal. The first octet has
 * its sign bit cleared and is never zero, so the DER INTEGER keeps all 16 octets.
 */
export function randomSerialNumber(): string {
  const bytes = randomBytes(SERIAL_NUMBER_BYTES)
  bytes[0] = (bytes[0] & 0x7f) || 0x01
  return bytes.toString('hex')
}

async function readPemFile(file: string, description: string): Promise<string> {
  try {
    return await readFile(file, 'utf8')
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'unknown error'
    throw new InvalidCertificateAuthorityError(
      'unreadable',
      `Failed to read ${description} ${file} (${code}). Check the path and its permissions.`,
      { cause: error },
    )
  }
}

function parseCaCertificate(certFile: string, pem: string): NodeX509Certificate {
  const certificateCount = pem.match(/-----BEGIN CERTIFICATE-----/g)?.length ?? 0
  if (certificateCount === 0) {
    throw new InvalidCertificateAuthorityError(
      'malformed',
      `CA certificate file ${certFile} contains no PEM certificate ("BEGIN CERTIFICATE"). ` +
        'Provide the CA certificate in PEM form.',
    )
  }
  if (certificateCount > 1) {
    throw new InvalidCertificateAuthorityError(
      'malformed',
      `CA certificate file ${certFile} contains ${certificateCount} certificates. ` +
        'It must contain only the CA certificate.',
    )
  }
  try {
    return new NodeX509Certificate(pem)
  } catch (error) {
    throw new InvalidCertificateAuthorityError(
      'malformed',
      `CA certificate file ${certFile} contains a certificate that cannot be parsed. ` +
        'Provide a valid X.509 CA certificate in PEM form.',
      { cause: error },
    )
  }
}

function parsePrivateKey(keyFile: string, pem: string): KeyObject {
  try {
    return createPrivateKey({ key: pem, format: 'pem' })
  } catch (error) {
    // No cause is attached, so this error cannot carry any text derived from the key file.
    const encrypted = (error as NodeJS.ErrnoException).code === 'ERR_MISSING_PASSPHRASE'
    throw new InvalidCertificateAuthorityError(
      'malformed',
      encrypted
        ? `CA private key file ${keyFile} is encrypted. Provide the key without a passphrase.`
        : `CA private key file ${keyFile} contains no PEM private key. Provide it as PKCS#8 ` +
            '("BEGIN PRIVATE KEY"), SEC1 ("BEGIN EC PRIVATE KEY") or PKCS#1 ("BEGIN RSA PRIVATE KEY").',
    )
  }
}

function checkIsCertificateAuthority(certFile: string, certificate: NodeX509Certificate): void {
  if (!certificate.ca) {
    throw new InvalidCertificateAuthorityError(
      'not_ca',
      `CA certificate ${certFile} is not a CA certificate: its basicConstraints extension does not ` +
        'set cA to true. Use a certificate issued with "basicConstraints=critical,CA:TRUE".',
    )
  }

  const keyUsage = new x509.X509Certificate(certificate.raw).getExtension(x509.KeyUsagesExtension)
  if (keyUsage !== null && (keyUsage.usages & x509.KeyUsageFlags.keyCertSign) === 0) {
    throw new InvalidCertificateAuthorityError(
      'not_ca',
      `CA certificate ${certFile} has a keyUsage extension without keyCertSign, so clients reject ` +
        'the certificates it signs. Use a CA certificate whose keyUsage includes keyCertSign.',
    )
  }
}

function checkValidity(certFile: string, certificate: NodeX509Certificate, now: number): void {
  if (now < certificate.validFromDate.getTime()) {
    throw new InvalidCertificateAuthorityError(
      'not_yet_valid',
      `CA certificate ${certFile} is not valid before ${certificate.validFromDate.toISOString()}. ` +
        'Check the system clock, or use a certificate that is valid now.',
    )
  }
  if (now >= certificate.validToDate.getTime()) {
    throw new InvalidCertificateAuthorityError(
      'expired',
      `CA certificate ${certFile} expired at ${certificate.validToDate.toISOString()}. ` +
        'Replace it with a current CA certificate and key.',
    )
  }
}

interface SigningKey {
  readonly key: webcrypto.CryptoKey
  readonly algorithm: CertificateAuthority['signingAlgorithm']
}

/** WebCrypto ECDSA parameters by OpenSSL curve name, each curve with the hash of matching strength. */
const ECDSA_PARAMETERS_BY_CURVE: Readonly<Record<string, { namedCurve: string; hash: string }>> = {
  prime256v1: { namedCurve: 'P-256', hash: 'SHA-256' },
  secp384r1: { namedCurve: 'P-384', hash: 'SHA-384' },
  secp521r1: { namedCurve: 'P-521', hash: 'SHA-512' },
}

function importSigningKey(keyFile: string, privateKey: KeyObject): SigningKey {
  const keyType = privateKey.asymmetricKeyType
  if (keyType === 'rsa') {
    const algorithm = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }
    return { key: privateKey.toCryptoKey(algorithm, false, ['sign']), algorithm }
  }

  const curve = privateKey.asymmetricKeyDetails?.namedCurve
  const ecdsa = keyType === 'ec' && curve !== undefined ? ECDSA_PARAMETERS_BY_CURVE[curve] : undefined
  if (ecdsa === undefined) {
    const keyDescription = keyType === 'ec' ? `EC ${curve ?? 'unknown curve'}` : (keyType ?? 'unknown')
    throw new InvalidCertificateAuthorityError(
      'unsupported_key',
      `CA private key file ${keyFile} is a ${keyDescription} key. ` +
        'Use an EC key on P-256, P-384 or P-521, or an RSA key.',
    )
  }
  const algorithm = { name: 'ECDSA', ...ecdsa }
  return { key: privateKey.toCryptoKey(algorithm, false, ['sign']), algorithm }
}

/**
 * Returns the CA's subjectKeyIdentifier, or else computes one as the SHA-1 hash of the
 * subjectPublicKey bits (RFC 5280 section 4.2.1.2, method 1).
 */
async function keyIdentifierOf(certificate: x509.X509Certificate): Promise<string> {
  const subjectKeyIdentifier = certificate.getExtension(x509.SubjectKeyIdentifierExtension)
  if (subjectKeyIdentifier !== null) return subjectKeyIdentifier.keyId
  const computed = await x509.SubjectKeyIdentifierExtension.create(certificate.publicKey)
  return computed.keyId
}
