// A js-libp2p peer driven by JSON lines on stdin; it reports events as JSON lines on stdout.
// Run: node --import ./polyfill.mjs peer.mjs <topic>
import { createHash } from 'node:crypto'
import { createInterface } from 'node:readline'
import { gossipsub } from '@chainsafe/libp2p-gossipsub'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'

const BLOB = '/capa-interop/blob/1'
const topic = process.argv[2]
const say = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')

const node = await createLibp2p({
  addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: {
    identify: identify(),
    ping: ping(),
    pubsub: gossipsub({ allowPublishToZeroTopicPeers: true, heartbeatInterval: 500 })
  }
})

async function drain (source) {
  const hash = createHash('sha256')
  let size = 0
  for await (const chunk of source) {
    const bytes = chunk.subarray()
    hash.update(bytes)
    size += bytes.length
  }
  return { size, sha256: hash.digest('hex') }
}

await node.handle(BLOB, async ({ stream }) => {
  const got = await drain(stream.source)
  await stream.sink([Buffer.from(got.sha256, 'hex')])
  say({ event: 'blob_received', ...got })
})

node.services.pubsub.addEventListener('message', (evt) => {
  if (evt.detail.topic !== topic) return
  say({ event: 'message', data: Buffer.from(evt.detail.data).toString('hex') })
})
node.services.pubsub.addEventListener('subscription-change', (evt) => {
  say({ event: 'subscription', peer: evt.detail.peerId.toString() })
})
node.services.pubsub.subscribe(topic)

const commands = {
  async dial ({ addr }) {
    await node.dial(multiaddr(addr))
    return {}
  },
  async ping ({ addr }) {
    return { rtt: await node.services.ping.ping(multiaddr(addr)) }
  },
  async protocols ({ peer }) {
    const found = node.getPeers().find((p) => p.toString() === peer)
    return { protocols: found ? (await node.peerStore.get(found)).protocols : [] }
  },
  async publish ({ data }) {
    const result = await node.services.pubsub.publish(topic, Buffer.from(data, 'hex'))
    return { recipients: result.recipients.length }
  },
  async send ({ addr, size }) {
    const stream = await node.dialProtocol(multiaddr(addr), BLOB)
    const block = Buffer.alloc(1 << 20, 7)
    const hash = createHash('sha256')
    async function * blocks () {
      for (let sent = 0; sent < size; sent += block.length) {
        const part = block.subarray(0, Math.min(block.length, size - sent))
        hash.update(part)
        yield part
      }
    }
    await stream.sink(blocks())
    const reply = []
    for await (const chunk of stream.source) reply.push(Buffer.from(chunk.subarray()))
    return { sent_sha256: hash.digest('hex'), reply: Buffer.concat(reply).toString('hex') }
  },
  async stop () {
    await node.stop()
    process.exit(0)
  }
}

say({ event: 'ready', peer: node.peerId.toString(), addrs: node.getMultiaddrs().map(String) })
for await (const line of createInterface({ input: process.stdin })) {
  const request = JSON.parse(line)
  try {
    say({ event: 'reply', id: request.id, ok: true, ...(await commands[request.cmd](request)) })
  } catch (err) {
    say({ event: 'reply', id: request.id, ok: false, error: String(err) })
  }
}
