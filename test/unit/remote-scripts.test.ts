// What remote scripts do on a server, run under bash against a scratch deploy path with stub docker
// and docker-compose on PATH: the backup that cannot be skipped, the release directory that is never
// reused, and the state the deploy decides from.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { createServer, type AddressInfo } from 'node:net';
import { contentKeys, imageRevisions, parseState, pinnedRefs } from '../../lib/deploy/engine.ts';
import * as scripts from '../../lib/deploy/remote-scripts.ts';
import { freePort } from '../../lib/core/net.ts';

const bin = mkdtempSync(path.join(os.tmpdir(), 'aidd-stubs-'));
// `docker ps` answers with the container id in AIDD_CONTAINER, none when the database is not running;
// `docker exec -i` keeps the stdin it got in AIDD_STDIN. Calls that matter are recorded in AIDD_CALLS.
writeFileSync(
  path.join(bin, 'docker'),
  `#!/bin/bash
case "$*" in
  "compose version"*) exit 1 ;;
  "ps --quiet "*)
    for arg in "$@"; do case "$arg" in label=com.docker.compose.service=*) echo "docker ps \${arg##*=}" >> "\${AIDD_CALLS:-/dev/null}" ;; esac; done
    [ -z "$AIDD_CONTAINER" ] || echo "$AIDD_CONTAINER" ;;
  *inspect*) echo true ;;
  "exec -i "*) echo "docker exec $3 \${*: -3}" >> "\${AIDD_CALLS:-/dev/null}"; cat > "$AIDD_STDIN" ;;
  "exec "*) echo dump ;;
esac
exit 0
`,
  { mode: 0o755 },
);
// Every compose call is recorded in AIDD_CALLS, by its last three arguments.
writeFileSync(
  path.join(bin, 'docker-compose'),
  `#!/bin/bash
echo "\${*: -3}" >> "\${AIDD_CALLS:-/dev/null}"
case "$*" in
  *" config --services"*) printf 'postgres\\napi\\nbot\\n' ;;
esac
exit 0
`,
  { mode: 0o755 },
);

function run(script: string, env: Record<string, string> = {}): { code: number; stdout: string; stderr: string } {
  const result = spawnSync('bash', ['-s'], { input: script, env: { PATH: `${bin}:/usr/bin:/bin`, ...env }, encoding: 'utf8' });
  return { code: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
}

function deployDir(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'aidd-server-'));
  mkdirSync(path.join(dir, 'releases', 'r1'), { recursive: true });
  return dir;
}

const backup = { service: 'postgres', command: 'pg_dump', extension: 'dump' };

describe('remote scripts on a server', () => {
  it('the backup fails, naming the service, when the database is not running; it never exits 0 without a dump', () => {
    const dir = deployDir();
    const layout = { deployPath: dir, project: 'p' };
    const missing = run(scripts.backupScript(layout, 'r1', 'r2', backup), { AIDD_CONTAINER: '' });
    expect(missing.code).toBe(scripts.REMOTE_EXIT.backupFailed);
    expect(missing.stderr.trim()).toBe('no running postgres container to back up');
    const saved = run(scripts.backupScript(layout, 'r1', 'r2', backup), { AIDD_CONTAINER: 'c1' });
    expect(saved.code, saved.stderr).toBe(0);
    expect(readFileSync(path.join(dir, 'backups', 'r2.dump'), 'utf8')).toBe('dump\n');
  });

  it('an upload never writes into a release directory that exists', () => {
    const dir = deployDir();
    const layout = { deployPath: dir, project: 'p' };
    writeFileSync(path.join(dir, 'releases', 'r1', 'docker-compose.yml'), 'first\n');
    const again = run(scripts.uploadScript(layout, { id: 'r1', compose: 'second\n', releaseJson: '{}', env: 'A=1\n', envRequired: true }));
    expect(again.code).toBe(scripts.REMOTE_EXIT.releaseExists);
    expect(again.stderr.trim()).toBe('release r1 already exists on the server');
    expect(readFileSync(path.join(dir, 'releases', 'r1', 'docker-compose.yml'), 'utf8')).toBe('first\n');
  });

  it('the lock prints the state under it: current, each release with its record, and which went live per the audit log', () => {
    const dir = deployDir();
    const layout = { deployPath: dir, project: 'p' };
    for (const [id, previous] of [['r1', null], ['r2', 'r1'], ['r3', 'r2']] as const) {
      mkdirSync(path.join(dir, 'releases', id), { recursive: true });
      writeFileSync(path.join(dir, 'releases', id, 'release.json'), JSON.stringify({ id, previous }, null, 2));
    }
    symlinkSync('releases/r2', path.join(dir, 'current'));
    // r3 was interrupted at the switch: the audit log has no line saying it went live.
    const audit = [
      { action: 'deploy', release: 'r1', result: 'deployed' },
      { action: 'deploy', release: 'r2', previous: 'r1', result: 'deployed' },
      { action: 'interrupted', release: 'r3', previous: 'r2', result: 'interrupted', detail: '"release":"r3"' },
      { action: 'rollback', release: 'r1', previous: 'r2', result: 'ok' },
    ];
    writeFileSync(path.join(dir, 'deploys.log'), audit.map((line) => JSON.stringify(line)).join('\n') + '\n');
    const locked = run(scripts.lockScript(layout, '{"id":"x"}'));
    expect(locked.stdout.startsWith('locked\n')).toBe(true);
    const state = parseState(locked.stdout);
    expect(state).toMatchObject({ current: 'r2', releases: ['r1', 'r2', 'r3'], live: ['r1', 'r2'] });
    expect(state.records.r3).toEqual({ id: 'r3', previous: 'r2' });
    expect(run(scripts.lockScript(layout, '{"id":"y"}')).stdout).toBe('held {"id":"x"}\n');
    execFileSync('bash', ['-s'], { input: scripts.unlockScript(layout, 'x') });
    expect(run(scripts.lockScript(layout, '{"id":"y"}')).stdout.startsWith('locked\n')).toBe(true);
  });

  it("the lock prints the values the live .env gives the variables asked for, the last one when a name repeats", () => {
    const dir = deployDir();
    mkdirSync(path.join(dir, 'releases', 'r1'), { recursive: true });
    writeFileSync(path.join(dir, 'releases', 'r1', '.env'), 'API_PORT=8000\nBIND_ADDRESS="0.0.0.0"\nAPI_PORT=18000\nAPI_PORTS=1\n');
    symlinkSync('releases/r1', path.join(dir, 'current'));
    const locked = run(scripts.lockScript({ deployPath: dir, project: 'p' }, '{"id":"x"}', ['API_PORT', 'BIND_ADDRESS', 'FRONTEND_PORT']));
    expect(locked.stdout.split('\n').filter((line) => line.startsWith('var '))).toEqual(['var API_PORT=18000', 'var BIND_ADDRESS="0.0.0.0"']);
    expect(parseState(locked.stdout).vars).toEqual({ API_PORT: '18000', BIND_ADDRESS: '0.0.0.0' });
    expect(() => scripts.lockScript({ deployPath: dir, project: 'p' }, '{}', ['A=//;e touch /tmp/x\n#'])).toThrow(/not a variable name/);
  });

  it('a step started apart from the connection outlives it, keeps its output and exit status, and holds off --break-lock', async () => {
    const dir = deployDir();
    const layout = { deployPath: dir, project: 'p' };
    const marker = path.join(dir, 'finished');
    const step = scripts.remoteScript(layout, 'slow', scripts.sh`sleep 2; echo done; echo warning >&2; touch ${marker}; exit 3
`);
    // The connection that started it ends at once; its whole process group is killed, as a Ctrl-C would.
    const started = spawnSync('setsid', ['--wait', 'bash', '-c', 'bash -s; kill -INT 0'], { input: scripts.startStepScript(layout, 'r1', 'slow', step, 60), encoding: 'utf8' });
    expect(started.stdout).toBe('started r1/slow\n');
    const running = run(scripts.waitStepScript(layout, 'r1', 'slow', 0));
    expect(running.code).toBe(scripts.REMOTE_EXIT.stepRunning);
    const lockDir = path.join(dir, 'lock');
    mkdirSync(lockDir);
    const refused = run(scripts.breakLockScript(layout, '{}'));
    expect(refused.code).toBe(scripts.REMOTE_EXIT.stepStillRunning);
    expect(refused.stderr.trim()).toBe('r1/slow');
    const ended = run(scripts.waitStepScript(layout, 'r1', 'slow', 30));
    expect(ended).toEqual({ code: 0, stdout: 'done\nstep-status=3\n', stderr: 'warning\n' });
    expect(readFileSync(marker, 'utf8')).toBe('');
    expect(run(scripts.breakLockScript(layout, '{}')).stdout).toMatch(/^broke /);
  });

  it('a restore stops the other services, feeds the backup to the restore command, and starts the stack again', () => {
    const dir = deployDir();
    const layout = { deployPath: dir, project: 'p' };
    mkdirSync(path.join(dir, 'backups'));
    writeFileSync(path.join(dir, 'backups', 'r1.dump'), 'the dump\n');
    const calls = path.join(dir, 'calls');
    const stdin = path.join(dir, 'stdin');
    const missing = run(scripts.restoreScript(layout, 'r1', 'r0.dump', 'restore', 'postgres'), { AIDD_CONTAINER: 'c1' });
    expect(missing).toMatchObject({ code: scripts.REMOTE_EXIT.noBackup, stderr: 'there is no backup r0.dump on the server\n' });
    const restored = run(scripts.restoreScript(layout, 'r1', 'r1.dump', 'restore', 'postgres'), { AIDD_CONTAINER: 'c1', AIDD_CALLS: calls, AIDD_STDIN: stdin });
    expect(restored).toMatchObject({ code: 0, stdout: 'restored r1.dump into the database of r1\n' });
    expect(readFileSync(stdin, 'utf8')).toBe('the dump\n');
    const env = path.join(dir, 'releases', 'r1', '.env');
    // In order: the database container looked up, the other services stopped, the dump fed in, all started.
    expect(readFileSync(calls, 'utf8').split('\n').filter(Boolean)).toEqual(['docker ps postgres', `${env} config --services`, 'stop api bot', 'docker exec c1 sh -c restore', `${env} up -d`]);
  });
});

// The switch against a stub server that keeps its state in files: each service's containers and the
// ports they publish, their health, and the proxy's config directory (under etc/), where `docker exec
// aidd-proxy` really runs its file commands. A reload takes what the proxy then serves into `served`,
// or fails with the next line of reload-fails; a service's healthcheck run in its container passes
// unless probe-fails exists.
const switchBin = mkdtempSync(path.join(os.tmpdir(), 'aidd-switch-stubs-'));
writeFileSync(
  path.join(switchBin, 'docker'),
  `#!/bin/bash
state=$AIDD_STATE
echo "docker $*" >> "$state/calls"
argv="$*"
case "$1" in
  compose) exit 1 ;;
  ps)
    for arg in "$@"; do case "$arg" in label=com.docker.compose.service=*) cat "$state/containers/\${arg##*=}" 2>/dev/null ;; esac; done ;;
  port) cat "$state/ports/$2" 2>/dev/null ;;
  inspect)
    case "$argv" in
      *State.Running*) cat "$state/proxy-running" 2>/dev/null || echo false ;;
      *State.Status*) cat "$state/status/\${@: -1}" 2>/dev/null || echo 'running healthy' ;;
      *Health.Log*) cat "$state/health-log" 2>/dev/null ;;
    esac ;;
  exec)
    shift; [ "$1" != -i ] || shift; shift
    case "$1" in
      sh) exec sh -c "$3" sh "$state$5" ;;
      cat|rm) exec "$1" "\${@:2:$#-2}" "$state\${@: -1}" ;;
      test) [ "$2" = -S ] || exec test "$2" "$state$3" ;;
      caddy)
        if [ -s "$state/reload-fails" ]; then head -n 1 "$state/reload-fails"; sed -i 1d "$state/reload-fails"; exit 1; fi
        cat "$state"/etc/caddy/apps/*.caddy > "$state/served" 2>/dev/null || : > "$state/served" ;;
      # A service's own healthcheck, run in its container.
      *) [ ! -f "$state/probe-fails" ] || exit 1 ;;
    esac ;;
  run)
    case "$argv" in
      *--detach*) echo true > "$state/proxy-running" ;;
      *) while [ "$1" != -c ]; do shift; done; exec sh -c "$2" sh "$state$4" ;;
    esac ;;
esac
exit 0
`,
  { mode: 0o755 },
);
// compose scaling a service up starts a new container on the slot port the release publishes (next-ports);
// compose up --no-recreate starts one for each service that has none.
writeFileSync(
  path.join(switchBin, 'docker-compose'),
  `#!/bin/bash
state=$AIDD_STATE
args=("$@")
echo "docker-compose \${args[*]:8}" >> "$state/calls"
[ ! -f "$state/compose-fails" ] || { cat "$state/compose-fails"; exit 1; }
start() { echo "new-$1" >> "$state/containers/$1"; cp "$state/next-ports/$1" "$state/ports/new-$1"; }
for arg in "$@"; do case "$arg" in *=[0-9]) start "\${arg%=*}"; exit 0 ;; esac; done
case "$*" in
  *--no-recreate*) for file in "$state"/next-ports/*; do [ -s "$state/containers/\${file##*/}" ] || start "\${file##*/}"; done ;;
esac
exit 0
`,
  { mode: 0o755 },
);

// The proxy's listen ports: free ones, as the switch tries each new one before reloading.
const API_LISTEN = await freePort();
const WEB_LISTEN = await freePort();
const NEW_ROUTES = `# p: routes of r2\nhttp://:${API_LISTEN} {\n\treverse_proxy 127.0.0.1:20000 127.0.0.1:20001\n}\n`;
const OLD_ROUTES = '# p: routes of r1\n';
const MAIN_CONFIG = '{\n\tadmin off\n}\nimport /etc/caddy/apps/*.caddy\n';

interface SwitchServer {
  state: string;
  layout: scripts.RemoteLayout;
  /** The docker and docker-compose calls so far, one line each (compose without its file options). */
  calls(): string[];
  read(file: string): string;
}

/**
 * A server where release r2 is uploaded and each service in `running` has one container (old-SERVICE)
 * publishing the given host port; `next` are the slot ports r2's new containers publish. The proxy
 * runs with `routes` as the app's routes; with null, the server has no proxy yet.
 */
function switchServer(running: Record<string, number>, next: Record<string, number>, routes: string | null = OLD_ROUTES): SwitchServer {
  const state = mkdtempSync(path.join(os.tmpdir(), 'aidd-switch-'));
  for (const dir of ['containers', 'ports', 'next-ports', 'status', 'deploy/releases/r2']) mkdirSync(path.join(state, dir), { recursive: true });
  for (const [service, port] of Object.entries(running)) {
    writeFileSync(path.join(state, 'containers', service), `old-${service}\n`);
    writeFileSync(path.join(state, 'ports', `old-${service}`), `127.0.0.1:${port}\n`);
  }
  for (const [service, port] of Object.entries(next)) writeFileSync(path.join(state, 'next-ports', service), `127.0.0.1:${port}\n`);
  if (routes !== null) {
    mkdirSync(path.join(state, 'etc/caddy/apps'), { recursive: true });
    writeFileSync(path.join(state, 'proxy-running'), 'true\n');
    writeFileSync(path.join(state, 'etc/caddy/Caddyfile'), MAIN_CONFIG);
    writeFileSync(path.join(state, 'etc/caddy/apps/p.caddy'), routes);
  }
  writeFileSync(path.join(state, 'deploy', 'releases', 'r2', 'proxy.caddy'), NEW_ROUTES);
  writeFileSync(path.join(state, 'calls'), '');
  return {
    state,
    layout: { deployPath: path.join(state, 'deploy'), project: 'p' },
    calls: () => readFileSync(path.join(state, 'calls'), 'utf8').split('\n').filter(Boolean),
    read: (file) => readFileSync(path.join(state, file), 'utf8'),
  };
}

/** r2's plan: the api replaced into slot port 20001, the frontend kept on 20010. */
const plan: scripts.SwitchPlan = {
  routed: [
    { service: 'api', port: 8000, hostPort: 20001 },
    { service: 'frontend', port: 3000, hostPort: 20010 },
  ],
  direct: ['postgres', 'bot'],
  listeners: [`${API_LISTEN}=api`, `${WEB_LISTEN}=frontend`],
  settled: [],
  proxyImage: 'caddy:2',
  proxyMainConfig: MAIN_CONFIG,
  healthTimeoutSeconds: 1,
  probes: {},
};

function runSwitch(server: SwitchServer, switchPlan = plan) {
  return spawnSync('bash', ['-s'], { input: scripts.switchScript(server.layout, 'r2', switchPlan), env: { PATH: `${switchBin}:/usr/bin:/bin`, AIDD_STATE: server.state }, encoding: 'utf8' });
}

/** The position of the first call containing `text`; fails the test when there is none. */
function callAt(calls: string[], text: string): number {
  const at = calls.findIndex((call) => call.includes(text));
  expect(at, `no call with ${text} in:\n${calls.join('\n')}`).toBeGreaterThanOrEqual(0);
  return at;
}

function expectInOrder(calls: string[], texts: string[]): void {
  const order = texts.map((text) => callAt(calls, text));
  expect(order).toEqual([...order].sort((a, b) => a - b));
}

describe('the switch on a server', () => {
  it('starts a changed routed service beside the running one and stops the old one once the new one is healthy, with the new routes loaded', () => {
    const server = switchServer({ api: 20000, frontend: 20010 }, { api: 20001 });
    const result = runSwitch(server);
    expect(result.stderr).toBe('');
    expect(result).toMatchObject({ status: 0, stdout: 'started\n' });
    const calls = server.calls();
    // The services nothing routes to and the new api container start side by side, before the api is waited for.
    const waited = callAt(calls, 'docker inspect --format {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}} new-api');
    expect(callAt(calls, 'docker-compose up -d --no-deps --remove-orphans postgres bot')).toBeLessThan(waited);
    expectInOrder(calls, [
      'docker-compose up -d --no-deps --no-recreate --scale api=2 api',
      'docker inspect --format {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}} new-api',
      'docker exec aidd-proxy caddy reload',
      'docker stop --time 30 old-api',
      'docker rm old-api',
    ]);
    // The frontend's container already publishes its slot: it is only looked at, neither scaled nor stopped.
    expect(calls.filter((call) => call.includes('frontend') && !call.startsWith('docker ps ') && !call.startsWith('docker port '))).toEqual([]);
    expect(server.read('served')).toBe(NEW_ROUTES);
    expect(server.read('etc/caddy/apps/p.caddy')).toBe(NEW_ROUTES);
    expect(existsSync(path.join(server.state, 'etc/caddy/apps/p.caddy.previous'))).toBe(false);
  });

  it('leaves the proxy alone when neither its config nor the routes change: it already routes to whichever slot is healthy', () => {
    const server = switchServer({ api: 20000, frontend: 20010 }, { api: 20001 }, NEW_ROUTES);
    const result = runSwitch(server);
    expect(result).toMatchObject({ status: 0, stdout: 'started\n' });
    const calls = server.calls();
    expect(calls.filter((call) => call.includes('caddy reload') || call.includes('sh -c'))).toEqual([]);
    expectInOrder(calls, ['--scale api=2 api', 'docker stop --time 30 old-api', 'docker rm old-api']);
  });

  it('does not ask compose about services the release leaves unchanged while they run, and converges one that stopped', () => {
    const server = switchServer({ api: 20000, frontend: 20010, postgres: 5432 }, { api: 20001 }, NEW_ROUTES);
    expect(runSwitch(server, { ...plan, settled: ['postgres', 'bot'] }).status).toBe(0);
    // postgres runs, so it is left out; the bot is settled too but has no container, so compose starts it.
    expect(server.calls()).toContain('docker-compose up -d --no-deps --remove-orphans bot');
    expect(server.calls().filter((call) => call.startsWith('docker-compose') && call.includes('postgres'))).toEqual([]);
  });

  it("rewrites the proxy's main config when it differs, and reloads", () => {
    const server = switchServer({ api: 20000, frontend: 20010 }, { api: 20001 }, NEW_ROUTES);
    writeFileSync(path.join(server.state, 'etc/caddy/Caddyfile'), '{\n}\n');
    expect(runSwitch(server).status).toBe(0);
    expect(server.read('etc/caddy/Caddyfile')).toBe(MAIN_CONFIG);
    expect(server.calls().filter((call) => call.includes('caddy reload'))).toHaveLength(1);
  });

  it('removes a container a switch left halfway on the new slot before starting the new one afresh', () => {
    const server = switchServer({ api: 20000, frontend: 20010 }, { api: 20001 });
    writeFileSync(path.join(server.state, 'containers', 'api'), 'old-api\nleft-api\n');
    writeFileSync(path.join(server.state, 'ports', 'left-api'), '127.0.0.1:20001\n');
    const result = runSwitch(server);
    expect(result.status, result.stderr).toBe(0);
    const calls = server.calls();
    expectInOrder(calls, ['docker rm -f left-api', '--scale api=2 api', 'docker stop --time 30 old-api']);
  });

  it('removes a new container that never turns healthy, and leaves the proxy and the running container as they were', () => {
    const server = switchServer({ api: 20000, frontend: 20010 }, { api: 20001 });
    writeFileSync(path.join(server.state, 'status', 'new-api'), 'running unhealthy\n');
    writeFileSync(path.join(server.state, 'health-log'), 'connection refused\n');
    const result = runSwitch(server);
    expect(result.status).toBe(1);
    expect(result.stderr).toBe('the new api container did not become healthy (running unhealthy: connection refused ); it was removed, and the running one keeps serving\n');
    const calls = server.calls();
    expectInOrder(calls, ['docker stop --time 30 new-api', 'docker rm -f new-api']);
    expect(calls.some((call) => call.includes('caddy reload') || call === 'docker rm old-api' || call.startsWith('docker stop --time 30 old-api'))).toBe(false);
    expect(server.read('etc/caddy/apps/p.caddy')).toBe(OLD_ROUTES);
  });

  it('gives a new container until the health deadline while it starts', () => {
    const server = switchServer({ api: 20000, frontend: 20010 }, { api: 20001 });
    writeFileSync(path.join(server.state, 'status', 'new-api'), 'running starting\n');
    const started = Date.now();
    const result = runSwitch(server, { ...plan, healthTimeoutSeconds: 2 });
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/^the new api container did not become healthy \(running starting\); it was removed/);
    // A deadline 2 s away in whole seconds is 1 to 2 s away: polled every 0.2 s until then, and no longer.
    expect(Date.now() - started).toBeGreaterThanOrEqual(950);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(server.calls().filter((call) => call.endsWith(' new-api') && call.includes('State.Status')).length).toBeGreaterThan(1);
    expect(server.calls()).toContain('docker rm -f new-api');
  });

  it("switches once the service's own healthcheck passes in the new container, before docker's next check says so", () => {
    const server = switchServer({ api: 20000, frontend: 20010 }, { api: 20001 });
    writeFileSync(path.join(server.state, 'status', 'new-api'), 'running starting\n');
    const probing = { ...plan, healthTimeoutSeconds: 5, probes: { api: ['python3', '-c', 'import ready'] } };
    // Docker never says healthy here: only the healthcheck run in the container lets the switch go on.
    const result = runSwitch(server, probing);
    expect(result).toMatchObject({ status: 0, stdout: 'started\n' });
    expectInOrder(server.calls(), ['docker exec new-api python3 -c import ready', 'docker stop --time 30 old-api']);

    // While the healthcheck fails, the switch waits for docker, up to the deadline.
    const failing = switchServer({ api: 20000, frontend: 20010 }, { api: 20001 });
    writeFileSync(path.join(failing.state, 'status', 'new-api'), 'running starting\n');
    writeFileSync(path.join(failing.state, 'probe-fails'), '');
    const waited = runSwitch(failing, { ...probing, healthTimeoutSeconds: 1 });
    expect(waited.status).toBe(1);
    expect(waited.stderr).toMatch(/^the new api container did not become healthy \(running starting\)/);
  });

  it('puts the previous routes back when the proxy refuses the new ones, and removes the new containers', () => {
    const server = switchServer({ api: 20000, frontend: 20010 }, { api: 20001 });
    const refusal = 'Error: adapting config using caddyfile: unrecognized directive: bogus';
    // One refusal: the routes are put back at once (a failed reload is not tried again).
    writeFileSync(path.join(server.state, 'reload-fails'), `${refusal}\n`);
    const result = runSwitch(server);
    expect(result.status).toBe(1);
    expect(result.stderr).toBe(`the proxy refused the new routes: ${refusal}\n`);
    expect(server.read('etc/caddy/apps/p.caddy')).toBe(OLD_ROUTES);
    expect(server.read('served')).toBe(OLD_ROUTES);
    const calls = server.calls();
    expect(calls).toContain('docker rm -f new-api');
    expect(calls).not.toContain('docker stop --time 30 old-api');
  });

  it('on the first switch to the proxy, stops the containers holding the listen ports before the proxy takes them', () => {
    // r1 published the api on the listen port itself, with no proxy route: the proxy cannot bind it until it stops.
    const server = switchServer({ api: API_LISTEN, frontend: WEB_LISTEN }, { api: 20001, frontend: 20010 }, '');
    writeFileSync(path.join(server.state, 'reload-fails'), `Error: loading new config: listen tcp 127.0.0.1:${API_LISTEN}: bind: address already in use\n`);
    const result = runSwitch(server);
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    const calls = server.calls();
    const reloads = calls.flatMap((call, index) => (call.includes('caddy reload') ? [index] : []));
    expect(reloads).toHaveLength(2);
    // Only the container holding the api's port stops before the proxy takes it; the frontend's stops after the switch.
    const stopped = callAt(calls, 'docker stop --time 30 old-api');
    expect(reloads[0]).toBeLessThan(stopped);
    expect(stopped).toBeLessThan(reloads[1]!);
    expect(callAt(calls, 'docker stop --time 30 old-api old-frontend')).toBeGreaterThan(reloads[1]!);
    expect(server.read('served')).toBe(NEW_ROUTES);
  });

  it('a new listen port another program holds stops the switch before the routes change: no reload, no socket left in the proxy', async () => {
    // A real listener on loopback: the script's connection lands in its backlog while spawnSync blocks.
    const holder = createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    const port = (holder.address() as AddressInfo).port;
    try {
      const server = switchServer({ api: 20000, frontend: 20010 }, { api: 20001, frontend: 20010 }, OLD_ROUTES);
      const result = runSwitch(server, { ...plan, listeners: [`${port}=api`, `${WEB_LISTEN}=frontend`] });
      expect(result.status).toBe(1);
      expect(result.stderr).toBe(`the proxy cannot listen on 127.0.0.1:${port} for api: address already in use (another program holds it); free it or publish the service on another port\n`);
      expect(server.read('etc/caddy/apps/p.caddy')).toBe(OLD_ROUTES);
      const calls = server.calls();
      expect(calls.filter((call) => call.includes('caddy reload'))).toEqual([]);
      expect(calls).toContain('docker rm -f new-api');
      expect(calls).not.toContain('docker stop --time 30 old-api');
    } finally {
      holder.close();
    }
  });

  it('new routes on ports the proxy already serves (and so listens on) load: only ports it does not serve yet are tried', async () => {
    // The proxy holds its ports: a listener on loopback stands in for it.
    const proxy = createServer();
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const port = (proxy.address() as AddressInfo).port;
    try {
      const served = `# p: routes of r1\nhttp://:${port} {\n\tbind 127.0.0.1\n\treverse_proxy 127.0.0.1:20000 127.0.0.1:20001 {\n\t\thealth_uri /\n\t}\n}\n`;
      const server = switchServer({ api: 20000, frontend: 20010 }, { api: 20001 }, served);
      const result = runSwitch(server, { ...plan, listeners: [`${port}=api`, `${WEB_LISTEN}=frontend`] });
      expect(result.stderr).toBe('');
      expect(result).toMatchObject({ status: 0, stdout: 'started\n' });
      expect(server.read('served')).toBe(NEW_ROUTES);
    } finally {
      proxy.close();
    }
  });

  it('a listen port another program holds: one line naming the address and the service, the old containers untouched', () => {
    const server = switchServer({ api: 20000, frontend: 20010 }, { api: 20001, frontend: 20010 }, OLD_ROUTES);
    const refusal = `Error: loading new config: listen tcp 127.0.0.1:${API_LISTEN}: bind: address already in use`;
    writeFileSync(path.join(server.state, 'reload-fails'), `${refusal}\n${refusal}\n`);
    const result = runSwitch(server);
    expect(result.status).toBe(1);
    expect(result.stderr).toBe(`the proxy cannot listen on 127.0.0.1:${API_LISTEN} for api: address already in use (another program holds it); free it or publish the service on another port\n`);
    expect(server.read('etc/caddy/apps/p.caddy')).toBe(OLD_ROUTES);
    const calls = server.calls();
    expect(calls.filter((call) => call.startsWith('docker stop') && call.includes('old-'))).toEqual([]);
    expect(calls).toContain('docker rm -f new-api');
  });

  it('on a fresh server, starts the services and then the proxy, its config written into its volume first', () => {
    const server = switchServer({}, { api: 20001, frontend: 20010 }, null);
    const result = runSwitch(server);
    expect(result.stderr).toBe('');
    expect(result).toMatchObject({ status: 0, stdout: 'started\n' });
    const calls = server.calls();
    expectInOrder(calls, [
      'docker-compose up -d --no-recreate --remove-orphans',
      'docker rm -f aidd-proxy',
      'docker run --rm -i --volume aidd-proxy-config:/etc/caddy --entrypoint sh caddy:2 -c',
      'docker run --detach --name aidd-proxy --network host --restart unless-stopped',
      'docker exec aidd-proxy caddy reload',
    ]);
    expect(calls.some((call) => call.includes('--scale') || call.includes('docker stop'))).toBe(false);
    expect(server.read('etc/caddy/Caddyfile')).toBe(MAIN_CONFIG);
    expect(server.read('served')).toBe(NEW_ROUTES);
  });

  it("without routed services, takes the app's routes out of the proxy, so compose gets their ports back, then is compose up", () => {
    const server = switchServer({}, {});
    const direct = { ...plan, routed: [], direct: ['postgres', 'api'] };
    expect(runSwitch(server, direct)).toMatchObject({ status: 0, stdout: 'started\n' });
    expect(existsSync(path.join(server.state, 'etc/caddy/apps/p.caddy'))).toBe(false);
    expect(server.read('served')).toBe('');
    expectInOrder(server.calls(), ['docker exec aidd-proxy rm -f /etc/caddy/apps/p.caddy', 'docker exec aidd-proxy caddy reload', 'docker-compose up -d --remove-orphans']);
  });

  it('without routed services and no routes in the proxy, is compose up alone; a failure says what compose said', () => {
    const server = switchServer({}, {}, null);
    const direct = { ...plan, routed: [], direct: ['postgres', 'api'] };
    expect(runSwitch(server, direct)).toMatchObject({ status: 0, stdout: 'started\n' });
    expect(server.calls().filter((call) => call.includes('aidd-proxy') && !call.includes('State.Running'))).toEqual([]);
    expect(server.calls()).toContain('docker-compose up -d --remove-orphans');
    writeFileSync(path.join(server.state, 'compose-fails'), 'Creating p_api_1 ...\nERROR: for api  Cannot start service api: port is already allocated\nEncountered errors while bringing up the project.\n');
    const failed = runSwitch(server, direct);
    expect(failed.status).toBe(1);
    expect(failed.stderr.split('\n').at(-2)).toBe('compose up failed: ERROR: for api  Cannot start service api: port is already allocated; not healthy: none');
  });
});

// The pull against a stub registry: every image of a repository has the same content (its layers and
// config), whatever its tag; AIDD_PRESENT holds digest refs the server already has; AIDD_MISSING a ref
// the registry does not know; AIDD_PULLS how many pulls run at once.
const pullBin = mkdtempSync(path.join(os.tmpdir(), 'aidd-pull-stubs-'));
writeFileSync(
  path.join(pullBin, 'docker'),
  `#!/bin/bash
ref=\${@: -1}
repository=\${ref%@*}
repository=\${repository%:*}
case "$*" in
  "login "*) echo "$2" >> "$AIDD_CALLS.login" ;;
  "pull --quiet "*)
    echo "$ref" >> "$AIDD_CALLS"
    # Every pull waits until all of them have started: pulls run one after the other would wait in vain.
    for _ in $(seq 100); do [ "$(wc -l < "$AIDD_CALLS")" -lt "$AIDD_PULLS" ] || break; sleep 0.05; done
    [ "$(wc -l < "$AIDD_CALLS")" -ge "$AIDD_PULLS" ] || echo "$ref" >> "$AIDD_CALLS.alone"
    [ "$ref" != "$AIDD_MISSING" ] || { echo "Error response from daemon: manifest for $ref not found: manifest unknown" >&2; exit 1; } ;;
  *RepoDigests*RootFS.Layers*)
    # The server has an image it was given (AIDD_PRESENT) or has pulled.
    [[ " $AIDD_PRESENT " == *" $ref "* ]] || grep -qxF "$ref" "$AIDD_CALLS" 2>/dev/null || exit 1
    echo "other/mirror@sha256:00 $repository@sha256:$(printf %s "$ref" | sha256sum | cut -c1-8)"
    # The commit build-push labels an image with; this frontend was built elsewhere, without the label.
    if [[ "$repository" == */aidd-frontend ]]; then echo ""; else echo "0123abcd"; fi
    echo "layers of $repository" ;;
esac
`,
  { mode: 0o755 },
);

describe('the pull on a server', () => {
  const layout = { deployPath: '/nonexistent', project: 'p' };
  const refs = { api: 'reg/me/aidd-api:v2', bot: 'reg/me/aidd-bot@sha256:bb', frontend: 'reg/me/aidd-frontend:v2', worker: 'reg/me/aidd-api:v1' };
  const pull = (env: Record<string, string>, wanted: string[] = Object.values(refs)) => {
    const calls = path.join(mkdtempSync(path.join(os.tmpdir(), 'aidd-pull-')), 'calls');
    const script = scripts.pullScript(layout, { registry: 'reg', username: 'me', token: 'registry-token', refs: wanted });
    const result = spawnSync('bash', ['-s'], { input: script, env: { PATH: `${pullBin}:/usr/bin:/bin`, AIDD_CALLS: calls, ...env }, encoding: 'utf8' });
    const lines = (file: string) => (existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean).sort() : []);
    return { ...result, pulled: lines(calls), alone: lines(`${calls}.alone`), logins: lines(`${calls}.login`) };
  };
  const key = (repository: string) => createHash('sha256').update(`layers of ${repository}\n`).digest('hex');

  it('pulls every image at once, but none the server has by digest, and prints each one\'s digest and content key', () => {
    const result = pull({ AIDD_PRESENT: 'reg/me/aidd-bot@sha256:bb', AIDD_PULLS: '3' });
    expect(result.status, result.stderr).toBe(0);
    expect(result.alone).toEqual([]);
    expect(result.pulled).toEqual(['reg/me/aidd-api:v1', 'reg/me/aidd-api:v2', 'reg/me/aidd-frontend:v2']);
    expect(pinnedRefs(result.stdout, refs)).toMatchObject({ api: expect.stringMatching(/^reg\/me\/aidd-api@sha256:[0-9a-f]{8}$/), bot: expect.stringMatching(/^reg\/me\/aidd-bot@sha256:/) });
    // Two tags of one repository have one content: a deploy keeps a service whose key did not change.
    expect(contentKeys(result.stdout, refs)).toEqual({ api: key('reg/me/aidd-api'), bot: key('reg/me/aidd-bot'), frontend: key('reg/me/aidd-frontend'), worker: key('reg/me/aidd-api') });
    // The commit each image was built from, where its label names one.
    expect(imageRevisions(result.stdout, refs)).toEqual({ api: '0123abcd', bot: '0123abcd', worker: '0123abcd' });
  });

  it('logs in to the registry only when an image is to be pulled', () => {
    expect(pull({ AIDD_PRESENT: 'reg/me/aidd-bot@sha256:bb', AIDD_PULLS: '3' }).logins).toEqual(['reg']);
    const present = pull({ AIDD_PRESENT: 'reg/me/aidd-bot@sha256:bb', AIDD_PULLS: '0' }, ['reg/me/aidd-bot@sha256:bb']);
    expect(present.status, present.stderr).toBe(0);
    expect(present.logins).toEqual([]);
    expect(present.pulled).toEqual([]);
  });

  it('fails naming the ref the registry does not have, in its own words', () => {
    const result = pull({ AIDD_MISSING: 'reg/me/aidd-frontend:v2', AIDD_PULLS: '4' });
    expect(result.status).toBe(scripts.REMOTE_EXIT.pullFailed);
    expect(result.stderr).toBe('pulling reg/me/aidd-frontend:v2 failed: Error response from daemon: manifest for reg/me/aidd-frontend:v2 not found: manifest unknown\n');
  });
});

describe('the preflight on a server', () => {
  it('names a Docker engine the deploy user cannot reach, and how to fix it', () => {
    const bin = mkdtempSync(path.join(os.tmpdir(), 'aidd-preflight-stubs-'));
    writeFileSync(
      path.join(bin, 'docker'),
      '#!/bin/bash\necho "permission denied while trying to connect to the Docker daemon socket at unix:///var/run/docker.sock" >&2\nexit 1\n',
      { mode: 0o755 },
    );
    const deployPath = mkdtempSync(path.join(os.tmpdir(), 'aidd-preflight-'));
    const result = spawnSync('bash', ['-s'], { input: scripts.preflightScript({ deployPath, project: 'p' }), env: { PATH: `${bin}:/usr/bin:/bin` }, encoding: 'utf8' });
    expect(result.status).toBe(scripts.REMOTE_EXIT.noDocker);
    expect(result.stderr.trim()).toMatch(/^the Docker engine does not answer \S+ on the server: permission denied while trying to connect to the Docker daemon socket .*; add the user to the docker group \(sudo usermod -aG docker \S+, then log in again\) or start dockerd$/);
  });
});
