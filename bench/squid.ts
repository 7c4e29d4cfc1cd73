/**
 * Runs Debian's squid as the reference forward proxy: one worker on a loopback port, caching off,
 * no disk cache, no access log, started in the foreground (`-N`) so its process id is the worker's.
 */
import { execFileSync } from 'node:child_process'
import { accessSync, constants, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { startProcess, waitForPort, type ManagedProcess } from './processes.js'

const SQUID_CANDIDATES = ['/usr/sbin/squid', '/usr/bin/squid', '/usr/local/sbin/squid']

/** Returns the path of the squid executable, or undefined when squid is not installed. */
export function findSquid(): string | undefined {
  for (const candidate of SQUID_CANDIDATES) {
    try {
      accessSync(candidate, constants.X_OK)
      return candidate
    } catch {
      // Try the next location.
    }
  }
  return undefined
}

/** Returns the first line of `squid -v`, e.g. "Squid Cache: Version 5.7". */
export function squidVersion(executable: string): string {
  return execFileSync(executable, ['-v'], { encoding: 'utf8', timeout: 10_000 }).split('\n')[0].trim()
}

/**
 * Writes the configuration. `localhost` is one of squid's predefined ACLs (127.0.0.1 and ::1).
 * `via off` and `forwarded_for delete` keep the forwarded request close to the sidecar's.
 */
function squidConfig(port: number): string {
  return [
    `http_port 127.0.0.1:${port}`,
    'workers 1',
    'http_access allow localhost',
    'http_access deny all',
    'cache deny all',
    'cache_mem 8 MB',
    'access_log none',
    'cache_log /dev/null',
    'pid_filename none',
    'coredump_dir none',
    'netdb_filename none',
    'pinger_enable off',
    'via off',
    'forwarded_for delete',
    'httpd_suppress_version_string on',
    'max_filedescriptors 8192',
    'shutdown_lifetime 0 seconds',
    '',
  ].join('\n')
}

export interface RunningSquid {
  readonly process: ManagedProcess
  readonly port: number
}

export async function startSquid(executable: string, port: number, directory: string): Promise<RunningSquid> {
  const configFile = join(directory, 'squid.conf')
  writeFileSync(configFile, squidConfig(port))
  // Checks the configuration first, so a mistake fails with squid's own message.
  execFileSync(executable, ['-k', 'parse', '-f', configFile], { stdio: 'pipe', timeout: 20_000 })
  const squid = startProcess('squid', executable, ['-N', '-d', '1', '-f', configFile])
  await waitForPort(port, squid, 20_000)
  return { process: squid, port }
}
