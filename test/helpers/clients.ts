import { execFile } from 'node:child_process'
import { EnvHttpProxyAgent, request } from 'undici'

export interface ClientResponse {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: string
}

/**
 * Creates an agent's view of the proxy: undici's `EnvHttpProxyAgent`, configured as `HTTP_PROXY`
 * would configure it. `noProxy` is empty so that loopback targets still go through the proxy.
 */
export function proxyAgent(proxyUrl: string): EnvHttpProxyAgent {
  return new EnvHttpProxyAgent({ httpProxy: proxyUrl, httpsProxy: proxyUrl, noProxy: '' })
}

export async function fetchThroughProxy(
  agent: EnvHttpProxyAgent,
  url: string,
  options: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<ClientResponse> {
  const response = await request(url, {
    dispatcher: agent,
    method: (options.method ?? 'GET') as 'GET',
    headers: options.headers,
    body: options.body,
  })
  return { status: response.statusCode, headers: response.headers, body: await response.body.text() }
}

export interface CurlResult {
  status: number
  headers: string
  body: string
}

/**
 * Runs curl through the proxy with `-x`. `--noproxy ''` keeps a NO_PROXY in the environment from
 * sending loopback requests around the proxy.
 */
export function curlThroughProxy(proxyUrl: string, url: string, args: string[] = []): Promise<CurlResult> {
  const marker = '\n__curl_status__:'
  return new Promise((resolve, reject) => {
    execFile(
      'curl',
      ['-sS', '--noproxy', '', '-x', proxyUrl, '-D', '-', '-w', `${marker}%{http_code}`, '--max-time', '30', ...args, url],
      { maxBuffer: 16 * 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error !== null && !stdout.includes(marker)) {
          reject(new Error(`curl failed: ${stderr}`))
          return
        }
        const [output, status] = [stdout.slice(0, stdout.lastIndexOf(marker)), stdout.slice(stdout.lastIndexOf(marker) + marker.length)]
        const split = output.lastIndexOf('\r\n\r\n')
        resolve({ status: Number(status), headers: output.slice(0, split), body: output.slice(split + 4) })
      },
    )
  })
}
