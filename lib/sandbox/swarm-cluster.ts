// A multi-node Docker Swarm on this machine, for tests of deploys to a swarm: three Docker engines
// (one manager, two workers), each in a network namespace of its own with the address 10.77.0.N,
// joined through a bridge that lives in a fourth namespace (the switch). Nothing is added to the root
// namespace's links, routes or iptables, and the main engine (/var/run/docker.sock) is never used.
//
// What this kernel cannot do (it is built with CONFIG_MODULES off, so nothing can be loaded):
//  - no IP_VS: no ingress routing mesh and no service VIP. Services here use `endpoint_mode: dnsrr` and
//    publish ports in `mode: host`; tests of the routing mesh or VIPs cannot run on this machine.
//  - no INET_ESP (nor GCM): encrypted overlay networks start but carry nothing between nodes.
// Real servers usually have all three; the product must not assume their absence.
//
// Each run gets an id: its state lives in /tmp/aidd-sw<id> (short: unix socket paths are limited to
// 108 bytes), its namespaces are aidd-sw<id>-1..3 and aidd-sw<id>-br, and the engines put their
// containers under the cgroup /aidd-sw<id>-N. Teardown finds everything by those names, the namespaces'
// processes and the pidfiles, never by process name (the main engine's processes have the same names).
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ToolError } from '../core/cli.ts';
import { shellQuote, type Command, type Runner } from '../core/exec.ts';
import { freePort } from '../core/net.ts';
import { Secret } from '../core/secrets.ts';
import { prepareDeployLogin, processAlive, sshdConfigText, startDetached, waitFor, writeKnownHosts, type DeployLogin, type SshServer } from './sandbox.ts';

const PREFIX = 'aidd-sw';
const SUBNET = '10.77.0';
/** Overlay subnets come from here instead of 10.0.0.0/8. */
const ADDRESS_POOL = '10.78.0.0/16';
const NODE_COUNT = 3;
const SHIM_SOCKET_DIR = '/run/containerd/s/';

export interface SwarmNode {
  /** 1 is the manager. */
  index: number;
  /** Its network namespace, its hostname (as `docker node ls` shows it) and its cgroup parent. */
  name: string;
  address: string;
  /** The engine's API socket. */
  socket: string;
  /** This node's sshd, when `options.ssh` asked for one here. */
  ssh?: SshServer;
}

export interface SwarmClusterOptions {
  /** Passed to `swarm init` (e.g. '1s'): a killed node is Down sooner than with the default 5s. */
  dispatcherHeartbeat?: string;
  /**
   * false: the engines start as fresh servers, in no swarm (no `swarm init` or `join`), for tests of the
   * tool that forms one. Default true.
   */
  swarm?: boolean;
  /**
   * An sshd in the manager's namespace (with `everyNode`, in every node's) on the node's address, port
   * 22, forwarded to a 127.0.0.1 port of its own, where the deploy user's docker CLI talks to that node's
   * engine. All share one host key; `dir` keeps the keys between runs.
   */
  ssh?: { dir: string; user?: string; everyNode?: boolean };
}

export interface SwarmCluster {
  id: string;
  dir: string;
  nodes: SwarmNode[];
  manager: SwarmNode;
  /** The manager's sshd, present when `options.ssh` asked for it. */
  ssh?: SshServer;
  /** `docker -H unix://SOCKET ARGS` against one node's engine. */
  docker(node: SwarmNode, args: string[], timeoutMs?: number): Command;
  /** A 127.0.0.1 port reaching `port` on whichever of `nodes` accepts (host-mode ports move with tasks). */
  forward(port: number, nodes?: SwarmNode[]): Promise<number>;
  /** The registry on this machine's 127.0.0.1:PORT becomes 127.0.0.1:PORT inside every node. */
  linkRegistry(port: number): Promise<void>;
  /** SIGKILLs the node's dockerd (its containerd goes with it; its containers keep running). */
  killNode(node: SwarmNode): void;
  /** Starts a killed node's dockerd again on the same data-root; it rejoins the swarm by itself. */
  startNode(node: SwarmNode): Promise<void>;
  /** Kills and removes everything of this run. Safe to call twice. */
  stop(): Promise<void>;
}

function stateDir(id: string): string {
  return path.join(os.tmpdir(), `${PREFIX}${id}`);
}

function ip(args: string[]): Command {
  return { argv: ['ip', ...args], timeoutMs: 10_000 };
}

/**
 * A TCP/unix-socket bridge, run with `node -e`. A path-based unix socket belongs to no network namespace,
 * so a bridge started with `ip netns exec` and one started on the host meet on it:
 *   tcp-to-unix PORT SOCKET           listen on 127.0.0.1:PORT, connect each client to SOCKET
 *   unix-to-tcp SOCKET HOSTS PORT     listen on SOCKET, connect each client to the first of HOSTS
 *                                     (comma-separated, one further each time) that accepts on PORT
 */
const BRIDGE = `
const net = require('node:net');
const [mode, listenOn, target, port] = process.argv.slice(1);
const join = (a, b) => {
  a.pipe(b); b.pipe(a);
  a.on('error', () => b.destroy()); b.on('error', () => a.destroy());
};
let turn = 0;
const toTcp = (client, hosts, left) => {
  const upstream = net.connect({ host: hosts[0], port: Number(port), timeout: 2000 });
  const next = () => {
    upstream.destroy();
    if (left > 1) toTcp(client, [...hosts.slice(1), hosts[0]], left - 1); else client.destroy();
  };
  upstream.once('error', next).once('timeout', next).once('connect', () => {
    upstream.removeListener('error', next).removeListener('timeout', next).setTimeout(0);
    join(client, upstream);
  });
};
const server = mode === 'tcp-to-unix'
  ? net.createServer((client) => join(client, net.connect(target)))
  : net.createServer((client) => {
      const hosts = target.split(',');
      const start = turn++ % hosts.length;
      toTcp(client, [...hosts.slice(start), ...hosts.slice(0, start)], hosts.length);
    });
server.listen(mode === 'tcp-to-unix' ? { port: Number(listenOn), host: '127.0.0.1' } : { path: listenOn }, () => console.log('listening'));
`;

/**
 * Shell commands that mount the host's cgroup hierarchies again under /sys/fs/cgroup. `ip netns exec`
 * mounts a fresh sysfs on /sys (so /sys/class/net shows the namespace's interfaces), which hides them,
 * and dockerd then fails with "Devices cgroup isn't mounted". The same hierarchies are attached again,
 * so the cgroup tree is the host's, not a copy. The cgroup2-only branch is untested (this machine is v1).
 */
function cgroupMountScript(): string {
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const [fields, filesystem] = line.split(' - ');
      const [fstype, , superOptions] = filesystem!.split(' ');
      return { mountPoint: fields!.split(' ')[4]!, fstype: fstype!, superOptions: superOptions! };
    });
  if (mounts.some((mount) => mount.mountPoint === '/sys/fs/cgroup' && mount.fstype === 'cgroup2')) return 'mount -t cgroup2 cgroup2 /sys/fs/cgroup';
  const hierarchies = mounts.filter((mount) => mount.mountPoint.startsWith('/sys/fs/cgroup/') && /^cgroup2?$/.test(mount.fstype));
  return [
    'mount -t tmpfs -o mode=755 tmpfs /sys/fs/cgroup',
    ...hierarchies.map(({ mountPoint, fstype, superOptions }) => `mkdir -p ${shellQuote(mountPoint)} && mount -t ${fstype} -o ${shellQuote(superOptions)} ${fstype} ${shellQuote(mountPoint)}`),
  ].join(' && ');
}

function nodeDir(dir: string, node: SwarmNode): string {
  return path.join(dir, String(node.index));
}

/**
 * dockerd inside the node's namespace. `ip netns exec` also gives it a private (slave) mount namespace,
 * so its overlay and netns mounts never show on the host and vanish with it; `unshare --uts` gives each
 * node its own hostname; the empty config file keeps out /etc/docker/daemon.json of the main engine.
 */
function startDockerd(dir: string, node: SwarmNode): number {
  const home = nodeDir(dir, node);
  const dockerd = [
    'dockerd',
    '--data-root', path.join(home, 'data'),
    '--exec-root', path.join(home, 'exec'),
    '--pidfile', path.join(home, 'docker.pid'),
    '-H', `unix://${node.socket}`,
    '--config-file', path.join(home, 'daemon.json'),
    '--cgroup-parent', `/${node.name}`,
    '--storage-driver', 'overlay2',
    '--swarm-default-advertise-addr', node.address,
  ];
  const script = `${cgroupMountScript()} && hostname ${node.name} && exec ${dockerd.map(shellQuote).join(' ')}`;
  return startDetached(['ip', 'netns', 'exec', node.name, 'unshare', '--uts', 'sh', '-c', script], path.join(home, 'dockerd.log'));
}

function readPid(file: string): number | undefined {
  return existsSync(file) ? Number(readFileSync(file, 'utf8').trim()) || undefined : undefined;
}

/** The pid in `file` when that process is alive and was started for this run (its command line names `dir`). */
function ownedPid(file: string, dir: string): number | undefined {
  const pid = readPid(file);
  if (pid === undefined || !processAlive(pid)) return undefined;
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(dir) ? pid : undefined;
  } catch {
    return undefined;
  }
}

async function namespaces(runner: Runner): Promise<string[]> {
  const { stdout } = await runner.run({ ...ip(['netns', 'list']), readOnly: true });
  return stdout.split('\n').map((line) => line.split(' ')[0]!).filter(Boolean);
}

async function namespacePids(runner: Runner, name: string): Promise<number[]> {
  const result = await runner.attempt({ ...ip(['netns', 'pids', name]), readOnly: true });
  return result.stdout.split('\n').filter(Boolean).map(Number);
}

/** Containerd shim sockets bound inside these namespaces: they live in /run/containerd/s, shared with the main engine. */
export async function shimSockets(runner: Runner, names: string[]): Promise<string[]> {
  const sockets = new Set<string>();
  for (const name of names) {
    const [pid] = await namespacePids(runner, name);
    if (pid === undefined) continue;
    let table = '';
    try {
      table = readFileSync(`/proc/${pid}/net/unix`, 'utf8');
    } catch {
      continue;
    }
    for (const line of table.split('\n')) {
      const socketPath = line.trim().split(/\s+/)[7];
      if (socketPath?.startsWith(SHIM_SOCKET_DIR)) sockets.add(socketPath);
    }
  }
  return [...sockets];
}

/** The cgroups of this run's nodes in every hierarchy (cgroup v1: one per controller; v2: the one tree). */
export function runCgroups(id: string): string[] {
  const roots = ['/sys/fs/cgroup', ...readdirSync('/sys/fs/cgroup', { withFileTypes: true }).filter((entry) => entry.isDirectory()).map((entry) => path.join('/sys/fs/cgroup', entry.name))];
  return roots.flatMap((root) => {
    try {
      return readdirSync(root).filter((name) => name.startsWith(`${PREFIX}${id}-`)).map((name) => path.join(root, name));
    } catch {
      return [];
    }
  });
}

/** Every cgroup directory at or below `dir`, deepest first. */
function cgroupTree(dir: string): string[] {
  const below = readdirSync(dir, { withFileTypes: true }).filter((entry) => entry.isDirectory()).flatMap((entry) => cgroupTree(path.join(dir, entry.name)));
  return [...below, dir];
}

function cgroupPids(dirs: string[]): number[] {
  return dirs.flatMap((top) =>
    cgroupTree(top).flatMap((dir) => {
      try {
        return readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
      } catch {
        return [];
      }
    }),
  );
}

/** This run's pidfiles: the dockerds' and those of the bridges and sshd at the top. */
function pidFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).flatMap((name) => (name.endsWith('.pid') ? [path.join(dir, name)] : /^\d+$/.test(name) ? [path.join(dir, name, 'docker.pid')] : []));
}

/**
 * Removes run `id`: SIGKILL, in bounded rounds, every process in its namespaces (dockerd, containerd,
 * shims, bridges, sshd), in its cgroups (the containers, which have namespaces of their own) and in its
 * pidfiles (bridges on the host), until none is left; then its cgroups, any mount under its directory,
 * its namespaces, its directory and the shim sockets it left in /run/containerd/s. Nothing is stopped
 * gracefully: the state is thrown away, and a swarm-mode dockerd alone takes about 6 s to stop.
 */
async function teardown(runner: Runner, id: string): Promise<void> {
  const dir = stateDir(id);
  const names = (await namespaces(runner)).filter((name) => name.startsWith(`${PREFIX}${id}-`));
  const sockets = await shimSockets(runner, names);
  let left: number[] = [];
  for (let round = 0; round < 40; round += 1) {
    const inNamespaces = (await Promise.all(names.map((name) => namespacePids(runner, name)))).flat();
    const fromPidFiles = pidFiles(dir).flatMap((file) => ownedPid(file, dir) ?? []);
    left = [...new Set([...inNamespaces, ...cgroupPids(runCgroups(id)), ...fromPidFiles])];
    if (left.length === 0) break;
    for (const pid of left) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Gone already.
      }
    }
    await sleep(250);
  }
  for (const top of runCgroups(id)) {
    for (const cgroup of cgroupTree(top)) {
      try {
        rmdirSync(cgroup);
      } catch {
        // Still has a process: reported below.
      }
    }
  }
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[4] ?? '')
    .filter((mountPoint) => mountPoint.startsWith(`${dir}/`))
    .sort()
    .reverse();
  for (const mountPoint of mounts) await runner.attempt({ argv: ['umount', '-l', mountPoint], timeoutMs: 10_000 });
  for (const name of names) await runner.attempt(ip(['netns', 'del', name]));
  rmSync(dir, { recursive: true, force: true });
  for (const socket of sockets) rmSync(socket, { force: true });
  if (left.length > 0) throw new ToolError(`swarm sandbox ${id}: processes ${left.join(' ')} survived 40 rounds of SIGKILL`);
}

/** Runs of this harness whose owning process is gone (a crashed test): their state is removed. */
async function removeStaleRuns(runner: Runner): Promise<void> {
  const idPattern = new RegExp(`^${PREFIX}([0-9a-f]{6})(?:-(?:\\d+|br))?$`);
  const ids = new Set(
    [...(await namespaces(runner)), ...readdirSync(os.tmpdir())].flatMap((name) => idPattern.exec(name)?.[1] ?? []),
  );
  for (const id of ids) {
    const owner = readPid(path.join(stateDir(id), 'owner.pid'));
    if (owner === undefined || !processAlive(owner)) await teardown(runner, id);
  }
}

async function createNetwork(runner: Runner, switchName: string, nodes: SwarmNode[]): Promise<void> {
  const commands = [
    ['netns', 'add', switchName],
    ['-n', switchName, 'link', 'set', 'lo', 'up'],
    ['-n', switchName, 'link', 'add', 'br0', 'type', 'bridge'],
    ['-n', switchName, 'link', 'set', 'br0', 'up'],
    ...nodes.flatMap((node) => [
      ['netns', 'add', node.name],
      ['-n', node.name, 'link', 'set', 'lo', 'up'],
      // Created inside the switch namespace with one end moved to the node: the root namespace never sees either end.
      ['-n', switchName, 'link', 'add', `p${node.index}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', node.name],
      ['-n', switchName, 'link', 'set', `p${node.index}`, 'master', 'br0', 'up'],
      ['-n', node.name, 'addr', 'add', `${node.address}/24`, 'dev', 'eth0'],
      ['-n', node.name, 'link', 'set', 'eth0', 'up'],
    ]),
  ];
  // No default route in any node: pulls from outside fail at once with "network is unreachable".
  for (const args of commands) await runner.run(ip(args));
}

function logTails(dir: string, nodes: SwarmNode[]): string {
  return nodes
    .map((node) => {
      const file = path.join(nodeDir(dir, node), 'dockerd.log');
      const tail = existsSync(file) ? readFileSync(file, 'utf8').trim().split('\n').slice(-8).join('\n') : '(no log)';
      return `--- ${node.name} dockerd.log (last lines)\n${tail}`;
    })
    .join('\n');
}

export async function startSwarmCluster(runner: Runner, options: SwarmClusterOptions = {}): Promise<SwarmCluster> {
  if (process.getuid?.() !== 0) throw new ToolError('the swarm sandbox needs root (network namespaces, dockerd); run as root');
  if ((await runner.attempt({ argv: ['dockerd', '--version'], readOnly: true, timeoutMs: 10_000 })).exitCode !== 0) {
    throw new ToolError('the swarm sandbox needs dockerd on PATH; run `sudo bash .ci/provision`');
  }
  await removeStaleRuns(runner);
  const id = randomBytes(3).toString('hex');
  const dir = stateDir(id);
  const longest = path.join(dir, String(NODE_COUNT), 'exec', 'containerd', 'containerd.sock.ttrpc');
  if (longest.length > 107) throw new ToolError(`TMPDIR=${os.tmpdir()} is too long for unix sockets under it (${longest}); set TMPDIR=/tmp`);
  // Traversable by the deploy user (the manager's socket is reached over SSH), not listable.
  mkdirSync(dir, { mode: 0o711 });
  writeFileSync(path.join(dir, 'owner.pid'), String(process.pid));

  const nodes: SwarmNode[] = Array.from({ length: NODE_COUNT }, (_, i) => ({
    index: i + 1,
    name: `${PREFIX}${id}-${i + 1}`,
    address: `${SUBNET}.${i + 1}`,
    socket: path.join(dir, String(i + 1), 'docker.sock'),
  }));
  const manager = nodes[0]!;
  const docker = (node: SwarmNode, args: string[], timeoutMs = 60_000): Command => ({ argv: ['docker', '-H', `unix://${node.socket}`, ...args], timeoutMs });

  const startHelper = async (name: string, namespace: string | undefined, args: string[]): Promise<void> => {
    const logFile = path.join(dir, `${name}.log`);
    const argv = [...(namespace ? ['ip', 'netns', 'exec', namespace] : []), process.execPath, '-e', BRIDGE, ...args];
    // Bridges on the host side are in no namespace of the run: their pidfiles are how teardown finds them.
    writeFileSync(path.join(dir, `${name}.pid`), String(startDetached(argv, logFile)));
    await waitFor(`bridge ${name}`, async () => existsSync(logFile) && readFileSync(logFile, 'utf8').includes('listening'), 10_000, logFile);
  };

  const startNode = async (node: SwarmNode): Promise<void> => {
    const pid = startDockerd(dir, node);
    const logFile = path.join(nodeDir(dir, node), 'dockerd.log');
    await waitFor(
      `dockerd of ${node.name}`,
      async () => {
        if (!processAlive(pid)) throw new ToolError(`dockerd of ${node.name} exited; see ${logFile}`);
        return (await runner.attempt(docker(node, ['info', '--format', '{{.ServerVersion}}'], 10_000))).exitCode === 0;
      },
      60_000,
      logFile,
    );
  };

  const nodesReady = async (): Promise<boolean> => {
    const result = await runner.attempt(docker(manager, ['node', 'ls', '--format', '{{.Status}}']));
    return result.stdout.split('\n').filter((status) => status === 'Ready').length === nodes.length;
  };

  const cluster: SwarmCluster = {
    id,
    dir,
    nodes,
    manager,
    docker,
    async forward(port, targets = nodes) {
      const name = `forward-${port}-${targets.map((node) => node.index).join('')}`;
      const socket = path.join(dir, `${name}.sock`);
      const localPort = await freePort();
      // Connections start from inside the manager's namespace, which reaches every node through the switch.
      await startHelper(`${name}-in`, manager.name, ['unix-to-tcp', socket, targets.map((node) => node.address).join(','), String(port)]);
      await startHelper(`${name}-host`, undefined, ['tcp-to-unix', String(localPort), socket]);
      return localPort;
    },
    async linkRegistry(port) {
      const socket = path.join(dir, `registry-${port}.sock`);
      await startHelper(`registry-${port}-host`, undefined, ['unix-to-tcp', socket, '127.0.0.1', String(port)]);
      for (const node of nodes) await startHelper(`registry-${port}-${node.index}`, node.name, ['tcp-to-unix', String(port), socket]);
    },
    killNode(node) {
      const pid = ownedPid(path.join(nodeDir(dir, node), 'docker.pid'), dir);
      if (pid === undefined) throw new ToolError(`dockerd of ${node.name} is not running`);
      process.kill(pid, 'SIGKILL');
    },
    startNode,
    stop: () => teardown(runner, id),
  };

  try {
    await createNetwork(runner, `${PREFIX}${id}-br`, nodes);
    for (const node of nodes) {
      mkdirSync(nodeDir(dir, node), { mode: 0o711 });
      writeFileSync(path.join(nodeDir(dir, node), 'daemon.json'), '{}\n');
    }
    await Promise.all(nodes.map(startNode));
    if (options.swarm !== false) {
      const heartbeat = options.dispatcherHeartbeat ? ['--dispatcher-heartbeat', options.dispatcherHeartbeat] : [];
      await runner.run(docker(manager, ['swarm', 'init', '--advertise-addr', manager.address, '--listen-addr', `${manager.address}:2377`, '--default-addr-pool', ADDRESS_POOL, ...heartbeat]));
      const token = new Secret((await runner.run(docker(manager, ['swarm', 'join-token', '--quiet', 'worker']))).stdout.trim());
      // The 20.10 CLI takes the join token only as an argument (no stdin, no file), so it is on the
      // worker's `docker swarm join` command line while that runs; the Runner prints it redacted.
      await Promise.all(
        nodes.slice(1).map((node) =>
          runner.run(docker(node, ['swarm', 'join', '--token', token.reveal(), '--advertise-addr', node.address, '--listen-addr', `${node.address}:2377`, `${manager.address}:2377`])),
        ),
      );
      await waitFor('all swarm nodes Ready', nodesReady, 30_000, path.join(nodeDir(dir, manager), 'dockerd.log'));
    }
    if (options.ssh) {
      const user = options.ssh.user ?? 'aidd-deploy';
      mkdirSync(options.ssh.dir, { recursive: true, mode: 0o755 });
      const login = await prepareDeployLogin(runner, options.ssh.dir, user);
      const sshNodes = options.ssh.everyNode ? nodes : [manager];
      await Promise.all(sshNodes.map(async (node) => (node.ssh = await startNodeSsh(runner, cluster, node, user, login))));
      cluster.ssh = manager.ssh;
    }
  } catch (error) {
    const tails = logTails(dir, nodes);
    const cleanup = await teardown(runner, id).then(
      () => '',
      (teardownError: Error) => `\n${teardownError.message}`,
    );
    throw new ToolError(`swarm sandbox did not start: ${(error as Error).message}${cleanup}\n${tails}`);
  }
  return cluster;
}

/** sshd in the node's namespace on its address, port 22, reached through a forward on 127.0.0.1. */
async function startNodeSsh(runner: Runner, cluster: SwarmCluster, node: SwarmNode, user: string, login: DeployLogin): Promise<SshServer> {
  const { hostKey, keyFile, home } = login;
  const config = path.join(cluster.dir, `sshd-${node.index}_config`);
  const pidFile = path.join(cluster.dir, `sshd-${node.index}.pid`);
  const logFile = path.join(cluster.dir, `sshd-${node.index}.log`);
  // The deploy user's docker CLI talks to this node's engine; its socket is group docker, mode 0660.
  const extraConfig = [`SetEnv DOCKER_HOST=unix://${node.socket}`];
  writeFileSync(config, sshdConfigText({ allowUsers: user, hostKey, extraConfig, port: 22, listenAddress: node.address, pidFile }));
  mkdirSync('/run/sshd', { recursive: true });
  await runner.run({ argv: ['ip', 'netns', 'exec', node.name, '/usr/sbin/sshd', '-f', config, '-E', logFile], timeoutMs: 30_000 });
  // sshd writes its pidfile once it listens.
  await waitFor(`sshd in ${node.name}`, async () => existsSync(pidFile), 20_000, logFile);
  const port = await cluster.forward(22, [node]);
  const knownHostsFile = path.join(cluster.dir, `known_hosts-${node.index}`);
  writeKnownHosts(knownHostsFile, port, hostKey);
  const stop = () => {
    const pid = ownedPid(pidFile, cluster.dir);
    if (pid !== undefined) process.kill(pid, 'SIGTERM');
  };
  return { host: '127.0.0.1', port, user, keyFile, knownHostsFile, home, logFile, stop };
}
