import { readFileSync, statSync } from 'node:fs'
import { SecretUnavailableError } from '../errors.js'
import type { SecretRef } from './types.js'

interface CachedFile {
  mtimeMs: number
  size: number
  value: string
}

/**
 * Reads client secrets and actor tokens from files or environment variables.
 *
 * A file is re-read whenever its modification time or size changes, because Kubernetes rotates
 * mounted Secrets and projected service-account tokens in place. Surrounding whitespace is
 * trimmed: files written by `echo` or `kubectl create secret --from-file` often end in a newline.
 * Error messages name the file or variable and the purpose, never the value.
 */
export class SecretReader {
  readonly #files = new Map<string, CachedFile>()

  /** Returns the secret; `purpose` (e.g. `issuer "corp" clientSecret`) is used in errors. */
  read(ref: SecretRef, purpose: string): string {
    return ref.kind === 'env' ? this.#readEnv(ref.name, purpose) : this.#readFile(ref.path, purpose)
  }

  #readEnv(name: string, purpose: string): string {
    const value = process.env[name]?.trim()
    if (value === undefined || value === '') {
      throw new SecretUnavailableError(
        `${purpose}: environment variable ${name} is not set or empty; set it or point the config at a file`,
      )
    }
    return value
  }

  #readFile(path: string, purpose: string): string {
    try {
      const stat = statSync(path)
      const cached = this.#files.get(path)
      if (cached !== undefined && cached.mtimeMs === stat.mtimeMs && cached.size === stat.size) {
        return cached.value
      }
      const value = readFileSync(path, 'utf8').trim()
      if (value === '') throw new Error('the file is empty')
      this.#files.set(path, { mtimeMs: stat.mtimeMs, size: stat.size, value })
      return value
    } catch (cause) {
      const reason = cause instanceof Error ? cause.message : String(cause)
      throw new SecretUnavailableError(`${purpose}: cannot read secret file ${path}: ${reason}`, { cause })
    }
  }
}
