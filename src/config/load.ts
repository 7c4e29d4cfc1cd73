import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { isScalar, LineCounter, parseDocument } from 'yaml'
import type { YAMLError } from 'yaml'
import { ConfigError } from '../errors.js'
import type { ConfigProblem } from '../errors.js'
import { readIssuers } from './read-issuers.js'
import type { IssuerDraft } from './read-issuers.js'
import { readRoutes } from './read-routes.js'
import type { IssuerConfig, RoutesConfig } from './types.js'
import { describeNode, FieldReader } from './yaml-fields.js'
import type { Field } from './yaml-fields.js'

const ROOT_KEYS = ['version', 'userTokenIssuers', 'issuers', 'routes'] as const

/**
 * Parses and validates the text of a routes file into a deeply frozen configuration. Reads no
 * file or secret and logs nothing; `file` is only copied into the result and into problems.
 *
 * @throws ConfigError listing every problem found, ordered by line and column. When the YAML itself
 *   is malformed, only the syntax problems are listed, because the structure cannot be trusted.
 */
export function parseRoutes(text: string, file: string): RoutesConfig {
  const lineCounter = new LineCounter()
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: false })
  const syntaxErrors = [...doc.errors, ...doc.warnings]
  if (syntaxErrors.length > 0) {
    throw new ConfigError(sortByPosition(syntaxErrors.map((error) => syntaxProblem(error, text, file, lineCounter))))
  }

  const reader = new FieldReader(file, doc, lineCounter)
  const config = readRoot(reader, file)
  if (reader.problems.length > 0) throw new ConfigError(sortByPosition(reader.problems))
  return deepFreeze(config)
}

/**
 * Reads and validates the routes file at `path`. A file that cannot be read is reported as a
 * ConfigError at line 1, column 1.
 */
export function loadRoutesFile(path: string): RoutesConfig {
  const file = resolve(path)
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (error) {
    throw new ConfigError([{ file, line: 1, col: 1, message: `cannot read the routes file: ${describeReadError(error)}` }])
  }
  return parseRoutes(text, file)
}

function readRoot(reader: FieldReader, file: string): RoutesConfig {
  const root = reader.rootField()
  const config: RoutesConfig = { file, issuers: new Map(), routes: [], userTokenIssuers: [] }
  if (root.node === null) {
    reader.report(root, 'the file is empty; expected a mapping with the keys "issuers" and "routes"')
    return config
  }
  const fields = reader.mapping(root, ROOT_KEYS)
  if (fields === undefined) return config

  const versionField = fields.get('version')
  if (versionField !== undefined) checkVersion(reader, versionField)

  const issuersField = fields.get('issuers')
  if (issuersField === undefined) reader.reportMissing(root, 'issuers', 'define the identity providers that exchange tokens')
  const issuers = issuersField === undefined ? new Map<string, IssuerDraft>() : readIssuers(reader, issuersField)

  const routesField = fields.get('routes')
  if (routesField === undefined) reader.reportMissing(root, 'routes', 'list the hosts and paths whose calls get an exchanged token')
  const routes = routesField === undefined ? [] : readRoutes(reader, routesField, issuers)

  const userTokenIssuersField = fields.get('userTokenIssuers')
  const userTokenIssuers = userTokenIssuersField === undefined ? [] : readUserTokenIssuers(reader, userTokenIssuersField)

  return { file, issuers: completeIssuers(issuers), routes, userTokenIssuers }
}

/** Reads `userTokenIssuers`: one `iss` value or a list of them, compared exactly with JWT `iss` claims. */
function readUserTokenIssuers(reader: FieldReader, field: Field): string[] {
  const items = reader.stringOrList(field)
  if (items === undefined) return []
  return items.flatMap((item) => reader.string(item) ?? [])
}

function checkVersion(reader: FieldReader, field: Field): void {
  const node = field.node
  if (node === undefined || (isScalar(node) && node.value === 1)) return
  if (isScalar(node) && typeof node.value === 'number') {
    reader.report(field, `${node.source ?? String(node.value)} is not supported; expected 1`)
    return
  }
  reader.report(field, `expected the number 1, got ${describeNode(node, false)}`)
}

function completeIssuers(drafts: ReadonlyMap<string, IssuerDraft>): Map<string, IssuerConfig> {
  const issuers = new Map<string, IssuerConfig>()
  for (const [name, draft] of drafts) {
    if (draft.config !== undefined) issuers.set(name, draft.config)
  }
  return issuers
}

function syntaxProblem(error: YAMLError, text: string, file: string, lineCounter: LineCounter): ConfigProblem {
  const { line, col } = lineCounter.linePos(error.pos[0])
  return { file, line, col, message: syntaxMessage(error, text) }
}

function syntaxMessage(error: YAMLError, text: string): string {
  if (error.code === 'MULTIPLE_DOCS') {
    return 'the file contains more than one YAML document; remove the "---" separator and keep one document'
  }
  if (error.code === 'TAG_RESOLVE_FAILED') {
    const tag = text.slice(error.pos[0], error.pos[1])
    return `unsupported YAML tag ${JSON.stringify(tag)}; remove it, since the routes file uses only plain strings, numbers, lists and mappings`
  }
  return `invalid YAML: ${error.message}`
}

function sortByPosition(problems: readonly ConfigProblem[]): ConfigProblem[] {
  return problems.toSorted((a, b) => a.line - b.line || a.col - b.col)
}

function describeReadError(error: unknown): string {
  const code = (error as NodeJS.ErrnoException | undefined)?.code
  if (code === 'ENOENT') return 'the file does not exist; check the path'
  if (code === 'EACCES') return 'permission denied; make the file readable by the user the sidecar runs as'
  if (code === 'EISDIR') return 'the path is a directory; give the path of the YAML file'
  return error instanceof Error ? error.message : String(error)
}

/**
 * Freezes the configuration and everything it contains. Maps are frozen by replacing their
 * mutating methods, since Object.freeze leaves a Map's entries writable.
 * NOTE: a URL cannot be frozen this way (its setters change internal state), so
 * `IssuerConfig.tokenEndpoint` stays mutable; callers must copy it before changing it.
 */
function deepFreeze<T>(value: T): T {
  if (typeof value !== 'object' || value === null || Object.isFrozen(value)) return value
  if (value instanceof Map) {
    for (const entry of value.values()) deepFreeze(entry)
    freezeMap(value)
    return value
  }
  Object.freeze(value)
  for (const entry of Object.values(value)) deepFreeze(entry)
  return value
}

function freezeMap(map: Map<unknown, unknown>): void {
  const reject = (): never => {
    throw new TypeError('the routes configuration is read-only')
  }
  for (const method of ['set', 'delete', 'clear']) Object.defineProperty(map, method, { value: reject })
  Object.freeze(map)
}
