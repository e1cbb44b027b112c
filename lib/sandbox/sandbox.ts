// A private stand-in for the outside world on loopback: a Docker engine, a registry with htpasswd
// auth and an SSH server with a dedicated deploy user. The tests and the rehearsal use it; each
// part gets its own port and directory, keeps its log, and starting it twice reuses what runs.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chownSync, existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ToolError } from '../core/cli.ts';
import { freePort } from '../core/net.ts';
import { dockerInfoCommand } from '../build/docker.ts';
import type { Command, Runner } from '../core/exec.ts';
import { Secret } from '../core/secrets.ts';

function portAnswers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port, timeout: 1000 });
    socket.once('connect', () => (socket.destroy(), resolve(true)));
    socket.once('error', () => resolve(false));
    socket.once('timeout', () => (socket.destroy(), resolve(false)));
  });
}

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs: number, logFile: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await sleep(250);
  }
  throw new ToolError(`${what} did not start within ${timeoutMs / 1000}s; see ${logFile}`);
}

interface DaemonState {
  pid: number;
  port: number;
}

function readState(file: string): DaemonState | undefined {
  if (!existsSync(file)) return undefined;
  const state = JSON.parse(readFileSync(file, 'utf8')) as DaemonState;
  return processAlive(state.pid) ? state : undefined;
}

export function startDetached(argv: string[], logFile: string): number {
  const log = openSync(logFile, 'a');
  const child = spawn(argv[0]!, argv.slice(1), { detached: true, stdio: ['ignore', log, log] });
  child.unref();
  return child.pid!;
}

/** A Docker engine must answer; with CI set a missing engine is a failure, never a skip. */
export async function ensureDockerEngine(runner: Runner, logDir: string): Promise<void> {
  if ((await runner.attempt(dockerInfoCommand())).exitCode === 0) return;
  if (process.getuid?.() !== 0 || !existsSync('/usr/bin/dockerd')) {
    throw new ToolError('no Docker engine answers `docker info`; run `sudo bash .ci/provision` to install and start one');
  }
  mkdirSync(logDir, { recursive: true });
  const logFile = path.join(logDir, 'dockerd.log');
  startDetached(['/usr/bin/dockerd'], logFile);
  await waitFor('dockerd', async () => (await runner.attempt(dockerInfoCommand())).exitCode === 0, 60_000, logFile);
}

export interface Registry {
  /** host:port, as used in image refs and docker login. */
  address: string;
  port: number;
  user: string;
  password: Secret;
  logFile: string;
  stop(): void;
}

export function htpasswdCommand(file: string, user: string, password: Secret): Command {
  return { argv: ['htpasswd', '-c', '-B', '-i', file, user], input: password, timeoutMs: 30_000 };
}

export async function startRegistry(runner: Runner, dir: string, user = 'aidd'): Promise<Registry> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const stateFile = path.join(dir, 'state.json');
  const passwordFile = path.join(dir, 'password');
  const logFile = path.join(dir, 'registry.log');
  if (!existsSync(passwordFile)) writeFileSync(passwordFile, randomBytes(18).toString('base64url'), { mode: 0o600 });
  const password = new Secret(readFileSync(passwordFile, 'utf8'));
  let state = readState(stateFile);
  if (!state || !(await portAnswers(state.port))) {
    const port = await freePort();
    const htpasswd = path.join(dir, 'htpasswd');
    await runner.run(htpasswdCommand(htpasswd, user, password));
    const config = path.join(dir, 'config.yml');
    writeFileSync(
      config,
      [
        'version: 0.1',
        'log: {level: info}',
        `storage: {filesystem: {rootdirectory: ${path.join(dir, 'data')}}, delete: {enabled: true}}`,
        `http: {addr: "127.0.0.1:${port}"}`,
        `auth: {htpasswd: {realm: aidd-registry, path: ${htpasswd}}}`,
        '',
      ].join('\n'),
    );
    const pid = startDetached(['docker-registry', 'serve', config], logFile);
    state = { pid, port };
    writeFileSync(stateFile, JSON.stringify(state));
    await waitFor('docker-registry', () => portAnswers(port), 20_000, logFile);
  }
  const { pid, port } = state;
  return { address: `127.0.0.1:${port}`, port, user, password, logFile, stop: () => stopProcess(pid) };
}

function stopProcess(pid: number): void {
  if (processAlive(pid)) process.kill(pid, 'SIGTERM');
}

export interface SshServer {
  host: string;
  port: number;
  user: string;
  /** Private key of the deploy user's client, mode 0600. */
  keyFile: string;
  /** known_hosts holding this server's host key, for strict checking. */
  knownHostsFile: string;
  /** The deploy user's home: the place deploy paths go. */
  home: string;
  logFile: string;
  stop(): void;
}

function keygenCommand(file: string, comment: string): Command {
  return { argv: ['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', file], timeoutMs: 30_000 };
}

/** A real deploy account: in the docker group, unlocked for key login only (usermod -p '*'). */
export function deployUserCommands(user: string): Command[] {
  return [
    { argv: ['useradd', '--create-home', '--shell', '/bin/bash', user], timeoutMs: 30_000 },
    { argv: ['usermod', '--append', '--groups', 'docker', '--password', '*', user], timeoutMs: 30_000 },
  ];
}

/** `extraConfig` adds sshd_config lines (a benchmark sets the session PATH with SetEnv). */
export async function startSshServer(runner: Runner, dir: string, user = 'aidd-deploy', extraConfig: string[] = []): Promise<SshServer> {
  if (process.getuid?.() !== 0) throw new ToolError('the local SSH server needs root (it creates a deploy user); run as root');
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const logFile = path.join(dir, 'sshd.log');
  const knownHostsFile = path.join(dir, 'known_hosts');
  const { hostKey, keyFile, home } = await prepareDeployLogin(runner, dir, user);
  const { port, stop } = await startSshDaemon(runner, dir, { allowUsers: user, hostKey, extraConfig });
  writeKnownHosts(knownHostsFile, port, hostKey);
  return { host: '127.0.0.1', port, user, keyFile, knownHostsFile, home, logFile, stop };
}

export interface DeployLogin {
  /** The server's private host key; its .pub goes into known_hosts. */
  hostKey: string;
  /** The deploy user's client key, mode 0600. */
  keyFile: string;
  home: string;
}

/** Host and client keys in `dir` (made once), and the deploy account with the client key authorized. */
export async function prepareDeployLogin(runner: Runner, dir: string, user: string): Promise<DeployLogin> {
  const hostKey = path.join(dir, 'ssh_host_ed25519_key');
  const keyFile = path.join(dir, 'client_key');
  if (!existsSync(hostKey)) await runner.run(keygenCommand(hostKey, 'aidd-sandbox-host'));
  if (!existsSync(keyFile)) await runner.run(keygenCommand(keyFile, 'aidd-sandbox-client'));
  const idResult = await runner.attempt({ argv: ['id', '-u', user], readOnly: true });
  if (idResult.exitCode !== 0) for (const command of deployUserCommands(user)) await runner.run(command);
  const [, , uid, gid, , home] = (await runner.run({ argv: ['getent', 'passwd', user], readOnly: true })).stdout.split(':');
  // The key goes where a real server keeps it, owned by the deploy user.
  const sshDir = path.join(home!, '.ssh');
  mkdirSync(sshDir, { recursive: true, mode: 0o700 });
  // Appended, not overwritten: several sandboxes (tests, benchmarks) may share the deploy user.
  const authorizedKeys = path.join(sshDir, 'authorized_keys');
  const publicKey = readFileSync(`${keyFile}.pub`, 'utf8');
  const known = existsSync(authorizedKeys) ? readFileSync(authorizedKeys, 'utf8') : '';
  if (!known.includes(publicKey.trim())) writeFileSync(authorizedKeys, known + publicKey, { mode: 0o600 });
  for (const file of [sshDir, authorizedKeys]) chownSync(file, Number(uid), Number(gid));
  return { hostKey, keyFile, home: home! };
}

/** known_hosts holding the host key of a server reached on 127.0.0.1:port, for strict checking. */
export function writeKnownHosts(file: string, port: number, hostKey: string): void {
  const hostPublicKey = readFileSync(`${hostKey}.pub`, 'utf8').split(' ').slice(0, 2).join(' ');
  writeFileSync(file, `[127.0.0.1]:${port} ${hostPublicKey}\n`);
}

export interface SshDaemonOptions {
  /** sshd's AllowUsers: the only accounts that may log in. They need not exist yet. */
  allowUsers: string;
  /** Private host key file; its .pub is what clients see. */
  hostKey: string;
  /** More sshd_config lines (a benchmark sets the session PATH with SetEnv). */
  extraConfig?: string[];
}

/**
 * sshd on a free loopback port, configured in `dir` (sshd.log there), for key logins only; the accounts
 * and their authorized_keys are the caller's. A daemon already running from `dir` is reused.
 */
export async function startSshDaemon(runner: Runner, dir: string, options: SshDaemonOptions): Promise<{ port: number; logFile: string; stop(): void }> {
  if (process.getuid?.() !== 0) throw new ToolError('the local SSH server needs root; run as root');
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const stateFile = path.join(dir, 'state.json');
  const logFile = path.join(dir, 'sshd.log');
  let state = readState(stateFile);
  if (!state || !(await portAnswers(state.port))) {
    const port = await freePort();
    const config = path.join(dir, 'sshd_config');
    const pidFile = path.join(dir, 'sshd.pid');
    writeFileSync(config, sshdConfigText({ ...options, port, listenAddress: '127.0.0.1', pidFile }));
    mkdirSync('/run/sshd', { recursive: true });
    await runner.run({ argv: ['/usr/sbin/sshd', '-f', config, '-E', logFile], timeoutMs: 30_000 });
    await waitFor('sshd', () => portAnswers(port), 20_000, logFile);
    state = { pid: Number(readFileSync(pidFile, 'utf8').trim()), port };
    writeFileSync(stateFile, JSON.stringify(state));
  }
  const { pid, port } = state;
  return { port, logFile, stop: () => stopProcess(pid) };
}

/** The sshd_config of a sandbox daemon: key logins only, for `allowUsers`, on `listenAddress`:`port`. */
export function sshdConfigText(options: SshDaemonOptions & { port: number; listenAddress: string; pidFile: string }): string {
  return [
    `Port ${options.port}`,
    `ListenAddress ${options.listenAddress}`,
    `HostKey ${options.hostKey}`,
    `PidFile ${options.pidFile}`,
    `AllowUsers ${options.allowUsers}`,
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'PermitRootLogin no',
    'UsePAM no',
    'MaxStartups 100',
    'MaxSessions 100',
    'Subsystem sftp /usr/lib/openssh/sftp-server',
    ...(options.extraConfig ?? []),
    '',
  ].join('\n');
}
