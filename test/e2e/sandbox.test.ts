// The loopback stand-ins later tests deploy to: a registry with htpasswd and an sshd with a deploy user.
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { startRegistry, startSshServer } from '../../lib/sandbox/sandbox.ts';
import { Secret } from '../../lib/core/secrets.ts';
import { requireDocker, SANDBOX_DIR, testRunner } from './harness.ts';

const runner = testRunner();
const dockerConfig = mkdtempSync(path.join(os.tmpdir(), 'aidd-docker-config-'));

function login(address: string, user: string, password: Secret) {
  return runner.attempt({
    argv: ['docker', 'login', address, '--username', user, '--password-stdin'],
    input: password,
    env: { DOCKER_CONFIG: dockerConfig },
    timeoutMs: 30_000,
  });
}

describe('sandbox registry', () => {
  beforeAll(() => requireDocker(runner));

  it('starts once, reuses the running instance, and answers 401 without credentials', async () => {
    const first = await startRegistry(runner, path.join(SANDBOX_DIR, 'registry'));
    const second = await startRegistry(runner, path.join(SANDBOX_DIR, 'registry'));
    expect(second.port).toBe(first.port);
    const response = await fetch(`http://${first.address}/v2/`, { signal: AbortSignal.timeout(5000) });
    expect(response.status).toBe(401);
  });

  it('accepts docker login with the right password on stdin and refuses a wrong one', async () => {
    const registry = await startRegistry(runner, path.join(SANDBOX_DIR, 'registry'));
    const good = await login(registry.address, registry.user, registry.password);
    expect(good.exitCode).toBe(0);
    const bad = await login(registry.address, registry.user, new Secret('definitely-wrong-password'));
    expect(bad.exitCode).not.toBe(0);
    expect(bad.stderr).toMatch(/unauthorized|401/i);
  });
});

describe('sandbox sshd', () => {
  it('starts once, reuses the running instance, and runs docker for the deploy user with strict host keys', async () => {
    const first = await startSshServer(runner, path.join(SANDBOX_DIR, 'sshd'));
    const server = await startSshServer(runner, path.join(SANDBOX_DIR, 'sshd'));
    expect(server.port).toBe(first.port);
    const ssh = (knownHosts: string) =>
      runner.attempt({
        argv: [
          'ssh', '-p', String(server.port), '-i', server.keyFile,
          '-o', `UserKnownHostsFile=${knownHosts}`, '-o', 'StrictHostKeyChecking=yes', '-o', 'BatchMode=yes',
          `${server.user}@${server.host}`, 'id -un; docker version --format "{{.Server.Version}}"',
        ],
        timeoutMs: 30_000,
      });
    const ok = await ssh(server.knownHostsFile);
    expect(ok.exitCode).toBe(0);
    expect(ok.stdout.split('\n')[0]).toBe(server.user);

    const wrongKnownHosts = path.join(mkdtempSync(path.join(os.tmpdir(), 'aidd-kh-')), 'known_hosts');
    writeFileSync(wrongKnownHosts, `[127.0.0.1]:${server.port} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIC1Yf2m0vB7L9FDcW2R0eUu2r0Kc0rO8Jp2m5qQ4b1Xy\n`);
    const refused = await ssh(wrongKnownHosts);
    expect(refused.exitCode).toBe(255);
    expect(refused.stderr).toMatch(/REMOTE HOST IDENTIFICATION HAS CHANGED|Host key verification failed/);
  });
});
