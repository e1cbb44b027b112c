// `aidd cluster init|join|status` against three fresh engines in network namespaces (the swarm sandbox
// started without a swarm), each with an sshd of its own reached on 127.0.0.1 with strict host keys.
// The swarm is formed only by the tool; the join token must never show in any output, nor on any
// process's command line on this machine while the workers join.
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Result } from '../../lib/core/exec.ts';
import { startSwarmCluster, type SwarmCluster, type SwarmNode } from '../../lib/sandbox/swarm-cluster.ts';
import { SANDBOX_DIR, tempDir, testRunner } from './harness.ts';

const runner = testRunner();
const AIDD = path.resolve(import.meta.dirname, '../../bin/aidd.js');
const work = tempDir('aidd-cluster-e2e');
const knownHosts = path.join(work, 'known_hosts');

let cluster: SwarmCluster;
/** Everything `aidd cluster` printed in this file, for the check that the token never shows. */
const outputs: string[] = [];

/** `aidd cluster ARGS`, stdin closed, as in CI. */
async function aidd(args: string[]): Promise<Result> {
  const result = await runner.attempt({ argv: [process.execPath, AIDD, 'cluster', ...args], env: { CI: 'true' }, timeoutMs: 180_000 });
  outputs.push(result.stdout, result.stderr);
  return result;
}

/** --host/--port/--user/--key/--known-hosts of `node`'s sshd. */
function server(node: SwarmNode, prefix = ''): string[] {
  const ssh = node.ssh!;
  return [`--${prefix}host`, ssh.host, `--${prefix}port`, String(ssh.port), ...(prefix ? [] : ['--user', ssh.user, '--key', ssh.keyFile, '--known-hosts', knownHosts])];
}

async function inspect(node: SwarmNode, target: string, format: string): Promise<string> {
  return (await runner.run(cluster.docker(node, ['node', 'inspect', target, '--format', format]))).stdout.trim();
}

async function localNodeId(node: SwarmNode): Promise<string> {
  return (await runner.run(cluster.docker(node, ['info', '--format', '{{.Swarm.NodeID}}']))).stdout.trim();
}

/** Command lines of every process on this machine, sampled every few ms while `work` runs. */
async function watchCommandLines<T>(work: Promise<T>): Promise<{ value: T; samples: number; lines: Set<string> }> {
  const lines = new Set<string>();
  let samples = 0;
  let done = false;
  const finished = work.finally(() => (done = true));
  while (!done) {
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        lines.add(readFileSync(`/proc/${entry}/cmdline`, 'utf8').replace(/\0/g, ' '));
      } catch {
        // Gone meanwhile.
      }
    }
    samples += 1;
    await sleep(2);
  }
  return { value: await finished, samples, lines };
}

function expectOneLineError(result: Result, exitCode: number, pattern: RegExp): void {
  expect(result.exitCode, result.stderr).toBe(exitCode);
  expect(result.stdout).toBe('');
  // Progress lines (==> ...) come first; the error is one line, the last.
  const errors = result.stderr.trim().split('\n').filter((line) => !line.startsWith('==> '));
  expect(errors).toHaveLength(1);
  expect(errors[0]).toMatch(/^cluster: error: /);
  expect(errors[0]).toMatch(pattern);
}

describe('aidd cluster: init, join and status over SSH on three fresh engines', () => {
  beforeAll(async () => {
    cluster = await startSwarmCluster(runner, { swarm: false, ssh: { dir: path.join(SANDBOX_DIR, 'swarm-ssh'), everyNode: true } });
    // The operator's known_hosts: every server's key, verified out of band (here: written by the sandbox).
    writeFileSync(knownHosts, cluster.nodes.map((node) => readFileSync(node.ssh!.knownHostsFile, 'utf8')).join(''));
  });

  afterAll(async () => {
    await cluster?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  it('starts three engines in no swarm, each behind its own sshd', async () => {
    for (const node of cluster.nodes) {
      expect((await runner.run(cluster.docker(node, ['info', '--format', '{{.Swarm.LocalNodeState}}']))).stdout.trim()).toBe('inactive');
    }
    expect(new Set(cluster.nodes.map((node) => node.ssh!.port)).size).toBe(3);
  });

  it('init forms the swarm on the manager with its label; run again it changes nothing', async () => {
    const [manager] = cluster.nodes as [SwarmNode];
    const first = await aidd(['init', ...server(manager), '--advertise-addr', manager.address, '--label', 'role=db']);
    expect(first.exitCode, first.stderr).toBe(0);
    expect(first.stdout).toBe('127.0.0.1: swarm created; this server is its manager; labels: role=db set\n');
    expect(await inspect(manager, 'self', '{{.ManagerStatus.Addr}} {{.ManagerStatus.Leader}} {{index .Spec.Labels "role"}}')).toBe(`${manager.address}:2377 true db`);
    const version = await inspect(manager, 'self', '{{.Version.Index}}');

    const again = await aidd(['init', ...server(manager), '--advertise-addr', manager.address, '--label', 'role=db']);
    expect(again.exitCode, again.stderr).toBe(0);
    expect(again.stdout).toBe('127.0.0.1: already the manager of a swarm: no change; labels: role=db already set\n');
    // No update of the node at all: its version in the raft store is the same.
    expect(await inspect(manager, 'self', '{{.Version.Index}}')).toBe(version);
  });

  it('join adds both workers (one labelled) without the token on any command line; run again it changes nothing', async () => {
    const [manager, second, third] = cluster.nodes as [SwarmNode, SwarmNode, SwarmNode];
    const token = (await runner.run(cluster.docker(manager, ['swarm', 'join-token', '--quiet', 'worker']))).stdout.trim();
    expect(token).toMatch(/^SWMTKN-/);

    const joins = Promise.all([
      aidd(['join', ...server(second), ...server(manager, 'manager-'), '--label', 'zone=b']),
      aidd(['join', ...server(third), ...server(manager, 'manager-')]),
    ]);
    const { value: results, samples, lines } = await watchCommandLines(joins);
    for (const result of results) expect(result.exitCode, result.stderr).toBe(0);
    expect(results[0]!.stdout).toMatch(/^127\.0\.0\.1: joined the swarm of 127\.0\.0\.1 as a worker \(node \w+\); labels: zone=b set\n$/);
    expect(results[1]!.stdout).toMatch(/^127\.0\.0\.1: joined the swarm of 127\.0\.0\.1 as a worker \(node \w+\)\n$/);
    // The watcher saw the joins happen (curl posting to the engine's socket) and never the token.
    expect(samples).toBeGreaterThan(20);
    expect([...lines].filter((line) => line.includes('/swarm/join')).length).toBeGreaterThan(0);
    expect([...lines].filter((line) => line.includes(token))).toEqual([]);

    const secondId = await localNodeId(second);
    expect(await inspect(manager, secondId, '{{.Spec.Role}} {{index .Spec.Labels "zone"}}')).toBe('worker b');
    const version = await inspect(manager, secondId, '{{.Version.Index}}');
    const again = await aidd(['join', ...server(second), ...server(manager, 'manager-'), '--label', 'zone=b']);
    expect(again.exitCode, again.stderr).toBe(0);
    expect(again.stdout).toBe(`127.0.0.1: already in the swarm of 127.0.0.1: no change (node ${secondId}); labels: zone=b already set\n`);
    expect(await inspect(manager, secondId, '{{.Version.Index}}')).toBe(version);
    const thirdAgain = await aidd(['join', ...server(third), ...server(manager, 'manager-')]);
    expect(thirdAgain.exitCode, thirdAgain.stderr).toBe(0);
    expect(thirdAgain.stdout).toContain('no change');

    expect(outputs.join('\n')).not.toContain(token);
  });

  it('status --json shows three Ready nodes with their roles, addresses and labels', async () => {
    const result = await aidd(['status', ...server(cluster.nodes[0]!), '--json']);
    expect(result.exitCode, result.stderr).toBe(0);
    const report = JSON.parse(result.stdout) as { ok: boolean; nodes: { hostname: string; role: string; availability: string; state: string; address: string; engineVersion: string; labels: Record<string, string> }[] };
    expect(report.ok).toBe(true);
    expect(report.nodes.map(({ hostname, role, availability, state, address, labels }) => ({ hostname, role, availability, state, address, labels }))).toEqual([
      { hostname: cluster.nodes[0]!.name, role: 'leader', availability: 'active', state: 'ready', address: cluster.nodes[0]!.address, labels: { role: 'db' } },
      { hostname: cluster.nodes[1]!.name, role: 'worker', availability: 'active', state: 'ready', address: cluster.nodes[1]!.address, labels: { zone: 'b' } },
      { hostname: cluster.nodes[2]!.name, role: 'worker', availability: 'active', state: 'ready', address: cluster.nodes[2]!.address, labels: {} },
    ]);
    for (const node of report.nodes) expect(node.engineVersion).toMatch(/^20\.10\./);
    const table = await aidd(['status', ...server(cluster.nodes[0]!)]);
    expect(table.exitCode, table.stderr).toBe(0);
    expect(table.stdout.split('\n')[0]).toMatch(/^HOSTNAME +ROLE +AVAILABILITY +STATE +ADDRESS +ENGINE +LABELS$/);
  });

  it('refuses init on a worker, a manager host key not in known_hosts, and join of a node of another swarm, in one line with exit 3', async () => {
    const [manager, second, third] = cluster.nodes as [SwarmNode, SwarmNode, SwarmNode];
    expectOneLineError(await aidd(['init', ...server(second)]), 3, /^cluster: error: 127\.0\.0\.1: the engine is a worker of a swarm; leave it first/);

    // The manager's host key is checked as strictly as the worker's: a known_hosts without it stops join.
    const workerKeyOnly = path.join(work, 'known_hosts-worker-only');
    writeFileSync(workerKeyOnly, readFileSync(third.ssh!.knownHostsFile, 'utf8'));
    const args = [...server(third), ...server(manager, 'manager-')];
    args[args.indexOf('--known-hosts') + 1] = workerKeyOnly;
    expectOneLineError(await aidd(['join', ...args]), 3, new RegExp(`host key of 127\\.0\\.0\\.1:${manager.ssh!.port} is not in ${workerKeyOnly}`));

    // The third node leaves and forms a swarm of its own; with a 1 s heartbeat the manager sees it Down sooner.
    await runner.run(cluster.docker(manager, ['swarm', 'update', '--dispatcher-heartbeat', '1s']));
    await runner.run(cluster.docker(third, ['swarm', 'leave', '--force']));
    await runner.run(cluster.docker(third, ['swarm', 'init', '--advertise-addr', third.address]));
    const otherId = await localNodeId(third);
    expectOneLineError(await aidd(['join', ...server(third), ...server(manager, 'manager-')]), 3, new RegExp(`already in another swarm \\(node ${otherId}\\)`));
    expect(await localNodeId(third)).toBe(otherId);
  });

  it('status exits 1 naming the node that is no longer Ready', async () => {
    const third = cluster.nodes[2]!;
    let result: Result | undefined;
    // The manager marks the node that left Down after its heartbeat lapses; bounded wait.
    for (let attempt = 0; attempt < 30; attempt += 1) {
      result = await aidd(['status', ...server(cluster.nodes[0]!), '--json']);
      if (result.exitCode !== 0) break;
      await sleep(1_000);
    }
    expect(result!.exitCode).toBe(1);
    expect(JSON.parse(result!.stdout).ok).toBe(false);
    expect(result!.stderr.trim()).toBe(`cluster: error: not Ready: ${third.name} (down)`);
  });

  it('stop() removes the sandbox', async () => {
    await cluster.stop();
    expect((await runner.run({ argv: ['ip', 'netns', 'list'], readOnly: true })).stdout).not.toContain(`aidd-sw${cluster.id}`);
    const sshd = readdirSync('/proc').filter((entry) => {
      try {
        return /^\d+$/.test(entry) && readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(cluster.dir);
      } catch {
        return false;
      }
    });
    expect(sshd).toEqual([]);
  });
});
