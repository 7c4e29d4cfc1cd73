/**
 * Writes the files an agent needs to trust the sidecar's leaf certificates:
 *
 * - `ca.crt`: the sidecar CA certificate alone.
 * - `ca-bundle.crt`: a drop-in replacement for the system trust store, for clients that accept a
 *   single CA file (`SSL_CERT_FILE`, `REQUESTS_CA_BUNDLE`, `curl --cacert`).
 *   It contains, each certificate once and in this order:
 *   1. `tls.rootCertificates`, the Mozilla root store compiled into the running Node.js;
 *   2. the Debian/Ubuntu system bundle `/etc/ssl/certs/ca-certificates.crt`, when it is readable,
 *      which adds roots the image installed through update-ca-certificates;
 *   3. the sidecar CA certificate, last.
 *
 * Both files are public certificates. The CA private key is never written.
 */
import { randomBytes } from 'node:crypto'
import { mkdir, open, readFile, rename, rm } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import tls from 'node:tls'
import type { CertificateAuthority } from './ca.js'

export interface CaFiles {
  /** `DIR/ca.crt`, the sidecar CA certificate. */
  readonly caFile: string
  /** `DIR/ca-bundle.crt`, the public roots followed by the sidecar CA certificate. */
  readonly bundleFile: string
}

export interface WriteCaFilesOptions {
  /** System CA bundle to include when readable. Default `/etc/ssl/certs/ca-certificates.crt`. */
  readonly systemBundleFile?: string
}

export const DEBIAN_SYSTEM_BUNDLE_FILE = '/etc/ssl/certs/ca-certificates.crt'

const FILE_MODE = 0o644
const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]+-----END CERTIFICATE-----/g

/**
 * Writes `DIR/ca.crt` and `DIR/ca-bundle.crt`, creating DIR if needed. Each file is written to a
 * temporary name in DIR and renamed, so a reader sees either the old file or the complete new one.
 */
export async function writeCaFiles(
  dir: string,
  ca: CertificateAuthority,
  options: WriteCaFilesOptions = {},
): Promise<CaFiles> {
  const systemBundle = await readIfReadable(options.systemBundleFile ?? DEBIAN_SYSTEM_BUNDLE_FILE)
  const roots = [...tls.rootCertificates, ...splitPemCertificates(systemBundle ?? '')]
  const bundle = uniqueCertificates(roots, ca.certificatePem)

  await mkdir(dir, { recursive: true })
  const caFile = join(dir, 'ca.crt')
  const bundleFile = join(dir, 'ca-bundle.crt')
  await writeFileAtomically(caFile, `${ca.certificatePem.trim()}\n`)
  await writeFileAtomically(bundleFile, `${bundle.join('\n')}\n`)
  return { caFile, bundleFile }
}

function splitPemCertificates(text: string): string[] {
  return text.match(PEM_CERTIFICATE) ?? []
}

/** Returns `roots` without duplicates, then `caPem`. Certificates are compared by their base64 body. */
function uniqueCertificates(roots: readonly string[], caPem: string): string[] {
  const caBody = pemBody(caPem)
  const seen = new Set<string>([caBody])
  const unique: string[] = []
  for (const pem of roots) {
    const body = pemBody(pem)
    if (seen.has(body)) continue
    seen.add(body)
    unique.push(pem.trim())
  }
  unique.push(caPem.trim())
  return unique
}

function pemBody(pem: string): string {
  return pem.replace(/-----(BEGIN|END) CERTIFICATE-----/g, '').replace(/\s+/g, '')
}

async function readIfReadable(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, 'utf8')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== undefined) return undefined
    throw error
  }
}

async function writeFileAtomically(file: string, data: string): Promise<void> {
  const temporaryFile = join(dirname(file), `.${basename(file)}.${randomBytes(6).toString('hex')}.tmp`)
  try {
    const handle = await open(temporaryFile, 'wx', FILE_MODE)
    try {
      await handle.writeFile(data, 'utf8')
      // open() applies the umask to FILE_MODE, so chmod sets the mode exactly.
      await handle.chmod(FILE_MODE)
      await handle.sync()
    } finally {
      await handle.close()
    }
    await rename(temporaryFile, file)
  } catch (error) {
    await rm(temporaryFile, { force: true })
    throw error
  }
}
