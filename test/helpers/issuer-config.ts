import { ACCESS_TOKEN_TYPE, type IssuerConfig } from '../../src/config/types.js'

/** Builds a normalized issuer as the routes loader would, with `overrides` applied. */
export function issuerConfig(overrides: Partial<IssuerConfig> = {}): IssuerConfig {
  return {
    name: 'corp',
    tokenEndpoint: new URL('https://idp.example.test/oauth2/token'),
    grant: 'token-exchange',
    clientId: 'sidecar',
    clientAuth: 'none',
    clientSecret: undefined,
    subjectTokenType: ACCESS_TOKEN_TYPE,
    actorToken: undefined,
    requestedTokenType: undefined,
    ...overrides,
  }
}
