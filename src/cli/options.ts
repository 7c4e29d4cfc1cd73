import { InvalidArgumentError } from 'commander'
import { isIP } from 'node:net'
import type { ListenAddress } from '../sidecar.js'

/**
 * Parses `HOST:PORT` or `[IPv6]:PORT`. Port 0 lets the system pick a free port. The host must be an
 * IP address or `localhost`, so the address the proxy binds to is never the result of a DNS lookup.
 */
export function parseListenAddress(value: string): ListenAddress {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(value)
  if (match === null) {
    throw new InvalidArgumentError(`"${value}" is not HOST:PORT; expected e.g. 127.0.0.1:15080 or [::1]:15080`)
  }
  const host = match[1] ?? match[2]
  const port = Number(match[3])
  if (port > 65535) throw new InvalidArgumentError(`port ${port} in "${value}" is out of range 0-65535`)
  if (host !== 'localhost' && isIP(host) === 0) {
    throw new InvalidArgumentError(`host "${host}" in "${value}" must be an IP address or localhost`)
  }
  return { host, port }
}

/** Parses a whole number within [min, max], for counts, sizes and durations. */
export function integerParser(min: number, max: number): (value: string) => number {
  return (value) => {
    if (!/^\d+$/.test(value.trim())) throw new InvalidArgumentError(`"${value}" is not a whole number`)
    const parsed = Number(value)
    if (parsed < min || parsed > max) throw new InvalidArgumentError(`${parsed} is outside the range ${min}-${max}`)
    return parsed
  }
}

/** Parses a duration in seconds, fractions allowed (`0.5`), within [min, max]. */
export function secondsParser(min: number, max: number): (value: string) => number {
  return (value) => {
    const parsed = Number(value)
    if (value.trim() === '' || !Number.isFinite(parsed)) throw new InvalidArgumentError(`"${value}" is not a number of seconds`)
    if (parsed < min || parsed > max) throw new InvalidArgumentError(`${parsed} s is outside the range ${min}-${max} s`)
    return parsed
  }
}
