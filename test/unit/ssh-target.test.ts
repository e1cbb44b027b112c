// Finding 2 of issue 9: the connection's socket, and a key or known_hosts given as content, live in one
// private directory that no other local user can predict, plant or read, and that never outlives the run.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { resolveSshTarget } from '../../lib/deploy/ssh.ts';

const scratch = mkdtempSync(path.join(os.tmpdir(), 'aidd-ssh-test-'));
const keyFile = path.join(scratch, 'id');
execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', keyFile]);
const knownHosts = path.join(scratch, 'known_hosts');
writeFileSync(knownHosts, '192.0.2.1 ssh-ed25519 AAAA\n');

let tmp: string;
const saved = { TMPDIR: process.env.TMPDIR, SSH_KEY: process.env.SSH_KEY, SSH_KNOWN_HOSTS: process.env.SSH_KNOWN_HOSTS };
beforeEach(() => {
  tmp = mkdtempSync(path.join(scratch, 'tmp-'));
  process.env.TMPDIR = tmp;
  delete process.env.SSH_KEY;
  delete process.env.SSH_KNOWN_HOSTS;
});
afterEach(() => {
  for (const [name, value] of Object.entries(saved)) {
    if (value === undefined) delete process.env[name];
    else process.env[name] = value;
  }
});

describe('the SSH target lives in a private directory', () => {
  it('puts the control socket in a fresh 0700 directory of its own, with an unpredictable name', () => {
    const first = resolveSshTarget({ host: '192.0.2.1', user: 'deploy', key: keyFile, 'known-hosts': knownHosts });
    const second = resolveSshTarget({ host: '192.0.2.1', user: 'deploy', key: keyFile, 'known-hosts': knownHosts });
    const dir = path.dirname(first.target.controlPath);
    expect(path.dirname(dir)).toBe(tmp);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(statSync(dir).uid).toBe(process.getuid!());
    expect(path.dirname(second.target.controlPath)).not.toBe(dir);
    expect(first.target.controlPath).not.toContain(String(process.pid));
    expect(Buffer.byteLength(first.target.controlPath)).toBeLessThan(80);
    first.cleanup();
    second.cleanup();
    expect(readdirSync(tmp)).toEqual([]);
  });

  it('writes a key and host keys given as content next to the socket, 0600, and removes them all', () => {
    process.env.SSH_KEY = readFileSync(keyFile, 'utf8');
    process.env.SSH_KNOWN_HOSTS = readFileSync(knownHosts, 'utf8');
    const { target, cleanup } = resolveSshTarget({ host: '192.0.2.1', user: 'deploy' });
    const dir = path.dirname(target.controlPath);
    expect([path.dirname(target.keyFile), path.dirname(target.knownHostsFile)]).toEqual([dir, dir]);
    expect(statSync(target.keyFile).mode & 0o777).toBe(0o600);
    expect(readFileSync(target.keyFile, 'utf8')).toBe(process.env.SSH_KEY);
    cleanup();
    expect(readdirSync(tmp)).toEqual([]);
  });

  it('leaves nothing behind when the inputs are refused', () => {
    process.env.SSH_KEY = readFileSync(keyFile, 'utf8');
    expect(() => resolveSshTarget({ host: '192.0.2.1', user: 'deploy', 'known-hosts': path.join(scratch, 'none') })).toThrow(/known_hosts file .* does not exist/);
    expect(() => resolveSshTarget({ host: '192.0.2.1', user: 'deploy', port: '70000' })).toThrow(/not a TCP port/);
    expect(readdirSync(tmp)).toEqual([]);
  });
});
