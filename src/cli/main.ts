#!/usr/bin/env node
// The entry point checks the Node.js version before loading anything else: on older releases the
// dependencies fail while loading, with errors that do not say what is wrong.
const MINIMUM_NODE = [22, 19] as const

const [major = 0, minor = 0] = process.versions.node.split('.').map(Number)
if (major < MINIMUM_NODE[0] || (major === MINIMUM_NODE[0] && minor < MINIMUM_NODE[1])) {
  process.stderr.write(
    `obo-sidecar: Node.js ${MINIMUM_NODE.join('.')} or later is required, but this is ${process.versions.node}; install Node.js 24 LTS\n`,
  )
  process.exit(1)
}

const { main } = await import('./program.js')
await main(process.argv)
