/** Renders the benchmark results as docs/benchmarks.md. */
import type { MachineDescription } from './procfs.js'
import { NATIVE_CATEGORY, NODE_CATEGORY, SIDECAR_CATEGORY, type FunctionTime } from './profile.js'
import {
  medianOf,
  type ColdResult,
  type LatencyResult,
  type ManyUsersResult,
  type MemoryReading,
  type MemoryResult,
  type ProfileResult,
  type StreamingResult,
  type ThroughputResult,
} from './scenarios.js'
import type { Settings } from './settings.js'
import { SUBJECT_LENGTH } from './shared.js'
import { count, fixed, maximum, median, megabytes, minimum, ratio } from './stats.js'

export type Outcome<T> = { ok: true; value: T } | { ok: false; error: string }

export interface BenchResults {
  command: string
  /** The commit the sidecar was built from. */
  revision: string
  startedAt: Date
  elapsedSeconds: number
  settings: Settings
  machine: MachineDescription
  wrkVersion: string
  squidVersion: string | undefined
  squidNote?: string
  userTokenLength: number
  sidecarCommand: string[]
  /** The sidecar's node flags and their source, as a sentence for the set-up list. */
  nodeFlagsSource: string
  /** Share of all cores busy while the benchmark ran nothing, just before and just after. */
  backgroundBusy: { before: number; after: number }
  /** One-minute load average at the start and the end. */
  loadAverage: { before: number; after: number }
  /** Share of all cores that processes outside the benchmark used during each scenario. */
  otherLoad: Record<string, number>
  /** Time spent waiting for other processes to quieten before measurements. */
  quietWaitSeconds: number
  scenarios: {
    throughput?: Outcome<ThroughputResult>
    latency?: Outcome<LatencyResult>
    manyUsers?: Outcome<ManyUsersResult>
    cold?: Outcome<ColdResult>
    streaming?: Outcome<StreamingResult>
    memory?: Outcome<MemoryResult>
    profile?: Outcome<ProfileResult>
  }
}

type Verdict = 'met' | 'not met' | 'not evaluated'

interface TargetCheck {
  target: string
  measured: string
  verdict: Verdict
}

const MB = 1e6

/** Builds a Markdown table from a header row and body rows. */
function table(header: string[], rows: string[][]): string {
  const line = (cells: string[]): string => `| ${cells.join(' | ')} |`
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n')
}

function verdict(condition: boolean | undefined): Verdict {
  if (condition === undefined) return 'not evaluated'
  return condition ? 'met' : 'not met'
}

function failed(outcome: Outcome<unknown> | undefined): string {
  if (outcome === undefined) return 'Not run.'
  return outcome.ok ? '' : `**This scenario failed:** ${outcome.error.split('\n')[0]}`
}

function ms(value: number, digits = 3): string {
  return `${fixed(value, digits)} ms`
}

/** Median over rounds of `pick(round)`, for the rounds where both values exist. */
function perRound<T>(rounds: readonly T[], pick: (round: T) => number | undefined): number[] {
  return rounds.map(pick).filter((value): value is number => value !== undefined && Number.isFinite(value))
}

// ---------------------------------------------------------------------------------------------

export function renderReport(results: BenchResults, preservedNotes: string | undefined): string {
  const checks: TargetCheck[] = []
  const sections = [
    renderThroughput(results, checks),
    renderLatency(results, checks),
    renderManyUsers(results, checks),
    renderCold(results, checks),
    renderStreaming(results, checks),
    renderMemory(results, checks),
    renderProfile(results),
  ]
  const order = ['cache-hit throughput', 'proxy CPU', 'added latency', '10,000 users', 'cold path', 'memory', 'SSE', 'upload']
  checks.sort((a, b) => order.findIndex((prefix) => a.target.startsWith(prefix)) - order.findIndex((prefix) => b.target.startsWith(prefix)))
  return [
    renderHeader(results),
    '## Targets',
    results.settings.quick
      ? 'This is a `--quick` run: shorter measurements and fewer users and tokens. Judge the targets on a full run.\n'
      : '',
    'MB means 10^6 bytes throughout.',
    table(['target', 'measured', 'result'], checks.map((check) => [check.target, check.measured, check.verdict])),
    ...sections,
    preservedNotes ?? '<!-- hand-written notes: start -->\n<!-- hand-written notes: end -->',
    '',
  ].join('\n\n').replace(/\n{3,}/g, '\n\n')
}

function renderHeader(results: BenchResults): string {
  const { machine, settings } = results
  const squid = results.squidVersion ?? `not installed: ${results.squidNote ?? ''}`
  return [
    '# Benchmarks',
    `Written by \`${results.command}\` (bench/run.ts) on ${results.startedAt.toISOString().slice(0, 16).replace('T', ' ')} UTC in ${fixed(results.elapsedSeconds, 0)} s, ` +
      'plus the build. Run it again with `npm run bench` (about 7 minutes on this machine) or, as a smoke test, `npm run bench -- --quick` (under 2 minutes). ' +
      'Both need wrk, and squid for the reference column (on Debian: `apt-get install -y wrk squid`). A new run keeps the hand-written notes at the end.',
    '## Machine and build',
    table(['', ''], [
      ['sidecar build', results.revision],
      ['cores', String(machine.cores)],
      ['CPU (/proc/cpuinfo)', machine.cpuModel],
      ['memory', `${fixed(machine.memoryGiB, 1)} GiB`],
      ['kernel', machine.kernel],
      ['Node.js', machine.node],
      ['squid', squid],
      ['wrk', results.wrkVersion],
      ['other load', `${share(results.backgroundBusy.before, 1)} of all cores busy in the second before the run, ${share(results.backgroundBusy.after, 1)} in the second after; ` +
        `1-minute load average ${fixed(results.loadAverage.before, 2)} at the start, ${fixed(results.loadAverage.after, 2)} at the end`],
      ['other load by scenario', Object.entries(results.otherLoad).map(([name, value]) => `${name}: ${share(value, 1)}`).join('; ')],
    ]),
    'Other load is the CPU time of processes outside the benchmark (the machine\'s busy time in /proc/stat minus the harness and everything it started), as a share of all cores (bench/load-monitor.ts). ' +
      `Before each measurement the harness waits up to ${fixed(results.settings.quietWaitMaxMs / 1000, 0)} s for it to fall below ${share(results.settings.quietThreshold, 1)}, ` +
      `within a budget of ${fixed(results.settings.quietWaitBudgetMs / 1000, 0)} s per run; this run waited ${fixed(results.quietWaitSeconds, 1)} s. ` +
      'Measurements that ran next to much other load are less reliable, and the per-round tables show it for each run.',
    '## Set-up',
    [
      '- Every process listens on 127.0.0.1, and all of them share the machine\'s cores with the load generator: ' +
        'absolute numbers measure this box, and the ratios between targets measured in the same round are the comparison.',
      '- **upstream**: bench/upstream.ts, a node:http server in its own process. `GET /small` returns 40 bytes; ' +
        '`GET /sse` sends event-stream headers at once and its first event after a fixed delay; `POST /upload` counts the body.',
      '- **token service**: demo/token-service.ts (oidc-provider, RFC 8693 token exchange) in its own process, issuing tokens valid for an hour. ' +
        `User tokens are ES256 JWTs of ${fixed(results.userTokenLength, 0)} characters on average (a ${SUBJECT_LENGTH}-character \`sub\`), ` +
        `and the issued token repeats that \`sub\`${coldIssuedLength(results)}.`,
      `- **squid**: one worker, \`cache deny all\`, no cache_dir, \`access_log none\`, \`cache_log /dev/null\`, \`http_access allow localhost\`, \`via off\`, \`forwarded_for delete\` (bench/squid.ts).`,
      `- **sidecar**: the built CLI started as \`${results.sidecarCommand.join(' ')}\`, with one route for the upstream's host and port. ` +
        `Its node flags: ${results.nodeFlagsSource}. ` +
        'The cache bounds are raised because 10,000 users plus the cold path\'s tokens exceed the default of 10,000 entries, and 100,000 tokens of 1 KB exceed the default 64 MiB.',
      `- **load**: wrk with one thread and bench/wrk-requests.lua, which writes the absolute-form target \`http://127.0.0.1:PORT/small\` and the Host header for squid and the sidecar, ` +
        'the origin-form `/small` for direct, and `Authorization: Bearer <user token>` on every request. ' +
        'Fixed-rate latency comes from bench/open-loop.ts (undici Pool, keep-alive, latency counted from each request\'s scheduled send time).',
      `- **rounds**: scenario 1 runs ${settings.throughputRounds} rounds of ${settings.throughputSeconds} s per target and connection count, ` +
        `interleaved direct, squid, sidecar; the others run ${settings.latencyRounds} rounds. Tables show medians over rounds; ratios are taken within a round, then their median.`,
    ].join('\n'),
  ].join('\n\n')
}

function coldIssuedLength(results: BenchResults): string {
  const cold = results.scenarios.cold
  return cold?.ok === true && Number.isFinite(cold.value.issuedTokenLength) ? `, ${cold.value.issuedTokenLength} characters` : ''
}

// ---------------------------------------------------------------------------------------------
// Scenario 1

function renderThroughput(results: BenchResults, checks: TargetCheck[]): string {
  const outcome = results.scenarios.throughput
  const parts = ['## 1. Cache-hit throughput', `One user token, \`GET /small\`, wrk for ${results.settings.throughputSeconds} s per run. CPU per request is the proxy process's CPU time during the run divided by the requests wrk completed: squid's from /proc/PID/stat, the sidecar's from \`process_cpu_seconds_total\` on its /metrics (and from /proc for comparison).`]

  if (outcome?.ok !== true) {
    checks.push({ target: 'cache-hit throughput ≥ 1.2x squid', measured: 'scenario failed', verdict: 'not evaluated' })
    checks.push({ target: 'proxy CPU ≤ 60 µs per request', measured: 'scenario failed', verdict: 'not evaluated' })
    return [...parts, failed(outcome)].join('\n\n')
  }

  const { runs } = outcome.value
  const connectionCounts = [...new Set(runs.map((run) => run.connections))]
  const cpuMedians: number[] = []
  for (const connections of connectionCounts) {
    const atCount = runs.filter((run) => run.connections === connections)
    const rounds = [...new Set(atCount.map((run) => run.round))]
    const rpsOf = (round: number, target: string): number | undefined => atCount.find((run) => run.round === round && run.target === target)?.wrk.requestsPerSecond
    const toSquid = perRound(rounds, (round) => ratioOf(rpsOf(round, 'sidecar'), rpsOf(round, 'squid')))
    const toDirect = (target: string): number[] => perRound(rounds, (round) => ratioOf(rpsOf(round, target), rpsOf(round, 'direct')))
    const targets = [...new Set(atCount.map((run) => run.target))]
    const rows = targets.map((target) => {
      const mine = atCount.filter((run) => run.target === target)
      const rps = mine.map((run) => run.wrk.requestsPerSecond)
      const errors = mine.reduce((sum, run) => sum + run.wrk.errors, 0)
      return [
        target,
        count(median(rps)),
        `${count(minimum(rps))} – ${count(maximum(rps))}`,
        target === 'direct' ? '' : ratio(median(toDirect(target))),
        target === 'sidecar' && toSquid.length > 0 ? `${ratio(median(toSquid))} (lowest ${ratio(minimum(toSquid))})` : '',
        `${ms(medianOf(mine, (run) => run.wrk.p50Ms), 2)} / ${ms(medianOf(mine, (run) => run.wrk.p99Ms), 2)}`,
        fixed(medianOf(mine, (run) => run.cpuUsPerRequestMetrics ?? Number.NaN), 1),
        fixed(medianOf(mine, (run) => run.cpuUsPerRequestProc ?? Number.NaN), 1),
        String(errors),
      ]
    })
    const sidecarCpu = medianOf(atCount.filter((run) => run.target === 'sidecar'), (run) => run.cpuUsPerRequestMetrics ?? Number.NaN)
    cpuMedians.push(sidecarCpu)
    parts.push(`### ${connections} connections`)
    parts.push(table(['target', 'median req/s', 'range', 'to direct', 'sidecar to squid', 'wrk p50 / p99', 'CPU µs/req (/metrics)', 'CPU µs/req (/proc)', 'errors'], rows))
    const otherLoadOf = (round: number, target: string): number => atCount.find((run) => run.round === round && run.target === target)?.otherLoad ?? Number.NaN
    parts.push(
      'Per round (req/s, and in brackets the other load during the run):\n\n' +
        table(
          ['round', ...targets, ...(toSquid.length > 0 ? ['sidecar / squid'] : [])],
          rounds.map((round) => [
            String(round),
            ...targets.map((target) => `${count(rpsOf(round, target) ?? Number.NaN)} (${share(otherLoadOf(round, target), 1)})`),
            ...(toSquid.length > 0 ? [ratio(ratioOf(rpsOf(round, 'sidecar'), rpsOf(round, 'squid')) ?? Number.NaN)] : []),
          ]),
        ),
    )
    checks.push({
      target: `cache-hit throughput ≥ 1.2x squid at ${connections} connections, no round below 1.0x`,
      measured: toSquid.length === 0 ? 'no squid' : `median ${ratio(median(toSquid))}, lowest ${ratio(minimum(toSquid))} over ${toSquid.length} rounds`,
      // The target needs at least five rounds, and a --quick run has fewer.
      verdict: verdict(toSquid.length < 5 ? undefined : median(toSquid) >= 1.2 && minimum(toSquid) >= 1.0),
    })
  }

  checks.push({
    target: 'proxy CPU ≤ 60 µs per request (sidecar, scenario 1)',
    measured: connectionCounts.map((connections, i) => `${fixed(cpuMedians[i], 1)} µs at ${connections} connections`).join(', '),
    verdict: verdict(cpuMedians.every((value) => Number.isFinite(value)) ? cpuMedians.every((value) => value <= 60) : undefined),
  })

  return parts.join('\n\n')
}

function ratioOf(numerator: number | undefined, denominator: number | undefined): number | undefined {
  return numerator === undefined || denominator === undefined || denominator === 0 ? undefined : numerator / denominator
}

// ---------------------------------------------------------------------------------------------
// Scenario 2

function renderLatency(results: BenchResults, checks: TargetCheck[]): string {
  const { settings } = results
  const outcome = results.scenarios.latency
  const parts = [
    `## 2. Latency at a fixed ${count(settings.latencyRate)} req/s`,
    `bench/open-loop.ts sends \`GET /small\` at ${count(settings.latencyRate)} req/s, evenly spaced, over up to ${settings.latencyConnections} keep-alive connections, ` +
      `for ${settings.latencySeconds} s after a ${settings.latencyWarmupSeconds} s warm-up. Latency runs from each request's scheduled send time to the end of its response, ` +
      'so a request that waits behind a slow one counts its wait. "Added" is the target\'s quantile minus direct\'s in the same round, then the median over rounds.',
  ]

  if (outcome?.ok !== true) {
    checks.push({ target: 'added latency at 1,000 req/s: p50 ≤ 0.3 ms, p99 ≤ 1.5 ms', measured: 'scenario failed', verdict: 'not evaluated' })
    return [...parts, failed(outcome)].join('\n\n')
  }

  const { runs } = outcome.value
  const rounds = [...new Set(runs.map((run) => run.round))]
  const targets = [...new Set(runs.map((run) => run.target))]
  const quantileOf = (round: number, target: string, pick: 'p50' | 'p99' | 'p999'): number | undefined =>
    runs.find((run) => run.round === round && run.target === target)?.result.latency[pick]
  const added = (target: string, pick: 'p50' | 'p99' | 'p999'): number =>
    median(perRound(rounds, (round) => {
      const mine = quantileOf(round, target, pick)
      const direct = quantileOf(round, 'direct', pick)
      return mine === undefined || direct === undefined ? undefined : mine - direct
    }))
  const rows = targets.map((target) => {
    const mine = runs.filter((run) => run.target === target)
    return [
      target,
      ms(medianOf(mine, (run) => run.result.latency.p50)),
      ms(medianOf(mine, (run) => run.result.latency.p99)),
      ms(medianOf(mine, (run) => run.result.latency.p999)),
      ms(maximum(mine.map((run) => run.result.latency.max)), 1),
      target === 'direct' ? '' : ms(added(target, 'p50')),
      target === 'direct' ? '' : ms(added(target, 'p99')),
      target === 'direct' ? '' : ms(added(target, 'p999')),
      count(medianOf(mine, (run) => run.result.achievedRate)),
      String(mine.reduce((sum, run) => sum + run.result.errors, 0)),
      mine.map((run) => share(run.otherLoad, 1)).join(', '),
    ]
  })

  parts.push(table(['target', 'p50', 'p99', 'p99.9', 'max', 'added p50', 'added p99', 'added p99.9', 'req/s', 'errors', 'other load by round'], rows))
  const lagP50 = medianOf(runs, (run) => run.result.sendLag.p50)
  const lagP99 = medianOf(runs, (run) => run.result.sendLag.p99)
  const serviceRows = targets.map((target) => {
    const mine = runs.filter((run) => run.target === target)
    return [target, ms(medianOf(mine, (run) => run.result.service.p50)), ms(medianOf(mine, (run) => run.result.service.p99)), ms(medianOf(mine, (run) => run.result.service.p999))]
  })

  parts.push(
    `The pacer's own timer delay (send time minus scheduled time) has a median p50 of ${ms(lagP50)} and p99 of ${ms(lagP99)}, the same for every target. ` +
      'Measured from the actual send time instead, the latencies are:\n\n' +
      table(['target', 'p50 from send', 'p99 from send', 'p99.9 from send'], serviceRows),
  )
  if (targets.includes('sidecar')) {
    const p50 = added('sidecar', 'p50')
    const p99 = added('sidecar', 'p99')
    checks.push({
      target: 'added latency at 1,000 req/s: p50 ≤ 0.3 ms, p99 ≤ 1.5 ms over direct',
      measured: `p50 +${ms(p50)}, p99 +${ms(p99)}`,
      verdict: verdict(Number.isFinite(p50) && Number.isFinite(p99) ? p50 <= 0.3 && p99 <= 1.5 : undefined),
    })
  }

  return parts.join('\n\n')
}

// ---------------------------------------------------------------------------------------------
// Scenario 3

function renderManyUsers(results: BenchResults, checks: TargetCheck[]): string {
  const { settings } = results
  const outcome = results.scenarios.manyUsers
  const parts = [
    `## 3. Many users`,
    `wrk sends \`GET /small\` over ${settings.manyUsersConnections} connections for ${settings.manyUsersSeconds} s, each request with the next of ${count(settings.manyUsers)} distinct user tokens (round robin). ` +
      'Before the runs every user is sent through the sidecar once, so the runs measure cache hits. "sidecar, one user" repeats scenario 1\'s single token in the same round.',
  ]

  if (outcome?.ok !== true) {
    checks.push({ target: '10,000 users within 10% of one user', measured: 'scenario failed', verdict: 'not evaluated' })
    return [...parts, failed(outcome)].join('\n\n')
  }

  const result = outcome.value
  const rounds = [...new Set(result.runs.map((run) => run.round))]
  const variants = [...new Set(result.runs.map((run) => run.variant))]
  const rpsOf = (round: number, variant: string): number | undefined => result.runs.find((run) => run.round === round && run.variant === variant)?.wrk.requestsPerSecond
  const toOneUser = perRound(rounds, (round) => ratioOf(rpsOf(round, 'sidecar'), rpsOf(round, 'sidecar, one user')))
  const toSquid = perRound(rounds, (round) => ratioOf(rpsOf(round, 'sidecar'), rpsOf(round, 'squid')))
  const toDirect = (variant: string): number => median(perRound(rounds, (round) => ratioOf(rpsOf(round, variant), rpsOf(round, 'direct'))))

  parts.push(
    table(
      ['variant', 'median req/s', 'range', 'to direct', 'errors', 'other load by round'],
      variants.map((variant) => {
        const mine = result.runs.filter((run) => run.variant === variant)
        const rps = mine.map((run) => run.wrk.requestsPerSecond)
        return [
          variant,
          count(median(rps)),
          `${count(minimum(rps))} – ${count(maximum(rps))}`,
          variant === 'direct' ? '' : ratio(toDirect(variant)),
          String(mine.reduce((sum, run) => sum + run.wrk.errors, 0)),
          mine.map((run) => share(run.otherLoad, 1)).join(', '),
        ]
      }),
    ),
  )

  parts.push(
    [
      `- ${count(result.users)} users: sidecar to one user ${ratio(median(toOneUser))} (rounds ${toOneUser.map(ratio).join(', ')})` +
        `${toSquid.length > 0 ? `, sidecar to squid ${ratio(median(toSquid))}` : ''}.`,
      `- Warming took ${fixed(result.warmSeconds, 1)} s for ${count(result.users)} users (${count(result.users / result.warmSeconds)} exchanges/s through the sidecar), ` +
        `${count(result.warmExchanges)} exchanges at the token service, ${result.warmFailures} failures.`,
      `- During the measured runs the sidecar counted ${count(result.measuredCacheMisses)} cache misses and the token service ${count(result.measuredExchanges)} exchanges.`,
    ].join('\n'),
  )

  checks.push({
    target: `10,000 users within 10% of one user${result.users === 10_000 ? '' : ` (this run: ${count(result.users)} users)`}`,
    measured: `${ratio(median(toOneUser))} of one user's throughput, ${count(result.measuredCacheMisses)} cache misses`,
    verdict: verdict(toOneUser.length === 0 ? undefined : median(toOneUser) >= 0.9 && result.measuredCacheMisses === 0),
  })

  return parts.join('\n\n')
}

// ---------------------------------------------------------------------------------------------
// Scenario 4

function renderCold(results: BenchResults, checks: TargetCheck[]): string {
  const { settings } = results
  const outcome = results.scenarios.cold
  const parts = [
    '## 4. Cold path: a new user token on every request',
    `One request at a time, ${settings.coldRequestsPerRound} per target and round. Through the sidecar every request carries a user token it has not seen, so each needs one exchange. ` +
      '"token endpoint" times the same token exchange request (form fields, client_secret_basic, keep-alive) sent straight to the token service with other new tokens. ' +
      'Direct and squid send the single user\'s token and need no exchange.',
  ]

  if (outcome?.ok !== true) {
    checks.push({ target: 'cold path: one exchange per new token, ≤ 1 ms added over the token endpoint', measured: 'scenario failed', verdict: 'not evaluated' })
    return [...parts, failed(outcome)].join('\n\n')
  }

  const { rounds } = outcome.value
  const series = Object.keys(rounds[0]?.latencies ?? {})

  parts.push(
    table(
      ['series', 'p50', 'p90', 'p99', 'max'],
      series.map((name) => [
        name,
        ms(medianOf(rounds, (round) => round.latencies[name].p50)),
        ms(medianOf(rounds, (round) => round.latencies[name].p90)),
        ms(medianOf(rounds, (round) => round.latencies[name].p99)),
        ms(maximum(rounds.map((round) => round.latencies[name].max)), 1),
      ]),
    ),
  )
  const added = median(perRound(rounds, (round) => round.latencies.sidecar.p50 - round.latencies['token endpoint'].p50))
  const addedNet = median(perRound(rounds, (round) => round.latencies.sidecar.p50 - round.latencies['token endpoint'].p50 - round.latencies.direct.p50))
  const requests = rounds.reduce((sum, round) => sum + round.sidecarRequests, 0)
  const exchanges = rounds.reduce((sum, round) => sum + round.tokenServiceExchanges, 0)
  const exchangeMetric = rounds.reduce((sum, round) => sum + round.sidecarExchangeMetric, 0)

  parts.push(
    [
      `- Sidecar p50 minus token endpoint p50: ${ms(added)} (median over rounds). Minus the direct request's p50 as well, which the sidecar's request also contains: ${ms(addedNet)}.`,
      `- ${count(requests)} requests with new tokens; the token service issued ${count(exchanges)} tokens meanwhile and the sidecar's \`obo_sidecar_token_exchanges_total{outcome="success"}\` rose by ${count(exchangeMetric)}.`,
    ].join('\n'),
  )

  checks.push({
    target: 'cold path: exactly one exchange per new token, ≤ 1 ms added over the token endpoint\'s own time',
    measured: `${count(exchanges)} exchanges for ${count(requests)} requests; +${ms(added)} at p50 (+${ms(addedNet)} without the upstream request)`,
    verdict: verdict(exchanges === requests && exchangeMetric === requests && added <= 1),
  })

  return parts.join('\n\n')
}

// ---------------------------------------------------------------------------------------------
// Scenario 5

function renderStreaming(results: BenchResults, checks: TargetCheck[]): string {
  const outcome = results.scenarios.streaming
  const parts = ['## 5. Streaming']

  if (outcome?.ok !== true) {
    checks.push({ target: 'SSE first event within 2 ms of direct', measured: 'scenario failed', verdict: 'not evaluated' })
    checks.push({ target: 'upload ≥ 0.8x direct', measured: 'scenario failed', verdict: 'not evaluated' })
    return [...parts, failed(outcome)].join('\n\n')
  }

  const { rounds, sseDelayMs, uploadBytes } = outcome.value
  const targets = Object.keys(rounds[0]?.firstEvent ?? {})
  const sseAdded = (target: string): number => median(perRound(rounds, (round) => round.firstEvent[target].p50 - round.firstEvent.direct.p50))
  const uploadRatio = (target: string): number[] => perRound(rounds, (round) => round.uploadMBps[target] / round.uploadMBps.direct)

  parts.push(
    `Server-sent events: \`GET /sse\`, one at a time, ${results.settings.sseSamplesPerRound} per target and round. The upstream sends its headers at once and the first event ${sseDelayMs} ms later; ` +
      'the time runs from sending the request to receiving the whole first event.',
  )

  parts.push(
    table(
      ['target', 'first event p50', 'p90', 'added p50 over direct'],
      targets.map((target) => [
        target,
        ms(medianOf(rounds, (round) => round.firstEvent[target].p50)),
        ms(medianOf(rounds, (round) => round.firstEvent[target].p90)),
        target === 'direct' ? '' : ms(sseAdded(target)),
      ]),
    ),
  )

  parts.push(`Upload: one \`POST /upload\` of ${count(uploadBytes / 1024 / 1024)} MiB per target and round, sent in 1 MiB chunks with Content-Length; MB/s counts 10^6 bytes.`)
  parts.push(
    table(
      ['target', 'median MB/s', 'range', 'to direct'],
      targets.map((target) => {
        const values = rounds.map((round) => round.uploadMBps[target])
        return [target, fixed(median(values), 0), `${fixed(minimum(values), 0)} – ${fixed(maximum(values), 0)}`, target === 'direct' ? '' : ratio(median(uploadRatio(target)))]
      }),
    ),
  )
  if (targets.includes('sidecar')) {
    const added = sseAdded('sidecar')
    checks.push({ target: 'SSE first event within 2 ms of direct', measured: `+${ms(added)} at p50`, verdict: verdict(Number.isFinite(added) ? added <= 2 : undefined) })
    const uploads = uploadRatio('sidecar')
    checks.push({
      target: 'upload ≥ 0.8x direct',
      measured: `${ratio(median(uploads))} (rounds ${uploads.map(ratio).join(', ')})`,
      verdict: verdict(uploads.length === 0 ? undefined : median(uploads) >= 0.8),
    })
  }

  return parts.join('\n\n')
}

// ---------------------------------------------------------------------------------------------
// Scenario 6

function renderMemory(results: BenchResults, checks: TargetCheck[]): string {
  const { settings } = results
  const outcome = results.scenarios.memory
  const parts = [
    '## 6. Memory',
    `A separate sidecar process (same flags) is started, warmed with 1,000 requests of one user ("idle"), then sent ${count(settings.memoryTokens)} requests, each with a user token it has not seen, ` +
      `so it caches ${count(settings.memoryTokens)} more issued tokens. Each reading is taken ${fixed(settings.memorySettleMs / 1000, 1)} s after the traffic stops. RSS comes from \`process_resident_memory_bytes\` on /metrics and from VmRSS in /proc/PID/status.`,
  ]

  if (outcome?.ok !== true) {
    checks.push({ target: 'memory: 100,000 cached 1 KB tokens ≤ 160 MB RSS over idle', measured: 'scenario failed', verdict: 'not evaluated' })
    return [...parts, failed(outcome)].join('\n\n')
  }

  const result = outcome.value
  const { idle, filled, idleAfterGc, filledAfterGc } = result
  const row = (label: string, reading: MemoryReading): string[] => [label, megabytes(reading.rssMetrics), megabytes(reading.rssProc), megabytes(reading.heapUsed), megabytes(reading.heapTotal)]
  const difference = (label: string, after: MemoryReading, before: MemoryReading): string[] => [
    label,
    megabytes(after.rssMetrics - before.rssMetrics),
    megabytes(after.rssProc - before.rssProc),
    megabytes(after.heapUsed - before.heapUsed),
    megabytes(after.heapTotal - before.heapTotal),
  ]
  const filledLabel = `${count(result.tokens)} tokens cached`

  parts.push(
    'The sidecar runs with `--inspect=127.0.0.1:PORT` here, so the harness can force a full garbage collection (`HeapProfiler.collectGarbage`) before the second reading of each pair. ' +
      'The first reading is what a memory limit sees at that moment; the second leaves out garbage that V8 had not collected yet, most of it from the exchanges.',
  )

  parts.push(
    table(
      ['reading', 'RSS (/metrics)', 'RSS (/proc)', 'V8 heap used', 'V8 heap total'],
      [
        row('idle', idle),
        row(filledLabel, filled),
        difference('difference', filled, idle),
        row('idle, after a full GC', idleAfterGc),
        row(`${filledLabel}, after a full GC`, filledAfterGc),
        difference('difference after a full GC', filledAfterGc, idleAfterGc),
      ],
    ),
  )

  const rssDelta = filled.rssMetrics - idle.rssMetrics
  const rssDeltaAfterGc = filledAfterGc.rssMetrics - idleAfterGc.rssMetrics
  const heapPerToken = (filledAfterGc.heapUsed - idleAfterGc.heapUsed) / result.tokens
  const scale = 100_000 / result.tokens

  parts.push(
    [
      `- Per cached token: ${fixed(rssDeltaAfterGc / result.tokens, 0)} bytes of RSS and ${fixed(heapPerToken, 0)} bytes of live V8 heap after a full GC; ` +
        `${fixed(rssDelta / result.tokens, 0)} bytes of RSS without one.`,
      `- Filling took ${fixed(result.fillSeconds, 1)} s (${count(result.tokens / result.fillSeconds)} exchanges/s through the sidecar with ${settings.fillConcurrency} requests in flight); ` +
        `the token service issued ${count(result.exchanges)} tokens and the sidecar counted ${count(result.cacheMisses)} cache misses.`,
      '- The cache\'s own entry count and size are not exported on /metrics, so this report cannot show them.',
    ].join('\n'),
  )
  const extrapolated = result.tokens !== 100_000

  checks.push({
    target: 'memory: 100,000 cached 1 KB tokens ≤ 160 MB RSS over idle (after a full GC)',
    measured:
      `+${megabytes(rssDeltaAfterGc * scale)} after a full GC, +${megabytes(rssDelta * scale)} without one` +
      (extrapolated ? ` (extrapolated from ${count(result.tokens)} tokens)` : ` (idle ${megabytes(idleAfterGc.rssMetrics)} after a GC)`),
    verdict: verdict(Number.isFinite(rssDeltaAfterGc) ? rssDeltaAfterGc * scale <= 160 * MB : undefined),
  })

  return parts.join('\n\n')
}

// ---------------------------------------------------------------------------------------------
// Profile

function share(part: number, whole: number): string {
  return whole > 0 ? `${((part / whole) * 100).toFixed(1)}%` : 'n/a'
}

function renderProfile(results: BenchResults): string {
  const outcome = results.scenarios.profile
  const parts = ['## CPU profile of the sidecar under scenario 1']
  if (outcome?.ok !== true) return [...parts, failed(outcome)].join('\n\n')

  const { summary, wrk, connections, seconds } = outcome.value
  const busy = summary.busyMs

  parts.push(
    `A third sidecar process ran with \`node --cpu-prof --cpu-prof-interval 500\` while wrk sent one user's requests over ${connections} connections for ${seconds} s ` +
      `(${count(wrk.requestsPerSecond)} req/s under the profiler, ${wrk.errors} errors). ` +
      (summary.windowApplied
        ? `Only the ${count(summary.samples)} samples taken while wrk ran count (of ${count(summary.totalSamples)}; start-up and shutdown are left out): `
        : `No sample matched wrk's time window, so all ${count(summary.samples)} samples count, start-up included: `) +
      `${fixed(busy, 0)} ms busy and ${fixed(summary.idleMs, 0)} ms idle. Shares below are of the busy time. Self time is time in the function itself; ` +
      'inclusive time adds the functions it called. Locations in src/ are mapped from dist/ through the source maps. ' +
      'The raw profile is saved as dist/bench/sidecar.cpuprofile (open it in Chrome DevTools).',
  )

  parts.push('Self time by where the code comes from:')
  parts.push(table(['code', 'self time', 'share'], summary.categories.map((category) => [category.category, ms(category.selfMs, 0), share(category.selfMs, busy)])))

  const top = (entries: FunctionTime[], limit: number, key: 'selfMs' | 'inclusiveMs'): FunctionTime[] => [...entries].sort((a, b) => b[key] - a[key]).slice(0, limit)
  const own = summary.functions.filter((entry) => entry.category === SIDECAR_CATEGORY)
  const dependencies = summary.functions.filter((entry) => ![SIDECAR_CATEGORY, NODE_CATEGORY, NATIVE_CATEGORY, 'other'].includes(entry.category) && !entry.category.startsWith('(') && entry.category !== 'garbage collector')

  parts.push('Top functions in the sidecar\'s own code, by self time:')
  parts.push(table(['function (source)', 'self', 'inclusive'], top(own, 12, 'selfMs').map((entry) => [`\`${entry.label}\``, share(entry.selfMs, busy), share(entry.inclusiveMs, busy)])))
  parts.push('The sidecar\'s own functions with the most inclusive time:')
  parts.push(table(['function (source)', 'inclusive', 'self'], top(own, 12, 'inclusiveMs').map((entry) => [`\`${entry.label}\``, share(entry.inclusiveMs, busy), share(entry.selfMs, busy)])))
  parts.push('Top functions in dependencies (node_modules), by self time:')
  parts.push(table(['function (file)', 'package', 'self', 'inclusive'], top(dependencies, 15, 'selfMs').map((entry) => [`\`${entry.label}\``, entry.category, share(entry.selfMs, busy), share(entry.inclusiveMs, busy)])))
  parts.push('Top functions overall, by self time:')
  parts.push(table(['function', 'code', 'self'], top(summary.functions, 20, 'selfMs').map((entry) => [`\`${entry.label}\``, entry.category, share(entry.selfMs, busy)])))
  return parts.join('\n\n')
}
