import { readFileSync, watch, type FSWatcher } from 'node:fs'
import { basename, dirname } from 'node:path'
import { ConfigError, formatConfigProblem } from '../errors.js'
import type { Logger } from '../observability/logger.js'
import type { Metrics } from '../observability/metrics.js'
import { parseRoutes } from './load.js'
import type { RoutesConfig } from './types.js'

export type ReloadTrigger = 'watch' | 'poll' | 'signal'

export interface RoutesReloaderOptions {
  initial: RoutesConfig
  /** Checks that go beyond the file itself (secrets readable, CA files present); throws to reject. */
  check: (config: RoutesConfig) => void
  /** Called after a new configuration has replaced `previous`. */
  onChange: (previous: RoutesConfig, next: RoutesConfig) => void
  /** Backstop for missed file-system events. */
  pollIntervalMs: number
  metrics: Metrics
  logger: Logger
}

/** Coalesces the burst of events one save or one ConfigMap update produces. */
const WATCH_DEBOUNCE_MS = 100

/**
 * Keeps the current routes and replaces them when the file changes or on SIGHUP.
 *
 * It watches the file's directory rather than the file: Kubernetes updates a mounted ConfigMap by
 * swapping the `..data` symlink in that directory, which a watch on the old file never reports.
 * A poll of the file's content is the backstop. A file that fails validation is rejected, logged
 * with its line numbers and counted, and the running routes stay. Requests read the routes once
 * when they start, so a reload never changes a request midway.
 */
export class RoutesReloader {
  readonly #options: RoutesReloaderOptions
  #current: RoutesConfig
  /** The text of the last file read, valid or not, so an unchanged invalid file is reported once. */
  #lastText: string
  #lastReadError: string | undefined
  #watcher: FSWatcher | undefined
  #pollTimer: NodeJS.Timeout | undefined
  #debounceTimer: NodeJS.Timeout | undefined

  constructor(options: RoutesReloaderOptions) {
    this.#options = options
    this.#current = options.initial
    this.#lastText = readFileSync(options.initial.file, 'utf8')
  }

  get current(): RoutesConfig {
    return this.#current
  }

  start(): void {
    const file = this.#current.file
    try {
      this.#watcher = watch(dirname(file), () => this.#scheduleReload())
      this.#watcher.on('error', (error) => {
        this.#options.logger.warn({ event: 'config_watch_error', err: error.message }, 'cannot watch the routes directory; polling continues')
      })
    } catch (error) {
      this.#options.logger.warn(
        { event: 'config_watch_error', err: error instanceof Error ? error.message : String(error), file: basename(file) },
        'cannot watch the routes directory; polling continues',
      )
    }
    this.#pollTimer = setInterval(() => this.reload('poll'), this.#options.pollIntervalMs)
    this.#pollTimer.unref()
  }

  close(): void {
    this.#watcher?.close()
    clearInterval(this.#pollTimer)
    clearTimeout(this.#debounceTimer)
  }

  #scheduleReload(): void {
    clearTimeout(this.#debounceTimer)
    this.#debounceTimer = setTimeout(() => this.reload('watch'), WATCH_DEBOUNCE_MS)
    this.#debounceTimer.unref()
  }

  /**
   * Re-reads the file and applies it if it changed and is valid; SIGHUP applies it even unchanged.
   * Returns true when new routes took effect.
   */
  reload(trigger: ReloadTrigger): boolean {
    const { logger, metrics } = this.#options
    const file = this.#current.file
    let text: string
    try {
      text = readFileSync(file, 'utf8')
    } catch (error) {
      // Between the two steps of a symlink swap the file can be briefly missing: the next event
      // or poll reads it again. Each distinct failure is logged and counted once, because the
      // log line itself can wake the directory watcher when the log is written next to the file.
      const message = error instanceof Error ? error.message : String(error)
      if (message !== this.#lastReadError) {
        this.#lastReadError = message
        metrics.configReloads.inc({ result: 'failure' })
        logger.warn({ event: 'config_reload', trigger, err: message }, 'cannot read the routes file; keeping the running routes')
      }
      return false
    }
    this.#lastReadError = undefined
    if (text === this.#lastText && trigger !== 'signal') return false
    this.#lastText = text

    let next: RoutesConfig
    try {
      next = parseRoutes(text, file)
      this.#options.check(next)
    } catch (error) {
      metrics.configReloads.inc({ result: 'failure' })
      const problems = describeProblems(error)
      logger.error({ event: 'config_reload', trigger, result: 'failure', problems }, 'rejected the new routes file; keeping the running routes')
      return false
    }
    const previous = this.#current
    this.#current = next
    metrics.configReloads.inc({ result: 'success' })
    this.#options.onChange(previous, next)
    logger.info(
      { event: 'config_reload', trigger, result: 'success', routes: next.routes.map((route) => route.name), issuers: [...next.issuers.keys()] },
      'routes reloaded',
    )
    return true
  }
}

/** Lists a rejected file's problems as FILE:LINE:COL lines, or the one error a check raised. */
function describeProblems(error: unknown): string[] {
  if (error instanceof ConfigError) return error.problems.map(formatConfigProblem)
  return [error instanceof Error ? error.message : String(error)]
}
