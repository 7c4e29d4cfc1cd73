/** Sizes and durations of a full run and of a `--quick` run. */
export interface Settings {
  quick: boolean
  /** Hard limit for the harness, after the build. */
  timeLimitSeconds: number
  /** wrk run per target before scenario 1, not recorded. */
  warmupSeconds: number

  throughputRounds: number
  throughputConnections: number[]
  throughputSeconds: number

  latencyRounds: number
  latencyRate: number
  latencyWarmupSeconds: number
  latencySeconds: number
  latencyConnections: number

  manyUsersRounds: number
  manyUsers: number
  manyUsersConnections: number
  manyUsersSeconds: number

  coldRounds: number
  coldRequestsPerRound: number

  streamingRounds: number
  sseSamplesPerRound: number
  /** The upstream waits this long before the first event. */
  sseDelayMs: number
  uploadBytes: number

  /** Distinct user tokens sent through the memory scenario's sidecar. */
  memoryTokens: number
  fillConcurrency: number

  profileSeconds: number
  profileConnections: number
  /** Pause between two measurements, so one's connections and timers wind down first. */
  settleMs: number
  /** Pause before a memory reading, so the heap settles. */
  memorySettleMs: number
  /**
   * Before each measurement the harness waits, at most `quietWaitMaxMs`, while other processes use
   * more than `quietThreshold` of all cores, and stops waiting once `quietWaitBudgetMs` is spent.
   */
  quietThreshold: number
  quietWaitMaxMs: number
  quietWaitBudgetMs: number
}

const FULL: Settings = {
  quick: false,
  timeLimitSeconds: 560,
  warmupSeconds: 2,
  throughputRounds: 5,
  throughputConnections: [10, 50],
  throughputSeconds: 4,
  latencyRounds: 3,
  latencyRate: 1000,
  latencyWarmupSeconds: 1,
  latencySeconds: 8,
  latencyConnections: 16,
  manyUsersRounds: 3,
  manyUsers: 10_000,
  manyUsersConnections: 50,
  manyUsersSeconds: 4,
  coldRounds: 3,
  coldRequestsPerRound: 200,
  streamingRounds: 3,
  sseSamplesPerRound: 20,
  sseDelayMs: 20,
  uploadBytes: 100 * 1024 * 1024,
  memoryTokens: 100_000,
  fillConcurrency: 32,
  profileSeconds: 8,
  profileConnections: 50,
  settleMs: 250,
  memorySettleMs: 3_000,
  quietThreshold: 0.15,
  quietWaitMaxMs: 5_000,
  quietWaitBudgetMs: 90_000,
}

/**
 * A smoke run in under two minutes with the build: three rounds of scenario 1 instead of five,
 * fewer users and tokens and shorter measurements. Too short to judge the targets on.
 */
const QUICK: Settings = {
  ...FULL,
  quick: true,
  timeLimitSeconds: 108,
  warmupSeconds: 1,
  throughputRounds: 3,
  throughputSeconds: 1,
  latencyWarmupSeconds: 0.3,
  latencySeconds: 1,
  manyUsers: 2_000,
  manyUsersSeconds: 1,
  coldRequestsPerRound: 40,
  sseSamplesPerRound: 5,
  memoryTokens: 5_000,
  profileSeconds: 3,
  settleMs: 100,
  memorySettleMs: 1_500,
  quietWaitMaxMs: 1_000,
  quietWaitBudgetMs: 6_000,
}

export function settingsFor(quick: boolean): Settings {
  return quick ? { ...QUICK } : { ...FULL }
}
