import 'reflect-metadata'
import * as x509 from '@peculiar/x509'
import { execFile } from 'node:child_process'
import { X509Certificate } from 'node:crypto'
import { once } from 'node:events'
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import tls from 'node:tls'
import { inspect, promisify } from 'node:util'
import t, { type Test } from 'tap'
import {
  InvalidCertificateAuthorityError,
  InvalidServerNameError,
  type CertificateAuthorityProblem,
} from '../../src/errors.js'
import { writeCaFiles } from '../../src/tls/ca-bundle.js'
import {
  generateCertificateAuthority,
  loadCertificateAuthority,
  type CertificateAuthority,
} from '../../src/tls/ca.js'
import { LeafCertificateCache, MAX_LEAF_LIFETIME_SECONDS } from '../../src/tls/leaf-certificates.js'

const run = promisify(execFile)

const HOUR_MS = 3_600_000
const SERVER_AUTH = '1.3.6.1.5.5.7.3.1'
/** Bound on every handshake and curl call, so a broken server fails the test instead of hanging. */
const NETWORK_TIMEOUT_MS = 10_000

/** A settable clock in whole seconds, matching the precision of X.509 validity dates. */
class FakeClock {
  time = Math.floor(Date.now() / 1000) * 1000
  readonly now = (): number => this.time
  advance(ms: number): void {
    this.time += ms
  }
}

interface TlsServer {
  readonly port: number
  close(): Promise<void>
}

/** Starts a TLS server on 127.0.0.1 that sends `hello` and closes each connection after the handshake. */
async function startTlsServer(options: tls.TlsOptions): Promise<TlsServer> {
  const server = tls.createServer(options, (socket) => socket.end('hello'))
  server.on('tlsClientError', () => {})
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  }
}

/** Starts a TLS server that mints the leaf for the client's SNI name, as the interception listener does. */
function startSniServer(cache: LeafCertificateCache): Promise<TlsServer> {
  return startTlsServer({
    SNICallback: (name, callback) => {
      cache.secureContextFor(name).then(
        (context) => callback(null, context),
        (error: Error) => callback(error),
      )
    },
  })
}

function startFixedContextServer(context: tls.SecureContext): Promise<TlsServer> {
  return startTlsServer({ SNICallback: (_name, callback) => callback(null, context) })
}

/** Resolves with the socket after a successful handshake, rejects with the handshake error. */
function connect(options: tls.ConnectionOptions): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', timeout: NETWORK_TIMEOUT_MS, ...options })
    socket.once('secureConnect', () => resolve(socket))
    socket.once('error', reject)
    socket.once('timeout', () => socket.destroy(new Error('TLS handshake timed out')))
  })
}

/**
 * Returns the leaf certificate a server using `context` presents, read over a real handshake. A TLS
 * server takes a prepared secure context only from SNICallback, so the client always sends SNI.
 */
async function presentedCertificate(context: tls.SecureContext): Promise<X509Certificate> {
  const server = await startFixedContextServer(context)
  try {
    const socket = await connect({ port: server.port, servername: 'presented.test', rejectUnauthorized: false })
    const certificate = socket.getPeerX509Certificate()!
    socket.destroy()
    return certificate
  } finally {
    await server.close()
  }
}

/** Returns the error `promise` rejects with, or fails the test when it resolves. */
async function rejectionOf(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise
  } catch (error) {
    return error
  }
  throw new Error('expected the promise to reject')
}

function caPublicKey(ca: CertificateAuthority) {
  return new X509Certificate(ca.certificatePem).publicKey
}

function certificateCount(pem: string): number {
  return pem.match(/-----BEGIN CERTIFICATE-----/g)?.length ?? 0
}

interface OpensslCertificateOptions {
  /** `-newkey` argument. Default `ec` on P-256. */
  readonly newkey?: string
  readonly basicConstraints?: string
  readonly keyUsage?: string
}

/** Generates a self-signed certificate and its PKCS#8 key with the openssl CLI and returns both paths. */
async function opensslCertificate(dir: string, name: string, options: OpensslCertificateOptions = {}) {
  const certFile = join(dir, `${name}.crt`)
  const keyFile = join(dir, `${name}.key`)
  const keyArguments =
    options.newkey === undefined ? ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'] : ['-newkey', options.newkey]
  await run('openssl', [
    'req', '-x509', ...keyArguments, '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '30',
    '-subj', `/CN=${name} test CA`,
    '-addext', `basicConstraints=${options.basicConstraints ?? 'critical,CA:TRUE'}`,
    '-addext', `keyUsage=${options.keyUsage ?? 'critical,keyCertSign,cRLSign'}`,
  ])
  return { certFile, keyFile }
}

/** Checks that a leaf minted from `ca` is trusted by a client that trusts only `ca`. */
async function assertTrustedHandshake(t: Test, ca: CertificateAuthority, servername: string) {
  const cache = new LeafCertificateCache({ ca })
  const server = await startSniServer(cache)
  try {
    const socket = await connect({ port: server.port, servername, ca: ca.certificatePem })
    t.equal(socket.authorized, true, `${servername} handshake authorized`)
    t.ok(socket.getPeerX509Certificate()!.verify(caPublicKey(ca)), 'leaf signed by the CA')
    socket.destroy()
  } finally {
    await server.close()
  }
}

void t.test('generated CA certificate', async (t) => {
  const before = Date.now()
  const ca = await generateCertificateAuthority()
  const certificate = new X509Certificate(ca.certificatePem)
  const parsed = new x509.X509Certificate(ca.certificatePem)

  t.equal(certificate.ca, true)
  t.match(certificate.subject, /^CN=obo-sidecar local CA [0-9a-f]{8}$/)
  t.equal(certificate.issuer, certificate.subject)
  t.ok(certificate.verify(certificate.publicKey), 'self-signed')
  t.equal(certificate.publicKey.asymmetricKeyType, 'ec')
  t.equal(certificate.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1')
  t.ok(certificate.validFromDate.getTime() <= before - HOUR_MS + 1000, 'notBefore an hour back')
  t.ok(certificate.validToDate.getTime() > before + 365 * 24 * HOUR_MS, 'notAfter over a year ahead')

  const basicConstraints = parsed.getExtension(x509.BasicConstraintsExtension)!
  t.equal(basicConstraints.critical, true)
  t.equal(basicConstraints.ca, true)
  t.equal(basicConstraints.pathLength, 0)
  const keyUsage = parsed.getExtension(x509.KeyUsagesExtension)!
  t.equal(keyUsage.critical, true)
  t.equal(keyUsage.usages, x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign)
  t.equal(parsed.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId, ca.keyIdentifier)

  t.equal(ca.signingKey.extractable, false)
  t.equal(ca.signingKey.type, 'private')
  t.notMatch(ca.certificatePem, /PRIVATE KEY/)
})

void t.test('generated CA names differ', async (t) => {
  const first = await generateCertificateAuthority()
  const second = await generateCertificateAuthority()
  t.not(first.certificate.subject, second.certificate.subject)
})

void t.test('leaf certificates verify against CA', async (t) => {
  const ca = await generateCertificateAuthority()
  const caCertificate = new X509Certificate(ca.certificatePem)
  const cache = new LeafCertificateCache({ ca })
  const cases = [
    { name: 'orders.example.com', check: (leaf: X509Certificate) => leaf.checkHost('orders.example.com') },
    { name: '127.0.0.1', check: (leaf: X509Certificate) => leaf.checkIP('127.0.0.1') },
    { name: '::1', check: (leaf: X509Certificate) => leaf.checkIP('::1') },
  ]

  for (const { name, check } of cases) {
    await t.test(name, async (t) => {
      const mintedAt = Date.now()
      const leaf = await presentedCertificate(await cache.secureContextFor(name))
      const parsed = new x509.X509Certificate(leaf.raw)

      t.ok(leaf.verify(caCertificate.publicKey), 'signed by the CA')
      t.ok(leaf.checkIssued(caCertificate), 'issued by the CA')
      t.equal(check(leaf), name)
      t.equal(leaf.checkHost('other.example.com'), undefined)
      t.equal(leaf.subject, `CN=${name}`)
      t.equal(leaf.ca, false)

      t.equal(leaf.publicKey.asymmetricKeyType, 'ec')
      t.equal(leaf.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1')
      t.same(leaf.keyUsage, [SERVER_AUTH])

      const lifetimeMs = leaf.validToDate.getTime() - mintedAt
      t.ok(lifetimeMs <= MAX_LEAF_LIFETIME_SECONDS * 1000, 'notAfter at most 24 hours ahead')
      t.ok(lifetimeMs > 23 * HOUR_MS, 'notAfter about 24 hours ahead')
      t.ok(leaf.validFromDate.getTime() <= mintedAt - 5 * 60_000 + 1000, 'notBefore backdated 5 minutes')

      t.match(leaf.serialNumber, /^[0-7][0-9A-F]{31}$/, 'positive 16-octet serial number')
      t.equal(parsed.getExtension(x509.KeyUsagesExtension)?.usages, x509.KeyUsageFlags.digitalSignature)
      t.equal(parsed.getExtension(x509.AuthorityKeyIdentifierExtension)?.keyId, ca.keyIdentifier)
      t.equal(parsed.getExtension(x509.SubjectAlternativeNameExtension)?.critical, false)
    })
  }
})

void t.test('leaf chain includes CA certificate', async (t) => {
  const ca = await generateCertificateAuthority()
  const cache = new LeafCertificateCache({ ca })
  const server = await startFixedContextServer(await cache.secureContextFor('orders.example.com'))
  t.teardown(() => server.close())

  const socket = await connect({ port: server.port, servername: 'presented.test', rejectUnauthorized: false })
  const chain = socket.getPeerCertificate(true)
  socket.destroy()
  t.equal(chain.issuerCertificate.fingerprint256, new X509Certificate(ca.certificatePem).fingerprint256)
})

void t.test('leaf serial numbers differ', async (t) => {
  const ca = await generateCertificateAuthority()
  const cache = new LeafCertificateCache({ ca })
  const first = await presentedCertificate(await cache.secureContextFor('a.example.com'))
  const second = await presentedCertificate(await cache.secureContextFor('b.example.com'))
  t.not(first.serialNumber, second.serialNumber)
})

void t.test('TLS handshake with trusted CA', async (t) => {
  const ca = await generateCertificateAuthority()
  const cache = new LeafCertificateCache({ ca })
  const server = await startSniServer(cache)
  t.teardown(() => server.close())

  const socket = await connect({ port: server.port, servername: 'orders.example.com', ca: ca.certificatePem })
  t.equal(socket.authorized, true)
  t.equal(socket.getPeerX509Certificate()?.checkHost('orders.example.com'), 'orders.example.com')
  const [data] = (await once(socket, 'data')) as [Buffer]
  t.equal(data.toString(), 'hello')
  socket.destroy()
})

void t.test('TLS handshake with untrusted CA fails', async (t) => {
  const ca = await generateCertificateAuthority()
  const otherCa = await generateCertificateAuthority()
  const cache = new LeafCertificateCache({ ca })
  const server = await startSniServer(cache)
  t.teardown(() => server.close())

  const error = await rejectionOf(
    connect({ port: server.port, servername: 'orders.example.com', ca: otherCa.certificatePem }),
  )
  t.equal((error as NodeJS.ErrnoException).code, 'SELF_SIGNED_CERT_IN_CHAIN')
})

void t.test('TLS handshake for name over 64 characters', async (t) => {
  const ca = await generateCertificateAuthority()
  const longName = `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(57)}.com`
  t.equal(longName.length, 253)

  const leaf = await presentedCertificate(await new LeafCertificateCache({ ca }).secureContextFor(longName))
  t.equal(leaf.subject, '', 'empty subject, since commonName is limited to 64 characters')
  t.equal(new x509.X509Certificate(leaf.raw).getExtension(x509.SubjectAlternativeNameExtension)?.critical, true)
  await assertTrustedHandshake(t, ca, longName)
})

void t.test('CA loaded from openssl files', async (t) => {
  const dir = t.testdir({})
  const ec = await opensslCertificate(dir, 'ec')
  const sec1KeyFile = join(dir, 'ec-sec1.key')
  await run('openssl', ['ec', '-in', ec.keyFile, '-out', sec1KeyFile])
  const rsa = await opensslCertificate(dir, 'rsa', { newkey: 'rsa:2048' })
  const pkcs1KeyFile = join(dir, 'rsa-pkcs1.key')
  await run('openssl', ['rsa', '-in', rsa.keyFile, '-traditional', '-out', pkcs1KeyFile])

  const cases = [
    { name: 'EC PKCS#8 key', certFile: ec.certFile, keyFile: ec.keyFile, header: 'BEGIN PRIVATE KEY' },
    { name: 'EC SEC1 key', certFile: ec.certFile, keyFile: sec1KeyFile, header: 'BEGIN EC PRIVATE KEY' },
    { name: 'RSA PKCS#8 key', certFile: rsa.certFile, keyFile: rsa.keyFile, header: 'BEGIN PRIVATE KEY' },
    { name: 'RSA PKCS#1 key', certFile: rsa.certFile, keyFile: pkcs1KeyFile, header: 'BEGIN RSA PRIVATE KEY' },
  ]

  for (const { name, certFile, keyFile, header } of cases) {
    await t.test(name, async (t) => {
      t.ok(readFileSync(keyFile, 'utf8').startsWith(`-----${header}-----`), `key file is ${header}`)
      const ca = await loadCertificateAuthority(certFile, keyFile)

      t.equal(ca.certificatePem.trim(), readFileSync(certFile, 'utf8').trim())
      t.equal(ca.signingKey.extractable, false)
      await assertTrustedHandshake(t, ca, 'orders.example.com')
      const leaf = await presentedCertificate(await new LeafCertificateCache({ ca }).secureContextFor('127.0.0.1'))
      t.ok(leaf.verify(caPublicKey(ca)), 'IP leaf signed by the CA')
      t.equal(leaf.checkIP('127.0.0.1'), '127.0.0.1')
    })
  }
})

void t.test('CA loaded with P-384 key', async (t) => {
  const dir = t.testdir({})
  const certFile = join(dir, 'p384.crt')
  const keyFile = join(dir, 'p384.key')
  await run('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-384', '-nodes',
    '-keyout', keyFile, '-out', certFile, '-days', '30', '-subj', '/CN=p384 test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE',
  ])

  const ca = await loadCertificateAuthority(certFile, keyFile)
  await assertTrustedHandshake(t, ca, 'orders.example.com')
  const leaf = await presentedCertificate(await new LeafCertificateCache({ ca }).secureContextFor('orders.example.com'))
  t.equal(leaf.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1', 'leaf key stays P-256')
})

void t.test('CA load rejections', async (t) => {
  const dir = t.testdir({
    'garbage.crt': 'this is not a certificate\n',
    'garbage.key': 'this is not a key\n',
  })
  const ca = await opensslCertificate(dir, 'ca')
  const other = await opensslCertificate(dir, 'other')
  const notCa = await opensslCertificate(dir, 'leaf', { basicConstraints: 'critical,CA:FALSE', keyUsage: 'digitalSignature' })
  const noCertSign = await opensslCertificate(dir, 'nocertsign', { keyUsage: 'critical,digitalSignature' })
  const ed25519 = await opensslCertificate(dir, 'ed25519', { newkey: 'ed25519' })
  const encryptedKeyFile = join(dir, 'encrypted.key')
  await run('openssl', ['pkey', '-in', ca.keyFile, '-aes256', '-passout', 'pass:test-passphrase', '-out', encryptedKeyFile])
  const twoCertificatesFile = join(dir, 'two.crt')
  writeFileSync(twoCertificatesFile, readFileSync(ca.certFile, 'utf8') + readFileSync(other.certFile, 'utf8'))
  const missingFile = join(dir, 'missing.crt')
  // The second line of each PEM key file is its first line of base64 key material.
  const keyLines = readdirSync(dir)
    .filter((file) => file.endsWith('.key'))
    .map((file) => readFileSync(join(dir, file), 'utf8').split('\n')[1])
    .filter((line) => line !== undefined && line.length > 20)

  const cases: { name: string; certFile: string; keyFile: string; problem: CertificateAuthorityProblem; names: string[] }[] = [
    { name: 'mismatched key', certFile: ca.certFile, keyFile: other.keyFile, problem: 'key_mismatch', names: [ca.certFile, other.keyFile] },
    { name: 'non-CA certificate', certFile: notCa.certFile, keyFile: notCa.keyFile, problem: 'not_ca', names: [notCa.certFile] },
    { name: 'keyUsage without keyCertSign', certFile: noCertSign.certFile, keyFile: noCertSign.keyFile, problem: 'not_ca', names: [noCertSign.certFile] },
    { name: 'garbage certificate file', certFile: join(dir, 'garbage.crt'), keyFile: ca.keyFile, problem: 'malformed', names: [join(dir, 'garbage.crt')] },
    { name: 'garbage key file', certFile: ca.certFile, keyFile: join(dir, 'garbage.key'), problem: 'malformed', names: [join(dir, 'garbage.key')] },
    { name: 'certificate as key file', certFile: ca.certFile, keyFile: ca.certFile, problem: 'malformed', names: [ca.certFile] },
    { name: 'encrypted key', certFile: ca.certFile, keyFile: encryptedKeyFile, problem: 'malformed', names: [encryptedKeyFile, 'encrypted'] },
    { name: 'two certificates', certFile: twoCertificatesFile, keyFile: ca.keyFile, problem: 'malformed', names: [twoCertificatesFile, '2 certificates'] },
    { name: 'missing file', certFile: missingFile, keyFile: ca.keyFile, problem: 'unreadable', names: [missingFile, 'ENOENT'] },
    { name: 'Ed25519 key', certFile: ed25519.certFile, keyFile: ed25519.keyFile, problem: 'unsupported_key', names: [ed25519.keyFile, 'ed25519'] },
  ]

  for (const { name, certFile, keyFile, problem, names } of cases) {
    await t.test(name, async (t) => {
      const error = await rejectionOf(loadCertificateAuthority(certFile, keyFile))
      t.type(error, InvalidCertificateAuthorityError)
      const caError = error as InvalidCertificateAuthorityError
      t.equal(caError.code, 'OBO_TLS_CA_INVALID')
      t.equal(caError.statusCode, 500)
      t.equal(caError.problem, problem)
      for (const expected of names) t.ok(caError.message.includes(expected), `message names ${expected}`)
      const errorText = `${caError.message}\n${inspect(caError.cause)}`
      t.notOk(keyLines.some((line) => errorText.includes(line)), 'message and cause contain no key material')
    })
  }
})

void t.test('CA load checks validity period', async (t) => {
  const dir = t.testdir({})
  const { certFile, keyFile } = await opensslCertificate(dir, 'ca')
  const day = 24 * HOUR_MS

  const expired = await rejectionOf(loadCertificateAuthority(certFile, keyFile, { now: () => Date.now() + 31 * day }))
  t.equal((expired as InvalidCertificateAuthorityError).problem, 'expired')
  t.ok((expired as Error).message.includes(certFile))

  const early = await rejectionOf(loadCertificateAuthority(certFile, keyFile, { now: () => Date.now() - day }))
  t.equal((early as InvalidCertificateAuthorityError).problem, 'not_yet_valid')
  t.ok((early as Error).message.includes(certFile))
})

void t.test('cache mints once per name', async (t) => {
  const ca = await generateCertificateAuthority()
  const minted: string[] = []
  const cache = new LeafCertificateCache({ ca, onMint: (name) => minted.push(name) })

  const first = await cache.secureContextFor('orders.example.com')
  const second = await cache.secureContextFor('orders.example.com')
  const upperCase = await cache.secureContextFor('Orders.Example.COM')

  t.equal(second, first)
  t.equal(upperCase, first)
  t.equal(cache.mintedCount, 1)
  t.same(minted, ['orders.example.com'])
  t.equal(cache.size, 1)
})

void t.test('cache shares concurrent mints', async (t) => {
  const ca = await generateCertificateAuthority()
  const cache = new LeafCertificateCache({ ca })

  const contexts = await Promise.all(Array.from({ length: 20 }, () => cache.secureContextFor('orders.example.com')))

  t.equal(cache.mintedCount, 1)
  t.equal(new Set(contexts).size, 1)
})

void t.test('cache keys IPv6 by address', async (t) => {
  const ca = await generateCertificateAuthority()
  const cache = new LeafCertificateCache({ ca })

  const plain = await cache.secureContextFor('::1')
  t.equal(await cache.secureContextFor('[::1]'), plain)
  t.equal(await cache.secureContextFor('0:0:0:0:0:0:0:1'), plain)
  t.equal(cache.mintedCount, 1)
})

void t.test('cache renews near expiry', async (t) => {
  const ca = await generateCertificateAuthority()
  const clock = new FakeClock()
  const cache = new LeafCertificateCache({ ca, now: clock.now, lifetimeSeconds: 24 * 3600, renewBeforeSeconds: 3600 })

  const first = await cache.secureContextFor('orders.example.com')
  clock.advance(23 * HOUR_MS - 1000)
  t.equal(await cache.secureContextFor('orders.example.com'), first, 'served until the renewal window')
  t.equal(cache.mintedCount, 1)

  clock.advance(1000)
  const renewed = await cache.secureContextFor('orders.example.com')
  t.not(renewed, first, 're-minted an hour before notAfter')
  t.equal(cache.mintedCount, 2)
  t.equal(await cache.secureContextFor('orders.example.com'), renewed)
})

void t.test('leaf notAfter limited by CA notAfter', async (t) => {
  const ca = await generateCertificateAuthority({ validityDays: 0.25 })
  const leaf = await presentedCertificate(await new LeafCertificateCache({ ca }).secureContextFor('orders.example.com'))
  t.equal(leaf.validToDate.getTime(), ca.certificate.notAfter.getTime())
})

void t.test('cache rejects mint after CA expiry', async (t) => {
  const ca = await generateCertificateAuthority({ validityDays: 1 })
  const clock = new FakeClock()
  const cache = new LeafCertificateCache({ ca, now: clock.now })

  clock.advance(25 * HOUR_MS)
  const error = await rejectionOf(cache.secureContextFor('orders.example.com'))
  t.type(error, InvalidCertificateAuthorityError)
  t.equal((error as InvalidCertificateAuthorityError).problem, 'expired')
  t.equal(cache.mintedCount, 0)

  clock.advance(-25 * HOUR_MS)
  await cache.secureContextFor('orders.example.com')
  t.equal(cache.mintedCount, 1, 'a failed mint is neither cached nor left in flight')
})

void t.test('cache evicts least recently used', async (t) => {
  const ca = await generateCertificateAuthority()
  const cache = new LeafCertificateCache({ ca, maxEntries: 3 })

  for (const name of ['a.example.com', 'b.example.com', 'c.example.com']) await cache.secureContextFor(name)
  await cache.secureContextFor('a.example.com')
  await cache.secureContextFor('d.example.com')
  t.equal(cache.size, 3)
  t.equal(cache.mintedCount, 4)

  await cache.secureContextFor('a.example.com')
  t.equal(cache.mintedCount, 4, 'recently used entry kept')
  await cache.secureContextFor('b.example.com')
  t.equal(cache.mintedCount, 5, 'least recently used entry evicted')
})

void t.test('cache rejects invalid names', async (t) => {
  const ca = await generateCertificateAuthority()
  const cache = new LeafCertificateCache({ ca })
  const names = [
    '',
    'a'.repeat(254),
    `${'a'.repeat(64)}.example.com`,
    '*.example.com',
    '*',
    'orders.*.com',
    'under_score.example.com',
    'white space.example.com',
    '-leading.example.com',
    'trailing-.example.com',
    'double..dot.example.com',
    '.example.com',
    'example.com.',
    'orders.example.com:443',
    'orders.example.com/path',
    'ünicode.example.com',
    'fe80::1%eth0',
    '[127.0.0.1]',
    '[orders.example.com]',
    '999.1.1.1',
    '127.1',
    'orders.example.com\u0000',
  ]

  for (const name of names) {
    const error = await rejectionOf(cache.secureContextFor(name))
    t.type(error, InvalidServerNameError, `${JSON.stringify(name.slice(0, 40))} rejected`)
    t.equal((error as InvalidServerNameError).code, 'OBO_TLS_SERVER_NAME_INVALID')
  }
  t.equal(cache.mintedCount, 0)
})

void t.test('cache options validated', async (t) => {
  const ca = await generateCertificateAuthority()
  t.throws(() => new LeafCertificateCache({ ca, lifetimeSeconds: 24 * 3600 + 1 }), RangeError)
  t.throws(() => new LeafCertificateCache({ ca, lifetimeSeconds: 0 }), RangeError)
  t.throws(() => new LeafCertificateCache({ ca, lifetimeSeconds: 3600, renewBeforeSeconds: 3600 }), RangeError)
  t.throws(() => new LeafCertificateCache({ ca, renewBeforeSeconds: -1 }), RangeError)
  t.throws(() => new LeafCertificateCache({ ca, maxEntries: 0 }), RangeError)
})

void t.test('writeCaFiles writes CA and bundle', async (t) => {
  const ca = await generateCertificateAuthority()
  const dir = join(t.testdir({}), 'nested', 'ca')

  const { caFile, bundleFile } = await writeCaFiles(dir, ca)
  t.equal(caFile, join(dir, 'ca.crt'))
  t.equal(bundleFile, join(dir, 'ca-bundle.crt'))

  const caText = readFileSync(caFile, 'utf8')
  t.equal(caText.trim(), ca.certificatePem.trim())
  const bundle = readFileSync(bundleFile, 'utf8')
  t.ok(bundle.includes(ca.certificatePem.trim()), 'bundle contains the CA certificate')
  t.ok(bundle.trim().endsWith(ca.certificatePem.trim()), 'CA certificate is last')
  t.ok(certificateCount(bundle) > 100, 'bundle contains the public roots')
  t.ok(certificateCount(bundle) >= tls.rootCertificates.length + 1)

  const bodies = bundle.match(/-----BEGIN CERTIFICATE-----[^-]+/g)!.map((pem) => pem.replace(/\s+/g, ''))
  t.equal(new Set(bodies).size, bodies.length, 'no certificate twice')

  t.same(readdirSync(dir).sort(), ['ca-bundle.crt', 'ca.crt'], 'no temporary files left')
  for (const file of readdirSync(dir)) {
    t.notMatch(readFileSync(join(dir, file), 'utf8'), /PRIVATE KEY/, `${file} contains no private key`)
    t.equal(statSync(join(dir, file)).mode & 0o777, 0o644, `${file} mode 0644`)
  }
})

void t.test('writeCaFiles system bundle handling', async (t) => {
  const ca = await generateCertificateAuthority()
  const extraRoot = await generateCertificateAuthority()
  const dir = t.testdir({
    'system.crt': `${tls.rootCertificates[0]}\n${extraRoot.certificatePem}\n${ca.certificatePem}\n`,
  })

  const withSystem = await writeCaFiles(join(dir, 'with'), ca, { systemBundleFile: join(dir, 'system.crt') })
  const bundle = readFileSync(withSystem.bundleFile, 'utf8')
  t.equal(certificateCount(bundle), tls.rootCertificates.length + 2, 'duplicates of Node roots and the CA dropped')
  t.ok(bundle.includes(extraRoot.certificatePem.trim()), 'extra system root included')
  t.ok(bundle.trim().endsWith(ca.certificatePem.trim()), 'CA certificate is last')

  const withoutSystem = await writeCaFiles(join(dir, 'without'), ca, { systemBundleFile: join(dir, 'missing.crt') })
  t.equal(certificateCount(readFileSync(withoutSystem.bundleFile, 'utf8')), tls.rootCertificates.length + 1)

  const again = await writeCaFiles(join(dir, 'without'), extraRoot, { systemBundleFile: join(dir, 'missing.crt') })
  t.equal(readFileSync(again.caFile, 'utf8').trim(), extraRoot.certificatePem.trim(), 'existing files replaced')
})

void t.test('curl trusts leaf through CA bundle', async (t) => {
  const ca = await generateCertificateAuthority()
  const cache = new LeafCertificateCache({ ca })
  const { bundleFile } = await writeCaFiles(t.testdir({}), ca)

  const server = https.createServer(
    {
      SNICallback: (name, callback) => {
        cache.secureContextFor(name).then(
          (context) => callback(null, context),
          (error: Error) => callback(error),
        )
      },
    },
    (_request, response) => response.end('ok'),
  )
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())))
  const port = (server.address() as AddressInfo).port

  const curlArguments = [
    '--silent', '--show-error', '--noproxy', '*', '--max-time', String(NETWORK_TIMEOUT_MS / 1000),
    '--resolve', `orders.example.com:${port}:127.0.0.1`,
  ]
  const url = `https://orders.example.com:${port}/`
  const { stdout } = await run('curl', [...curlArguments, '--cacert', bundleFile, url])
  t.equal(stdout, 'ok')

  const untrusted = await rejectionOf(run('curl', [...curlArguments, url]))
  t.equal((untrusted as { code?: number }).code, 60, 'without the bundle curl rejects the certificate')
})
