/**
 * The benchmark's scenarios. Each repeats its measurement in rounds, and within a round measures
 * the targets one after another (direct, squid, sidecar), so drift on a shared machine affects
 * every target alike. Ratios are taken within a round, then summarized by their median.
 */
import { copyFileSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { TargetClient, TokenEndpointClient, requestTargetFor, type Target, type TargetName } from './clients.js'
import type { OpenLoopResult, OpenLoopSettings } from './open-loop.js'
import { findFreePort } from '../demo/loopback.js'
import { InspectorSession } from './inspector.js'
import { otherShare, type LoadMonitor } from './load-monitor.js'
import { askChild, startProcess, waitForExit, type ManagedProcess } from './processes.js'
import { cpuSeconds, residentBytes } from './procfs.js'
import { summarizeProfile, type ProfileSummary } from './profile.js'
import type { Settings } from './settings.js'
import { scrapeMetrics, startSidecar, type RunningSidecar } from './sidecar.js'
import type { RunningSquid } from './squid.js'
import { median, summarizeLatencies, type LatencySummary } from './stats.js'
import { runWrk, type WrkResult, type WrkTarget } from './wrk.js'

const OPEN_LOOP_SCRIPT = fileURLToPath(new URL('./open-loop.js', import.meta.url))

export interface BenchContext {
  readonly settings: Settings
  readonly directory: string
  readonly repositoryRoot: string
  /** 127.0.0.1:PORT of the upstream. */
  readonly upstreamHost: string
  readonly upstream: ManagedProcess
  readonly tokenService: ManagedProcess
  readonly tokenEndpoint: string
  readonly clientSecret: string
  readonly routesFile: string
  /** User tokens. tokens[0] is the single user, tokens[1..manyUsers] are the many users, and each later one is used once. */
  readonly tokens: readonly string[]
  readonly singleTokenFile: string
  readonly manyUsersFile: string
  readonly squid: RunningSquid | undefined
  sidecar: RunningSidecar | undefined
  readonly targets: Target[]
  /** Index of the next token no sidecar has seen, for the cold path. */
  nextFreshToken: number
  readonly load: LoadMonitor
  progress(message: string): void
}

function wrkTarget(context: BenchContext, target: Target, path: string): WrkTarget {
  return { connectTo: target.connectTo, requestTarget: requestTargetFor(target, path), host: context.upstreamHost }
}

/**
 * Waits, within the run's budget, until other processes leave the machine quiet, so one
 * measurement is less likely to share the cores with other work.
 */
async function waitForQuiet(context: BenchContext): Promise<void> {
  const { settings, load } = context
  const budgetLeft = settings.quietWaitBudgetMs - load.waitedMs
  if (budgetLeft <= 0) return
  await load.waitForQuiet(settings.quietThreshold, Math.min(settings.quietWaitMaxMs, budgetLeft))
}

function requireSidecar(context: BenchContext): RunningSidecar {
  if (context.sidecar === undefined) throw new Error('the sidecar is not running')
  return context.sidecar
}

export async function tokenServiceExchanges(context: BenchContext): Promise<number> {
  const reply = await askChild(context.tokenService, { type: 'counters' }, 'counters', 10_000)
  return Number(reply.exchanges)
}

function takeFreshTokens(context: BenchContext, count: number): string[] {
  if (context.nextFreshToken + count > context.tokens.length) {
    throw new Error(`needs ${count} unused tokens but only ${context.tokens.length - context.nextFreshToken} are left`)
  }
  const tokens = context.tokens.slice(context.nextFreshToken, context.nextFreshToken + count)
  context.nextFreshToken += count
  return tokens
}

// ---------------------------------------------------------------------------------------------
// Warm-up

/** Runs wrk against every target once so that JIT compilation and connection pools settle. */
export async function warmUp(context: BenchContext): Promise<void> {
  for (const target of context.targets) {
    const result = await runWrk(wrkTarget(context, target, '/small'), context.singleTokenFile, 50, context.settings.warmupSeconds)
    context.progress(`warm-up ${target.name}: ${Math.round(result.requestsPerSecond)} req/s, ${result.errors} errors`)
    if (result.errors > 0) throw new Error(`warm-up through ${target.name} had ${result.errors} errors`)
  }
}

// ---------------------------------------------------------------------------------------------
// Scenario 1: cache-hit throughput and proxy CPU per request

export interface ThroughputRun {
  round: number
  connections: number
  target: TargetName
  wrk: WrkResult
  /** Proxy CPU per request from /proc/PID/stat; undefined for direct. */
  cpuUsPerRequestProc: number | undefined
  /** Sidecar CPU per request from process_cpu_seconds_total on /metrics. */
  cpuUsPerRequestMetrics: number | undefined
  /** Share of all cores that other processes on the machine used during the run. */
  otherLoad: number
}

export interface ThroughputResult {
  runs: ThroughputRun[]
}

interface CpuReading {
  proc: number | undefined
  metrics: number | undefined
}

async function readProxyCpu(context: BenchContext, target: Target): Promise<CpuReading> {
  if (target.name === 'squid' && context.squid !== undefined) return { proc: cpuSeconds(context.squid.process.pid), metrics: undefined }
  if (target.name === 'sidecar') {
    const sidecar = requireSidecar(context)
    const metrics = (await scrapeMetrics(sidecar)).sum('process_cpu_seconds_total')
    return { proc: cpuSeconds(sidecar.process.pid), metrics }
  }
  return { proc: undefined, metrics: undefined }
}

function perRequestUs(before: number | undefined, after: number | undefined, requests: number): number | undefined {
  return before === undefined || after === undefined || requests === 0 ? undefined : ((after - before) / requests) * 1e6
}

export async function runThroughput(context: BenchContext): Promise<ThroughputResult> {
  const { settings } = context
  const runs: ThroughputRun[] = []
  for (let round = 1; round <= settings.throughputRounds; round++) {
    for (const connections of settings.throughputConnections) {
      for (const target of context.targets) {
        await waitForQuiet(context)
        const before = await readProxyCpu(context, target)
        const loadBefore = context.load.mark()
        const wrk = await runWrk(wrkTarget(context, target, '/small'), context.singleTokenFile, connections, settings.throughputSeconds)
        const otherLoad = otherShare(loadBefore, context.load.mark())
        const after = await readProxyCpu(context, target)
        const run: ThroughputRun = {
          round,
          connections,
          target: target.name,
          wrk,
          cpuUsPerRequestProc: perRequestUs(before.proc, after.proc, wrk.requests),
          cpuUsPerRequestMetrics: perRequestUs(before.metrics, after.metrics, wrk.requests),
          otherLoad,
        }
        runs.push(run)
        context.progress(
          `S1 round ${round}/${settings.throughputRounds}, ${connections} connections, ${target.name}: ${Math.round(wrk.requestsPerSecond)} req/s` +
            `${wrk.errors > 0 ? `, ${wrk.errors} ERRORS` : ''}${run.cpuUsPerRequestProc === undefined ? '' : `, ${run.cpuUsPerRequestProc.toFixed(1)} us CPU/request`}` +
            `, other load ${(otherLoad * 100).toFixed(0)}%`,
        )
        await delay(context.settings.settleMs)
      }
    }
  }
  return { runs }
}

// ---------------------------------------------------------------------------------------------
// Scenario 2: latency at a fixed request rate, from an open-loop client

export interface LatencyRun {
  round: number
  target: TargetName
  result: OpenLoopResult
  /** Share of all cores that other processes on the machine used during the run. */
  otherLoad: number
}

export interface LatencyResult {
  runs: LatencyRun[]
}

async function runOpenLoop(settings: OpenLoopSettings): Promise<OpenLoopResult> {
  const client = startProcess('open-loop client', process.execPath, [OPEN_LOOP_SCRIPT, JSON.stringify(settings)])
  const exit = await waitForExit(client, (settings.warmupSeconds + settings.durationSeconds + 30) * 1000)
  const line = client.stdout().split('\n').find((text) => text.startsWith('OPEN_LOOP_RESULT '))
  if (exit !== 0 || line === undefined) throw new Error(`open-loop client failed (exit ${exit}):\n${client.outputTail()}`)
  return JSON.parse(line.slice('OPEN_LOOP_RESULT '.length)) as OpenLoopResult
}

export async function runFixedRateLatency(context: BenchContext): Promise<LatencyResult> {
  const { settings } = context
  const runs: LatencyRun[] = []
  for (let round = 1; round <= settings.latencyRounds; round++) {
    for (const target of context.targets) {
      await waitForQuiet(context)
      const loadBefore = context.load.mark()
      const result = await runOpenLoop({
        origin: `http://${target.connectTo}`,
        requestTarget: requestTargetFor(target, '/small'),
        host: context.upstreamHost,
        token: context.tokens[0],
        rate: settings.latencyRate,
        warmupSeconds: settings.latencyWarmupSeconds,
        durationSeconds: settings.latencySeconds,
        connections: settings.latencyConnections,
        timeoutMs: 10_000,
      })
      const otherLoad = otherShare(loadBefore, context.load.mark())
      runs.push({ round, target: target.name, result, otherLoad })
      context.progress(
        `S2 round ${round}/${settings.latencyRounds}, ${target.name}: p50 ${result.latency.p50.toFixed(3)} ms, p99 ${result.latency.p99.toFixed(3)} ms, ` +
          `p99.9 ${result.latency.p999.toFixed(3)} ms, ${Math.round(result.achievedRate)} req/s${result.errors > 0 ? `, ${result.errors} ERRORS` : ''}, other load ${(otherLoad * 100).toFixed(0)}%`,
      )
      await delay(context.settings.settleMs)
    }
  }
  return { runs }
}

// ---------------------------------------------------------------------------------------------
// Scenario 3: many users, each with a cached token

export type ManyUsersVariant = 'direct' | 'squid' | 'sidecar' | 'sidecar, one user'

export interface ManyUsersRun {
  round: number
  variant: ManyUsersVariant
  wrk: WrkResult
  /** Share of all cores that other processes on the machine used during the run. */
  otherLoad: number
}

export interface ManyUsersResult {
  users: number
  warmSeconds: number
  warmFailures: number
  /** Exchanges the token service counted while the users were warmed. */
  warmExchanges: number
  /** Sidecar cache misses and token service exchanges during the measured runs: 0 when every request hit the cache. */
  measuredCacheMisses: number
  measuredExchanges: number
  runs: ManyUsersRun[]
}

export async function runManyUsers(context: BenchContext): Promise<ManyUsersResult> {
  const { settings } = context
  const sidecar = requireSidecar(context)
  const sidecarTarget = context.targets.find((target) => target.name === 'sidecar') as Target
  const users = context.tokens.slice(1, 1 + settings.manyUsers)

  // Warms the cache: one exchange per user, before anything is measured.
  const client = new TargetClient(sidecarTarget, settings.fillConcurrency)
  const exchangesBeforeWarm = await tokenServiceExchanges(context)
  let warm
  try {
    warm = await client.sendEachToken('/small', users, settings.fillConcurrency, 180_000)
  } finally {
    await client.close()
  }
  const warmExchanges = (await tokenServiceExchanges(context)) - exchangesBeforeWarm
  context.progress(`S3 warmed ${warm.ok} users in ${warm.seconds.toFixed(1)} s (${warmExchanges} exchanges, ${warm.failed} failures)`)
  if (warm.failed > 0) throw new Error(`warming ${users.length} users failed ${warm.failed} times: ${warm.firstError}`)

  const metricsBefore = await scrapeMetrics(sidecar)
  const exchangesBefore = await tokenServiceExchanges(context)
  const runs: ManyUsersRun[] = []
  const variants: Array<{ variant: ManyUsersVariant; target: Target; tokenFile: string }> = [
    ...context.targets.map((target) => ({ variant: target.name, target, tokenFile: context.manyUsersFile })),
    { variant: 'sidecar, one user', target: sidecarTarget, tokenFile: context.singleTokenFile },
  ]
  for (let round = 1; round <= settings.manyUsersRounds; round++) {
    for (const { variant, target, tokenFile } of variants) {
      await waitForQuiet(context)
      const loadBefore = context.load.mark()
      const wrk = await runWrk(wrkTarget(context, target, '/small'), tokenFile, settings.manyUsersConnections, settings.manyUsersSeconds)
      const otherLoad = otherShare(loadBefore, context.load.mark())
      runs.push({ round, variant, wrk, otherLoad })
      context.progress(`S3 round ${round}/${settings.manyUsersRounds}, ${variant}: ${Math.round(wrk.requestsPerSecond)} req/s${wrk.errors > 0 ? `, ${wrk.errors} ERRORS` : ''}`)
      await delay(context.settings.settleMs)
    }
  }
  const metricsAfter = await scrapeMetrics(sidecar)
  return {
    users: users.length,
    warmSeconds: warm.seconds,
    warmFailures: warm.failed,
    warmExchanges,
    measuredCacheMisses: metricsAfter.sum('obo_sidecar_token_cache_misses_total') - metricsBefore.sum('obo_sidecar_token_cache_misses_total'),
    measuredExchanges: (await tokenServiceExchanges(context)) - exchangesBefore,
    runs,
  }
}

// ---------------------------------------------------------------------------------------------
// Scenario 4: cold path, one exchange per request

export type ColdSeries = TargetName | 'token endpoint'

export interface ColdRound {
  round: number
  latencies: Record<string, LatencySummary>
  /** Requests sent through the sidecar with new tokens this round. */
  sidecarRequests: number
  /** Exchanges the token service issued during the sidecar's requests. */
  tokenServiceExchanges: number
  /** obo_sidecar_token_exchanges_total{outcome="success"} delta over the sidecar's requests. */
  sidecarExchangeMetric: number
}

export interface ColdResult {
  rounds: ColdRound[]
  issuedTokenLength: number
}

export async function runColdPath(context: BenchContext, clients: Map<TargetName, TargetClient>): Promise<ColdResult> {
  const { settings } = context
  const sidecar = requireSidecar(context)
  const endpoint = new TokenEndpointClient(context.tokenEndpoint, context.clientSecret)
  const rounds: ColdRound[] = []
  let issuedTokenLength = Number.NaN
  try {
    // Opens the connections (and the sidecar's connection to the token endpoint) before measuring.
    for (const target of context.targets) {
      const client = clients.get(target.name) as TargetClient
      for (const token of target.name === 'sidecar' ? takeFreshTokens(context, 5) : [context.tokens[0]]) await client.get('/small', token)
    }
    for (const token of takeFreshTokens(context, 5)) await endpoint.exchange(token)

    for (let round = 1; round <= settings.coldRounds; round++) {
      await waitForQuiet(context)
      const latencies: Record<string, LatencySummary> = {}
      let exchanges = 0
      let exchangeMetric = 0
      const count = settings.coldRequestsPerRound
      for (const target of context.targets) {
        const client = clients.get(target.name) as TargetClient
        const samples: number[] = []
        if (target.name === 'sidecar') {
          const tokens = takeFreshTokens(context, count)
          const exchangesBefore = await tokenServiceExchanges(context)
          const metricBefore = (await scrapeMetrics(sidecar)).sum('obo_sidecar_token_exchanges_total', 'outcome="success"')
          for (const token of tokens) samples.push(await client.get('/small', token))
          exchanges = (await tokenServiceExchanges(context)) - exchangesBefore
          exchangeMetric = (await scrapeMetrics(sidecar)).sum('obo_sidecar_token_exchanges_total', 'outcome="success"') - metricBefore
        } else {
          for (let i = 0; i < count; i++) samples.push(await client.get('/small', context.tokens[0]))
        }
        latencies[target.name] = summarizeLatencies(samples)
      }
      const endpointSamples: number[] = []
      for (const token of takeFreshTokens(context, count)) {
        const { ms, issuedLength } = await endpoint.exchange(token)
        endpointSamples.push(ms)
        issuedTokenLength = issuedLength
      }
      latencies['token endpoint'] = summarizeLatencies(endpointSamples)
      rounds.push({ round, latencies, sidecarRequests: count, tokenServiceExchanges: exchanges, sidecarExchangeMetric: exchangeMetric })
      context.progress(
        `S4 round ${round}/${settings.coldRounds}: sidecar cold p50 ${latencies.sidecar.p50.toFixed(3)} ms, token endpoint p50 ${latencies['token endpoint'].p50.toFixed(3)} ms, ` +
          `direct p50 ${latencies.direct.p50.toFixed(3)} ms; ${exchanges} exchanges for ${count} requests`,
      )
    }
  } finally {
    await endpoint.close()
  }
  return { rounds, issuedTokenLength }
}

// ---------------------------------------------------------------------------------------------
// Scenario 5: server-sent events and a large upload

export interface StreamingRound {
  round: number
  /** Time to the first event, by target. */
  firstEvent: Record<string, LatencySummary>
  /** Upload throughput in MB/s (10^6 bytes), by target. */
  uploadMBps: Record<string, number>
}

export interface StreamingResult {
  rounds: StreamingRound[]
  uploadBytes: number
  sseDelayMs: number
}

export async function runStreaming(context: BenchContext, clients: Map<TargetName, TargetClient>): Promise<StreamingResult> {
  const { settings } = context
  const token = context.tokens[0]
  const ssePath = `/sse?delay=${settings.sseDelayMs}`
  const rounds: StreamingRound[] = []
  for (let round = 1; round <= settings.streamingRounds; round++) {
    await waitForQuiet(context)
    const firstEvent: Record<string, LatencySummary> = {}
    const uploadMBps: Record<string, number> = {}
    for (const target of context.targets) {
      const client = clients.get(target.name) as TargetClient
      const samples: number[] = []
      for (let i = 0; i < settings.sseSamplesPerRound; i++) samples.push(await client.firstEventMs(ssePath, token))
      firstEvent[target.name] = summarizeLatencies(samples)
    }
    for (const target of context.targets) {
      const client = clients.get(target.name) as TargetClient
      const seconds = await client.upload('/upload', token, settings.uploadBytes)
      uploadMBps[target.name] = settings.uploadBytes / 1e6 / seconds
      await delay(context.settings.settleMs)
    }
    rounds.push({ round, firstEvent, uploadMBps })
    context.progress(
      `S5 round ${round}/${settings.streamingRounds}: first event ${context.targets.map((t) => `${t.name} ${firstEvent[t.name].p50.toFixed(2)} ms`).join(', ')}; ` +
        `upload ${context.targets.map((t) => `${t.name} ${Math.round(uploadMBps[t.name])} MB/s`).join(', ')}`,
    )
  }
  return { rounds, uploadBytes: settings.uploadBytes, sseDelayMs: settings.sseDelayMs }
}

// ---------------------------------------------------------------------------------------------
// Scenario 6: memory with many cached tokens

export interface MemoryReading {
  rssMetrics: number
  rssProc: number
  heapUsed: number
  heapTotal: number
}

export interface MemoryResult {
  tokens: number
  idle: MemoryReading
  filled: MemoryReading
  /** The same readings right after a full garbage collection forced through the inspector. */
  idleAfterGc: MemoryReading
  filledAfterGc: MemoryReading
  fillSeconds: number
  fillFailures: number
  exchanges: number
  cacheMisses: number
  sidecarCommand: string[]
}

async function readMemory(sidecar: RunningSidecar): Promise<MemoryReading> {
  const metrics = await scrapeMetrics(sidecar)
  return {
    rssMetrics: metrics.sum('process_resident_memory_bytes'),
    rssProc: residentBytes(sidecar.process.pid),
    heapUsed: metrics.sum('nodejs_heap_size_used_bytes'),
    heapTotal: metrics.sum('nodejs_heap_size_total_bytes'),
  }
}

export async function runMemory(context: BenchContext): Promise<MemoryResult> {
  const { settings } = context
  const sidecar = await startSidecar({
    name: 'sidecar (memory)',
    routesFile: context.routesFile,
    clientSecret: context.clientSecret,
    logFile: join(context.directory, 'sidecar-memory.log'),
    inspectPort: await findFreePort(),
  })
  const inspector = await InspectorSession.open(inspectPortOf(sidecar), 10_000)
  const readAfterGc = async (): Promise<MemoryReading> => {
    await inspector.collectGarbage()
    await delay(500)
    return readMemory(sidecar)
  }
  try {
    const target: Target = { name: 'sidecar', connectTo: `127.0.0.1:${sidecar.port}`, upstreamHost: context.upstreamHost, viaProxy: true }
    const client = new TargetClient(target, settings.fillConcurrency)
    try {
      // Idle means started and warmed with one user's requests, so code and pools are loaded.
      const warm = await client.sendEachToken('/small', Array.from({ length: 1_000 }, () => context.tokens[0]), 8, 60_000)
      if (warm.failed > 0) throw new Error(`memory warm-up failed: ${warm.firstError}`)
      await delay(settings.memorySettleMs)
      const idle = await readMemory(sidecar)
      const idleAfterGc = await readAfterGc()
      context.progress(`S6 idle RSS ${(idle.rssMetrics / 1e6).toFixed(1)} MB, ${(idleAfterGc.rssMetrics / 1e6).toFixed(1)} MB after a full GC; sending ${settings.memoryTokens} new user tokens`)

      const exchangesBefore = await tokenServiceExchanges(context)
      const missesBefore = (await scrapeMetrics(sidecar)).sum('obo_sidecar_token_cache_misses_total')
      const fill = await client.sendEachToken('/small', context.tokens.slice(1, 1 + settings.memoryTokens), settings.fillConcurrency, 300_000)
      const exchanges = (await tokenServiceExchanges(context)) - exchangesBefore
      const cacheMisses = (await scrapeMetrics(sidecar)).sum('obo_sidecar_token_cache_misses_total') - missesBefore
      if (fill.failed > 0) throw new Error(`filling the cache failed ${fill.failed} times: ${fill.firstError}`)
      await delay(settings.memorySettleMs)
      const filled = await readMemory(sidecar)
      const filledAfterGc = await readAfterGc()
      context.progress(
        `S6 filled ${fill.ok} tokens in ${fill.seconds.toFixed(1)} s; RSS ${(filled.rssMetrics / 1e6).toFixed(1)} MB, ${(filledAfterGc.rssMetrics / 1e6).toFixed(1)} MB after a full GC`,
      )
      return {
        tokens: settings.memoryTokens,
        idle,
        filled,
        idleAfterGc,
        filledAfterGc,
        fillSeconds: fill.seconds,
        fillFailures: fill.failed,
        exchanges,
        cacheMisses,
        sidecarCommand: sidecar.commandLine,
      }
    } finally {
      await client.close()
    }
  } finally {
    inspector.close()
    await sidecar.process.stop(15_000)
  }
}

function inspectPortOf(sidecar: RunningSidecar): number {
  const flag = sidecar.commandLine.find((argument) => argument.startsWith('--inspect='))
  return Number(flag?.slice(flag.lastIndexOf(':') + 1))
}

// ---------------------------------------------------------------------------------------------
// CPU profile of the sidecar under scenario 1's load

export interface ProfileResult {
  summary: ProfileSummary
  wrk: WrkResult
  connections: number
  seconds: number
  /** Copy of the raw profile, for Chrome DevTools or speedscope. */
  savedProfile: string
}

export async function runProfile(context: BenchContext): Promise<ProfileResult> {
  const { settings } = context
  const profileDirectory = join(context.directory, 'cpu-profile')
  const sidecar = await startSidecar({
    name: 'sidecar (profiled)',
    routesFile: context.routesFile,
    clientSecret: context.clientSecret,
    logFile: join(context.directory, 'sidecar-profile.log'),
    cpuProfileDirectory: profileDirectory,
  })

  let wrk: WrkResult
  let window: { startUs: number; endUs: number }
  try {
    const target: Target = { name: 'sidecar', connectTo: `127.0.0.1:${sidecar.port}`, upstreamHost: context.upstreamHost, viaProxy: true }
    // One request first, so the exchange and the connection set-up fall outside the window.
    const client = new TargetClient(target, 1)
    await client.get('/small', context.tokens[0]).finally(() => client.close())

    // process.hrtime and V8's profile timestamps both read CLOCK_MONOTONIC on Linux, so this
    // window selects the samples taken while wrk ran.
    const startNs = process.hrtime.bigint()
    wrk = await runWrk(wrkTarget(context, target, '/small'), context.singleTokenFile, settings.profileConnections, settings.profileSeconds)
    window = { startUs: Number(startNs / 1000n), endUs: Number(process.hrtime.bigint() / 1000n) }
    context.progress(`profile: ${Math.round(wrk.requestsPerSecond)} req/s under the profiler`)
  } finally {
    // The profile is written when the process exits after SIGTERM.
    await sidecar.process.stop(30_000)
  }

  const files = readdirSync(profileDirectory).filter((name) => name.endsWith('.cpuprofile'))
  if (files.length === 0) throw new Error(`the sidecar wrote no .cpuprofile into ${profileDirectory}`)
  const profileFile = join(profileDirectory, files[0])
  const savedProfile = join(context.repositoryRoot, 'dist', 'bench', 'sidecar.cpuprofile')
  copyFileSync(profileFile, savedProfile)
  return { summary: summarizeProfile(profileFile, context.repositoryRoot, window), wrk, connections: settings.profileConnections, seconds: settings.profileSeconds, savedProfile }
}

/** Median over rounds of a per-round value. */
export function medianOf<T>(items: readonly T[], pick: (item: T) => number): number {
  return median(items.map(pick).filter((value) => Number.isFinite(value)))
}
