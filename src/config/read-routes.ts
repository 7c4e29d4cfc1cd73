import { isSeq } from 'yaml'
import { closestMatch } from './closest-match.js'
import { formatHostPattern, hostPatternCovers, parseHostPattern } from './host-pattern.js'
import type { IssuerDraft } from './read-issuers.js'
import type { HostPattern, RouteConfig, UpstreamOverride } from './types.js'
import { isAbsoluteUri } from './uri.js'
import { quote } from './yaml-fields.js'
import type { Field, FieldMap, FieldReader } from './yaml-fields.js'

const ROUTE_KEYS = ['name', 'host', 'pathPrefix', 'issuer', 'audience', 'resource', 'scopes', 'upstream', 'upstreamCaFile'] as const

/** RFC 6749 section 3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ). */
const SCOPE_TOKEN = /^[\x21\x23-\x5b\x5d-\x7e]+$/

/** A route as read, kept even when parts are invalid so that checks across routes still run. */
interface RouteDraft {
  readonly label: string
  readonly field: Field
  readonly fields: FieldMap
  readonly explicitName: string | undefined
  /** Undefined when missing or invalid. */
  readonly host: HostPattern | undefined
  readonly pathPrefix: string | undefined
  /** False when `pathPrefix` is present but invalid. */
  readonly pathPrefixValid: boolean
  readonly issuer: string | undefined
  /** Each list is undefined when invalid and empty when absent. */
  readonly audience: readonly string[] | undefined
  readonly resource: readonly string[] | undefined
  readonly scopes: readonly string[] | undefined
  /** Undefined when absent; null when invalid. */
  readonly upstream: UpstreamOverride | undefined | null
  readonly upstreamCaFile: string | undefined | null
}

/**
 * Reads the `routes` list and checks the routes against the issuers and each other. The result is
 * complete only when the reader has collected no problems.
 */
export function readRoutes(reader: FieldReader, field: Field, issuers: ReadonlyMap<string, IssuerDraft>): RouteConfig[] {
  const items = reader.list(field)
  if (items === undefined) return []
  if (items.length === 0) reader.report(field, 'the list is empty; add at least one route')

  const drafts = items.flatMap((item) => readRoute(reader, item) ?? [])
  checkIssuerReferences(reader, drafts, issuers)
  checkJwtBearerRoutes(reader, drafts, issuers)
  checkShadowedRoutes(reader, drafts)
  checkUniqueNames(reader, drafts)
  return drafts.flatMap((draft) => buildRoute(draft, issuers) ?? [])
}

function readRoute(reader: FieldReader, field: Field): RouteDraft | undefined {
  const fields = reader.mapping(field, ROUTE_KEYS)
  if (fields === undefined) return undefined

  const pathPrefixField = fields.get('pathPrefix')
  const pathPrefix = pathPrefixField === undefined ? undefined : readPathPrefix(reader, pathPrefixField)
  return {
    label: field.path,
    field,
    fields,
    explicitName: reader.optional(fields, 'name', (value) => reader.string(value), undefined),
    host: reader.required(field, fields, 'host', 'set it to the host this route applies to, e.g. "orders.example.com"', (value) =>
      readHost(reader, value),
    ),
    pathPrefix,
    pathPrefixValid: pathPrefixField === undefined || pathPrefix !== undefined,
    issuer: reader.required(field, fields, 'issuer', 'set it to the name of an issuer defined under "issuers"', (value) =>
      reader.string(value),
    ),
    audience: reader.optional(fields, 'audience', (value) => readStrings(reader, value), []),
    resource: reader.optional(fields, 'resource', (value) => readResources(reader, value), []),
    scopes: reader.optional(fields, 'scopes', (value) => readScopes(reader, value), []),
    upstream: reader.optional(fields, 'upstream', (value) => readUpstream(reader, value) ?? null, undefined),
    upstreamCaFile: reader.optional(fields, 'upstreamCaFile', (value) => readAbsolutePath(reader, value) ?? null, undefined),
  }
}

/**
 * Reads `upstream`: `https` to originate TLS to the requested host (port 80 becomes 443), or a URL
 * whose scheme and authority replace the requested ones (`https://orders.internal:8443`).
 */
function readUpstream(reader: FieldReader, field: Field): UpstreamOverride | undefined {
  const text = reader.string(field)
  if (text === undefined) return undefined
  if (text === 'https') return { protocol: 'https:', authority: undefined }
  const expected = 'expected "https" or a URL such as "https://orders.internal:8443"'
  let url: URL
  try {
    url = new URL(text)
  } catch {
    reader.report(field, `${quote(text)} is not valid; ${expected}`)
    return undefined
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    reader.report(field, `${quote(text)} has scheme ${quote(url.protocol.slice(0, -1))}; ${expected}`)
    return undefined
  }
  if (url.username !== '' || url.password !== '' || url.search !== '' || url.hash !== '' || (url.pathname !== '/' && url.pathname !== '')) {
    reader.report(field, `${quote(text)} must be scheme and authority only, without user information, path, query or fragment`)
    return undefined
  }
  return { protocol: url.protocol, authority: url.host === '' ? undefined : url.host }
}

function readAbsolutePath(reader: FieldReader, field: Field): string | undefined {
  const text = reader.string(field)
  if (text === undefined) return undefined
  if (!text.startsWith('/')) {
    reader.report(field, `${quote(text)} is not an absolute path; give the full path of a PEM file, e.g. "/etc/obo-sidecar/orders-ca.crt"`)
    return undefined
  }
  return text
}

function readHost(reader: FieldReader, field: Field): HostPattern | undefined {
  const text = reader.string(field)
  if (text === undefined) return undefined
  const result = parseHostPattern(text)
  if ('error' in result) {
    reader.report(field, result.error)
    return undefined
  }
  return result.pattern
}

/** Reads a path prefix, which is compared with request paths as sent: percent-encoded, dot segments resolved. */
function readPathPrefix(reader: FieldReader, field: Field): string | undefined {
  const text = reader.string(field)
  if (text === undefined) return undefined
  if (!text.startsWith('/')) {
    reader.report(field, `${quote(text)} must start with "/"; write ${quote(`/${text}`)}`)
    return undefined
  }
  if (/[?#]/.test(text)) {
    reader.report(field, `${quote(text)} contains "?" or "#"; a path prefix matches only the path, without query or fragment`)
    return undefined
  }
  if (!/^[\x21-\x7e]+$/.test(text)) {
    reader.report(field, `${quote(text)} contains a space, control or non-ASCII character; percent-encode it as in request paths, e.g. "%20"`)
    return undefined
  }
  const innerSegments = text.split('/').slice(1, -1)
  if (innerSegments.some((segment) => segment === '.' || segment === '..')) {
    reader.report(field, `${quote(text)} contains a "." or ".." segment, which request paths never have once resolved; remove it`)
    return undefined
  }
  return text
}

function readStrings(reader: FieldReader, field: Field): string[] | undefined {
  const items = reader.stringOrList(field)
  if (items === undefined) return undefined
  const values = items.map((item) => reader.string(item))
  return values.every((value): value is string => value !== undefined) ? unique(values) : undefined
}

/** RFC 8707 section 2: a resource indicator is an absolute URI without a fragment. */
function readResources(reader: FieldReader, field: Field): string[] | undefined {
  const items = reader.stringOrList(field)
  if (items === undefined) return undefined
  const values = items.map((item) => readResource(reader, item))
  return values.every((value): value is string => value !== undefined) ? unique(values) : undefined
}

function readResource(reader: FieldReader, field: Field): string | undefined {
  const text = reader.string(field)
  if (text === undefined) return undefined
  if (!isAbsoluteUri(text)) {
    reader.report(field, `${quote(text)} is not an absolute URI; expected e.g. "https://orders.example.com/"`)
    return undefined
  }
  if (text.includes('#')) {
    reader.report(field, `${quote(text)} has a fragment ("#..."), which RFC 8707 forbids in a resource; remove it`)
    return undefined
  }
  return text
}

/** Accepts a list of scopes or one space-separated string, the form of the OAuth `scope` parameter. */
function readScopes(reader: FieldReader, field: Field): string[] | undefined {
  const items = reader.stringOrList(field)
  if (items === undefined) return undefined
  const spaceSeparated = !isSeq(field.node)
  const scopes: string[] = []
  let valid = true
  for (const item of items) {
    const text = reader.string(item)
    const tokens = text === undefined ? undefined : readScopeTokens(reader, item, text, spaceSeparated)
    if (tokens === undefined) valid = false
    else scopes.push(...tokens)
  }
  return valid ? unique(scopes) : undefined
}

function readScopeTokens(reader: FieldReader, field: Field, text: string, spaceSeparated: boolean): string[] | undefined {
  if (!spaceSeparated && text.includes(' ')) {
    reader.report(field, `${quote(text)} contains a space; list each scope as its own item`)
    return undefined
  }
  const tokens = text.split(' ').filter((token) => token !== '')
  const invalid = tokens.find((token) => !SCOPE_TOKEN.test(token))
  if (invalid !== undefined) {
    reader.report(field, `${quote(invalid)} is not a valid scope; a scope is printable ASCII without spaces, '"' or '\\' (RFC 6749 section 3.3)`)
    return undefined
  }
  return tokens
}

function checkIssuerReferences(reader: FieldReader, drafts: readonly RouteDraft[], issuers: ReadonlyMap<string, IssuerDraft>): void {
  // Without issuers that one problem is already reported, and repeating it per route adds nothing.
  if (issuers.size === 0) return
  const names = [...issuers.keys()]
  for (const draft of drafts) {
    const field = draft.fields.get('issuer')
    if (draft.issuer === undefined || field === undefined || issuers.has(draft.issuer)) continue
    const suggestion = closestMatch(draft.issuer, names)
    const hint = suggestion === undefined ? '' : ` did you mean ${quote(suggestion)}?`
    reader.report(field, `${quote(draft.issuer)} is not defined under "issuers";${hint} defined issuers: ${names.join(', ')}`)
  }
}

/**
 * Checks routes of jwt-bearer issuers. This grant (RFC 7523, as Microsoft Entra ID uses it for
 * on-behalf-of) has no audience or resource parameter, so it names the target API only by `scope`,
 * which the Entra on-behalf-of documentation lists as required.
 */
function checkJwtBearerRoutes(reader: FieldReader, drafts: readonly RouteDraft[], issuers: ReadonlyMap<string, IssuerDraft>): void {
  for (const draft of drafts) {
    const issuer = draft.issuer === undefined ? undefined : issuers.get(draft.issuer)
    if (issuer?.grant !== 'jwt-bearer') continue
    const because = `issuer ${quote(issuer.name)} uses grant jwt-bearer`
    const scopesField = draft.fields.get('scopes')
    if (scopesField === undefined) {
      reader.reportMissing(draft.field, 'scopes', `${because}, which requires at least one scope, e.g. "api://orders/.default"`)
    } else if (draft.scopes?.length === 0) {
      reader.report(scopesField, `must not be empty: ${because}, which requires at least one scope`)
    }
    for (const key of ['audience', 'resource']) {
      const field = draft.fields.get(key)
      const values = key === 'audience' ? draft.audience : draft.resource
      if (field === undefined || values?.length === 0) continue
      reader.report(field, `not allowed: ${because}, which sends no ${key}; remove it and select the API with scopes`)
    }
  }
}

/** Reports routes that can never be chosen, because the first matching route wins. */
function checkShadowedRoutes(reader: FieldReader, drafts: readonly RouteDraft[]): void {
  for (const [index, later] of drafts.entries()) {
    if (later.host === undefined || !later.pathPrefixValid) continue
    const earlier = drafts.slice(0, index).find((candidate) => routeCovers(candidate, later))
    if (earlier === undefined) continue
    const message = sameHostAndPath(earlier, later)
      ? `same host and pathPrefix as ${describeRoute(earlier)}, so this route can never match; remove one or change its host or pathPrefix`
      : `${describeRoute(earlier)} comes first and matches every request this route matches, so this route can never match; move this route above it or remove it`
    reader.report(later.field, message)
  }
}

function routeCovers(earlier: RouteDraft, later: RouteDraft): boolean {
  if (earlier.host === undefined || later.host === undefined || !earlier.pathPrefixValid) return false
  if (!hostPatternCovers(earlier.host, later.host)) return false
  if (earlier.pathPrefix === undefined) return true
  return later.pathPrefix !== undefined && later.pathPrefix.startsWith(earlier.pathPrefix)
}

function sameHostAndPath(a: RouteDraft, b: RouteDraft): boolean {
  if (a.host === undefined || b.host === undefined) return false
  return formatHostPattern(a.host) === formatHostPattern(b.host) && a.pathPrefix === b.pathPrefix
}

function describeRoute(draft: RouteDraft): string {
  const host = draft.host === undefined ? '' : `host ${quote(formatHostPattern(draft.host))}, `
  const path = draft.pathPrefix === undefined ? 'any path' : `pathPrefix ${quote(draft.pathPrefix)}`
  return `${draft.label} (${host}${path})`
}

/** Reports repeated route names, because names label metrics and two routes would share a series. */
function checkUniqueNames(reader: FieldReader, drafts: readonly RouteDraft[]): void {
  const firstByName = new Map<string, RouteDraft>()
  for (const draft of drafts) {
    const name = routeName(draft)
    if (name === undefined) continue
    const first = firstByName.get(name)
    if (first === undefined) {
      firstByName.set(name, draft)
      continue
    }
    // Two equal default names mean equal host and pathPrefix, which checkShadowedRoutes reports.
    if (first.explicitName === undefined && draft.explicitName === undefined) continue
    const nameField = draft.fields.get('name')
    if (nameField !== undefined) {
      reader.report(nameField, `${quote(name)} is already the name of ${first.label}; route names must be unique because they label metrics`)
    } else {
      reader.report(draft.field, `the default name ${quote(name)} (host plus pathPrefix) is already the name of ${first.label}; set a unique name`)
    }
  }
}

/** Returns the configured name, or else host and path prefix, e.g. `orders.example.com/v1/`. */
function routeName(draft: RouteDraft): string | undefined {
  if (draft.explicitName !== undefined) return draft.explicitName
  if (draft.host === undefined) return undefined
  return `${formatHostPattern(draft.host)}${draft.pathPrefix ?? ''}`
}

function buildRoute(draft: RouteDraft, issuers: ReadonlyMap<string, IssuerDraft>): RouteConfig | undefined {
  const issuer = draft.issuer === undefined ? undefined : issuers.get(draft.issuer)?.config
  const name = routeName(draft)
  const { host, audience, resource, scopes } = draft
  if (issuer === undefined || name === undefined || host === undefined || !draft.pathPrefixValid) return undefined
  if (audience === undefined || resource === undefined || scopes === undefined) return undefined
  if (draft.upstream === null || draft.upstreamCaFile === null) return undefined
  return {
    name,
    host,
    pathPrefix: draft.pathPrefix,
    issuer,
    audience,
    resource,
    scopes,
    upstream: draft.upstream,
    upstreamCaFile: draft.upstreamCaFile,
  }
}

function unique(values: readonly string[]): string[] {
  return [...new Set(values)]
}
