import { pino, type Logger } from 'pino'

export type { Logger }

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const
export type LogLevel = (typeof LOG_LEVELS)[number]

/**
 * Creates the JSON logger that writes to standard output.
 *
 * No call site logs headers, bodies or whole option objects. The redaction list is a second line
 * of defence for field names that would carry a credential if one were logged by mistake.
 */
export function createLogger(level: LogLevel, destination?: NodeJS.WritableStream): Logger {
  return pino(
    {
      level,
      base: { service: 'obo-sidecar' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: {
        // Top-level names only: wildcard paths make pino inspect every object of every line.
        paths: [
          'authorization',
          'headers.authorization',
          'proxy-authorization',
          'subject_token',
          'actor_token',
          'assertion',
          'access_token',
          'client_secret',
          'clientSecret',
          'token',
        ],
        censor: '[redacted]',
      },
    },
    destination ?? pino.destination({ fd: 1, sync: false }),
  )
}
