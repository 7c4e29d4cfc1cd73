import t from 'tap'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { loadRoutesFile, parseRoutes } from '../../src/config/load.js'
import { ACCESS_TOKEN_TYPE, JWT_TOKEN_TYPE } from '../../src/config/types.js'
import type { IssuerConfig } from '../../src/config/types.js'
import { ConfigError } from '../../src/errors.js'
import { runCli, writeTempFile } from '../helpers/sidecar-process.js'
import type { ConfigProblem } from '../../src/errors.js'

/** Removes the first newline and the indentation common to all lines, so fixtures can be indented here. */
function yaml(strings: TemplateStringsArray, ...values: unknown[]): string {
  const text = String.raw({ raw: strings }, ...values).replace(/^\n/, '')
  const lines = text.split('\n')
  const indents = lines.filter((line) => line.trim() !== '').map((line) => /^ */.exec(line)![0].length)
  const common = Math.min(...indents)
  return lines.map((line) => line.slice(common)).join('\n')
}

/** Returns every problem as `line:col message`, or fails when the text is valid. */
function problemsOf(text: string): string[] {
  try {
    parseRoutes(text, 'routes.yaml')
  } catch (error) {
    if (error instanceof ConfigError) return error.problems.map((problem) => `${problem.line}:${problem.col} ${problem.message}`)
    throw error
  }
  throw new Error('expected the routes file to be rejected')
}

const ISSUERS = yaml`
  issuers:
    corp:
      tokenEndpoint: https://idp.example.com/oauth2/token
      clientId: orders-agent
      clientSecret: { file: /var/run/secrets/obo/client-secret }
`

const HOST_EXPECTED = 'expected "name.example.com", "*.example.com" or either with ":port"'

interface MalformedCase {
  readonly name: string
  readonly text: string
  readonly problems: readonly string[]
}

const malformed: readonly MalformedCase[] = [
  {
    name: 'bare wildcard host',
    text: `${ISSUERS}routes:\n  - host: orders.example.com\n    issuer: corp\n  - host: a.example.com\n    issuer: corp\n  - host: "*"\n    issuer: corp\n`,
    problems: [`11:11 routes[2].host: "*" is not a valid host pattern; ${HOST_EXPECTED}`],
  },
  {
    name: 'host pattern variants',
    text: yaml`
      ${ISSUERS.trimEnd().replaceAll('\n', '\n      ')}
      routes:
        - { host: "*.", issuer: corp }
        - { host: "a.*.b", issuer: corp }
        - { host: "*.com", issuer: corp }
        - { host: "orders.example.com:0", issuer: corp }
        - { host: "::1", issuer: corp }
        - { host: "https://orders.example.com", issuer: corp }
        - { host: "orders.example.com/v1", issuer: corp }
        - { host: "10.0.0.256", issuer: corp }
        - { host: "*.10.0.0.1", issuer: corp }
        - { host: "[::1", issuer: corp }
        - { host: "bad_-label-.example.com", issuer: corp }
    `,
    problems: [
      `7:13 routes[0].host: "*." is not a valid host pattern; ${HOST_EXPECTED}`,
      `8:13 routes[1].host: "a.*.b" is not a valid host pattern; ${HOST_EXPECTED}`,
      '9:13 routes[2].host: "*.com" is not a valid host pattern: a wildcard needs at least two labels after "*.", such as "*.example.com"; "*.com" would match every host under a top-level domain',
      '10:13 routes[3].host: "orders.example.com:0" is not a valid host pattern: the port must be a number from 1 to 65535',
      '11:13 routes[4].host: "::1" is not a valid host pattern: write an IPv6 address in brackets: "[::1]"',
      '12:13 routes[5].host: "https://orders.example.com" is not a valid host pattern: remove the scheme "https://"; a host pattern is a host name with an optional port',
      '13:13 routes[6].host: "orders.example.com/v1" is not a valid host pattern: a host pattern has no path; put the path in pathPrefix',
      '14:13 routes[7].host: "10.0.0.256" is not a valid host pattern: expected an IPv4 address as four numbers from 0 to 255, e.g. "10.0.0.7"',
      '15:13 routes[8].host: "*.10.0.0.1" is not a valid host pattern: a wildcard cannot cover an IP address; list each address as its own route',
      '16:13 routes[9].host: "[::1" is not a valid host pattern: expected an IPv6 address in brackets, e.g. "[2001:db8::1]" or "[::1]:8443"',
      `17:13 routes[10].host: "bad_-label-.example.com" is not a valid host pattern; ${HOST_EXPECTED}`,
    ],
  },
  {
    name: 'misspelled key',
    text: yaml`
      issuers:
        corp:
          tokenEndpoint: https://idp.example.com/oauth2/token
          clientId: orders-agent
          clientSecert: { file: /var/run/secrets/obo/client-secret }
      routes:
        - host: orders.example.com
          issuer: corp
    `,
    problems: [
      '3:5 issuers.corp: missing required key "clientSecret"; add clientSecret: { file: /path } or { env: NAME }, or set clientAuth: none if the client has no secret',
      '5:5 issuers.corp: unknown key "clientSecert"; did you mean "clientSecret"? allowed keys: tokenEndpoint, grant, clientId, clientAuth, clientSecret, subjectTokenType, actorToken, requestedTokenType',
    ],
  },
  {
    name: 'unknown keys without a close match',
    text: yaml`
      ${ISSUERS.trimEnd().replaceAll('\n', '\n      ')}
      routes:
        - host: orders.example.com
          issuer: corp
          retries: 3
      metrics: true
    `,
    problems: [
      '9:5 routes[0]: unknown key "retries"; allowed keys: name, host, pathPrefix, issuer, audience, resource, scopes, upstream, upstreamCaFile',
      '10:1 unknown key "metrics"; allowed keys: version, userTokenIssuers, issuers, routes',
    ],
  },
  {
    name: 'token endpoint over http',
    text: ISSUERS.replace('https://idp.example.com', 'http://idp.example.com') + 'routes:\n  - host: orders.example.com\n    issuer: corp\n',
    problems: [
      '3:20 issuers.corp.tokenEndpoint: "http://idp.example.com/oauth2/token" uses http; use https (http is allowed only for a loopback host: 127.0.0.0/8, [::1] or localhost)',
    ],
  },
  {
    name: 'token endpoint with user info, fragment or no scheme',
    text: yaml`
      issuers:
        a:
          tokenEndpoint: https://agent:hunter2@idp.example.com/token
          clientId: c
          clientAuth: none
        b:
          tokenEndpoint: https://idp.example.com/token#top
          clientId: c
          clientAuth: none
        c:
          tokenEndpoint: idp.example.com/token
          clientId: c
          clientAuth: none
      routes:
        - host: orders.example.com
          issuer: a
    `,
    problems: [
      '3:20 issuers.a.tokenEndpoint: the URL contains user info ("user:password@"), which is not shown; remove it and use clientId and clientSecret',
      '7:20 issuers.b.tokenEndpoint: "https://idp.example.com/token#top" has a fragment ("#..."); remove it',
      '11:20 issuers.c.tokenEndpoint: "idp.example.com/token" is not an absolute URL; expected e.g. "https://idp.example.com/oauth2/token"',
    ],
  },
  {
    name: 'secret written inline',
    text: ISSUERS.replace('{ file: /var/run/secrets/obo/client-secret }', 's3cr3t-value') + 'routes:\n  - host: orders.example.com\n    issuer: corp\n',
    problems: [
      '5:19 issuers.corp.clientSecret: expected { file: /var/run/secrets/obo/client-secret } or { env: OBO_CLIENT_SECRET }, got a string; the routes file names where a secret is and never contains it',
    ],
  },
  {
    name: 'malformed secret references',
    text: yaml`
      issuers:
        a:
          tokenEndpoint: https://idp.example.com/token
          clientId: c
          clientSecret: { file: /run/secret, env: SECRET }
        b:
          tokenEndpoint: https://idp.example.com/token
          clientId: c
          clientSecret: { file: secrets/client }
        c:
          tokenEndpoint: https://idp.example.com/token
          clientId: c
          clientSecret: { env: 9LIVES }
        d:
          tokenEndpoint: https://idp.example.com/token
          clientId: c
          clientSecret: {}
        e:
          tokenEndpoint: https://idp.example.com/token
          clientId: c
          clientSecret: { env: 123456 }
      routes:
        - host: orders.example.com
          issuer: a
    `,
    problems: [
      '5:19 issuers.a.clientSecret: set exactly one of "file" or "env", not both',
      '9:27 issuers.b.clientSecret.file: expected an absolute path such as /var/run/secrets/obo/client-secret (the value is not shown)',
      '13:26 issuers.c.clientSecret.env: expected an environment variable name of letters, digits and "_", not starting with a digit, such as OBO_CLIENT_SECRET (the value is not shown)',
      '17:19 issuers.d.clientSecret: missing "file" or "env"; expected { file: /var/run/secrets/obo/client-secret } or { env: OBO_CLIENT_SECRET }',
      '21:26 issuers.e.clientSecret.env: expected a string, got a number; put the value in quotes to make it a string',
    ],
  },
  {
    name: 'client secret with clientAuth none',
    text: yaml`
      issuers:
        public:
          tokenEndpoint: https://idp.example.com/token
          clientId: c
          clientAuth: none
          clientSecret: { env: SECRET }
        other:
          tokenEndpoint: https://idp.example.com/token
          clientId: c
          clientAuth: private_key_jwt
      routes:
        - host: orders.example.com
          issuer: public
    `,
    problems: [
      '6:19 issuers.public.clientSecret: not allowed with clientAuth "none"; remove it, or set clientAuth to client_secret_basic or client_secret_post',
      '10:17 issuers.other.clientAuth: "private_key_jwt" is not a valid value; expected one of: client_secret_basic, client_secret_post, none',
    ],
  },
  {
    name: 'jwt-bearer issuer settings',
    text: yaml`
      issuers:
        entra:
          tokenEndpoint: https://login.example.com/tenant/oauth2/v2.0/token
          grant: jwt_bearer
          clientId: c
          clientSecret: { env: ENTRA_SECRET }
        entra2:
          tokenEndpoint: https://login.example.com/tenant/oauth2/v2.0/token
          grant: jwt-bearer
          clientId: c
          clientSecret: { env: ENTRA_SECRET }
          subjectTokenType: urn:ietf:params:oauth:token-type:jwt
          actorToken: { env: AGENT_TOKEN, type: urn:ietf:params:oauth:token-type:jwt }
      routes:
        - host: orders.example.com
          issuer: entra2
          scopes: api://orders/.default
    `,
    problems: [
      '4:12 issuers.entra.grant: "jwt_bearer" is not a valid value; did you mean "jwt-bearer"? expected one of: token-exchange, jwt-bearer',
      '12:23 issuers.entra2.subjectTokenType: applies only to grant token-exchange, but this issuer uses jwt-bearer; remove it',
      '13:17 issuers.entra2.actorToken: applies only to grant token-exchange, but this issuer uses jwt-bearer; remove it',
    ],
  },
  {
    name: 'jwt-bearer routes',
    text: yaml`
      issuers:
        entra:
          tokenEndpoint: https://login.example.com/tenant/oauth2/v2.0/token
          grant: jwt-bearer
          clientId: c
          clientSecret: { env: ENTRA_SECRET }
      routes:
        - host: orders.example.com
          issuer: entra
          audience: api://orders
        - host: billing.example.com
          issuer: entra
          scopes: []
          resource: [https://billing.example.com/]
    `,
    problems: [
      '8:5 routes[0]: missing required key "scopes"; issuer "entra" uses grant jwt-bearer, which requires at least one scope, e.g. "api://orders/.default"',
      '10:15 routes[0].audience: not allowed: issuer "entra" uses grant jwt-bearer, which sends no audience; remove it and select the API with scopes',
      '13:13 routes[1].scopes: must not be empty: issuer "entra" uses grant jwt-bearer, which requires at least one scope',
      '14:15 routes[1].resource: not allowed: issuer "entra" uses grant jwt-bearer, which sends no resource; remove it and select the API with scopes',
    ],
  },
  {
    name: 'actor token without type',
    text: yaml`
      issuers:
        corp:
          tokenEndpoint: https://idp.example.com/token
          clientId: c
          clientAuth: none
          actorToken: { file: /var/run/secrets/tokens/agent }
          requestedTokenType: access_token
      routes:
        - host: orders.example.com
          issuer: corp
    `,
    problems: [
      '6:17 issuers.corp.actorToken: missing required key "type"; set it to the actor token\'s type URI, e.g. "urn:ietf:params:oauth:token-type:jwt"',
      '7:25 issuers.corp.requestedTokenType: "access_token" is not an absolute URI; expected e.g. "urn:ietf:params:oauth:token-type:access_token"',
    ],
  },
  {
    name: 'undefined issuer',
    text: `${ISSUERS}routes:\n  - host: orders.example.com\n    issuer: crop\n`,
    problems: ['8:13 routes[0].issuer: "crop" is not defined under "issuers"; did you mean "corp"? defined issuers: corp'],
  },
  {
    name: 'routes that can never match',
    text: yaml`
      ${ISSUERS.trimEnd().replaceAll('\n', '\n      ')}
      routes:
        - name: orders
          host: orders.example.com
          pathPrefix: /v1/
          issuer: corp
        - host: Orders.Example.com
          pathPrefix: /v1/
          issuer: corp
        - host: "*.example.com"
          issuer: corp
        - host: billing.example.com:8443
          pathPrefix: /invoices/
          issuer: corp
    `,
    problems: [
      '11:5 routes[1]: same host and pathPrefix as routes[0] (host "orders.example.com", pathPrefix "/v1/"), so this route can never match; remove one or change its host or pathPrefix',
      '16:5 routes[3]: routes[2] (host "*.example.com", any path) comes first and matches every request this route matches, so this route can never match; move this route above it or remove it',
    ],
  },
  {
    name: 'duplicate route names',
    text: yaml`
      ${ISSUERS.trimEnd().replaceAll('\n', '\n      ')}
      routes:
        - name: orders
          host: orders.example.com
          issuer: corp
        - name: orders
          host: orders.example.com
          pathPrefix: /v2/
          issuer: corp
        - name: billing.example.com/v1/
          host: orders.example.com
          pathPrefix: /v3/
          issuer: corp
        - host: billing.example.com
          pathPrefix: /v1/
          issuer: corp
    `,
    problems: [
      '10:5 routes[1]: routes[0] (host "orders.example.com", any path) comes first and matches every request this route matches, so this route can never match; move this route above it or remove it',
      '10:11 routes[1].name: "orders" is already the name of routes[0]; route names must be unique because they label metrics',
      '14:5 routes[2]: routes[0] (host "orders.example.com", any path) comes first and matches every request this route matches, so this route can never match; move this route above it or remove it',
      '18:5 routes[3]: the default name "billing.example.com/v1/" (host plus pathPrefix) is already the name of routes[2]; set a unique name',
    ],
  },
  {
    name: 'duplicate YAML keys',
    text: yaml`
      issuers:
        corp:
          tokenEndpoint: https://idp.example.com/token
          clientId: first
          clientId: second
          clientAuth: none
      routes:
        - host: orders.example.com
          issuer: corp
          issuer: corp
    `,
    problems: [
      '5:5 issuers.corp: duplicate key "clientId" (first at line 4); remove one',
      '10:5 routes[0]: duplicate key "issuer" (first at line 9); remove one',
    ],
  },
  {
    name: 'wrong value types',
    text: yaml`
      issuers:
        corp:
          tokenEndpoint: [https://idp.example.com/token]
          clientId: 12345
          clientAuth: none
      routes:
        - host: orders.example.com
          issuer: corp
          scopes: { read: true }
          audience: [ok, [nested]]
        - name: true
          host: billing.example.com
          issuer: corp
          scopes: [orders.read, 7]
    `,
    problems: [
      '3:20 issuers.corp.tokenEndpoint: expected a string, got a list',
      '4:15 issuers.corp.clientId: expected a string, got the number 12345; put the value in quotes to make it a string',
      '9:13 routes[0].scopes: expected a string or a list of strings, got a mapping',
      '10:20 routes[0].audience[1]: expected a string, got a list',
      '11:11 routes[1].name: expected a string, got the boolean true; put the value in quotes to make it a string',
      '14:27 routes[1].scopes[1]: expected a string, got the number 7; put the value in quotes to make it a string',
    ],
  },
  {
    name: 'empty values',
    text: yaml`
      issuers:
        corp:
          tokenEndpoint:
          clientId: ""
          clientAuth: none
      routes:
        - host: "  "
          issuer: corp
          audience: [""]
          scopes: " "
    `,
    problems: [
      '3:5 issuers.corp.tokenEndpoint: expected a string, got an empty value',
      '4:15 issuers.corp.clientId: must not be empty',
      '7:11 routes[0].host: must not be empty',
      '9:16 routes[0].audience[0]: must not be empty',
      '10:13 routes[0].scopes: must not be empty',
    ],
  },
  {
    name: 'empty issuers and routes',
    text: 'version: 1\nissuers: {}\nroutes: []\n',
    problems: ['2:10 issuers: no issuers defined; add at least one', '3:9 routes: the list is empty; add at least one route'],
  },
  {
    name: 'missing required keys',
    text: yaml`
      version: 1
      routes:
        - pathPrefix: /v1/
    `,
    problems: [
      '1:1 missing required key "issuers"; define the identity providers that exchange tokens',
      '3:5 routes[0]: missing required key "host"; set it to the host this route applies to, e.g. "orders.example.com"',
      '3:5 routes[0]: missing required key "issuer"; set it to the name of an issuer defined under "issuers"',
    ],
  },
  {
    name: 'unsupported version',
    text: `version: 2\n${ISSUERS}routes:\n  - host: orders.example.com\n    issuer: corp\n`,
    problems: ['1:10 version: 2 is not supported; expected 1'],
  },
  {
    name: 'path prefixes',
    text: yaml`
      ${ISSUERS.trimEnd().replaceAll('\n', '\n      ')}
      routes:
        - { host: a.example.com, issuer: corp, pathPrefix: v1/ }
        - { host: b.example.com, issuer: corp, pathPrefix: "/v1/?q=1" }
        - { host: c.example.com, issuer: corp, pathPrefix: "/my files/" }
        - { host: d.example.com, issuer: corp, pathPrefix: /v1/../admin/ }
    `,
    problems: [
      '7:54 routes[0].pathPrefix: "v1/" must start with "/"; write "/v1/"',
      '8:54 routes[1].pathPrefix: "/v1/?q=1" contains "?" or "#"; a path prefix matches only the path, without query or fragment',
      '9:54 routes[2].pathPrefix: "/my files/" contains a space, control or non-ASCII character; percent-encode it as in request paths, e.g. "%20"',
      '10:54 routes[3].pathPrefix: "/v1/../admin/" contains a "." or ".." segment, which request paths never have once resolved; remove it',
    ],
  },
  {
    name: 'resources and scopes',
    text: yaml`
      ${ISSUERS.trimEnd().replaceAll('\n', '\n      ')}
      routes:
        - host: orders.example.com
          issuer: corp
          resource: [https://orders.example.com/#v1, /orders]
          scopes: [orders.read, "orders.read orders.write", 'say"hi']
    `,
    problems: [
      '9:16 routes[0].resource[0]: "https://orders.example.com/#v1" has a fragment ("#..."), which RFC 8707 forbids in a resource; remove it',
      '9:48 routes[0].resource[1]: "/orders" is not an absolute URI; expected e.g. "https://orders.example.com/"',
      '10:27 routes[0].scopes[1]: "orders.read orders.write" contains a space; list each scope as its own item',
      '10:55 routes[0].scopes[2]: "say\\"hi" is not a valid scope; a scope is printable ASCII without spaces, \'"\' or \'\\\' (RFC 6749 section 3.3)',
    ],
  },
  {
    name: 'invalid issuer names and key types',
    text: yaml`
      issuers:
        "corp idp":
          tokenEndpoint: https://idp.example.com/token
          clientId: c
          clientAuth: none
        42:
          tokenEndpoint: https://idp.example.com/token
      routes:
        - host: orders.example.com
          issuer: corp idp
    `,
    problems: [
      '2:3 issuers: name "corp idp" is invalid; use only letters, digits, "-", "_" and "."',
      '6:3 issuers: expected a string as key, got the number 42; put it in quotes',
    ],
  },
  {
    name: 'alias without anchor',
    text: `${ISSUERS}routes:\n  - host: orders.example.com\n    issuer: corp\n    scopes: *common\n`,
    problems: ['9:13 routes[0].scopes: alias *common refers to no anchor; define &common before it'],
  },
  {
    name: 'document that is not a mapping',
    text: '- host: orders.example.com\n',
    problems: ['1:1 expected a mapping, got a list'],
  },
  {
    name: 'empty file',
    text: '# nothing configured yet\n',
    problems: ['1:1 the file is empty; expected a mapping with the keys "issuers" and "routes"'],
  },
  {
    name: 'more than one document',
    text: `${ISSUERS}---\nroutes: []\n`,
    problems: ['6:1 the file contains more than one YAML document; remove the "---" separator and keep one document'],
  },
  {
    name: 'custom tag',
    text: `${ISSUERS}routes:\n  - host: !hostname orders.example.com\n    issuer: corp\n`,
    problems: [
      '7:11 unsupported YAML tag "!hostname"; remove it, since the routes file uses only plain strings, numbers, lists and mappings',
    ],
  },
]

void t.test('malformed files', (t) => {
  t.ok(malformed.length >= 14, 'at least 14 malformed files')
  for (const { name, text, problems } of malformed) {
    t.strictSame(problemsOf(text), problems, name)
  }
  t.end()
})

void t.test('three mistakes yield three problems', (t) => {
  const text = yaml`
    issuers:
      corp:
        tokenEndpoint: https://idp.example.com/token
        grant: token-exchange
        clientId: orders-agent
        clientAuth: client_secret_jwt
        clientSecret: { env: CLIENT_SECRET }
    routes:
      - host: orders.example.com
        issuer: corp
        scopes: orders.read
      - host: "*"
        issuer: corp
        pathPrefix: v2
  `
  t.strictSame(problemsOf(text), [
    '6:17 issuers.corp.clientAuth: "client_secret_jwt" is not a valid value; expected one of: client_secret_basic, client_secret_post, none',
    `12:11 routes[1].host: "*" is not a valid host pattern; ${HOST_EXPECTED}`,
    '14:17 routes[1].pathPrefix: "v2" must start with "/"; write "/v2"',
  ])
  t.end()
})

void t.test('YAML syntax error is located', (t) => {
  const text = `${ISSUERS}routes:\n  - host: orders.example.com\n    scopes: [orders.read\n    issuer: corp\n`
  let error: unknown
  try {
    parseRoutes(text, 'routes.yaml')
  } catch (caught) {
    error = caught
  }
  t.ok(error instanceof ConfigError, 'throws ConfigError')
  const problems = (error as ConfigError).problems
  t.equal(problems.length, 1)
  t.match(problems[0], { file: 'routes.yaml', line: 9, col: 5, message: /^invalid YAML: / })
  t.equal((error as ConfigError).code, 'OBO_CONFIG_INVALID')
  t.end()
})

void t.test('error message lists every problem with its location', (t) => {
  const text = `${ISSUERS}routes:\n  - host: "*"\n    issuer: crop\n`
  t.throws(() => parseRoutes(text, '/etc/obo/routes.yaml'), {
    message: [
      `/etc/obo/routes.yaml:7:11: routes[0].host: "*" is not a valid host pattern; ${HOST_EXPECTED}`,
      '/etc/obo/routes.yaml:8:13: routes[0].issuer: "crop" is not defined under "issuers"; did you mean "corp"? defined issuers: corp',
    ].join('\n'),
  })
  t.end()
})

void t.test('secret values never appear in messages', (t) => {
  const text = yaml`
    issuers:
      corp:
        tokenEndpoint: https://agent:pa55word@idp.example.com/token
        clientId: c
        clientSecret: pa55word
      other:
        tokenEndpoint: https://idp.example.com/token
        clientId: c
        clientSecret: { file: pa55word, env: pa55word }
      third:
        tokenEndpoint: https://idp.example.com/token
        clientId: c
        clientSecret: { env: pa55 word }
        actorToken: { file: pa55word, type: urn:x }
    routes:
      - host: orders.example.com
        issuer: corp
  `
  const problems = problemsOf(text)
  t.equal(problems.length, 5)
  for (const problem of problems) t.notMatch(problem, 'pa55', problem)
  t.end()
})

const FULL = yaml`
  version: 1
  issuers:
    corp:
      tokenEndpoint: https://idp.example.com/oauth2/token
      clientId: orders-agent
      clientSecret: { file: /var/run/secrets/obo/client-secret }
    entra:
      tokenEndpoint: https://login.example.com/tenant/oauth2/v2.0/token
      grant: jwt-bearer
      clientId: 5f3c0a7e-agent
      clientAuth: client_secret_post
      clientSecret: { env: ENTRA_CLIENT_SECRET }
    local:
      tokenEndpoint: http://127.0.0.1:8080/token
      clientId: dev-agent
      clientAuth: none
      subjectTokenType: urn:ietf:params:oauth:token-type:jwt
      actorToken: { file: /var/run/secrets/tokens/agent, type: urn:ietf:params:oauth:token-type:jwt }
      requestedTokenType: urn:ietf:params:oauth:token-type:access_token
  routes:
    - name: orders
      host: Orders.Example.COM.
      pathPrefix: /v1/
      issuer: corp
      audience: https://orders.example.com
      resource: [https://orders.example.com/, urn:orders]
      scopes: orders.read  orders.write
    - host: "*.Billing.example.com:8443"
      issuer: entra
      scopes: [api://billing/.default]
    - host: "[0:0::1]:9000"
      issuer: local
      audience: [a, b, a]
`

void t.test('valid file parses into normalized objects', (t) => {
  const config = parseRoutes(FULL, '/etc/obo/routes.yaml')
  t.equal(config.file, '/etc/obo/routes.yaml')
  t.strictSame([...config.issuers.keys()], ['corp', 'entra', 'local'])

  const corp = config.issuers.get('corp')!
  t.equal(corp.tokenEndpoint.href, 'https://idp.example.com/oauth2/token')
  t.strictSame(withoutEndpoint(corp), {
    name: 'corp',
    grant: 'token-exchange',
    clientId: 'orders-agent',
    clientAuth: 'client_secret_basic',
    clientSecret: { kind: 'file', path: '/var/run/secrets/obo/client-secret' },
    subjectTokenType: ACCESS_TOKEN_TYPE,
    actorToken: undefined,
    requestedTokenType: undefined,
  })

  const entra = config.issuers.get('entra')!
  t.strictSame(withoutEndpoint(entra), {
    name: 'entra',
    grant: 'jwt-bearer',
    clientId: '5f3c0a7e-agent',
    clientAuth: 'client_secret_post',
    clientSecret: { kind: 'env', name: 'ENTRA_CLIENT_SECRET' },
    subjectTokenType: ACCESS_TOKEN_TYPE,
    actorToken: undefined,
    requestedTokenType: undefined,
  })

  const local = config.issuers.get('local')!
  t.equal(local.tokenEndpoint.href, 'http://127.0.0.1:8080/token')
  t.strictSame(withoutEndpoint(local), {
    name: 'local',
    grant: 'token-exchange',
    clientId: 'dev-agent',
    clientAuth: 'none',
    clientSecret: undefined,
    subjectTokenType: JWT_TOKEN_TYPE,
    actorToken: { source: { kind: 'file', path: '/var/run/secrets/tokens/agent' }, type: JWT_TOKEN_TYPE },
    requestedTokenType: ACCESS_TOKEN_TYPE,
  })

  const [orders, billing, loopback] = config.routes
  t.equal(config.routes.length, 3)
  t.strictSame(
    { ...orders, issuer: orders.issuer.name },
    {
      name: 'orders',
      host: { hostname: 'orders.example.com', wildcard: false, port: undefined },
      pathPrefix: '/v1/',
      issuer: 'corp',
      audience: ['https://orders.example.com'],
      resource: ['https://orders.example.com/', 'urn:orders'],
      scopes: ['orders.read', 'orders.write'],
      upstream: undefined,
      upstreamCaFile: undefined,
    },
  )
  t.strictSame(
    { ...billing, issuer: billing.issuer.name },
    {
      name: '*.billing.example.com:8443',
      host: { hostname: '.billing.example.com', wildcard: true, port: 8443 },
      pathPrefix: undefined,
      issuer: 'entra',
      audience: [],
      resource: [],
      scopes: ['api://billing/.default'],
      upstream: undefined,
      upstreamCaFile: undefined,
    },
  )
  t.strictSame(
    { ...loopback, issuer: loopback.issuer.name },
    {
      name: '[::1]:9000',
      host: { hostname: '[::1]', wildcard: false, port: 9000 },
      pathPrefix: undefined,
      issuer: 'local',
      audience: ['a', 'b'],
      resource: [],
      scopes: [],
      upstream: undefined,
      upstreamCaFile: undefined,
    },
  )
  t.equal(orders.issuer, corp, 'routes share the issuer object')
  t.end()
})

void t.test('valid file result is deeply frozen', (t) => {
  const config = parseRoutes(FULL, '/etc/obo/routes.yaml')
  t.ok(Object.isFrozen(config))
  t.ok(Object.isFrozen(config.routes))
  t.ok(Object.isFrozen(config.routes[0].host))
  t.ok(Object.isFrozen(config.routes[0].scopes))
  t.ok(Object.isFrozen(config.issuers.get('local')!.actorToken!.source))
  t.throws(() => (config.issuers as Map<string, IssuerConfig>).set('x', config.issuers.get('corp')!), TypeError)
  t.throws(() => (config.issuers as Map<string, IssuerConfig>).delete('corp'), TypeError)
  t.equal(config.issuers.size, 3)
  t.end()
})

void t.test('internationalized host is stored in punycode', (t) => {
  const config = parseRoutes(`${ISSUERS}routes:\n  - host: "*.Bücher.example"\n    issuer: corp\n`, 'routes.yaml')
  t.strictSame(config.routes[0].host, { hostname: '.xn--bcher-kva.example', wildcard: true, port: undefined })
  t.equal(config.routes[0].name, '*.xn--bcher-kva.example')
  t.end()
})

void t.test('loadRoutesFile on a missing file', (t) => {
  const dir = t.testdir({})
  const file = join(dir, 'absent.yaml')
  t.strictSame(problemsThrownBy(() => loadRoutesFile(file)), [
    { file, line: 1, col: 1, message: 'cannot read the routes file: the file does not exist; check the path' },
  ])
  t.end()
})

void t.test('loadRoutesFile on a directory', (t) => {
  const dir = t.testdir({})
  t.strictSame(problemsThrownBy(() => loadRoutesFile(dir)), [
    { file: dir, line: 1, col: 1, message: 'cannot read the routes file: the path is a directory; give the path of the YAML file' },
  ])
  t.end()
})

void t.test('loadRoutesFile reads and validates a file', (t) => {
  const dir = t.testdir({})
  const file = join(dir, 'routes.yaml')
  writeFileSync(file, FULL)
  const config = loadRoutesFile(file)
  t.equal(config.file, file)
  t.equal(config.routes.length, 3)
  t.end()
})

void t.test('routes.example.yaml is valid', (t) => {
  const file = fileURLToPath(new URL('../../routes.example.yaml', import.meta.url))
  const config = loadRoutesFile(file)
  t.ok(config.routes.length > 0)
  t.ok(config.issuers.size > 0)
  t.end()
})

/** Copies the issuer without its URL object, for a plain comparison. */
function withoutEndpoint(issuer: IssuerConfig): Record<string, unknown> {
  return Object.fromEntries(Object.entries(issuer).filter(([key]) => key !== 'tokenEndpoint'))
}

/** Returns the problems of the ConfigError that `load` throws. */
function problemsThrownBy(load: () => unknown): readonly ConfigProblem[] {
  try {
    load()
  } catch (error) {
    if (error instanceof ConfigError) return error.problems
    throw error
  }
  throw new Error('expected a ConfigError')
}

// The same table through the real CLI: `validate` prints FILE:LINE:COL: message per problem.
void t.test('obo-sidecar validate on malformed files', async (t) => {
  const cases = malformed.slice(0, 12)
  for (const { name, text, problems } of cases) {
    const file = writeTempFile('routes.yaml', text)
    const result = await runCli(['validate', file])
    t.equal(result.code, 1, `${name}: exit code`)
    const expected = problems.map((problem) => {
      const [position, ...message] = problem.split(' ')
      return `${file}:${position}: ${message.join(' ')}`
    })
    t.same(result.stderr.trimEnd().split('\n'), expected, `${name}: printed problems`)
  }
})

void t.test('upstream, upstreamCaFile and userTokenIssuers', (t) => {
  const route = (extra: string) => `${ISSUERS}routes:\n  - host: orders.example.com\n    issuer: corp\n${extra}`
  t.strictSame(problemsOf(route('    upstream: ftp://orders.internal\n')), [
    '9:15 routes[0].upstream: "ftp://orders.internal" has scheme "ftp"; expected "https" or a URL such as "https://orders.internal:8443"',
  ])
  t.strictSame(problemsOf(route('    upstream: https://orders.internal:8443/v1\n')), [
    '9:15 routes[0].upstream: "https://orders.internal:8443/v1" must be scheme and authority only, without user information, path, query or fragment',
  ])
  t.strictSame(problemsOf(route('    upstream: http\n')), [
    '9:15 routes[0].upstream: "http" is not valid; expected "https" or a URL such as "https://orders.internal:8443"',
  ])
  t.strictSame(problemsOf(route('    upstreamCaFile: certs/ca.crt\n')), [
    '9:21 routes[0].upstreamCaFile: "certs/ca.crt" is not an absolute path; give the full path of a PEM file, e.g. "/etc/obo-sidecar/orders-ca.crt"',
  ])

  const config = parseRoutes(
    `userTokenIssuers: https://login.example.com\n${route('    upstream: https://orders.internal:8443\n    upstreamCaFile: /etc/ca.crt\n')}`,
    'routes.yaml',
  )
  t.strictSame(config.routes[0].upstream, { protocol: 'https:', authority: 'orders.internal:8443' })
  t.equal(config.routes[0].upstreamCaFile, '/etc/ca.crt')
  t.strictSame(config.userTokenIssuers, ['https://login.example.com'])
  t.strictSame(parseRoutes(route('    upstream: https\n'), 'routes.yaml').routes[0].upstream, { protocol: 'https:', authority: undefined })
  t.end()
})
