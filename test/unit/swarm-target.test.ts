// The pure parts of a deploy to a swarm: reading `aidd status` from the manager's stack listings, the
// checks made before anything connects, and the preflight on a manager, run under bash with a stub docker.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { loadComposeApp } from '../../lib/app/compose.ts';
import { EXIT, UsageError } from '../../lib/core/cli.ts';
import { preflightScript, REMOTE_EXIT, type RemoteLayout } from '../../lib/deploy/remote-scripts.ts';
import { checkSwarmRun } from '../../lib/deploy/swarm/inputs.ts';
import { parseStackStatus } from '../../lib/deploy/swarm/access.ts';
import { clearStubShell, stubCalls, stubShell } from './stub-shell.ts';
import { thrown } from './thrown.ts';

const WEB_DIGEST = `sha256:${'a1'.repeat(32)}`;
const WORKER_DIGEST = `sha256:${'b2'.repeat(32)}`;
const WEB_IMAGE = `127.0.0.1:5000/o/hello-web@${WEB_DIGEST}`;
const WORKER_IMAGE = `127.0.0.1:5000/o/hello-worker@${WORKER_DIGEST}`;

describe('parseStackStatus', () => {
  it("reads each service's replicas, image and the nodes of its running tasks, and every task's state", () => {
    // As `docker stack services` and `docker stack ps --filter desired-state=running` print them with the stack status script's formats.
    const stdout = [
      `service|shop_web|2/2|${WEB_IMAGE}`,
      `service|shop_worker|1/1|${WORKER_IMAGE}`,
      'task|shop_web.1|aidd-sw1-2|Running 5 minutes ago',
      'task|shop_web.2|aidd-sw1-3|Starting 2 seconds ago',
      'task|shop_worker.1|aidd-sw1-1|Running About an hour ago',
      '',
    ].join('\n');
    expect(parseStackStatus(stdout, 'shop')).toEqual({
      services: [
        // shop_web.2 is still starting on aidd-sw1-3: only the node of its running task counts.
        { service: 'web', running: 2, desired: 2, image: WEB_IMAGE, nodes: ['aidd-sw1-2'] },
        { service: 'worker', running: 1, desired: 1, image: WORKER_IMAGE, nodes: ['aidd-sw1-1'] },
      ],
      tasks: [
        { id: 'shop_web.1', service: 'web', state: 'running', health: 'none' },
        { id: 'shop_web.2', service: 'web', state: 'starting', health: 'none' },
        { id: 'shop_worker.1', service: 'worker', state: 'running', health: 'none' },
      ],
    });
  });

  it('names a node once however many running tasks it has, in the order the tasks come', () => {
    const stdout = [
      `service|shop_web|4/4|${WEB_IMAGE}`,
      'task|shop_web.1|aidd-sw1-3|Running 5 minutes ago',
      'task|shop_web.2|aidd-sw1-2|Running 5 minutes ago',
      'task|shop_web.3|aidd-sw1-3|Running 4 minutes ago',
      'task|shop_web.4|aidd-sw1-2|Running 4 minutes ago',
    ].join('\n');
    const { services, tasks } = parseStackStatus(stdout, 'shop');
    expect(services).toEqual([{ service: 'web', running: 4, desired: 4, image: WEB_IMAGE, nodes: ['aidd-sw1-3', 'aidd-sw1-2'] }]);
    expect(tasks.map((task) => task.id)).toEqual(['shop_web.1', 'shop_web.2', 'shop_web.3', 'shop_web.4']);
  });

  it('counts no node for a task that is not running yet, and lower-cases its state', () => {
    const stdout = [
      `service|shop_web|0/2|${WEB_IMAGE}`,
      'task|shop_web.1|aidd-sw1-2|Preparing 3 seconds ago',
      'task|shop_web.2|aidd-sw1-3|Starting 1 second ago',
    ].join('\n');
    const { services, tasks } = parseStackStatus(stdout, 'shop');
    expect(services[0]!.nodes).toEqual([]);
    expect(tasks.map((task) => task.state)).toEqual(['preparing', 'starting']);
  });

  it('reads the replicas of a global service and of one limited per node (docker 20.10 adds "(max N per node)")', () => {
    const stdout = [
      'service|shop_agent|3/3|busybox:1.36',
      `service|shop_web|1/1 (max 1 per node)|${WEB_IMAGE}`,
      // A global service's task is named by its node's id, not a slot number.
      'task|shop_agent.x7k2n9q1v0m4|aidd-sw1-1|Running 2 hours ago',
      'task|shop_agent.p3d8w5r6t2c9|aidd-sw1-2|Running 2 hours ago',
      'task|shop_agent.h4j1f7s0e8b5|aidd-sw1-3|Running 2 hours ago',
      'task|shop_web.1|aidd-sw1-2|Running 10 minutes ago',
    ].join('\n');
    const { services, tasks } = parseStackStatus(stdout, 'shop');
    expect(services[0]).toEqual({ service: 'agent', running: 3, desired: 3, image: 'busybox:1.36', nodes: ['aidd-sw1-1', 'aidd-sw1-2', 'aidd-sw1-3'] });
    expect(services[1]).toEqual({ service: 'web', running: 1, desired: 1, image: WEB_IMAGE, nodes: ['aidd-sw1-2'] });
    expect(tasks.map((task) => task.service)).toEqual(['agent', 'agent', 'agent', 'web']);
  });

  it('reads a task no node took yet (its node is empty) as pending, on no node', () => {
    const { services, tasks } = parseStackStatus([`service|shop_web|1/2|${WEB_IMAGE}`, 'task|shop_web.1|aidd-sw1-2|Running 1 minute ago', 'task|shop_web.2||Pending 3 minutes ago'].join('\n'), 'shop');
    expect(tasks.map((task) => task.state)).toEqual(['running', 'pending']);
    expect(services[0]!.nodes).toEqual(['aidd-sw1-2']);
  });

  it("strips only the project's own prefix, once, from services and tasks", () => {
    const stdout = [
      `service|shop_web|1/1|${WEB_IMAGE}`,
      `service|shopping_web|1/1|${WEB_IMAGE}`,
      `service|shop_shop_api|1/1|${WEB_IMAGE}`,
      `service|web|1/1|${WEB_IMAGE}`,
      'task|shop_web.1|aidd-sw1-1|Running 1 minute ago',
      'task|shopping_web.1|aidd-sw1-2|Running 1 minute ago',
      'task|shop_shop_api.1|aidd-sw1-3|Running 1 minute ago',
    ].join('\n');
    const { services, tasks } = parseStackStatus(stdout, 'shop');
    expect(services.map((service) => service.service)).toEqual(['web', 'shopping_web', 'shop_api', 'web']);
    expect(tasks.map((task) => task.service)).toEqual(['web', 'shopping_web', 'shop_api']);
    // Each task's node goes to the service it belongs to, also when a name merely starts like the project.
    expect(services.map((service) => service.nodes)).toEqual([['aidd-sw1-1'], ['aidd-sw1-2'], ['aidd-sw1-3'], []]);
    // A project name with an underscore of its own.
    expect(parseStackStatus(`service|my_shop_web|1/1|${WEB_IMAGE}\ntask|my_shop_web.1|n1|Running now`, 'my_shop').tasks[0]!.service).toBe('web');
  });

  it('reads a stack with no tasks, and skips blank lines and surrounding spaces', () => {
    const stdout = `\n  service|shop_web|0/2|${WEB_IMAGE}  \n\n   \nservice|shop_worker|0/1|${WORKER_IMAGE}\n\n`;
    expect(parseStackStatus(stdout, 'shop')).toEqual({
      services: [
        { service: 'web', running: 0, desired: 2, image: WEB_IMAGE, nodes: [] },
        { service: 'worker', running: 0, desired: 1, image: WORKER_IMAGE, nodes: [] },
      ],
      tasks: [],
    });
    expect(parseStackStatus('', 'shop')).toEqual({ services: [], tasks: [] });
    expect(parseStackStatus('\n \n\t\n', 'shop')).toEqual({ services: [], tasks: [] });
  });
});

describe('checkSwarmRun', () => {
  const made: string[] = [];
  afterAll(() => {
    for (const dir of made) rmSync(dir, { recursive: true, force: true });
  });

  /** An app in a directory of its own: its compose file, and aidd.yml when given. */
  async function app(compose: string, aiddYml?: string) {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'aidd-swarm-engine-'));
    made.push(dir);
    writeFileSync(path.join(dir, 'docker-compose.yml'), compose);
    if (aiddYml !== undefined) writeFileSync(path.join(dir, 'aidd.yml'), aiddYml);
    return loadComposeApp(path.join(dir, 'docker-compose.yml'), { vars: {} });
  }

  /** Hello Compose's shape as a stack runs it: a web service with a published port, a worker, a database with a volume. */
  const plain = `services:
  web:
    image: 127.0.0.1:5000/o/hello-web:dev
    ports: ['\${WEB_PORT:-8480}:8080']
    healthcheck: {test: [CMD, wget, -q, http://127.0.0.1:8080/health.json], interval: 2s, retries: 3}
  worker:
    image: 127.0.0.1:5000/o/hello-worker:dev
  db:
    image: postgres:16
    volumes: [dbdata:/var/lib/postgresql/data]
volumes:
  dbdata: {}
`;

  function usageError(run: () => unknown): UsageError {
    const error = thrown(run);
    expect(error).toBeInstanceOf(UsageError);
    expect(error.exitCode).toBe(EXIT.usage);
    return error;
  }

  it('accepts a plain app in every mode a swarm runs, with and without an .env', async () => {
    const hello = await app(plain, 'target: swarm\nswarm:\n  replicas: {web: 2}\n');
    for (const mode of ['deploy', 'rollback', 'status', 'history', 'break-lock', 'logs', 'exec']) {
      expect(() => checkSwarmRun(hello, mode, undefined), mode).not.toThrow();
      expect(() => checkSwarmRun(hello, mode, 'WEB_PORT=8481\n'), mode).not.toThrow();
    }
  });

  it('refuses what a swarm does not run yet in one line naming the flag, before looking at the app', async () => {
    // The app would be refused too (container_name): the mode is what the message names.
    const refused = await app('services:\n  web: {image: 127.0.0.1:5000/o/hello-web:dev, container_name: web}\n', 'migrate: {service: web, command: [migrate]}\n');
    const messages: [string, string][] = [
      ['diff', '--diff is not available on a swarm target yet (aidd.yml target: swarm, or --target swarm)'],
      ['restore-backup', '--restore-backup is not available on a swarm target yet (aidd.yml target: swarm, or --target swarm)'],
    ];
    for (const [mode, message] of messages) {
      const error = usageError(() => checkSwarmRun(refused, mode, undefined));
      expect(error.message, mode).toBe(message);
      expect(error.message).not.toContain('\n');
    }
  });

  it('accepts an app whose aidd.yml migrates and backs up', async () => {
    const migrating = await app(plain, 'migrate: {service: web, command: [migrate]}\nbackup: {service: web, command: dump}\n');
    expect(() => checkSwarmRun(migrating, 'deploy', 'WEB_PORT=8481\n')).not.toThrow();
  });

  it('refuses HTTPS sites of the reverse proxy, which a swarm target does not run', async () => {
    const sites = await app(plain, 'proxy:\n  sites:\n    - {domain: shop.example.com, service: web, port: 8080}\n');
    expect(usageError(() => checkSwarmRun(sites, 'deploy', undefined)).message).toBe(
      `${sites.dir}/aidd.yml proxy.sites: a swarm target does not run the reverse proxy, so it cannot serve shop.example.com over HTTPS; remove proxy.sites, or deploy with target: compose`,
    );
  });

  it('refuses a container_name', async () => {
    const named = await app('services:\n  web: {image: 127.0.0.1:5000/o/hello-web:dev, container_name: hello-web}\n');
    expect(usageError(() => checkSwarmRun(named, 'deploy', undefined)).message).toBe('services.web.container_name: a swarm names the tasks of a service itself; remove container_name');
  });

  it('refuses a port bound to one address, with the values of the .env to upload, and leaves ports to the server without one', async () => {
    const loopback = await app("services:\n  web:\n    image: 127.0.0.1:5000/o/hello-web:dev\n    ports: ['127.0.0.1:8480:8080']\n");
    expect(usageError(() => checkSwarmRun(loopback, 'deploy', undefined)).message).toMatch(/so 127\.0\.0\.1 cannot be kept/);
    expect(usageError(() => checkSwarmRun(loopback, 'deploy', '')).message).toBe(
      'services.web.ports[0]: a swarm publishes a port on every address of its nodes, so 127.0.0.1 cannot be kept; publish it without an address (the firewall or the proxy decides who reaches it)',
    );
    // The address comes from a variable: the .env's value. Without an .env to upload the server's decides, under the lock.
    const variable = await app("services:\n  web:\n    image: 127.0.0.1:5000/o/hello-web:dev\n    ports: ['${BIND_ADDRESS:-127.0.0.1}:8480:8080']\n");
    expect(usageError(() => checkSwarmRun(variable, 'deploy', '')).message).toMatch(/^services\.web\.ports\[0\]: .* so 127\.0\.0\.1 cannot be kept;/);
    expect(() => checkSwarmRun(variable, 'deploy', undefined)).not.toThrow();
    expect(usageError(() => checkSwarmRun(variable, 'deploy', 'BIND_ADDRESS=10.0.0.5\n')).message).toMatch(/so 10\.0\.0\.5 cannot be kept;/);
    expect(() => checkSwarmRun(variable, 'deploy', 'BIND_ADDRESS=0.0.0.0\n')).not.toThrow();
  });

  it('refuses replicas of a service that keeps data in a named volume, from aidd.yml or from the compose file', async () => {
    const message = 'services.db: it keeps data in a named volume, so it runs one task at a time; drop its replicas setting';
    const fromSettings = await app(plain, 'target: swarm\nswarm:\n  replicas: {db: 2}\n');
    expect(usageError(() => checkSwarmRun(fromSettings, 'deploy', undefined)).message).toBe(message);
    const fromCompose = await app(plain.replace('    volumes: [dbdata', '    deploy: {replicas: 3}\n    volumes: [dbdata'));
    expect(fromCompose.raw.services.db!.deploy).toEqual({ replicas: 3 });
    expect(usageError(() => checkSwarmRun(fromCompose, 'rollback', undefined)).message).toBe(message);
  });
});

describe('preflightScript on a swarm target', () => {
  const shell = stubShell('aidd-swarm-preflight');
  /** Only the tools the preflight uses besides docker: no docker-compose, which this machine has in /usr/bin. */
  const tools = path.join(shell.scratch, 'tools');
  mkdirSync(tools);
  for (const tool of ['awk', 'basename', 'cat', 'cut', 'df', 'dirname', 'grep', 'id', 'readlink', 'sha256sum', 'tail', 'tr']) {
    const found = ['/usr/bin', '/bin'].map((dir) => path.join(dir, tool)).find((file) => existsSync(file));
    if (!found) throw new Error(`${tool} is not installed`);
    symlinkSync(found, path.join(tools, tool));
  }
  // A Docker 20.10 engine without the compose plugin; its swarm state from STUB_SWARM, no proxy container.
  writeFileSync(
    path.join(shell.bin, 'docker'),
    `#!/bin/bash
PATH=/usr/bin:/bin
printf '%s\\0' "$@" > "$(mktemp "$AIDD_STUB_CALLS/call.XXXXXXXX")"
case "$*" in
  "version --format "*) echo 20.10.24 ;;
  "info --format {{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}} {{.Swarm.Nodes}}") echo "$STUB_SWARM" ;;
  "inspect "*) echo "Error: No such object: aidd-proxy" >&2; exit 1 ;;
  *) echo "docker: '$1' is not a docker command." >&2; exit 1 ;;
esac
`,
    { mode: 0o755 },
  );
  const deployPath = path.join(shell.scratch, 'srv', 'shop');

  function preflight(layout: RemoteLayout, swarm: string) {
    const script = preflightScript(layout);
    const result = spawnSync('/bin/bash', ['-s'], { input: script, cwd: shell.scratch, env: { ...shell.env, PATH: `${shell.bin}:${tools}`, STUB_SWARM: swarm }, encoding: 'utf8', timeout: 20_000 });
    return { script, status: result.status, stdout: result.stdout, stderr: result.stderr, calls: stubCalls(shell) };
  }

  beforeEach(() => clearStubShell(shell));
  afterAll(() => rmSync(shell.scratch, { recursive: true, force: true }));

  it("reports a manager's swarm and its size without asking for compose", () => {
    const run = preflight({ deployPath, project: 'shop', target: 'swarm' }, 'active true 3');
    expect(run.status, run.stderr).toBe(0);
    expect(run.stderr).toBe('');
    const lines = run.stdout.trim().split('\n');
    expect(lines[0]).toBe('docker=20.10.24');
    expect(lines[1]).toBe('compose=docker stack, a swarm of 3 nodes');
    expect(lines[2]).toMatch(/^disk_free_kb=\d+$/);
    expect(lines.slice(3)).toEqual(['proxy=absent']);
    expect(run.calls.some((argv) => argv[0] === 'compose')).toBe(false);
    expect(run.calls.map((argv) => argv[0]).sort()).toEqual(['info', 'inspect', 'version']);
  });

  it('refuses a swarm worker with the exit code of a target that is no manager', () => {
    const run = preflight({ deployPath, project: 'shop', target: 'swarm' }, 'active false 3');
    expect(run.status).toBe(REMOTE_EXIT.notSwarmManager);
    expect(REMOTE_EXIT.notSwarmManager).toBe(54);
    expect(run.stderr).toBe('the Docker engine on the server is a swarm worker; deploy to a manager of the swarm (docker node ls there)\n');
    expect(run.stdout).toBe('docker=20.10.24\n');
  });

  it('refuses an engine in no swarm, naming aidd cluster init', () => {
    const run = preflight({ deployPath, project: 'shop', target: 'swarm' }, 'inactive false 0');
    expect(run.status).toBe(REMOTE_EXIT.notSwarmManager);
    expect(run.stderr).toBe('the Docker engine on the server is in no swarm (inactive); make it a manager with aidd cluster init, or deploy with target: compose\n');
    expect(run.stdout).toBe('docker=20.10.24\n');
  });

  it('still looks for compose on a compose target, and refuses a server without it', () => {
    const composeScript = preflightScript({ deployPath, project: 'shop' });
    const swarmScript = preflightScript({ deployPath, project: 'shop', target: 'swarm' });
    // Both define find_compose in the prelude; only the compose preflight calls it on its own line.
    expect(composeScript).toMatch(/^find_compose$/m);
    expect(swarmScript).not.toMatch(/^find_compose$/m);
    expect(composeScript).not.toContain('docker info');
    for (const target of [undefined, 'compose'] as const) {
      const run = preflight({ deployPath, project: 'shop', target }, 'active true 3');
      expect(run.status, String(target)).toBe(REMOTE_EXIT.noCompose);
      expect(run.stderr).toBe('neither docker compose nor docker-compose is installed on the server\n');
      expect(run.calls).toContainEqual(['compose', 'version']);
      expect(run.calls.some((argv) => argv[0] === 'info')).toBe(false);
      clearStubShell(shell);
    }
  });
});
