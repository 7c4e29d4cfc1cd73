import t from 'tap'
import { Readable } from 'node:stream'
import { request } from 'undici'
import { proxyAgent } from '../helpers/clients.js'
import { startProxyFixture } from '../helpers/fixture.js'

const fixture = await startProxyFixture()
const { upstream, sidecar } = fixture
const agent = proxyAgent(sidecar.proxyUrl)
t.teardown(async () => {
  await agent.close()
  await fixture.close()
})

const GIB = 1024 * 1024 * 1024
const CHUNK = Buffer.alloc(1024 * 1024, 'z')

function oneGibibyte(): Readable {
  let sent = 0
  return new Readable({
    read() {
      if (sent >= GIB) {
        this.push(null)
        return
      }
      sent += CHUNK.length
      this.push(CHUNK)
    },
  })
}

t.test('1 GiB upload streams through with flat memory', async (t) => {
  const userToken = await fixture.userToken()
  const baseline = await sidecar.metric('process_resident_memory_bytes')
  let peak = baseline
  let sampling = true
  const sampler = (async () => {
    for (let i = 0; sampling && i < 600; i++) {
      peak = Math.max(peak, await sidecar.metric('process_resident_memory_bytes'))
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
  })()

  const response = await request(`http://${upstream.authority}/api/upload`, {
    dispatcher: agent,
    method: 'POST',
    headers: { authorization: `Bearer ${userToken}`, 'content-type': 'application/octet-stream' },
    body: oneGibibyte(),
  })
  const body = (await response.body.json()) as { bytes: number }
  sampling = false
  await sampler

  t.equal(response.statusCode, 200)
  t.equal(body.bytes, GIB, 'every byte arrived')
  t.ok(upstream.requests.at(-1)!.authorization[0].startsWith('Bearer '))
  t.not(upstream.requests.at(-1)!.authorization[0], `Bearer ${userToken}`)
  const growthMiB = (peak - baseline) / (1024 * 1024)
  t.ok(growthMiB < 128, `resident memory grew by ${growthMiB.toFixed(0)} MiB while 1024 MiB passed through`)
})

t.test('server-sent events arrive one by one', async (t) => {
  const userToken = await fixture.userToken()
  const response = await request(`http://${upstream.authority}/api/sse?events=4&delay=300`, {
    dispatcher: agent,
    headers: { authorization: `Bearer ${userToken}`, accept: 'text/event-stream' },
  })
  t.equal(response.statusCode, 200)
  t.equal(response.headers['content-type'], 'text/event-stream')

  const arrivals: number[] = []
  const started = Date.now()
  let text = ''
  for await (const chunk of response.body) {
    text += String(chunk)
    const events = text.split('\n\n').length - 1
    while (arrivals.length < events) arrivals.push(Date.now() - started)
  }
  t.equal(arrivals.length, 4, 'four events')
  // The upstream writes an event every 300 ms: a buffering proxy would deliver them together.
  for (let i = 1; i < arrivals.length; i++) {
    t.ok(arrivals[i] - arrivals[i - 1] >= 150, `event ${i + 1} arrived ${arrivals[i] - arrivals[i - 1]} ms after event ${i}`)
  }
})
