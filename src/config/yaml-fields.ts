import { isAlias, isMap, isScalar, isSeq } from 'yaml'
import type { Document, LineCounter, Node, Pair } from 'yaml'
import type { ConfigProblem } from '../errors.js'
import { closestMatch } from './closest-match.js'

/** A value in the routes file, with the dotted path and source offset that problems about it use. */
export interface Field {
  /** Dotted path such as `routes[2].host`; empty for the document root. */
  readonly path: string
  /**
   * The YAML node with aliases resolved. `null` for an empty value (`key:` with nothing after it);
   * `undefined` when the value is unusable and a problem has already been reported for it.
   */
  readonly node: Node | null | undefined
  readonly offset: number
  /** Offset of the mapping key for a mapping value; equal to `offset` otherwise. */
  readonly keyOffset: number
  /** Inside a secret reference: messages never show the value, which may be a pasted secret. */
  readonly sensitive: boolean
}

/** The keys of a mapping, in file order; duplicates and keys that are not strings are left out. */
export type FieldMap = ReadonlyMap<string, Field>

/**
 * Reads typed values out of a parsed YAML document and collects a located problem for every
 * value that does not fit. Each read returns undefined when the value is unusable.
 */
export class FieldReader {
  readonly problems: ConfigProblem[] = []
  readonly #file: string
  readonly #doc: Document
  readonly #lineCounter: LineCounter

  constructor(file: string, doc: Document, lineCounter: LineCounter) {
    this.#file = file
    this.#doc = doc
    this.#lineCounter = lineCounter
  }

  /** Records a problem at `offset`. The message names what is wrong and what to write instead. */
  reportAt(offset: number, message: string): void {
    const { line, col } = this.#lineCounter.linePos(offset)
    this.problems.push({ file: this.#file, line, col, message })
  }

  /** Records a problem about `field`, prefixed with its dotted path. */
  report(field: Field, message: string): void {
    this.reportAt(field.offset, field.path === '' ? message : `${field.path}: ${message}`)
  }

  rootField(): Field {
    const node = this.#doc.contents
    const offset = node?.range?.[0] ?? 0
    return { path: '', node, offset, keyOffset: offset, sensitive: false }
  }

  /**
   * Reads a mapping whose keys must all be in `allowedKeys` (any string key when it is undefined).
   * Reports keys that are not strings, duplicate keys and unknown keys.
   */
  mapping(field: Field, allowedKeys?: readonly string[]): FieldMap | undefined {
    if (!isMap(field.node)) {
      this.#reportWrongType(field, 'a mapping')
      return undefined
    }
    const fields = new Map<string, Field>()
    const keyOffsets = new Map<string, number>()
    for (const pair of field.node.items) {
      const key = this.#readKey(field, pair)
      if (key === undefined) continue
      const keyOffset = offsetOf(pair.key, field.offset)
      const firstOffset = keyOffsets.get(key)
      if (firstOffset !== undefined) {
        const firstLine = this.#lineCounter.linePos(firstOffset).line
        this.reportAt(keyOffset, `${prefix(field)}duplicate key ${quote(key)} (first at line ${firstLine}); remove one`)
        continue
      }
      keyOffsets.set(key, keyOffset)
      if (allowedKeys !== undefined && !allowedKeys.includes(key)) {
        this.reportAt(keyOffset, `${prefix(field)}${unknownKeyMessage(key, allowedKeys)}`)
        continue
      }
      fields.set(key, this.#valueField(childPath(field.path, key), pair, keyOffset, field.sensitive))
    }
    return fields
  }

  /** Reads a sequence. Each item's path is `path[index]`. */
  list(field: Field): Field[] | undefined {
    if (!isSeq(field.node)) {
      this.#reportWrongType(field, 'a list')
      return undefined
    }
    return field.node.items.map((item, index) => {
      const path = `${field.path}[${index}]`
      const offset = offsetOf(item, field.offset)
      return { path, node: this.#resolve(item, path, offset), offset, keyOffset: offset, sensitive: field.sensitive }
    })
  }

  /** Reads a string that is not empty or only whitespace. */
  string(field: Field): string | undefined {
    if (field.node === undefined) return undefined
    if (!isScalar(field.node) || typeof field.node.value !== 'string') {
      this.#reportWrongType(field, 'a string')
      return undefined
    }
    const value = field.node.value
    if (value.trim() === '') {
      this.report(field, 'must not be empty')
      return undefined
    }
    return value
  }

  /** Reads a string that must be one of `allowed`. */
  oneOf<T extends string>(field: Field, allowed: readonly T[]): T | undefined {
    const value = this.string(field)
    if (value === undefined) return undefined
    const match = allowed.find((candidate) => candidate === value)
    if (match === undefined) {
      const suggestion = closestMatch(value, allowed)
      const hint = suggestion === undefined ? '' : ` did you mean ${quote(suggestion)}?`
      this.report(field, `${quote(value)} is not a valid value;${hint} expected one of: ${allowed.join(', ')}`)
    }
    return match
  }

  /** Reads one string or a list of strings. An empty list is accepted and means none. */
  stringOrList(field: Field): Field[] | undefined {
    if (field.node === undefined) return undefined
    if (isSeq(field.node)) return this.list(field)
    if (isScalar(field.node) && typeof field.node.value === 'string') return [field]
    this.#reportWrongType(field, 'a string or a list of strings')
    return undefined
  }

  /** Reports that a required key is missing from the mapping at `field`. */
  reportMissing(field: Field, key: string, hint: string): void {
    this.report(field, `missing required key ${quote(key)}; ${hint}`)
  }

  /** Reads `key` with `read` when present and returns `fallback` when it is absent. */
  optional<T, D extends T | undefined>(fields: FieldMap, key: string, read: (field: Field) => T | undefined, fallback: D): T | D | undefined {
    const field = fields.get(key)
    return field === undefined ? fallback : read(field)
  }

  /** Reads `key` with `read`, reporting it as missing from `parent` when absent. */
  required<T>(parent: Field, fields: FieldMap, key: string, hint: string, read: (field: Field) => T | undefined): T | undefined {
    const field = fields.get(key)
    if (field === undefined) {
      this.reportMissing(parent, key, hint)
      return undefined
    }
    return read(field)
  }

  #readKey(parent: Field, pair: Pair): string | undefined {
    const key = pair.key
    if (isScalar(key) && typeof key.value === 'string') return key.value
    const offset = offsetOf(key, parent.offset)
    const got = describeNode(isAlias(key) ? null : (key as Node | null), false)
    const quoteHint = isScalar(key) && key.value !== null ? '; put it in quotes' : ''
    this.reportAt(offset, `${prefix(parent)}expected a string as key, got ${got}${quoteHint}`)
    return undefined
  }

  #valueField(path: string, pair: Pair, keyOffset: number, sensitive: boolean): Field {
    const value = pair.value
    // `key:` with nothing after it yields an empty null scalar placed after the colon, so the
    // problem points at the key instead.
    const empty = value === null || (isScalar(value) && value.value === null && value.range?.[0] === value.range?.[1])
    const offset = empty ? keyOffset : offsetOf(value, keyOffset)
    return { path, node: this.#resolve(value, path, offset), offset, keyOffset, sensitive }
  }

  #resolve(node: unknown, path: string, offset: number): Node | null | undefined {
    if (node === null || node === undefined) return null
    if (!isAlias(node)) return node as Node
    const target = node.resolve(this.#doc)
    if (target === undefined) {
      this.reportAt(offset, `${path}: alias *${node.source} refers to no anchor; define &${node.source} before it`)
    }
    return target
  }

  #reportWrongType(field: Field, expected: string): void {
    if (field.node === undefined) return
    const got = describeNode(field.node, field.sensitive)
    const quoteHint = expected.includes('string') && isScalar(field.node) && field.node.value !== null
    this.report(field, `expected ${expected}, got ${got}${quoteHint ? '; put the value in quotes to make it a string' : ''}`)
  }
}

/** Quotes a value for a message, shortened so one problem stays on one readable line. */
export function quote(value: string): string {
  const limit = 100
  return JSON.stringify(value.length > limit ? `${value.slice(0, limit)}...` : value)
}

function childPath(parent: string, key: string): string {
  const segment = /^[A-Za-z_][\w-]*$/.test(key) ? key : `[${JSON.stringify(key)}]`
  if (parent === '') return segment
  return segment.startsWith('[') ? `${parent}${segment}` : `${parent}.${segment}`
}

/** Returns e.g. `a list`, `a mapping`, `the number 12345`, `an empty value`. */
export function describeNode(node: Node | null, sensitive: boolean): string {
  if (isSeq(node)) return 'a list'
  if (isMap(node)) return 'a mapping'
  if (!isScalar(node) || node.value === null) return 'an empty value'
  const value = node.value
  if (typeof value === 'string') return 'a string'
  if (typeof value !== 'number' && typeof value !== 'bigint' && typeof value !== 'boolean') return 'a tagged value'
  const kind = typeof value === 'boolean' ? 'boolean' : 'number'
  return sensitive ? `a ${kind}` : `the ${kind} ${node.source ?? String(value)}`
}

function unknownKeyMessage(key: string, allowedKeys: readonly string[]): string {
  const suggestion = closestMatch(key, allowedKeys)
  const hint = suggestion === undefined ? '' : ` did you mean ${quote(suggestion)}?`
  return `unknown key ${quote(key)};${hint} allowed keys: ${allowedKeys.join(', ')}`
}

function prefix(field: Field): string {
  return field.path === '' ? '' : `${field.path}: `
}

function offsetOf(node: unknown, fallback: number): number {
  const range = (node as Node | null | undefined)?.range
  return range?.[0] ?? fallback
}
