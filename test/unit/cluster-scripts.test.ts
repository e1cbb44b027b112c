// The remote scripts of `aidd cluster`, run under bash with stub docker and curl first on PATH: what
// each does in each swarm state, that the join token reaches curl only on stdin, and that no value,
// however hostile, runs as a command.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { EXIT } from '../../lib/core/cli.ts';
import { CLUSTER_EXIT, initScript, joinFactsScript, joinScript, labelScript, memberScript, parseFacts, statusScript, workerStateScript } from '../../lib/cluster/scripts.ts';
import { scriptError } from '../../lib/cluster/remote.ts';
import type { ShellText } from '../../lib/deploy/remote-scripts.ts';
import type { SshTarget } from '../../lib/deploy/ssh.ts';
import { clearStubShell, stubCalls, stubShell } from './stub-shell.ts';

const shell = stubShell('aidd-cluster-scripts');
const { scratch, markers, bin } = shell;
const curlStdin = path.join(scratch, 'curl-stdin');
/** Only docker, for a server without curl. */
const dockerOnly = path.join(scratch, 'docker-only');
mkdirSync(dockerOnly);

const docker = `#!/bin/sh
PATH=/usr/bin:/bin
printf '%s\\0' docker "$@" > "$(mktemp "$AIDD_STUB_CALLS/call.XXXXXXXX")"
case "$*" in
  "info --format {{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}} {{.Swarm.NodeID}}") echo "$STUB_SWARM" ;;
  "info --format {{.Swarm.NodeID}}") echo newnode ;;
  "info --format {{.Swarm.Cluster.ID}}") echo cluster1 ;;
  "info --format {{range .Swarm.RemoteManagers}}"*) echo manager-addr=10.0.0.1:2377 ;;
  "swarm join-token --quiet worker") echo SWMTKN-1-stub ;;
  "node inspect "*"{{range"*) printf '%s' "$STUB_LABELS" ;;
  "node inspect "*"{{.Spec.Role}}") if [ -n "$STUB_MEMBER" ]; then echo worker; else exit 1; fi ;;
  "node ls --quiet") printf 'id1\\nid2\\n' ;;
  "node inspect id1 id2") echo '[]' ;;
esac
exit 0
`;
const curl = `#!/bin/sh
PATH=/usr/bin:/bin
printf '%s\\0' curl "$@" > "$(mktemp "$AIDD_STUB_CALLS/call.XXXXXXXX")"
cat > "${curlStdin}"
if [ -n "$STUB_REFUSE" ]; then printf '{"message":"invalid join token"}\\n403'; else printf '\\n200'; fi
`;
writeFileSync(path.join(bin, 'docker'), docker, { mode: 0o755 });
writeFileSync(path.join(dockerOnly, 'docker'), docker, { mode: 0o755 });
writeFileSync(path.join(bin, 'curl'), curl, { mode: 0o755 });

const INACTIVE = 'inactive false ';
const MANAGER = 'active true mgr1';
const WORKER = 'active false wrk1';

function run(script: ShellText, env: Record<string, string> = {}): { status: number; stdout: string; stderr: string } {
  const result = spawnSync('/bin/bash', ['-s'], { input: script.text, cwd: scratch, env: { ...shell.env, PATH: bin, ...env }, encoding: 'utf8', timeout: 20_000 });
  return { status: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
}

/** The recorded calls of one program, as argv strings without the program name. */
function calls(program: string): string[][] {
  return stubCalls(shell).filter((argv) => argv[0] === program).map((argv) => argv.slice(1));
}

beforeEach(() => {
  clearStubShell(shell, { markers: true });
  rmSync(curlStdin, { force: true });
});

afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe('initScript', () => {
  it('forms a swarm on a fresh engine and adds only the labels its node lacks', () => {
    const result = run(initScript({ advertiseAddr: '10.0.0.1', labels: ['role=db', 'zone=a'] }), { STUB_SWARM: INACTIVE, STUB_LABELS: 'role=db\n' });
    expect(result.status, result.stderr).toBe(0);
    expect(parseFacts(result.stdout)).toEqual(new Map([['swarm', ['created']], ['label-kept', ['role=db']], ['label-set', ['zone=a']]]));
    expect(calls('docker')).toContainEqual(['swarm', 'init', '--advertise-addr', '10.0.0.1']);
    // The new node's id, not `self`, which `docker node update` does not take.
    expect(calls('docker').filter((argv) => argv[1] === 'update')).toEqual([['node', 'update', '--label-add', 'zone=a', 'newnode']]);
  });

  it('lets docker choose the address without --advertise-addr', () => {
    const result = run(initScript({ labels: [] }), { STUB_SWARM: INACTIVE });
    expect(result.status, result.stderr).toBe(0);
    expect(calls('docker')).toContainEqual(['swarm', 'init']);
  });

  it('changes nothing on an engine that already manages a swarm', () => {
    const result = run(initScript({ advertiseAddr: '10.0.0.1', labels: ['role=db'] }), { STUB_SWARM: MANAGER, STUB_LABELS: 'other=x\nrole=db\n' });
    expect(result.status, result.stderr).toBe(0);
    expect(parseFacts(result.stdout)).toEqual(new Map([['swarm', ['exists']], ['label-kept', ['role=db']]]));
    expect(calls('docker').filter((argv) => argv[0] === 'swarm' || argv[1] === 'update')).toEqual([]);
  });

  it('refuses a worker of a swarm, and any unsettled state, without a change', () => {
    for (const state of [WORKER, 'pending false x', 'locked false x']) {
      clearStubShell(shell);
      const result = run(initScript({ labels: ['role=db'] }), { STUB_SWARM: state });
      expect(result.status).toBe(CLUSTER_EXIT.refused);
      expect(result.stderr.trim().split('\n')).toHaveLength(1);
      expect(calls('docker').filter((argv) => argv[0] === 'swarm' || argv[1] === 'update')).toEqual([]);
    }
    expect(run(initScript({ labels: [] }), { STUB_SWARM: WORKER }).stderr).toBe('the engine is a worker of a swarm; leave it first (docker swarm leave) or run init on a manager\n');
  });

  it('says when docker cannot be reached, with exit 61', () => {
    const noDocker = run(initScript({ labels: [] }), { PATH: path.join(scratch, 'nothing') });
    expect(noDocker.status).toBe(CLUSTER_EXIT.missing);
    expect(noDocker.stderr).toBe('docker is not installed\n');
  });
});

describe('join scripts', () => {
  it('reads the token and the managers on a manager only', () => {
    const facts = run(joinFactsScript(), { STUB_SWARM: MANAGER });
    expect(facts.status, facts.stderr).toBe(0);
    expect(parseFacts(facts.stdout)).toEqual(new Map([['cluster-id', ['cluster1']], ['manager-addr', ['10.0.0.1:2377']], ['token', ['SWMTKN-1-stub']]]));
    clearStubShell(shell);
    const notManager = run(joinFactsScript(), { STUB_SWARM: WORKER });
    expect(notManager.status).toBe(CLUSTER_EXIT.missing);
    expect(notManager.stderr).toMatch(/^the engine is not a swarm manager \(swarm state: active\); run aidd cluster init there first/);
    expect(calls('docker').filter((argv) => argv[0] === 'swarm')).toEqual([]);
  });

  it("reports the worker's state, and stops before any change without curl or with a TCP DOCKER_HOST", () => {
    const state = run(workerStateScript(), { STUB_SWARM: WORKER });
    expect(state.status, state.stderr).toBe(0);
    expect(parseFacts(state.stdout)).toEqual(new Map([['state', ['active']], ['control', ['false']], ['node-id', ['wrk1']]]));
    const noCurl = run(workerStateScript(), { STUB_SWARM: INACTIVE, PATH: dockerOnly });
    expect(noCurl.status).toBe(CLUSTER_EXIT.missing);
    expect(noCurl.stderr).toBe('curl is not installed; install it (apt-get install curl) and run join again\n');
    const tcp = run(workerStateScript(), { STUB_SWARM: INACTIVE, DOCKER_HOST: 'tcp://10.0.0.9:2375' });
    expect(tcp.status).toBe(CLUSTER_EXIT.missing);
    expect(tcp.stderr).toMatch(/^DOCKER_HOST is not a unix socket/);
  });

  it('posts the join body to the engine socket on stdin: the token is in no argv', () => {
    const body = JSON.stringify({ ListenAddr: '0.0.0.0:2377', RemoteAddrs: ['10.0.0.1:2377'], JoinToken: 'SWMTKN-1-secret-token' });
    const result = run(joinScript(body), { STUB_SWARM: INACTIVE, DOCKER_HOST: 'unix:///srv/node 2/docker.sock' });
    expect(result.status, result.stderr).toBe(0);
    expect(parseFacts(result.stdout).get('node-id')).toEqual(['newnode']);
    expect(readFileSync(curlStdin, 'utf8')).toBe(body);
    const [curlArgv] = calls('curl');
    expect(curlArgv).toEqual(expect.arrayContaining(['--unix-socket', '/srv/node 2/docker.sock', '--data-binary', '@-', 'http://localhost/swarm/join']));
    expect(stubCalls(shell).flat().filter((word) => word.includes('SWMTKN-1-secret'))).toEqual([]);
    // Without DOCKER_HOST: docker's default socket.
    clearStubShell(shell);
    expect(run(joinScript(body), { STUB_SWARM: INACTIVE }).status).toBe(0);
    expect(calls('curl')[0]).toEqual(expect.arrayContaining(['--unix-socket', '/var/run/docker.sock']));
  });

  it("passes on the engine's refusal in one line, and never joins an engine already in a swarm", () => {
    const refused = run(joinScript('{}'), { STUB_SWARM: INACTIVE, STUB_REFUSE: '1' });
    expect(refused.status).toBe(1);
    expect(refused.stderr).toBe('the engine did not join (HTTP 403): {"message":"invalid join token"}\n');
    clearStubShell(shell);
    const joined = run(joinScript('{}'), { STUB_SWARM: WORKER });
    expect(joined.status).toBe(CLUSTER_EXIT.refused);
    expect(calls('curl')).toEqual([]);
  });

  it('asks the manager whether a node id is a member', () => {
    expect(parseFacts(run(memberScript('wrk1'), { STUB_SWARM: MANAGER, STUB_MEMBER: '1' }).stdout)).toEqual(new Map([['member', ['yes']], ['role', ['worker']]]));
    expect(parseFacts(run(memberScript('wrk1'), { STUB_SWARM: MANAGER }).stdout)).toEqual(new Map([['member', ['no']]]));
  });
});

describe('statusScript', () => {
  it('inspects every node on a manager', () => {
    const result = run(statusScript(), { STUB_SWARM: MANAGER });
    expect(result.status, result.stderr).toBe(0);
    expect(result.stdout).toBe('[]\n');
    expect(calls('docker')).toContainEqual(['node', 'inspect', 'id1', 'id2']);
  });
});

describe('no value runs as a command', () => {
  const hostile = [
    `$(touch ${markers}/dollar)`,
    `\`touch ${markers}/backtick\``,
    `x; touch ${markers}/semicolon`,
    `x' ; touch ${markers}/single ; '`,
    `x" ; touch ${markers}/double ; "`,
    `x\ntouch ${markers}/newline`,
    `-rf; touch ${markers}/dash`,
    `\${PWD:+$(touch ${markers}/variable)}`,
  ];
  it.each(hostile)('%j in every slot', (value) => {
    const scripts: [ShellText, Record<string, string>][] = [
      [initScript({ advertiseAddr: value, labels: [value, `k=${value}`] }), { STUB_SWARM: INACTIVE }],
      [joinScript(JSON.stringify({ JoinToken: value })), { STUB_SWARM: INACTIVE }],
      [memberScript(value), { STUB_SWARM: MANAGER }],
      [labelScript(value, [value]), { STUB_SWARM: MANAGER }],
    ];
    for (const [script, env] of scripts) run(script, env);
    expect(readdirSync(markers)).toEqual([]);
    // Each value reached docker whole, as one argument.
    expect(calls('docker')).toContainEqual(['swarm', 'init', '--advertise-addr', value]);
    expect(calls('docker')).toContainEqual(['node', 'update', '--label-add', value, value]);
    expect(readFileSync(curlStdin, 'utf8')).toBe(JSON.stringify({ JoinToken: value }));
  });
});

describe('scriptError', () => {
  const ssh: SshTarget = { host: 'm.example', port: 22, user: 'deploy', keyFile: '/k', knownHostsFile: '/kh', controlPath: '/c' };
  const failed = (exitCode: number, stderr: string) => scriptError(ssh, { exitCode, stdout: '', stderr, skipped: false, durationMs: 1 });

  it('turns refusals into exit 3 and missing pieces into exit 2, naming the server', () => {
    expect([failed(CLUSTER_EXIT.refused, 'the engine is a worker of a swarm\n').message, failed(CLUSTER_EXIT.refused, '').exitCode]).toEqual(['m.example: the engine is a worker of a swarm', EXIT.refused]);
    expect([failed(CLUSTER_EXIT.missing, 'curl is not installed\n').message, failed(CLUSTER_EXIT.missing, '').exitCode]).toEqual(['m.example: curl is not installed', EXIT.usage]);
    expect([failed(1, 'boom\n').message, failed(1, '').exitCode]).toEqual(['on m.example: boom', EXIT.failed]);
  });

  it('explains ssh failures as ssh-deploy does', () => {
    const error = failed(255, 'Host key verification failed.\n');
    expect(error.exitCode).toBe(EXIT.refused);
    expect(error.message).toMatch(/^host key of m\.example:22 is not in \/kh/);
  });
});
