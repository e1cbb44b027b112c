// SSH to the deploy server: strict host-key checking always, one multiplexed connection per run
// (ControlMaster), and remote scripts sent on stdin to `bash -s` so nothing is re-parsed by the
// remote login shell and no secret ever shows up in a process list.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { EXIT, stringValue, ToolError, UsageError, type OptionSpec, type Values } from '../core/cli.ts';
import { lastLine, shellQuote, type Command, type Result, type Runner } from '../core/exec.ts';
import { registerSecret } from '../core/secrets.ts';

/** A run's shared connection to one server: opened once (openSession), every later command rides on it. */
export interface SshConnection {
  runner: Runner;
  ssh: SshTarget;
  /** The shared connection is open: a second step that connects (a deploy after its diff) reuses it. */
  connected?: boolean;
}

export interface SshTarget {
  host: string;
  port: number;
  user: string;
  keyFile: string;
  knownHostsFile: string;
  /** Socket of the shared connection, in the run's private directory; short, as sockets are limited to ~100 bytes. */
  controlPath: string;
}

/** Options every ssh call shares. Host keys are checked against the given file and never added to it. */
export function sshOptions(target: SshTarget, controlMaster: 'auto' | 'yes' = 'auto'): string[] {
  const options: Record<string, string> = {
    BatchMode: 'yes',
    StrictHostKeyChecking: 'yes',
    UserKnownHostsFile: target.knownHostsFile,
    IdentitiesOnly: 'yes',
    IdentityFile: target.keyFile,
    ControlMaster: controlMaster,
    ControlPath: target.controlPath,
    ControlPersist: '120',
    ConnectTimeout: '10',
    ServerAliveInterval: '10',
    ServerAliveCountMax: '3',
    LogLevel: 'ERROR',
  };
  return Object.entries(options).flatMap(([name, value]) => ['-o', `${name}=${value}`]);
}

function destination(target: SshTarget): string[] {
  return ['-p', String(target.port), `${target.user}@${target.host}`];
}

/** Opens the shared connection: the run's one handshake, and the place where host-key problems surface. */
export function openCommand(target: SshTarget): Command {
  return { argv: ['ssh', ...sshOptions(target, 'yes'), '-N', '-f', ...destination(target)], timeoutMs: 30_000 };
}

/** Runs a bash script on the server; the script travels on stdin. A terminal's Ctrl-C does not cut it. */
export function remoteScriptCommand(target: SshTarget, script: string, timeoutMs = 120_000): Command {
  return { argv: ['ssh', ...sshOptions(target), ...destination(target), 'bash -s'], input: script, timeoutMs, shielded: true };
}

/** Runs argv on the server (quoted for the remote shell); with `tty`, on a terminal there (ssh -t). */
export function remoteCommand(target: SshTarget, command: Command, options: { tty?: boolean } = {}): Command {
  return {
    ...command,
    argv: ['ssh', ...sshOptions(target), ...(options.tty ? ['-t'] : []), ...destination(target), command.argv.map(shellQuote).join(' ')],
  };
}

/** Forwards a local port to a port the server reaches (its loopback by default), over the shared connection. */
export function forwardCommand(target: SshTarget, localPort: number, remotePort: number, remoteHost = '127.0.0.1'): Command {
  return {
    argv: ['ssh', ...sshOptions(target), '-O', 'forward', '-L', `127.0.0.1:${localPort}:${remoteHost}:${remotePort}`, ...destination(target)],
    readOnly: true,
    timeoutMs: 15_000,
  };
}

/** Closes the shared connection. */
export function closeCommand(target: SshTarget): Command {
  return { argv: ['ssh', ...sshOptions(target), '-O', 'exit', ...destination(target)], readOnly: true, timeoutMs: 10_000 };
}

/** Checks the local inputs before any connection, so bad input never reaches the server. */
export function checkLocalSshInputs(keyFile: string, knownHostsFile: string): void {
  try {
    readFileSync(keyFile);
  } catch {
    throw new UsageError(`SSH key ${keyFile} cannot be read; pass --key PATH (or SSH_KEY with the key's content)`);
  }
  if (!existsSync(knownHostsFile)) {
    throw new UsageError(
      `known_hosts file ${knownHostsFile} does not exist; pass --known-hosts PATH or SSH_KNOWN_HOSTS (ssh-keyscan output verified out of band)`,
    );
  }
}

/** Turns ssh's own failure (exit 255) into one line that says what to fix. */
export function explainSshFailure(target: SshTarget, result: Result): ToolError | undefined {
  if (result.exitCode !== 255) return undefined;
  const text = result.stderr;
  const where = `${target.user}@${target.host}:${target.port}`;
  if (/REMOTE HOST IDENTIFICATION HAS CHANGED|Host key for .* has changed/i.test(text)) {
    return new ToolError(`host key of ${target.host}:${target.port} does not match ${target.knownHostsFile}; if the server was rebuilt, verify its new key out of band and update the file`, EXIT.refused);
  }
  if (/Host key verification failed|No .* host key is known/i.test(text)) {
    return new ToolError(`host key of ${target.host}:${target.port} is not in ${target.knownHostsFile}; add it (ssh-keyscan -p ${target.port} ${target.host}, verified out of band) or pass --known-hosts`, EXIT.refused);
  }
  if (/Permission denied/i.test(text)) {
    return new ToolError(`${where} refused the key ${target.keyFile}; check --user and that the key is in the user's authorized_keys`, EXIT.usage);
  }
  if (/Connection refused|timed out|No route to host|Could not resolve hostname|Connection closed/i.test(text)) {
    return new ToolError(`cannot reach ${target.host}:${target.port} (${lastLine(text)}); check --host and --port`, EXIT.usage);
  }
  return new ToolError(`ssh to ${where} failed: ${lastLine(text)}`);
}

/** Flags every script that talks to the server shares, each with its environment twin. */
export const SSH_FLAGS = {
  host: { type: 'string', value: 'HOST', env: 'SSH_HOST', help: 'Server to deploy to.' },
  user: { type: 'string', value: 'USER', env: 'SSH_USER', help: 'SSH user on the server (in the docker group).' },
  port: { type: 'string', value: 'PORT', env: 'SSH_PORT', help: 'SSH port (default 22).' },
  key: { type: 'string', value: 'PATH', env: 'SSH_KEY_FILE', help: 'Private key file (default ~/.ssh/id_ed25519); SSH_KEY may hold the key itself.' },
  'known-hosts': {
    type: 'string',
    value: 'PATH',
    env: 'SSH_KNOWN_HOSTS_FILE',
    help: 'known_hosts with the server key (default ~/.ssh/known_hosts); SSH_KNOWN_HOSTS may hold the lines.',
  },
  path: { type: 'string', value: 'DIR', env: 'DEPLOY_PATH', help: 'Deploy directory on the server (default /opt/aidd).' },
} as const satisfies Record<string, OptionSpec>;

/**
 * Builds the SSH target from flags and environment. The connection's socket, and the key and
 * known_hosts when given as content (CI secrets), live in one private directory: made by mkdtemp
 * (mode 0700, unpredictable name), so no other local user can plant a fake socket there or read
 * what passes through it. `cleanup` removes it; the directory never outlives a failed call.
 */
export function resolveSshTarget(values: Values): { target: SshTarget; deployPath: string; cleanup: () => void } {
  const host = stringValue(values, 'host');
  const user = stringValue(values, 'user');
  if (!host) throw new UsageError('no server given; pass --host HOST or set SSH_HOST');
  if (!user) throw new UsageError('no SSH user given; pass --user USER or set SSH_USER');
  const portText = stringValue(values, 'port') ?? '22';
  const port = Number(portText);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new UsageError(`--port ${portText} is not a TCP port (1-65535)`);

  const dir = mkdtempSync(path.join(os.tmpdir(), 'aidd-ssh-'));
  const cleanup = () => rmSync(dir, { recursive: true, force: true });
  try {
    const privateFile = (name: string, content: string) => {
      const file = path.join(dir, name);
      writeFileSync(file, content.endsWith('\n') ? content : `${content}\n`, { mode: 0o600 });
      return file;
    };
    const home = os.homedir();
    let keyFile = stringValue(values, 'key');
    if (!keyFile && process.env.SSH_KEY) {
      registerSecret(process.env.SSH_KEY);
      keyFile = privateFile('key', process.env.SSH_KEY);
    }
    keyFile ??= path.join(home, '.ssh', 'id_ed25519');
    let knownHostsFile = stringValue(values, 'known-hosts');
    if (!knownHostsFile && process.env.SSH_KNOWN_HOSTS) knownHostsFile = privateFile('known_hosts', process.env.SSH_KNOWN_HOSTS);
    knownHostsFile ??= path.join(home, '.ssh', 'known_hosts');
    checkLocalSshInputs(keyFile, knownHostsFile);
    const target: SshTarget = { host, port, user, keyFile, knownHostsFile, controlPath: path.join(dir, 'control.sock') };
    return { target, deployPath: stringValue(values, 'path') ?? '/opt/aidd', cleanup };
  } catch (error) {
    cleanup();
    throw error;
  }
}

/** How known_hosts names a server: `host`, or `[host]:port` off port 22. */
export function knownHostsName(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

/** Exits 0 when the known_hosts file has a key for the server. */
export function knownHostLookupCommand(file: string, host: string, port: number): Command {
  return { argv: ['ssh-keygen', '-F', knownHostsName(host, port), '-f', file], readOnly: true, timeoutMs: 10_000 };
}

/** Asks the server for its host keys; only ever shown to a person to verify, never trusted by itself. */
export function keyscanCommand(host: string, port: number): Command {
  return { argv: ['ssh-keyscan', '-T', '10', '-p', String(port), host], readOnly: true, timeoutMs: 20_000 };
}

/** Fingerprints (SHA256) of known_hosts lines given on stdin. */
export function fingerprintCommand(lines: string): Command {
  return { argv: ['ssh-keygen', '-l', '-f', '-'], input: lines, readOnly: true, timeoutMs: 10_000 };
}
