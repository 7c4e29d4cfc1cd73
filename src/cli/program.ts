import { readFileSync } from 'node:fs'
import { Command, Option } from 'commander'
import { loadRoutesFile } from '../config/load.js'
import { ConfigError, OboError, formatConfigProblem } from '../errors.js'
import { LOG_LEVELS, createLogger, type LogLevel } from '../observability/logger.js'
import { INTERCEPT_MODES, type InterceptMode } from '../proxy/connect.js'
import { UNROUTED_POLICIES, type UnroutedPolicy } from '../proxy/egress-policy.js'
import { startSidecar, type ListenAddress, type SidecarSettings } from '../sidecar.js'
import { integerParser, parseListenAddress, secondsParser } from './options.js'

const DEFAULT_LISTEN = '127.0.0.1:15080'
const DEFAULT_ADMIN_LISTEN = '127.0.0.1:15090'
const MIB = 1024 * 1024

interface RunOptions {
  routes: string
  listen: ListenAddress
  adminListen: ListenAddress
  logLevel: LogLevel
  exchangeTimeout: number
  defaultTokenLifetime: number
  maxTokenLifetime: number
  cacheExpirySkew: number
  cacheMaxEntries: number
  cacheMaxBytes: number
  upstreamHeadersTimeout: number
  maxHeaderBytes: number
  shutdownGrace: number
  intercept: InterceptMode
  unroutedPolicy: UnroutedPolicy
  caCert?: string
  caKey?: string
  caOut?: string
  configPollInterval: number
}

function packageVersion(): string {
  const manifest = new URL('../../../package.json', import.meta.url)
  return (JSON.parse(readFileSync(manifest, 'utf8')) as { version: string }).version
}

function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? '' : 's'}`
}

/** Creates an option that the `OBO_SIDECAR_<env>` environment variable can also set. */
function option(flags: string, description: string, env: string): Option {
  return new Option(flags, description).env(`OBO_SIDECAR_${env}`)
}

function buildProgram(): Command {
  const program = new Command('obo-sidecar')
    .description('Forward proxy that swaps the user token on each routed request for an on-behalf-of token from the identity provider.')
    .version(packageVersion(), '-V, --version', 'print the version and exit')
    .showHelpAfterError('(add --help for usage)')

  program
    .command('run')
    .description('start the proxy and admin listeners')
    .addOption(option('--routes <file>', 'routes file (YAML) mapping hosts to issuers, audiences and scopes', 'ROUTES').makeOptionMandatory())
    .addOption(option('--listen <host:port>', 'proxy listener address; loopback unless you need otherwise', 'LISTEN').default(parseListenAddress(DEFAULT_LISTEN), DEFAULT_LISTEN).argParser(parseListenAddress))
    .addOption(option('--admin-listen <host:port>', 'admin listener address for /metrics, /healthz and /readyz', 'ADMIN_LISTEN').default(parseListenAddress(DEFAULT_ADMIN_LISTEN), DEFAULT_ADMIN_LISTEN).argParser(parseListenAddress))
    .addOption(option('--log-level <level>', 'minimum level of the JSON log lines on standard output', 'LOG_LEVEL').choices(LOG_LEVELS).default('info'))
    .addOption(option('--exchange-timeout <seconds>', 'time limit for one token exchange request', 'EXCHANGE_TIMEOUT').argParser(secondsParser(0.1, 120)).default(10))
    .addOption(option('--default-token-lifetime <seconds>', 'lifetime assumed for an exchanged token whose response has no expires_in and which is not a JWT with exp', 'DEFAULT_TOKEN_LIFETIME').argParser(integerParser(0, 86_400)).default(300))
    .addOption(option('--max-token-lifetime <seconds>', 'upper bound on how long an exchanged token is cached, whatever the IdP says', 'MAX_TOKEN_LIFETIME').argParser(integerParser(1, 7 * 86_400)).default(86_400))
    .addOption(option('--cache-expiry-skew <seconds>', 'cached tokens are dropped this long before they expire', 'CACHE_EXPIRY_SKEW').argParser(integerParser(0, 3_600)).default(30))
    .addOption(option('--cache-max-entries <count>', 'maximum number of cached exchanged tokens', 'CACHE_MAX_ENTRIES').argParser(integerParser(1, 10_000_000)).default(10_000))
    .addOption(option('--cache-max-bytes <bytes>', 'maximum total size of cached tokens and keys', 'CACHE_MAX_BYTES').argParser(integerParser(1024, 64 * 1024 * MIB)).default(64 * MIB, '64 MiB'))
    .addOption(option('--upstream-headers-timeout <seconds>', 'time limit for an upstream to send its response headers', 'UPSTREAM_HEADERS_TIMEOUT').argParser(secondsParser(0.1, 3_600)).default(300))
    .addOption(option('--max-header-bytes <bytes>', 'largest request header section accepted from the agent', 'MAX_HEADER_BYTES').argParser(integerParser(8 * 1024, 1024 * 1024)).default(64 * 1024, '64 KiB'))
    .addOption(option('--shutdown-grace <seconds>', 'time in-flight requests get to finish after SIGTERM', 'SHUTDOWN_GRACE').argParser(secondsParser(0, 3_600)).default(10))
    .addOption(option('--intercept <mode>', 'which CONNECT tunnels get TLS interception: routed (hosts with a route) or all', 'INTERCEPT').choices(INTERCEPT_MODES).default('routed'))
    .addOption(option('--unrouted-policy <policy>', "requests to hosts without a route: forward unchanged, strip the user's token, or deny", 'UNROUTED_POLICY').choices(UNROUTED_POLICIES).default('forward'))
    .addOption(option('--ca-cert <file>', 'PEM certificate of the CA that signs intercepted leaf certificates (default: a CA generated at start-up)', 'CA_CERT'))
    .addOption(option('--ca-key <file>', 'PEM private key (PKCS#8, SEC1 or PKCS#1) of --ca-cert', 'CA_KEY'))
    .addOption(option('--config-poll-interval <seconds>', 'how often the routes file is re-read in case a file change was not reported; it is also watched, and SIGHUP reloads it', 'CONFIG_POLL_INTERVAL').argParser(secondsParser(1, 3_600)).default(10))
    .addOption(option('--ca-out <dir>', 'directory to write ca.crt and ca-bundle.crt (system roots plus the CA) for the agent to trust', 'CA_OUT'))
    .action(async (options: RunOptions) => {
      if ((options.caCert === undefined) !== (options.caKey === undefined)) {
        process.stderr.write('obo-sidecar: not started: --ca-cert and --ca-key go together; give both or neither\n')
        process.exitCode = 1
        return
      }
      await run(options)
    })

  program
    .command('validate')
    .description('check a routes file; prints each problem as FILE:LINE:COL: message and exits 1 if there are any')
    .argument('<file>', 'routes file to check')
    .action((file: string) => {
      validate(file)
    })

  return program
}

function validate(file: string): void {
  try {
    const config = loadRoutesFile(file)
    process.stdout.write(
      `${file}: valid (${plural(config.routes.length, 'route')}, ${plural(config.issuers.size, 'issuer')}); ` +
        'secrets and CA files are read when run starts\n',
    )
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error
    for (const problem of error.problems) process.stderr.write(`${formatConfigProblem(problem)}\n`)
    process.exitCode = 1
  }
}

function toSettings(options: RunOptions): SidecarSettings {
  return {
    routesFile: options.routes,
    listen: options.listen,
    adminListen: options.adminListen,
    exchangeTimeoutMs: options.exchangeTimeout * 1000,
    defaultTokenLifetimeSeconds: options.defaultTokenLifetime,
    maxTokenLifetimeSeconds: options.maxTokenLifetime,
    cacheExpirySkewSeconds: options.cacheExpirySkew,
    cacheMaxEntries: options.cacheMaxEntries,
    cacheMaxBytes: options.cacheMaxBytes,
    upstreamHeadersTimeoutMs: options.upstreamHeadersTimeout * 1000,
    maxHeaderBytes: options.maxHeaderBytes,
    shutdownGraceMs: options.shutdownGrace * 1000,
    intercept: options.intercept,
    unroutedPolicy: options.unroutedPolicy,
    caCertFile: options.caCert,
    caKeyFile: options.caKey,
    caOutDir: options.caOut,
    configPollIntervalMs: options.configPollInterval * 1000,
  }
}

async function run(options: RunOptions): Promise<void> {
  const logger = createLogger(options.logLevel)
  let sidecar
  try {
    sidecar = await startSidecar(toSettings(options), logger)
  } catch (error) {
    reportStartupFailure(error)
    logger.flush()
    // Exit now rather than wait for the event loop to drain: nothing started must keep serving.
    process.exit(1)
  }

  let stopping = false
  const shutdown = (signal: NodeJS.Signals): void => {
    if (stopping) {
      logger.warn({ event: 'stop', signal }, 'second signal: closing every connection now')
      sidecar.stopNow()
      return
    }
    stopping = true
    logger.info({ event: 'stop', signal }, 'stopping: draining in-flight requests')
    sidecar.stop().then(
      () => {
        logger.flush()
        process.exitCode = 0
      },
      (error: unknown) => {
        logger.error({ event: 'stop', err: error instanceof Error ? error.message : String(error) }, 'stop failed')
        logger.flush()
        process.exitCode = 1
      },
    )
  }
  process.on('SIGTERM', shutdown)
  process.on('SIGINT', shutdown)
  process.on('SIGHUP', () => {
    sidecar.reload()
  })
}

/** Prints why start-up failed in plain lines on standard error: the messages name no secret. */
function reportStartupFailure(error: unknown): void {
  if (error instanceof ConfigError) {
    for (const problem of error.problems) process.stderr.write(`${formatConfigProblem(problem)}\n`)
    process.stderr.write(`obo-sidecar: not started: the routes file has ${error.problems.length} problem(s)\n`)
  } else if (error instanceof OboError) {
    process.stderr.write(`obo-sidecar: not started: ${error.message}\n`)
  } else {
    const message = error instanceof Error ? error.message : String(error)
    process.stderr.write(`obo-sidecar: not started: ${message}\n`)
  }
}

/** Parses the command line and runs the command. */
export async function main(argv: string[]): Promise<void> {
  await buildProgram().parseAsync(argv)
}
