/**
 * Summarizes a V8 CPU profile (`node --cpu-prof` output): self and inclusive time per function,
 * grouped into the sidecar's own code, each npm dependency, Node's internals, garbage collection
 * and the rest. Functions in dist/src/ are mapped back to their TypeScript lines with tsc's
 * source maps.
 */
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { dirname, join, relative } from 'node:path'

interface CallFrame {
  functionName: string
  url: string
  lineNumber: number
  columnNumber: number
}

interface ProfileNode {
  id: number
  callFrame: CallFrame
  children?: number[]
}

interface CpuProfile {
  nodes: ProfileNode[]
  /** Microseconds on V8's monotonic clock. */
  startTime: number
  samples: number[]
  timeDeltas: number[]
}

export interface FunctionTime {
  /** Function name and location, e.g. "exchangeCacheKey (src/cache/key.ts:23)". */
  label: string
  category: string
  selfMs: number
  inclusiveMs: number
}

export interface CategoryTime {
  category: string
  selfMs: number
}

export interface ProfileSummary {
  /** Sampled time when the process was not idle, in milliseconds. */
  busyMs: number
  idleMs: number
  /** Samples inside the window (all samples when there is no window). */
  samples: number
  /** Samples in the whole profile. */
  totalSamples: number
  /** False when no sample fell inside the window, so the whole profile was used. */
  windowApplied: boolean
  categories: CategoryTime[]
  functions: FunctionTime[]
}

export const SIDECAR_CATEGORY = 'obo-sidecar (src/)'
export const NODE_CATEGORY = 'Node.js internals (node:*)'
export const NATIVE_CATEGORY = 'native and V8 builtins'
/** Pseudo-frames V8 adds to a profile. A Map, because a plain object would match names such as "constructor". */
const SPECIAL_FRAMES = new Map([
  ['(garbage collector)', 'garbage collector'],
  ['(program)', '(program): V8 and libuv outside JavaScript'],
  ['(root)', '(root)'],
])

/**
 * Summarizes the profile in `file`. With `window` (microseconds on the monotonic clock, as
 * `process.hrtime.bigint() / 1000n`), only the samples taken inside it count.
 */
export function summarizeProfile(file: string, repositoryRoot: string, window?: { startUs: number; endUs: number }): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile
  const sourceMaps = new SourceMapCache()
  const parentOf = new Map<number, number>()
  const byId = new Map<number, ProfileNode>()
  for (const node of profile.nodes) {
    byId.set(node.id, node)
    for (const child of node.children ?? []) parentOf.set(child, node.id)
  }

  const labelOf = new Map<number, { label: string; category: string }>()
  const describe = (id: number): { label: string; category: string } => {
    let description = labelOf.get(id)
    if (description === undefined) {
      description = describeFrame((byId.get(id) as ProfileNode).callFrame, repositoryRoot, sourceMaps)
      labelOf.set(id, description)
    }
    return description
  }

  const self = new Map<string, FunctionTime>()
  const categories = new Map<string, number>()
  let idleMs = 0
  let busyMs = 0
  const { samples, timeDeltas } = profile
  const meanDeltaMs = timeDeltas.length === 0 ? 0 : timeDeltas.reduce((sum, value) => sum + value, 0) / timeDeltas.length / 1000
  const sampledAt: number[] = []
  let clock = profile.startTime
  for (const delta of timeDeltas) sampledAt.push((clock += delta))
  const inWindow = (i: number): boolean => window === undefined || (sampledAt[i] >= window.startUs && sampledAt[i] <= window.endUs)
  const windowApplied = window !== undefined && samples.some((_, i) => inWindow(i))
  let counted = 0
  for (let i = 0; i < samples.length; i++) {
    if (windowApplied && !inWindow(i)) continue
    counted += 1
    // V8 records the time since the previous sample, so sample i lasts until sample i + 1.
    const ms = i + 1 < timeDeltas.length ? timeDeltas[i + 1] / 1000 : meanDeltaMs
    const leaf = byId.get(samples[i])
    if (leaf === undefined) continue
    if (leaf.callFrame.functionName === '(idle)') {
      idleMs += ms
      continue
    }
    busyMs += ms
    const { label, category } = describe(leaf.id)
    categories.set(category, (categories.get(category) ?? 0) + ms)
    entryFor(self, label, category).selfMs += ms

    // Inclusive time: every distinct function on the sample's stack, counted once.
    const seen = new Set<string>()
    for (let id: number | undefined = leaf.id; id !== undefined; id = parentOf.get(id)) {
      const frame = describe(id)
      if (seen.has(frame.label)) continue
      seen.add(frame.label)
      entryFor(self, frame.label, frame.category).inclusiveMs += ms
    }
  }

  return {
    busyMs,
    idleMs,
    samples: counted,
    totalSamples: samples.length,
    windowApplied,
    categories: [...categories].map(([category, selfMs]) => ({ category, selfMs })).sort((a, b) => b.selfMs - a.selfMs),
    functions: [...self.values()].filter((entry) => entry.category !== '(root)'),
  }
}

function entryFor(table: Map<string, FunctionTime>, label: string, category: string): FunctionTime {
  let entry = table.get(label)
  if (entry === undefined) {
    entry = { label, category, selfMs: 0, inclusiveMs: 0 }
    table.set(label, entry)
  }
  return entry
}

function describeFrame(frame: CallFrame, repositoryRoot: string, sourceMaps: SourceMapCache): { label: string; category: string } {
  const special = SPECIAL_FRAMES.get(frame.functionName)
  if (special !== undefined) return { label: frame.functionName, category: special }
  const name = frame.functionName === '' ? '(anonymous)' : frame.functionName
  const url = frame.url
  if (url === '') return { label: name, category: NATIVE_CATEGORY }
  if (url.startsWith('node:')) return { label: `${name} (${url}:${frame.lineNumber + 1})`, category: NODE_CATEGORY }

  const path = url.startsWith('file://') ? fileURLToPath(url) : url
  const modulesAt = path.lastIndexOf('/node_modules/')
  if (modulesAt >= 0) {
    const inside = path.slice(modulesAt + '/node_modules/'.length)
    const parts = inside.split('/')
    const packageName = parts[0].startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0]
    return { label: `${name} (${inside}:${frame.lineNumber + 1})`, category: packageName }
  }
  const distSource = join(repositoryRoot, 'dist', 'src')
  if (path.startsWith(`${distSource}/`)) {
    const original = sourceMaps.originalPosition(path, frame.lineNumber, frame.columnNumber)
    const location = original === undefined
      ? `${relative(repositoryRoot, path)}:${frame.lineNumber + 1}`
      : `${relative(repositoryRoot, original.source)}:${original.line}`
    return { label: `${name} (${location})`, category: SIDECAR_CATEGORY }
  }
  return { label: `${name} (${relative(repositoryRoot, path)}:${frame.lineNumber + 1})`, category: 'other' }
}

/** Base64 digits of the source map "mappings" field (Source Map Revision 3). */
const BASE64_DIGITS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'

interface Segment {
  generatedColumn: number
  sourceIndex: number
  /** 0-based. */
  sourceLine: number
}

interface DecodedMap {
  sources: string[]
  lines: Segment[][]
}

/** Reads tsc's `.js.map` files next to the compiled files, each once. */
class SourceMapCache {
  readonly #maps = new Map<string, DecodedMap | undefined>()

  /** Returns the TypeScript file and 1-based line of a 0-based position in a compiled file. */
  originalPosition(jsFile: string, line: number, column: number): { source: string; line: number } | undefined {
    let map = this.#maps.get(jsFile)
    if (!this.#maps.has(jsFile)) {
      map = readSourceMap(jsFile)
      this.#maps.set(jsFile, map)
    }
    const segments = map?.lines[line]
    if (map === undefined || segments === undefined || segments.length === 0) return undefined
    let chosen = segments[0]
    for (const segment of segments) {
      if (segment.generatedColumn > column) break
      chosen = segment
    }
    return { source: map.sources[chosen.sourceIndex], line: chosen.sourceLine + 1 }
  }
}

function readSourceMap(jsFile: string): DecodedMap | undefined {
  try {
    const raw = JSON.parse(readFileSync(`${jsFile}.map`, 'utf8')) as { sources: string[]; sourceRoot?: string; mappings: string }
    const base = join(dirname(jsFile), raw.sourceRoot ?? '')
    return { sources: raw.sources.map((source) => join(base, source)), lines: decodeMappings(raw.mappings) }
  } catch {
    return undefined
  }
}

/**
 * Decodes the "mappings" field: lines separated by ';', segments by ',', each segment a list of
 * base64 VLQ numbers. The generated column restarts on each line; the source index, line and
 * column are deltas that carry across lines.
 */
function decodeMappings(mappings: string): Segment[][] {
  const lines: Segment[][] = []
  let sourceIndex = 0
  let sourceLine = 0
  let sourceColumn = 0
  let nameIndex = 0
  for (const lineText of mappings.split(';')) {
    const segments: Segment[] = []
    let generatedColumn = 0
    for (const segmentText of lineText.split(',')) {
      if (segmentText === '') continue
      const values = decodeVlq(segmentText)
      generatedColumn += values[0]
      if (values.length >= 4) {
        sourceIndex += values[1]
        sourceLine += values[2]
        sourceColumn += values[3]
        if (values.length >= 5) nameIndex += values[4]
        segments.push({ generatedColumn, sourceIndex, sourceLine })
      }
    }
    lines.push(segments)
  }
  // sourceColumn and nameIndex are decoded only to keep the running deltas right.
  void sourceColumn
  void nameIndex
  return lines
}

function decodeVlq(text: string): number[] {
  const values: number[] = []
  let value = 0
  let shift = 0
  for (const character of text) {
    const digit = BASE64_DIGITS.indexOf(character)
    if (digit < 0) throw new Error(`invalid base64 digit "${character}" in source map`)
    value += (digit & 31) << shift
    if ((digit & 32) !== 0) {
      shift += 5
      continue
    }
    // The lowest bit carries the sign.
    values.push((value & 1) === 1 ? -(value >>> 1) : value >>> 1)
    value = 0
    shift = 0
  }
  return values
}
