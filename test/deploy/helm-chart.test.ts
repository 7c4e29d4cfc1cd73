// Lints and renders the Helm chart in helm/obo-sidecar and the example chart in
// helm/examples/embedded with the helm binary that scripts/install-helm.sh puts in .tools/helm.
// The rendered objects are checked offline: the pod layout, the environment, the security settings
// and each object's schema through kubernetes-models. No cluster is involved.
import t, { type Test } from 'tap'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { createServer } from 'node:net'
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, sep } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parse as parseYaml, parseAllDocuments } from 'yaml'
import { ConfigMap, Service, ServiceAccount } from 'kubernetes-models/v1'
import type { IConfigMap } from 'kubernetes-models/v1/ConfigMap'
import type { IContainer } from 'kubernetes-models/v1/Container'
import type { IPodSecurityContext } from 'kubernetes-models/v1/PodSecurityContext'
import type { IPodSpec } from 'kubernetes-models/v1/PodSpec'
import type { IService } from 'kubernetes-models/v1/Service'
import { Deployment, type IDeployment } from 'kubernetes-models/apps/v1/Deployment'
import { PodMonitor, type IPodMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor'
import { ServiceMonitor, type IServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor'
import { runCli, startSidecarProcess } from '../helpers/sidecar-process.js'

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url))
const HELM = join(REPO_ROOT, '.tools', 'helm', 'helm')
const CHART = join(REPO_ROOT, 'helm', 'obo-sidecar')
const CI_VALUES = join(CHART, 'ci')
const HELM_TIMEOUT_MS = 60_000

const PROXY_URL = 'http://127.0.0.1:15080'
const CA_DIR = '/var/run/obo-sidecar/ca'
const CA_VARIABLES = ['SSL_CERT_FILE', 'REQUESTS_CA_BUNDLE', 'CURL_CA_BUNDLE', 'NODE_EXTRA_CA_CERTS']

interface RenderedObject {
  apiVersion: string
  kind: string
  metadata: { name: string; labels?: Record<string, string>; annotations?: Record<string, string> }
}

interface HelmResult {
  code: number | null
  stdout: string
  stderr: string
}

interface ModelClass {
  new (data: object): { validate(): void }
}

/** The kubernetes-models class for each kind the charts render; a kind missing here fails the test. */
const MODELS: Record<string, ModelClass> = {
  'v1/ConfigMap': ConfigMap,
  'v1/Service': Service,
  'v1/ServiceAccount': ServiceAccount,
  'apps/v1/Deployment': Deployment,
  // Their constructors require spec, which the index signature here cannot express.
  'monitoring.coreos.com/v1/ServiceMonitor': ServiceMonitor as unknown as ModelClass,
  'monitoring.coreos.com/v1/PodMonitor': PodMonitor as unknown as ModelClass,
}

const isCi = process.env.CI !== undefined && process.env.CI !== '' && process.env.CI !== 'false'

if (!existsSync(HELM)) {
  const reason = 'helm is not installed at .tools/helm/helm: run scripts/install-helm.sh'
  if (isCi) t.fail(`${reason} (CI must install it before the tests)`)
  else t.test('helm chart', { skip: reason }, async () => {})
} else {
  defineTests()
}

function defineTests(): void {
  // Helm's cache, config and data directories, so that nothing outside the temp folder is read or written.
  const helmHome = mkdtempSync(join(tmpdir(), 'obo-sidecar-helm-'))
  t.teardown(() => rmSync(helmHome, { recursive: true, force: true }))
  const helm = (args: string[]): Promise<HelmResult> => runHelm(helmHome, args)

  const helpText = runCli(['run', '--help'])

  t.test('minimal values', async (t) => {
    const values = join(CI_VALUES, 'minimal-values.yaml')
    await lintStrict(t, helm, CHART, values)
    const objects = await template(t, helm, CHART, ['-f', values])
    validateModels(t, objects)
    t.same(kinds(objects), ['ConfigMap', 'Deployment', 'ServiceAccount'], 'rendered kinds')

    const pod = podSpec(objects)
    const sidecar = sidecarContainer(t, pod)
    const agent = agentContainer(t, pod)
    checkNativeSidecar(t, sidecar)
    checkHardened(t, sidecar, pod.securityContext, 'sidecar')
    checkHardened(t, agent, pod.securityContext, 'agent')
    checkRoutesVolume(t, objects, pod, sidecar)
    checkNoSubPath(t, pod)
    checkProxyEnv(t, agent)
    t.equal(pod.automountServiceAccountToken, false, 'no Kubernetes API token is mounted')

    const args = sidecar.args ?? []
    t.ok(args.includes('--listen=127.0.0.1:15080'), 'the proxy listens on loopback only')
    t.ok(args.includes('--admin-listen=0.0.0.0:15090'), 'the admin listener is reachable by probes and Prometheus')
    t.ok(args.includes('--unrouted-policy=strip'), 'the default unrouted policy is strip')
    t.ok(args.includes('--intercept=routed'), 'interception of routed hosts by default')
    t.ok(args.includes(`--ca-out=${CA_DIR}`), 'the CA is written for the agent by default')
    t.notOk(args.some((arg) => arg.startsWith('--ca-cert') || arg.startsWith('--ca-key')), 'a generated CA without a CA Secret')
    checkCaTrust(t, pod, sidecar, agent)

    t.ok(sidecar.resources?.requests?.cpu && sidecar.resources.requests.memory, 'sidecar CPU and memory requests')
    t.ok(sidecar.resources?.limits?.cpu && sidecar.resources.limits.memory, 'sidecar CPU and memory limits')
    t.same(sidecar.ports, [{ name: 'obo-admin', containerPort: 15090, protocol: 'TCP' }], 'only the admin port is declared')

    const annotations = deployment(objects).spec?.template.metadata?.annotations ?? {}
    t.equal(annotations['prometheus.io/scrape'], 'true')
    t.equal(annotations['prometheus.io/port'], '15090')
    t.equal(annotations['prometheus.io/path'], '/metrics')

    const issuerMount = sidecar.volumeMounts?.find((mount) => mount.mountPath === '/var/run/secrets/obo/corp')
    t.equal(issuerMount?.readOnly, true, 'the issuer Secret is mounted read-only in the sidecar')
    const issuerVolume = pod.volumes?.find((volume) => volume.name === issuerMount?.name)
    t.equal(issuerVolume?.secret?.secretName, 'obo-corp-client')
    t.notOk(agent.volumeMounts?.some((mount) => mount.name === issuerMount?.name), 'the agent does not see the issuer Secret')

    await checkRoutesFileIsValid(t, objects)
    await checkFlagsExist(t, await helpText, args)
  })

  t.test('interception values', async (t) => {
    const values = join(CI_VALUES, 'interception-values.yaml')
    await lintStrict(t, helm, CHART, values)
    const objects = await template(t, helm, CHART, ['-f', values])
    validateModels(t, objects)

    const pod = podSpec(objects)
    const sidecar = sidecarContainer(t, pod)
    const agent = agentContainer(t, pod)
    checkNativeSidecar(t, sidecar)
    checkHardened(t, sidecar, pod.securityContext, 'sidecar')
    checkHardened(t, agent, pod.securityContext, 'agent')
    checkRoutesVolume(t, objects, pod, sidecar)
    checkNoSubPath(t, pod)
    checkProxyEnv(t, agent)

    checkCaTrust(t, pod, sidecar, agent)
    const names = (agent.env ?? []).map((variable) => variable.name)
    t.ok(names.indexOf('AGENT_MODE') > names.indexOf('HTTP_PROXY'), "the agent's own variables come after the chart's")

    const args = sidecar.args ?? []
    for (const flag of [
      '--intercept=all',
      `--ca-out=${CA_DIR}`,
      '--ca-cert=/etc/obo-sidecar-ca/tls.crt',
      '--ca-key=/etc/obo-sidecar-ca/tls.key',
      '--unrouted-policy=deny',
      '--log-level=debug',
      '--exchange-timeout=2.5',
      '--cache-max-bytes=67108864',
      '--shutdown-grace=15',
    ]) {
      t.ok(args.includes(flag), `sidecar argument ${flag}`)
    }
    const caSecretMount = sidecar.volumeMounts?.find((mount) => mount.mountPath === '/etc/obo-sidecar-ca')
    t.equal(caSecretMount?.readOnly, true, 'the CA Secret is mounted read-only')
    const caSecret = pod.volumes?.find((volume) => volume.name === caSecretMount?.name)?.secret
    t.equal(caSecret?.secretName, 'obo-sidecar-ca')
    t.same(caSecret?.items?.map((item) => item.key), ['tls.crt', 'tls.key'], 'cert-manager key names')
    t.notOk(agent.volumeMounts?.some((mount) => mount.name === caSecretMount?.name), 'the agent never sees the CA key')

    const tokenMount = sidecar.volumeMounts?.find((mount) => mount.mountPath === '/var/run/secrets/tokens')
    const token = pod.volumes?.find((volume) => volume.name === tokenMount?.name)?.projected?.sources?.[0]?.serviceAccountToken
    t.same(token, { audience: 'https://idp.example.com', expirationSeconds: 3600, path: 'agent' }, 'projected actor token')

    t.match(envMap(agent).get('NO_PROXY'), /,\.internal\.example\.com,10\.0\.0\.1,/, 'noProxyExtra entries are in NO_PROXY')
    t.equal(agent.image, 'registry.example.com/team/agent@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef')

    await checkRoutesFileIsValid(t, objects)
    await checkFlagsExist(t, await helpText, args)
  })

  t.test('interception disabled', async (t) => {
    const objects = await template(t, helm, CHART, ['-f', join(CI_VALUES, 'minimal-values.yaml'), '--set', 'interception.enabled=false'])
    validateModels(t, objects)
    const pod = podSpec(objects)
    const sidecar = sidecarContainer(t, pod)
    const agent = agentContainer(t, pod)
    checkProxyEnv(t, agent)

    const env = envMap(agent)
    for (const name of CA_VARIABLES) t.notOk(env.has(name), `${name} is not set`)
    t.notOk(sidecar.args?.some((arg) => arg.startsWith('--intercept') || arg.startsWith('--ca-')), 'no interception flags')
    t.notOk(agent.volumeMounts?.some((mount) => mount.mountPath === CA_DIR), 'no CA directory in the agent')
    t.notOk(pod.volumes?.some((volume) => volume.name === 'obo-ca'), 'no CA volume')
  })

  t.test('monitoring values', async (t) => {
    const values = join(CI_VALUES, 'monitoring-values.yaml')
    await lintStrict(t, helm, CHART, values)
    const objects = await template(t, helm, CHART, ['-f', values])
    validateModels(t, objects)
    t.same(kinds(objects), ['Deployment', 'PodMonitor', 'Service', 'ServiceMonitor'], 'no ConfigMap or ServiceAccount is created')

    const pod = podSpec(objects)
    const sidecar = sidecarContainer(t, pod)
    checkNoSubPath(t, pod)
    t.ok(sidecar.args?.includes('--admin-listen=[::]:15090'), 'an IPv6 admin host is bracketed')
    t.equal(pod.serviceAccountName, 'team-agent')

    const routes = pod.volumes?.find((volume) => volume.name === 'obo-routes')?.configMap
    t.equal(routes?.name, 'team-obo-routes', 'the existing routes ConfigMap is mounted')
    t.same(routes?.items, [{ key: 'obo-routes.yaml', path: 'routes.yaml' }], 'its key becomes routes.yaml')

    const podLabels = deployment(objects).spec?.template.metadata?.labels ?? {}
    t.notOk(deployment(objects).spec?.template.metadata?.annotations?.['prometheus.io/scrape'], 'no scrape annotations')

    const service = find<IService>(objects, 'Service')
    t.ok(matches(service.spec?.selector ?? {}, podLabels), 'the metrics Service selects the pods')
    t.same(service.spec?.ports, [{ name: 'obo-admin', port: 15090, targetPort: 15090, protocol: 'TCP' }], 'metrics Service port')

    const serviceMonitor = find<IServiceMonitor>(objects, 'ServiceMonitor')
    t.ok(matches(serviceMonitor.spec.selector.matchLabels ?? {}, service.metadata?.labels ?? {}), 'the ServiceMonitor selects the Service')
    t.equal(serviceMonitor.spec.endpoints?.[0]?.port, 'obo-admin')
    t.equal(serviceMonitor.spec.endpoints?.[0]?.interval, '15s')
    t.equal(serviceMonitor.metadata?.labels?.release, 'kube-prometheus-stack')

    const podMonitor = find<IPodMonitor>(objects, 'PodMonitor')
    t.ok(matches(podMonitor.spec.selector.matchLabels ?? {}, podLabels), 'the PodMonitor selects the pods')
    t.equal(podMonitor.spec.podMetricsEndpoints?.[0]?.port, 'obo-admin')
    t.equal(podMonitor.spec.podMetricsEndpoints?.[0]?.path, '/metrics')
  })

  t.test('embedded example chart', async (t) => {
    // A copy, because `helm dependency build` writes charts/ and Chart.lock next to Chart.yaml.
    const copy = mkdtempSync(join(tmpdir(), 'obo-sidecar-charts-'))
    t.teardown(() => rmSync(copy, { recursive: true, force: true }))
    cpSync(join(REPO_ROOT, 'helm'), join(copy, 'helm'), {
      recursive: true,
      filter: (source) => !source.includes(`${sep}examples${sep}embedded${sep}charts`),
    })
    const example = join(copy, 'helm', 'examples', 'embedded')

    const build = await helm(['dependency', 'build', example])
    t.equal(build.code, 0, `helm dependency build: ${build.stderr}`)
    const lint = await helm(['lint', '--strict', example])
    t.equal(lint.code, 0, `helm lint --strict: ${lint.stdout}${lint.stderr}`)
    const objects = await template(t, helm, example, [])
    validateModels(t, objects)
    t.same(kinds(objects), ['ConfigMap', 'Deployment'], 'only the example chart renders objects; the dependency renders none')

    const pod = podSpec(objects)
    const sidecar = sidecarContainer(t, pod)
    const agent = agentContainer(t, pod)
    checkNativeSidecar(t, sidecar)
    checkHardened(t, sidecar, pod.securityContext, 'sidecar')
    checkHardened(t, agent, pod.securityContext, 'agent')
    checkRoutesVolume(t, objects, pod, sidecar)
    checkNoSubPath(t, pod)
    checkProxyEnv(t, agent)
    t.equal(envMap(agent).get('NODE_EXTRA_CA_CERTS'), `${CA_DIR}/ca.crt`, 'interception is on in the example')
    t.equal(sidecar.image, 'registry.example.com/platform/obo-sidecar:0.1.0', "the sidecar tag defaults to obo-sidecar's version")
    await checkRoutesFileIsValid(t, objects)

    const typo = await helm(['template', 'r', example, '--set', 'oboSidecar.egress.unroutedPolcy=deny'])
    t.not(typo.code, 0, 'a misspelled key under oboSidecar fails')
    t.match(typo.stderr, /unroutedPolcy/, 'the message names the key')
  })

  t.test('misspelled values keys', async (t) => {
    const minimal = join(CI_VALUES, 'minimal-values.yaml')
    for (const [setting, key] of [
      ['sidecar.setings.logLevel=debug', 'setings'],
      ['interception.ca.existingSecrett=ca', 'existingSecrett'],
      ['metrics.serviceMonitor.intervall=10s', 'intervall'],
      ['agent.tmpDir.size=1Gi', 'size'],
      ['proxyEnv.noProxyExtras[0]=.example.com', 'noProxyExtras'],
      ['egresss.unroutedPolicy=deny', 'egresss'],
    ] as const) {
      const result = await helm(['template', 'r', CHART, '-f', minimal, '--set', setting])
      t.not(result.code, 0, `--set ${setting} fails`)
      t.match(result.stderr, new RegExp(`additional properties '${key}' not allowed`), `the message names ${key}`)
    }

    const wrongPolicy = await helm(['template', 'r', CHART, '-f', minimal, '--set', 'egress.unroutedPolicy=block'])
    t.not(wrongPolicy.code, 0, 'an unknown unrouted policy fails')
    t.match(wrongPolicy.stderr, /unroutedPolicy.*forward.*strip.*deny/, 'the message lists the policies')
  })

  t.test('required values', async (t) => {
    const minimal = join(CI_VALUES, 'minimal-values.yaml')
    const cases: { args: string[]; message: RegExp; name: string }[] = [
      { name: 'no routes', args: ['--set', 'agent.image.repository=agent', '--set', 'sidecar.image.repository=sidecar'], message: /routes is empty/ },
      { name: 'no agent image', args: ['-f', minimal, '--set', 'agent.image.repository='], message: /agent\.image\.repository is required/ },
      { name: 'no sidecar image', args: ['-f', minimal, '--set', 'sidecar.image.repository='], message: /sidecar\.image\.repository is required/ },
      {
        name: 'routes twice',
        args: ['-f', minimal, '--set', 'existingRoutesConfigMap=team-routes'],
        message: /routes and existingRoutesConfigMap are both set/,
      },
      {
        name: 'actor token without audience',
        args: ['-f', minimal, '--set', 'actorToken.projected.enabled=true'],
        message: /actorToken\.projected\.audience is required/,
      },
      {
        name: 'strip without userTokenIssuers',
        args: ['--set', 'agent.image.repository=agent', '--set', 'sidecar.image.repository=sidecar', '--set', 'routes.issuers.corp.clientId=agent'],
        message: /egress\.unroutedPolicy is strip, which needs userTokenIssuers/,
      },
      {
        name: 'same port twice',
        args: ['-f', minimal, '--set', 'sidecar.ports.admin=15080'],
        message: /give the two listeners different ports/,
      },
    ]
    for (const { name, args, message } of cases) {
      const result = await helm(['template', 'r', CHART, ...args])
      t.not(result.code, 0, `${name}: helm template fails`)
      t.match(result.stderr, message, `${name}: message`)
    }
  })

  t.test('routes file passed as text', async (t) => {
    const example = join(REPO_ROOT, 'routes.example.yaml')
    const objects = await template(t, helm, CHART, ['--set', 'agent.image.repository=agent', '--set', 'sidecar.image.repository=sidecar', '--set-file', `routes=${example}`])
    const routes = find<IConfigMap>(objects, 'ConfigMap').data?.['routes.yaml']
    t.equal(routes, readFileSync(example, 'utf8'), 'the file reaches the ConfigMap unchanged, comments included')
    await checkRoutesFileIsValid(t, objects)
  })

  t.test('NOTES warn about routes that bypass the proxy', async (t) => {
    const notes = await helm([
      'install', 'r', CHART, '--dry-run=client',
      '-f', join(CI_VALUES, 'minimal-values.yaml'),
      '--set', 'routes.routes[0].host=orders.team.svc.cluster.local',
    ])
    t.equal(notes.code, 0, `helm install --dry-run=client: ${notes.stderr}`)
    t.match(notes.stdout, /HTTP_PROXY, HTTPS_PROXY \(and lower case\) = http:\/\/127\.0\.0\.1:15080/, 'the proxy variables')
    t.match(notes.stdout, /WARNING: route host orders\.team\.svc\.cluster\.local matches NO_PROXY entry "\.cluster\.local"/)
    t.match(notes.stdout, /port-forward deployment\/r-obo-sidecar 15090/, 'how to look at the metrics')
  })

  t.test('rendered arguments start the sidecar', async (t) => {
    // The chart's arguments, given to the built CLI: only the in-container paths are moved into a
    // temp folder, and the listeners go to free loopback ports.
    const dir = mkdtempSync(join(tmpdir(), 'obo-sidecar-args-'))
    t.teardown(() => rmSync(dir, { recursive: true, force: true }))
    const routesFile = join(dir, 'routes.yaml')
    writeFileSync(
      routesFile,
      [
        'userTokenIssuers: [https://login.example.com/realms/corp]',
        'issuers:',
        '  local:',
        '    tokenEndpoint: http://127.0.0.1:9/token',
        '    clientId: chart-test',
        '    clientAuth: none',
        'routes:',
        '  - name: api',
        '    host: api.example.test',
        '    issuer: local',
        '',
      ].join('\n'),
    )
    const [proxyPort, adminPort] = [await freePort(), await freePort()]
    const objects = await template(t, helm, CHART, [
      '-f', join(CI_VALUES, 'interception-values.yaml'),
      '--set-file', `routes=${routesFile}`,
      '--set', 'interception.ca.existingSecret=',
      '--set', 'actorToken.projected.enabled=false',
      '--set', 'egress.unroutedPolicy=strip',
      '--set', 'sidecar.adminListenHost=127.0.0.1',
      '--set', `sidecar.ports.proxy=${proxyPort}`,
      '--set', `sidecar.ports.admin=${adminPort}`,
    ])
    const pod = podSpec(objects)
    const sidecar = sidecarContainer(t, pod)
    const caDir = join(dir, 'ca')
    const args = (sidecar.args ?? []).map((arg) => {
      if (arg.startsWith('--routes=')) return `--routes=${routesFile}`
      if (arg.startsWith('--ca-out=')) return `--ca-out=${caDir}`
      return arg
    })
    t.ok(args.includes(`--listen=127.0.0.1:${proxyPort}`), 'the proxy port comes from sidecar.ports.proxy')

    const running = await startSidecarProcess(undefined, args)
    t.teardown(() => running.stop())
    t.equal(running.adminUrl, `http://127.0.0.1:${adminPort}`, 'the admin listener address')
    t.equal((await fetch(`${running.adminUrl}/readyz`)).status, 200, '/readyz, which the startup probe polls')

    // The agent's CA variables must name the files the sidecar writes into --ca-out.
    const env = envMap(agentContainer(t, pod))
    for (const name of CA_VARIABLES) {
      const path = env.get(name) ?? ''
      t.ok(existsSync(join(caDir, path.slice(CA_DIR.length + 1))), `${name} names a file the sidecar wrote (${path})`)
    }
    t.equal(await running.stop(), 0, `exit code after SIGTERM; stderr: ${running.stderr()}`)
  })

  t.test('versions agree', async (t) => {
    const chart = parseYaml(readFileSync(join(CHART, 'Chart.yaml'), 'utf8')) as { appVersion: string }
    const manifest = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }
    t.equal(chart.appVersion, manifest.version, 'Chart.yaml appVersion is the package version')
    const objects = await template(t, helm, CHART, ['-f', join(CI_VALUES, 'minimal-values.yaml')])
    t.equal(sidecarContainer(t, podSpec(objects)).image, `registry.example.com/platform/obo-sidecar:${manifest.version}`, 'the default sidecar image tag')
  })
}

/** Returns a port that was free on 127.0.0.1 a moment ago. */
async function freePort(): Promise<number> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const address = server.address()
  await new Promise<void>((resolve) => server.close(() => resolve()))
  if (address === null || typeof address === 'string') throw new Error('no TCP address')
  return address.port
}

async function runHelm(helmHome: string, args: string[]): Promise<HelmResult> {
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: helmHome,
    HELM_CACHE_HOME: join(helmHome, 'cache'),
    HELM_CONFIG_HOME: join(helmHome, 'config'),
    HELM_DATA_HOME: join(helmHome, 'data'),
    // install --dry-run=client must not find a real cluster's credentials.
    KUBECONFIG: join(helmHome, 'no-kubeconfig'),
  }
  const child = spawn(HELM, args, { env, stdio: ['ignore', 'pipe', 'pipe'], timeout: HELM_TIMEOUT_MS })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk))
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk))
  const [code] = (await once(child, 'close')) as [number | null]
  return { code, stdout, stderr }
}

async function lintStrict(t: Test, helm: (args: string[]) => Promise<HelmResult>, chart: string, values: string): Promise<void> {
  const result = await helm(['lint', '--strict', chart, '-f', values])
  t.equal(result.code, 0, `helm lint --strict -f ${values}: ${result.stdout}${result.stderr}`)
}

async function template(t: Test, helm: (args: string[]) => Promise<HelmResult>, chart: string, args: string[]): Promise<RenderedObject[]> {
  const result = await helm(['template', 'r', chart, ...args])
  if (result.code !== 0) {
    t.fail(`helm template ${args.join(' ')} failed: ${result.stderr}`)
    return []
  }
  return parseAllDocuments(result.stdout)
    .map((document) => document.toJS() as RenderedObject | null)
    .filter((object): object is RenderedObject => object !== null)
}

function validateModels(t: Test, objects: RenderedObject[]): void {
  t.ok(objects.length > 0, 'objects were rendered')
  for (const object of objects) {
    const label = `${object.kind} ${object.metadata.name}`
    const Model = MODELS[`${object.apiVersion}/${object.kind}`]
    if (Model === undefined) {
      t.fail(`${label}: no kubernetes-models class for ${object.apiVersion}/${object.kind}`)
      continue
    }
    try {
      new Model(object).validate()
      t.pass(`${label} matches the ${object.apiVersion} schema`)
    } catch (error) {
      t.fail(`${label} does not match the ${object.apiVersion} schema: ${error instanceof Error ? error.message : String(error)}`)
    }
    t.equal(object.metadata.labels?.['app.kubernetes.io/managed-by'], 'Helm', `${label}: app.kubernetes.io/managed-by`)
  }
}

function kinds(objects: RenderedObject[]): string[] {
  return objects.map((object) => object.kind).sort()
}

function find<T>(objects: RenderedObject[], kind: string): T {
  const object = objects.find((candidate) => candidate.kind === kind)
  if (object === undefined) throw new Error(`no ${kind} was rendered`)
  return object as unknown as T
}

function deployment(objects: RenderedObject[]): IDeployment {
  return find<IDeployment>(objects, 'Deployment')
}

function podSpec(objects: RenderedObject[]): IPodSpec {
  const spec = deployment(objects).spec?.template.spec
  if (spec === undefined) throw new Error('the Deployment has no pod spec')
  return spec
}

function sidecarContainer(t: Test, pod: IPodSpec): IContainer {
  const sidecars = (pod.initContainers ?? []).filter((container) => container.name === 'obo-sidecar')
  t.equal(sidecars.length, 1, 'one obo-sidecar init container')
  t.notOk(pod.containers.some((container) => container.name === 'obo-sidecar'), 'the sidecar is not a regular container')
  return sidecars[0] ?? { name: 'missing' }
}

function agentContainer(t: Test, pod: IPodSpec): IContainer {
  t.equal(pod.containers.length, 1, 'one regular container, the agent')
  return pod.containers[0] ?? { name: 'missing' }
}

function checkNativeSidecar(t: Test, sidecar: IContainer): void {
  t.equal(sidecar.restartPolicy, 'Always', 'restartPolicy Always makes the init container a native sidecar')
  t.same(sidecar.startupProbe?.httpGet, { path: '/readyz', port: 'obo-admin' }, 'startup probe on /readyz gates the agent')
  t.same(sidecar.readinessProbe?.httpGet, { path: '/readyz', port: 'obo-admin' }, 'readiness probe on /readyz')
  t.same(sidecar.livenessProbe?.httpGet, { path: '/healthz', port: 'obo-admin' }, 'liveness probe on /healthz')
  t.ok(sidecar.ports?.some((port) => port.name === 'obo-admin'), 'the probes name a declared port')
}

/** Checks the hardening settings, taking the pod-level value where the container leaves one unset. */
function checkHardened(t: Test, container: IContainer, pod: IPodSecurityContext | undefined, label: string): void {
  const context = container.securityContext ?? {}
  t.equal(context.runAsNonRoot ?? pod?.runAsNonRoot, true, `${label}: runAsNonRoot`)
  t.equal(context.readOnlyRootFilesystem, true, `${label}: readOnlyRootFilesystem`)
  t.equal(context.allowPrivilegeEscalation, false, `${label}: allowPrivilegeEscalation false`)
  t.same(context.capabilities?.drop, ['ALL'], `${label}: capabilities drop ALL`)
  t.equal((context.seccompProfile ?? pod?.seccompProfile)?.type, 'RuntimeDefault', `${label}: seccompProfile RuntimeDefault`)
}

/** Checks that the routes file is a ConfigMap volume, mounted as a directory at the folder `--routes` names. */
function checkRoutesVolume(t: Test, objects: RenderedObject[], pod: IPodSpec, sidecar: IContainer): void {
  const routesArg = sidecar.args?.find((arg) => arg.startsWith('--routes='))
  t.equal(routesArg, '--routes=/etc/obo-sidecar/routes.yaml', '--routes argument')
  const mount = sidecar.volumeMounts?.find((candidate) => candidate.mountPath === dirname(routesArg?.slice('--routes='.length) ?? ''))
  t.ok(mount, 'the routes directory is mounted')
  t.equal(mount?.readOnly, true, 'read-only')
  const volume = pod.volumes?.find((candidate) => candidate.name === mount?.name)
  const configMap = find<IConfigMap>(objects, 'ConfigMap')
  t.equal(volume?.configMap?.name, configMap.metadata?.name, 'the volume is the rendered routes ConfigMap')
  t.ok(configMap.data?.['routes.yaml'], 'the ConfigMap has routes.yaml')
}

/** Checks that the CA variables name files in an emptyDir that the sidecar writes and the agent only reads. */
function checkCaTrust(t: Test, pod: IPodSpec, sidecar: IContainer, agent: IContainer): void {
  const env = envMap(agent)
  t.equal(env.get('SSL_CERT_FILE'), `${CA_DIR}/ca-bundle.crt`)
  t.equal(env.get('REQUESTS_CA_BUNDLE'), `${CA_DIR}/ca-bundle.crt`)
  t.equal(env.get('CURL_CA_BUNDLE'), `${CA_DIR}/ca-bundle.crt`)
  t.equal(env.get('NODE_EXTRA_CA_CERTS'), `${CA_DIR}/ca.crt`)

  const sidecarMount = sidecar.volumeMounts?.find((mount) => mount.mountPath === CA_DIR)
  const agentMount = agent.volumeMounts?.find((mount) => mount.mountPath === CA_DIR)
  t.ok(sidecarMount, 'the sidecar mounts the CA directory')
  t.not(sidecarMount?.readOnly, true, 'the sidecar can write the CA directory')
  t.equal(agentMount?.readOnly, true, 'the agent mounts the CA directory read-only')
  t.equal(agentMount?.name, sidecarMount?.name, 'both mount the same volume')
  t.ok(pod.volumes?.find((volume) => volume.name === sidecarMount?.name)?.emptyDir, 'the CA directory is an emptyDir')
}

function checkNoSubPath(t: Test, pod: IPodSpec): void {
  const withSubPath = [...(pod.initContainers ?? []), ...pod.containers].flatMap((container) =>
    (container.volumeMounts ?? []).filter((mount) => mount.subPath !== undefined || mount.subPathExpr !== undefined).map((mount) => `${container.name}:${mount.name}`),
  )
  t.same(withSubPath, [], 'no subPath mounts, which the kubelet would never update')
}

function checkProxyEnv(t: Test, agent: IContainer): void {
  const env = envMap(agent)
  for (const name of ['HTTP_PROXY', 'HTTPS_PROXY', 'http_proxy', 'https_proxy']) {
    t.equal(env.get(name), PROXY_URL, `${name} points at the sidecar`)
  }
  t.equal(env.get('NODE_USE_ENV_PROXY'), '1', 'NODE_USE_ENV_PROXY')
  const noProxy = env.get('NO_PROXY') ?? ''
  t.equal(env.get('no_proxy'), noProxy, 'no_proxy equals NO_PROXY')
  const entries = noProxy.split(',')
  for (const entry of ['localhost', '127.0.0.1', '::1', '.svc', '.cluster.local', '$(OBO_POD_IP)']) {
    t.ok(entries.includes(entry), `NO_PROXY has ${entry}`)
  }
  const podIp = agent.env?.find((variable) => variable.name === 'OBO_POD_IP')
  t.equal(podIp?.valueFrom?.fieldRef?.fieldPath, 'status.podIP', 'OBO_POD_IP is the pod IP')
  const names = (agent.env ?? []).map((variable) => variable.name)
  t.ok(names.indexOf('OBO_POD_IP') < names.indexOf('NO_PROXY'), 'OBO_POD_IP is defined before NO_PROXY refers to it')
}

function envMap(container: IContainer): Map<string, string | undefined> {
  return new Map((container.env ?? []).map((variable) => [variable.name, variable.value]))
}

function matches(selector: Record<string, string>, labels: Record<string, string>): boolean {
  const entries = Object.entries(selector)
  return entries.length > 0 && entries.every(([key, value]) => labels[key] === value)
}

/** Runs `obo-sidecar validate` on the routes.yaml of the rendered ConfigMap. */
async function checkRoutesFileIsValid(t: Test, objects: RenderedObject[]): Promise<void> {
  const routes = find<IConfigMap>(objects, 'ConfigMap').data?.['routes.yaml'] ?? ''
  const dir = mkdtempSync(join(tmpdir(), 'obo-sidecar-routes-'))
  try {
    const file = join(dir, 'routes.yaml')
    writeFileSync(file, routes)
    const result = await runCli(['validate', file])
    t.equal(result.code, 0, `obo-sidecar validate accepts the rendered routes file: ${result.stderr}`)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

/** Checks that `obo-sidecar run --help` lists every flag the chart passes. */
async function checkFlagsExist(t: Test, help: { code: number | null; stdout: string }, args: string[]): Promise<void> {
  t.equal(help.code, 0, 'obo-sidecar run --help')
  const known = new Set(help.stdout.match(/--[a-z][a-z-]*/g) ?? [])
  for (const arg of args) {
    const flag = arg.split('=', 1)[0] ?? arg
    t.ok(known.has(flag), `run --help lists ${flag}`)
  }
}
