/**
 * `npm run bench [-- --quick] [-- --out FILE]` starts an upstream, the development token service,
 * squid and the built sidecar on 127.0.0.1. It runs the scenarios against the upstream directly,
 * through squid and through the sidecar, and writes docs/benchmarks.md. With `--report-from
 * RESULTS` it only rewrites the report from a saved results file.
 *
 * Every process it starts is stopped at the end, also on failure, on SIGINT or SIGTERM, and when
 * the run passes its time limit. Every loop is bounded in count and time.
 */
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { loadavg, tmpdir } from 'node:os'
import { dirname, join, relative } from 'node:path'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { findFreePort } from '../demo/loopback.js'
import { TargetClient, type Target, type TargetName } from './clients.js'
import { LoadMonitor, otherShare } from './load-monitor.js'
import { askChild, killAllNow, startProcess, stopAll, waitForMessage, type ManagedProcess } from './processes.js'
import { describeMachine, sampleMachineBusy } from './procfs.js'
import { renderReport, type BenchResults, type Outcome } from './report.js'
import {
  runColdPath,
  runFixedRateLatency,
  runManyUsers,
  runMemory,
  runProfile,
  runStreaming,
  runThroughput,
  warmUp,
  type BenchContext,
} from './scenarios.js'
import { settingsFor, type Settings } from './settings.js'
import { productionNodeFlags, readTail, sidecarCliPath, sidecarFlags, startSidecar, writeRoutesFile } from './sidecar.js'
import { findSquid, squidVersion, startSquid, type RunningSquid } from './squid.js'
import { hasWrk, wrkVersion } from './wrk.js'

const REPOSITORY_ROOT = fileURLToPath(new URL('../../', import.meta.url))
const BENCH_DIRECTORY = fileURLToPath(new URL('./', import.meta.url))
const STOP_GRACE_MS = 5_000
/** How long the machine's CPU use is sampled, with nothing of the benchmark running, before and after. */
const IDLE_SAMPLE_MS = 1_000

interface Arguments {
  quick: boolean
  out: string
  /** Re-renders the report from a saved results file instead of running. */
  reportFrom: string | undefined
}

/** Every run saves its raw results here, next to the compiled harness. */
const RESULTS_FILE = join(BENCH_DIRECTORY, 'results.json')

function parseArguments(argv: readonly string[]): Arguments {
  const parsed: Arguments = { quick: false, out: join(REPOSITORY_ROOT, 'docs', 'benchmarks.md'), reportFrom: undefined }
  for (let i = 0; i < argv.length; i++) {
    const argument = argv[i]
    if (argument === '--quick') parsed.quick = true
    else if (argument === '--out' && i + 1 < argv.length) parsed.out = argv[++i]
    else if (argument === '--report-from' && i + 1 < argv.length) parsed.reportFrom = argv[++i]
    else if (argument === '--help' || argument === '-h') {
      process.stdout.write(
        'usage: npm run bench [-- --quick] [-- --out FILE] [-- --report-from RESULTS]\n' +
          '  --quick        a smoke run in under two minutes\n' +
          '  --out          report file (default docs/benchmarks.md)\n' +
          `  --report-from  write the report from a saved results file (each run saves ${relative(REPOSITORY_ROOT, RESULTS_FILE)}) without running\n`,
      )
      process.exit(0)
    } else {
      throw new Error(`unknown argument "${argument}"; expected --quick, --out FILE, --report-from RESULTS or --help`)
    }
  }
  return parsed
}

const started = performance.now()
/** The run's temporary directory, removed however the run ends. */
let temporaryDirectory: string | undefined

function removeTemporaryDirectory(): void {
  if (temporaryDirectory !== undefined) rmSync(temporaryDirectory, { recursive: true, force: true })
  temporaryDirectory = undefined
}

function progress(message: string): void {
  process.stdout.write(`[${((performance.now() - started) / 1000).toFixed(1).padStart(6)} s] ${message}\n`)
}

/**
 * Runs one scenario, turning a failure into a reported outcome so later scenarios still run, and
 * records how much CPU other processes used meanwhile.
 */
async function attempt<T>(name: string, results: BenchResults, load: LoadMonitor, scenario: () => Promise<T>): Promise<Outcome<T>> {
  const before = load.mark()
  try {
    return { ok: true, value: await scenario() }
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error)
    progress(`${name} FAILED: ${message}`)
    return { ok: false, error: message }
  } finally {
    results.otherLoad[name] = otherShare(before, load.mark())
  }
}

function startNodeChild(name: string, script: string, env: Record<string, string>): ManagedProcess {
  return startProcess(name, process.execPath, [join(BENCH_DIRECTORY, script)], { env, ipc: true })
}

/** Returns the commit the sidecar was built from, noting uncommitted changes in src/ and demo/. */
function describeRevision(): string {
  try {
    const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: REPOSITORY_ROOT, encoding: 'utf8', stdio: 'pipe' }).trim()
    const changed = execFileSync('git', ['status', '--porcelain', '--', 'src', 'demo'], { cwd: REPOSITORY_ROOT, encoding: 'utf8', stdio: 'pipe' })
      .split('\n')
      .filter((line) => line !== '').length
    return changed === 0 ? commit : `${commit} with ${changed} uncommitted changed files in src/ and demo/`
  } catch {
    return 'unknown (not a git checkout)'
  }
}

/** Tokens needed: the single user, the many users, the cold path's, and the memory scenario's. */
function tokensNeeded(settings: Settings): number {
  const coldPath = 10 + 2 * settings.coldRounds * settings.coldRequestsPerRound
  return Math.max(1 + settings.memoryTokens, 1 + settings.manyUsers + coldPath)
}

function writeReport(results: BenchResults, out: string): void {
  mkdirSync(dirname(out), { recursive: true })
  writeFileSync(out, renderReport(results, readPreservedNotes(out)))
}

async function main(): Promise<number> {
  const args = parseArguments(process.argv.slice(2))
  if (args.reportFrom !== undefined) {
    const saved = JSON.parse(readFileSync(args.reportFrom, 'utf8')) as BenchResults & { startedAt: string }
    writeReport({ ...saved, startedAt: new Date(saved.startedAt) }, args.out)
    progress(`wrote ${relative(process.cwd(), args.out)} from ${args.reportFrom}`)
    return 0
  }
  const settings = settingsFor(args.quick)
  const command = `npm run bench${args.quick ? ' -- --quick' : ''}`
  const startedAt = new Date()
  const directory = mkdtempSync(join(tmpdir(), 'obo-bench-'))
  temporaryDirectory = directory
  const clients = new Map<TargetName, TargetClient>()

  // The hard limit: stop everything and exit, wherever the run is.
  const limitTimer = setTimeout(() => {
    progress(`time limit of ${settings.timeLimitSeconds} s reached: stopping every process`)
    void stopAll(1_000).finally(() => {
      removeTemporaryDirectory()
      process.exit(2)
    })
  }, settings.timeLimitSeconds * 1000)
  limitTimer.unref()

  try {
    if (!hasWrk()) throw new Error('wrk is not installed; install it with "apt-get install -y wrk"')
    const squidExecutable = findSquid()
    const load = new LoadMonitor()
    const results: BenchResults = {
      command,
      revision: describeRevision(),
      startedAt,
      elapsedSeconds: 0,
      settings,
      machine: describeMachine(),
      wrkVersion: wrkVersion(),
      squidVersion: squidExecutable === undefined ? undefined : squidVersion(squidExecutable),
      userTokenLength: Number.NaN,
      sidecarCommand: [],
      nodeFlagsSource: '',
      backgroundBusy: { before: await sampleMachineBusy(IDLE_SAMPLE_MS), after: Number.NaN },
      loadAverage: { before: loadavg()[0], after: Number.NaN },
      otherLoad: {},
      quietWaitSeconds: 0,
      scenarios: {},
    }
    progress(`${command}: ${results.machine.cores} cores, ${results.machine.cpuModel}, Node ${results.machine.node}, ${results.squidVersion ?? 'squid not installed'}`)

    // Upstream and token service, each in its own process.
    const upstream = startNodeChild('upstream', 'upstream.js', {})
    const upstreamPort = Number((await waitForMessage(upstream, 'ready', 15_000)).port)
    const clientSecret = randomBytes(24).toString('base64url')
    const tokenService = startNodeChild('token service', 'token-service-child.js', { OBO_BENCH_CLIENT_SECRET: clientSecret })
    const tokenEndpoint = String((await waitForMessage(tokenService, 'ready', 30_000)).tokenEndpoint)
    progress(`upstream on 127.0.0.1:${upstreamPort}, token endpoint ${tokenEndpoint}`)

    const tokenCount = tokensNeeded(settings)
    const tokenFile = join(directory, 'tokens.txt')
    const minted = await askChild(tokenService, { type: 'mint', count: tokenCount, prefix: 'bench-user', file: tokenFile }, 'minted', 120_000)
    const tokens = readFileSync(tokenFile, 'utf8').split('\n').filter((line) => line !== '')
    if (tokens.length !== tokenCount) throw new Error(`expected ${tokenCount} user tokens, read ${tokens.length}`)
    results.userTokenLength = Number(minted.meanLength)
    progress(`minted ${tokens.length} user tokens of ${Math.round(results.userTokenLength)} characters`)
    const singleTokenFile = join(directory, 'one-user.txt')
    writeFileSync(singleTokenFile, `${tokens[0]}\n`)
    const manyUsersFile = join(directory, 'many-users.txt')
    writeFileSync(manyUsersFile, `${tokens.slice(1, 1 + settings.manyUsers).join('\n')}\n`)

    let squid: RunningSquid | undefined
    if (squidExecutable !== undefined) {
      squid = await startSquid(squidExecutable, await findFreePort(), directory)
      progress(`squid on 127.0.0.1:${squid.port} (pid ${squid.process.pid})`)
    } else {
      results.squidNote = 'squid is not installed, so its column is left out. Install it with "apt-get install -y squid".'
      progress(results.squidNote)
    }

    const routesFile = writeRoutesFile(directory, tokenEndpoint, upstreamPort)
    const sidecarLog = join(directory, 'sidecar.log')
    const sidecar = await startSidecar({ name: 'sidecar', routesFile, clientSecret, logFile: sidecarLog })
    const production = productionNodeFlags()
    results.nodeFlagsSource = production.source
    results.sidecarCommand = ['node', ...production.flags, relative(REPOSITORY_ROOT, sidecarCliPath()), 'run', '--routes', 'ROUTES', '--listen', '127.0.0.1:PORT', '--admin-listen', '127.0.0.1:PORT', ...sidecarFlags()]
    progress(`sidecar on 127.0.0.1:${sidecar.port}, admin 127.0.0.1:${sidecar.adminPort}`)

    const upstreamHost = `127.0.0.1:${upstreamPort}`
    const targets: Target[] = [{ name: 'direct', connectTo: upstreamHost, upstreamHost, viaProxy: false }]
    if (squid !== undefined) targets.push({ name: 'squid', connectTo: `127.0.0.1:${squid.port}`, upstreamHost, viaProxy: true })
    targets.push({ name: 'sidecar', connectTo: `127.0.0.1:${sidecar.port}`, upstreamHost, viaProxy: true })

    const context: BenchContext = {
      settings,
      directory,
      repositoryRoot: REPOSITORY_ROOT,
      upstreamHost,
      upstream,
      tokenService,
      tokenEndpoint,
      clientSecret,
      routesFile,
      tokens,
      singleTokenFile,
      manyUsersFile,
      squid,
      sidecar,
      targets,
      nextFreshToken: 1 + settings.manyUsers,
      load,
      progress,
    }

    // A first request through every target checks the set-up, then wrk warms each one.
    for (const target of targets) {
      const client = new TargetClient(target, 1)
      await client.get('/small', tokens[0]).finally(() => client.close())
    }
    await warmUp(context)

    const { scenarios } = results
    scenarios.throughput = await attempt('1. cache-hit throughput', results, load, () => runThroughput(context))
    scenarios.latency = await attempt('2. latency at a fixed rate', results, load, () => runFixedRateLatency(context))
    scenarios.manyUsers = await attempt('3. many users', results, load, () => runManyUsers(context))
    // One connection per target for the one-at-a-time requests of scenarios 4 and 5.
    for (const target of targets) clients.set(target.name, new TargetClient(target, 1))
    scenarios.cold = await attempt('4. cold path', results, load, () => runColdPath(context, clients))
    scenarios.streaming = await attempt('5. streaming', results, load, () => runStreaming(context, clients))

    for (const client of clients.values()) await client.close()
    clients.clear()
    if (sidecar.process.child.exitCode !== null) progress(`the sidecar exited early. Log:\n${readTail(sidecarLog)}`)
    await sidecar.process.stop(STOP_GRACE_MS)
    context.sidecar = undefined

    scenarios.memory = await attempt('6. memory', results, load, () => runMemory(context))
    scenarios.profile = await attempt('CPU profile', results, load, () => runProfile(context))

    results.quietWaitSeconds = load.waitedMs / 1000
    load.stop()
    await stopAll(STOP_GRACE_MS)
    results.backgroundBusy.after = await sampleMachineBusy(IDLE_SAMPLE_MS)
    results.loadAverage.after = loadavg()[0]
    results.elapsedSeconds = (performance.now() - started) / 1000
    writeFileSync(RESULTS_FILE, `${JSON.stringify(results, null, 1)}\n`)
    writeReport(results, args.out)
    progress(`wrote ${relative(process.cwd(), args.out)} after ${results.elapsedSeconds.toFixed(0)} s`)
    const failed = Object.values(scenarios).filter((outcome) => outcome !== undefined && !outcome.ok).length
    return failed === 0 ? 0 : 1
  } finally {
    for (const client of clients.values()) await client.close().catch(() => {})
    await stopAll(STOP_GRACE_MS)
    clearTimeout(limitTimer)
    removeTemporaryDirectory()
  }
}

const NOTES_START = '<!-- hand-written notes: start -->'
const NOTES_END = '<!-- hand-written notes: end -->'

/** Returns the hand-written section of an existing report, which a new run keeps. */
function readPreservedNotes(file: string): string | undefined {
  try {
    const text = readFileSync(file, 'utf8')
    const start = text.indexOf(NOTES_START)
    const end = text.indexOf(NOTES_END)
    return start >= 0 && end > start ? text.slice(start, end + NOTES_END.length) : undefined
  } catch {
    return undefined
  }
}

process.on('exit', killAllNow)
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    progress(`${signal}: stopping every process`)
    void stopAll(1_000).finally(() => {
      removeTemporaryDirectory()
      process.exit(130)
    })
  })
}

main().then(
  (code) => {
    process.exitCode = code
  },
  (error: unknown) => {
    progress(`benchmark failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`)
    process.exitCode = 1
  },
)
