// The multi-node swarm sandbox (lib/sandbox/swarm-cluster.ts): three engines in network namespaces form a
// swarm, run an image from the suite's registry as replicas on different nodes reached from 127.0.0.1,
// move the replicas of a crashed worker, and leave nothing behind. The kernel has no IPVS, so the service
// uses dnsrr and a host-mode port (see the top of swarm-cluster.ts): the routing mesh is not tested here.
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tarCommand } from '../../lib/build/base-images.ts';
import { startRegistry, type Registry } from '../../lib/sandbox/sandbox.ts';
import { runCgroups, shimSockets, startSwarmCluster, type SwarmCluster, type SwarmNode } from '../../lib/sandbox/swarm-cluster.ts';
import { SANDBOX_DIR, tempDir, testRunner } from './harness.ts';

const runner = testRunner();
const dockerConfig = tempDir('aidd-swarm-docker-config');
const STACK = 'sbx';
const SERVICE = `${STACK}_web`;
/** Published in host mode on each node that runs a task; inside the namespaces, so any port will do. */
const NODE_PORT = 8090;

let cluster: SwarmCluster;
let registry: Registry;
let rootLinksBefore: string[];
let forwardPort: number;
let victim: SwarmNode | undefined;

/** Polls `check` every 500 ms until it returns a value, at most `timeoutMs`. */
async function until<T>(what: string, check: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const value = await check();
    if (value !== undefined) return value;
    await sleep(500);
  }
  throw new Error(`${what}: not within ${timeoutMs / 1000}s`);
}

/** The links of the root network namespace (this process's), one line each. */
async function rootLinkLines(): Promise<string[]> {
  const { stdout } = await runner.run({ argv: ['ip', '-o', 'link', 'show'], readOnly: true });
  return stdout.split('\n').filter(Boolean);
}

async function rootLinks(): Promise<string[]> {
  return (await rootLinkLines()).map((line) => line.split(': ')[1]!.split('@')[0]!);
}

/** Nodes of the service's tasks that should run and do. */
async function runningTaskNodes(): Promise<string[]> {
  const { stdout } = await runner.run(cluster.docker(cluster.manager, ['service', 'ps', SERVICE, '--filter', 'desired-state=running', '--format', '{{.Node}} {{.CurrentState}}']));
  return stdout.split('\n').filter((line) => / Running /.test(line)).map((line) => line.split(' ')[0]!).sort();
}

async function nodeStatus(node: SwarmNode): Promise<string> {
  return (await runner.run(cluster.docker(cluster.manager, ['node', 'inspect', node.name, '--format', '{{.Status.State}}']))).stdout.trim();
}

/** One GET on a fresh connection (the forward picks a node per connection): the body, or the error code. */
function get(port: number): Promise<string> {
  return new Promise((resolve) => {
    const request = http.get({ host: '127.0.0.1', port, path: '/', agent: false, timeout: 3_000 }, (response) => {
      let body = '';
      response.on('data', (chunk: Buffer) => (body += chunk.toString()));
      response.on('end', () => resolve(response.statusCode === 200 ? body.trim() : `HTTP ${response.statusCode}`));
    });
    request.on('timeout', () => request.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })));
    request.on('error', (error: NodeJS.ErrnoException) => resolve(`error ${error.code ?? error.message}`));
  });
}

/** The distinct answers of `count` requests through the forward. */
async function answers(count: number): Promise<string[]> {
  const seen = new Set<string>();
  for (let i = 0; i < count; i += 1) seen.add(await get(forwardPort));
  return [...seen].sort();
}

/**
 * Whether `pid` still runs. A killed process whose parent has not collected it yet (a zombie: state Z)
 * holds nothing but its pid; orphans wait for this machine's init, which collects them late.
 */
function running(pid: string): boolean {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '')[0] !== 'Z';
  } catch {
    return false;
  }
}

/** A FROM-scratch image of busybox-static whose page names the node its task runs on. */
async function buildImage(ref: string): Promise<void> {
  const work = tempDir('aidd-swarm-image');
  const rootfs = path.join(work, 'rootfs');
  mkdirSync(path.join(rootfs, 'bin'), { recursive: true });
  mkdirSync(path.join(rootfs, 'www'));
  copyFileSync('/bin/busybox', path.join(rootfs, 'bin', 'busybox'));
  for (const applet of ['sh', 'httpd']) symlinkSync('busybox', path.join(rootfs, 'bin', applet));
  const tarball = path.join(work, 'rootfs.tar');
  await runner.run(tarCommand(rootfs, tarball));
  const cmd = JSON.stringify(['sh', '-c', 'echo "$NODE" >/www/index.html && exec httpd -f -p 8080 -h /www']);
  await runner.run(cluster.docker(cluster.manager, ['import', '--change', 'ENV PATH=/bin', '--change', `CMD ${cmd}`, tarball, ref]));
  rmSync(work, { recursive: true, force: true });
}

describe('swarm sandbox: three engines in network namespaces', () => {
  beforeAll(async () => {
    registry = await startRegistry(runner, path.join(SANDBOX_DIR, 'registry'));
    rootLinksBefore = await rootLinks();
    cluster = await startSwarmCluster(runner, { dispatcherHeartbeat: '1s', ssh: { dir: path.join(SANDBOX_DIR, 'swarm-ssh') } });
  });

  afterAll(async () => {
    await cluster?.stop();
    rmSync(dockerConfig, { recursive: true, force: true });
  });

  it('forms a swarm of one manager and two workers, all Ready, with distinct hostnames', async () => {
    const { stdout } = await runner.run(cluster.docker(cluster.manager, ['node', 'ls', '--format', '{{.Hostname}} {{.Status}} {{.ManagerStatus}}']));
    expect(stdout.trim().split('\n').map((line) => line.trim()).sort()).toEqual(cluster.nodes.map((node) => `${node.name} Ready ${node === cluster.manager ? 'Leader' : ''}`.trim()));
    const hostnames = await Promise.all(cluster.nodes.map(async (node) => (await runner.run(cluster.docker(node, ['info', '--format', '{{.Name}}']))).stdout.trim()));
    expect(new Set(hostnames).size).toBe(3);
    // No link of the cluster is in the root namespace while it runs, nor a veth whose peer is in one of
    // its namespaces (`ip` names that namespace as link-netns).
    expect((await rootLinks()).filter((name) => /^(br0|p\d)$/.test(name))).toEqual([]);
    expect((await rootLinkLines()).filter((line) => line.includes(`aidd-sw${cluster.id}`))).toEqual([]);
  });

  it('lets the deploy user run docker against the manager over SSH with strict host-key checking', async () => {
    const ssh = cluster.ssh!;
    const result = await runner.run({
      argv: [
        'ssh', '-p', String(ssh.port), '-i', ssh.keyFile,
        '-o', `UserKnownHostsFile=${ssh.knownHostsFile}`, '-o', 'StrictHostKeyChecking=yes', '-o', 'BatchMode=yes',
        `${ssh.user}@${ssh.host}`, 'id -un; docker node ls --format "{{.Hostname}} {{.Status}}"',
      ],
      timeoutMs: 30_000,
    });
    expect(result.stdout.trim().split('\n')).toEqual([ssh.user, ...cluster.nodes.map((node) => `${node.name} Ready`)]);
  });

  it('deploys an image from the registry as two replicas on two nodes, answering on 127.0.0.1', async () => {
    await cluster.linkRegistry(registry.port);
    const env = { DOCKER_CONFIG: dockerConfig };
    const login = cluster.docker(cluster.manager, ['login', registry.address, '--username', registry.user, '--password-stdin']);
    await runner.run({ ...login, input: registry.password, env });
    const ref = `${registry.address}/aidd-swarm-sandbox/web:${cluster.id}`;
    await buildImage(ref);
    await runner.run({ ...cluster.docker(cluster.manager, ['push', ref]), env });

    const stackDir = tempDir('aidd-swarm-stack');
    const stackFile = path.join(stackDir, 'stack.yml');
    const stack = {
      version: '3.8',
      services: {
        web: {
          image: ref,
          environment: { NODE: '{{.Node.Hostname}}' },
          // Host mode: one task per node at most, since each one holds the port on its node.
          ports: [{ target: 8080, published: NODE_PORT, mode: 'host' }],
          deploy: { replicas: 2, endpoint_mode: 'dnsrr' },
        },
      },
    };
    writeFileSync(stackFile, JSON.stringify(stack, null, 2));
    await runner.run({ ...cluster.docker(cluster.manager, ['stack', 'deploy', '--with-registry-auth', '--compose-file', stackFile, STACK]), env });
    rmSync(stackDir, { recursive: true, force: true });

    const nodes = await until('2 running tasks', async () => ((await runningTaskNodes()).length === 2 ? runningTaskNodes() : undefined), 60_000);
    expect(new Set(nodes).size).toBe(2);
    // Pulled from the registry on every node, so the spec is pinned to the pushed digest.
    const image = (await runner.run(cluster.docker(cluster.manager, ['service', 'inspect', SERVICE, '--format', '{{.Spec.TaskTemplate.ContainerSpec.Image}}']))).stdout.trim();
    expect(image).toMatch(new RegExp(`^${ref.replace(/[.]/g, '\\.')}@sha256:[0-9a-f]{64}$`));

    forwardPort = await cluster.forward(NODE_PORT);
    expect(await answers(12)).toEqual(nodes);
  });

  it('moves the replicas of a killed worker to the other nodes, and takes the worker back', async () => {
    const before = await runningTaskNodes();
    victim = cluster.nodes.find((node) => node !== cluster.manager && before.includes(node.name))!;
    const survivors = cluster.nodes.filter((node) => node !== victim).map((node) => node.name);
    cluster.killNode(victim);
    await until(`${victim.name} Down`, async () => ((await nodeStatus(victim!)) === 'down' ? true : undefined), 40_000);
    const after = await until(
      'replicas on the remaining nodes',
      async () => {
        const nodes = (await runningTaskNodes()).filter((name) => name !== victim!.name);
        return nodes.length === 2 ? nodes : undefined;
      },
      40_000,
    );
    expect(after).toEqual(survivors);
    // The killed engine's container still serves in its namespace (its shim outlived dockerd), so the
    // forward may reach it too; both new placements must answer.
    expect(await answers(12)).toEqual(expect.arrayContaining(survivors));

    await cluster.startNode(victim);
    await until(`${victim.name} Ready again`, async () => ((await nodeStatus(victim!)) === 'ready' ? true : undefined), 40_000);
  });

  it('stop() leaves no namespace, process, cgroup, mount or shim socket behind, and root links as they were', async () => {
    const names = [...cluster.nodes.map((node) => node.name), `aidd-sw${cluster.id}-br`];
    const sockets = await shimSockets(runner, names);
    expect(sockets.length).toBeGreaterThan(0);
    const pids = (await Promise.all(names.map(async (name) => (await runner.run({ argv: ['ip', 'netns', 'pids', name], readOnly: true })).stdout.split('\n').filter(Boolean)))).flat();
    expect(pids.length).toBeGreaterThan(0);

    await cluster.stop();

    const namespaces = (await runner.run({ argv: ['ip', 'netns', 'list'], readOnly: true })).stdout;
    expect(namespaces).not.toContain(`aidd-sw${cluster.id}`);
    expect(pids.filter(running)).toEqual([]);
    const mentioning = readdirSync('/proc').filter((entry) => {
      if (!/^\d+$/.test(entry)) return false;
      try {
        return readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(cluster.dir);
      } catch {
        return false;
      }
    });
    expect(mentioning).toEqual([]);
    expect(runCgroups(cluster.id)).toEqual([]);
    expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(cluster.dir);
    expect(sockets.filter((socket) => existsSync(socket))).toEqual([]);
    expect(existsSync(cluster.dir)).toBe(false);
    // The main engine adds and removes veth host ends and br-<network id> bridges whenever other tests
    // start containers and networks on it; all other links must be exactly as before.
    const stable = (links: string[]) => links.filter((name) => !/^(veth|br-[0-9a-f]{12}$)/.test(name)).sort();
    expect(stable(await rootLinks())).toEqual(stable(rootLinksBefore));
  });
});
