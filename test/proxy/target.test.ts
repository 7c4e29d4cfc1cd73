import t from 'tap'
import type { IncomingMessage } from 'node:http'
import { resolveRequestTarget } from '../../src/proxy/target.js'

function resolve(url: string) {
  return resolveRequestTarget({ url, headers: {}, socket: {} } as unknown as IncomingMessage)
}

// Absolute-form targets resolve exactly as the WHATWG URL parser reads them, whether or not they
// take the fast path, so a route cannot be bypassed by writing its host or path differently.
const cases: Array<[string, string, number, string]> = [
  ['http://127.0.0.1:8080/small', '127.0.0.1', 8080, '/small'],
  ['http://127.1:8080/x', '127.0.0.1', 8080, '/x'],
  ['http://0x7f.0.0.1/x', '127.0.0.1', 80, '/x'],
  ['http://ORDERS.example.com/a', 'orders.example.com', 80, '/a'],
  ['http://orders.example.com./a', 'orders.example.com', 80, '/a'],
  ['http://orders.example.com:80/a', 'orders.example.com', 80, '/a'],
  ['http://orders.example.com/v1/../admin', 'orders.example.com', 80, '/admin'],
  ['http://orders.example.com/v1/%2e%2e/admin', 'orders.example.com', 80, '/admin'],
  ['http://orders.example.com/a b', 'orders.example.com', 80, '/a%20b'],
  ['http://orders.example.com/q?x=1&y=%20', 'orders.example.com', 80, '/q'],
  ['http://orders.example.com:08080/a', 'orders.example.com', 8080, '/a'],
  ['https://orders.example.com/a', 'orders.example.com', 443, '/a'],
]

for (const [url, hostname, port, path] of cases) {
  t.test(url, (t) => {
    const target = resolve(url)
    const reference = new URL(url)
    t.equal(target.hostname, hostname)
    t.equal(target.hostname, reference.hostname.replace(/\.$/, ''), 'hostname as URL reads it')
    t.equal(target.port, port)
    t.equal(target.normalizedPath, path)
    t.equal(target.pathAndQuery, `${reference.pathname}${reference.search}`, 'path and query as URL serializes them')
    t.end()
  })
}

t.test('invalid targets are rejected', (t) => {
  for (const url of ['http://a.b.c.1/x', 'ftp://example.com/', 'http://user:pass@example.com/']) {
    t.throws(() => resolve(url), { code: 'OBO_PROXY_BAD_REQUEST' }, url)
  }
  t.end()
})
