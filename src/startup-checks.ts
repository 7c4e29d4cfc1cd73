import type { SecretReader } from './config/secrets.js'
import type { RoutesConfig } from './config/types.js'
import { ConfigError } from './errors.js'
import type { UnroutedPolicy } from './proxy/egress-policy.js'
import { readCaFile } from './proxy/trust.js'

/**
 * Runs the checks a routes file must pass beyond its own syntax, at start-up and on every reload,
 * so that a problem stops start-up or rejects the reload instead of failing the first request.
 */
export function checkRoutesEnvironment(config: RoutesConfig, secrets: SecretReader, policy: UnroutedPolicy): void {
  checkIssuerSecrets(config, secrets)
  checkUpstreamCaFiles(config)
  checkEgressPolicy(config, policy)
}

/** Reads every secret the issuers reference; the error names the issuer, the file or variable. */
export function checkIssuerSecrets(config: RoutesConfig, secrets: SecretReader): void {
  for (const issuer of config.issuers.values()) {
    if (issuer.clientSecret !== undefined) secrets.read(issuer.clientSecret, `issuer "${issuer.name}" clientSecret`)
    if (issuer.actorToken !== undefined) secrets.read(issuer.actorToken.source, `issuer "${issuer.name}" actorToken`)
  }
}

/** Reads each route's `upstreamCaFile` once, so a missing or empty file is reported early. */
export function checkUpstreamCaFiles(config: RoutesConfig): void {
  for (const route of config.routes) {
    if (route.upstreamCaFile !== undefined) readCaFile(route.upstreamCaFile)
  }
}

/** Requires `userTokenIssuers` under `strip`, which recognizes the user's token by its issuer. */
export function checkEgressPolicy(config: RoutesConfig, policy: UnroutedPolicy): void {
  if (policy === 'strip' && config.userTokenIssuers.length === 0) {
    throw new ConfigError([
      {
        file: config.file,
        line: 1,
        col: 1,
        message:
          'the unrouted policy is strip, which needs "userTokenIssuers": list the iss values of the users\' tokens, e.g. userTokenIssuers: [https://login.example.com]',
      },
    ])
  }
}
