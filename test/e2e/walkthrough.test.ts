// The guided deploy (D2) on a real terminal, against the real registry, sshd and Docker engine on
// loopback: `aidd deploy` without --host, --user or --owner asks for them, fetches the unknown host key
// and adds it only after the person confirms its fingerprint, shows what the deploy would change on
// the server, and deploys only on a yes. The app is Hello Compose (not AIDD Bot).
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../lib/core/net.ts';
import type { Registry, SshServer } from '../../lib/sandbox/sandbox.ts';
import { aiddArgv, REPO_ROOT, scriptArgv } from '../../lib/app/target.ts';
import { buildPushEnv, committedCopy, removeProject, SANDBOX_DIR, startDeploySandbox, tempDir, testRunner, uniqueName, type AppCopy } from './harness.ts';
import { startOnTerminal, type Terminal } from './terminal.ts';

const runner = testRunner();
const owner = uniqueName('walkthrough');
const scratch = tempDir('aidd-walkthrough-e2e');
const dockerConfig = path.join(scratch, 'docker-config');
/** Does not exist yet: the walkthrough offers to fetch the server's key into it. */
const knownHosts = path.join(scratch, 'ssh', 'known_hosts');

let registry: Registry;
let server: SshServer;
let hello: AppCopy;
let url: string;
let deployDir: string;
const terminals: Terminal[] = [];

/** `aidd deploy` on a terminal with the server, user and owner left to the walkthrough. */
async function startDeploy(): Promise<Terminal> {
  const argv = aiddArgv(['deploy', '--compose', hello.compose, '--registry', registry.address, '--project', owner, '--path', `~/apps/${owner}`, '--key', server.keyFile, '--known-hosts', knownHosts, '--timeout', '60']);
  const env = { REGISTRY_USER: registry.user, REGISTRY_TOKEN: registry.password.reveal(), AIDD_PROXY_IMAGE: process.env.AIDD_PROXY_IMAGE!, TMPDIR: scratch };
  const terminal = await startOnTerminal(runner, argv, { env, cwd: scratch });
  terminals.push(terminal);
  return terminal;
}

/** Answers a text prompt once it shows. */
async function answer(terminal: Terminal, prompt: string, text: string): Promise<void> {
  await terminal.waitFor(prompt);
  if (text) await terminal.type(text);
  await terminal.keys('Enter');
}

/** The server questions and the image questions, as a person answers them on a known server. */
async function answerUpToTheDeploy(terminal: Terminal, options: { newHostKey: boolean }): Promise<string> {
  await answer(terminal, 'Server address (SSH host)', '127.0.0.1');
  await answer(terminal, 'SSH user (in the docker group)', server.user);
  await answer(terminal, 'SSH port', String(server.port));
  if (options.newHostKey) {
    await terminal.waitFor('Fetch the key with ssh-keyscan and show its fingerprint?');
    await terminal.keys('y');
    await terminal.waitFor('Does it match exactly?');
    const fingerprint = (await runner.run({ argv: ['ssh-keygen', '-lf', path.join(SANDBOX_DIR, 'sshd', 'ssh_host_ed25519_key.pub')], readOnly: true })).stdout.split(' ')[1]!;
    // The person compares what the walkthrough shows with the server's own fingerprint.
    expect(await terminal.screen()).toContain(fingerprint);
    await terminal.keys('y');
  }
  await answer(terminal, 'Image owner', owner);
  await answer(terminal, 'Image tag', '');
  await terminal.waitFor('Upload a .env for the server?');
  await terminal.keys('n');
  return terminal.waitFor('Deploy now?', 120);
}

describe('the guided deploy on a terminal', () => {
  beforeAll(async () => {
    ({ registry, server } = await startDeploySandbox(runner));
    deployDir = path.join(server.home, 'apps', owner);
    mkdirSync(dockerConfig, { recursive: true });
    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    hello = await committedCopy(runner, path.join(REPO_ROOT, 'examples', 'hello-compose'), 'aidd-walkthrough', {
      prepare: (dir) => {
        const file = path.join(dir, 'docker-compose.yml');
        writeFileSync(file, readFileSync(file, 'utf8').replace('127.0.0.1:8480:8080', `127.0.0.1:${port}:8080`));
      },
    });
    const build = await runner.attempt({
      argv: scriptArgv('build-push', ['--compose', hello.compose, '--registry', registry.address, '--owner', owner]),
      env: { ...buildPushEnv(registry, owner, dockerConfig), CI: 'true' },
      timeoutMs: 600_000,
    });
    expect(build.exitCode, build.stderr).toBe(0);
  });

  afterAll(async () => {
    for (const terminal of terminals) await terminal.close();
    if (!registry) return;
    await removeProject(runner, owner);
    const images = (await runner.attempt({ argv: ['docker', 'image', 'ls', '--format', '{{.Repository}}:{{.Tag}}', '--filter', `reference=${registry.address}/${owner}/*`], readOnly: true })).stdout.split('\n').filter(Boolean);
    if (images.length > 0) await runner.attempt({ argv: ['docker', 'image', 'rm', '--force', ...images], timeoutMs: 120_000 });
  });

  it('adds the host key only after the fingerprint is confirmed, shows what the deploy would change, and changes nothing on a no', async () => {
    const terminal = await startDeploy();
    const screen = await answerUpToTheDeploy(terminal, { newHostKey: true });
    // The key was added once the person said it matches, before anything connected with it.
    const hostKey = readFileSync(path.join(SANDBOX_DIR, 'sshd', 'ssh_host_ed25519_key.pub'), 'utf8').split(' ').slice(0, 2).join(' ');
    expect(readFileSync(knownHosts, 'utf8')).toContain(hostKey);
    expect(screen).toContain('What this deploy changes on the server');
    expect(screen).toContain('live release: none (this would be the first deploy)');
    for (const service of ['web', 'worker']) expect(screen).toMatch(new RegExp(`${service}: \\(none\\) -> ${registry.address}/${owner}/hello-${service}@sha256:[0-9a-f]{64}`));
    expect(screen).toMatch(/compose file: new, \d+ lines/);
    expect(screen).toMatch(/images +127\.0\.0\.1:\d+\/walkthrough-[0-9a-f]+\/\*:latest/);
    // The steps before the question were live lines that ended as one ✓ line each.
    expect(screen).toMatch(/✓ Preflight: docker, compose, disk, deploy path \(\d+\.\d s\)/);
    await terminal.keys('n');
    const end = await terminal.waitFor('[exit ');
    expect(end).toContain('[exit 130]');
    expect(end).toContain('Cancelled: nothing was deployed.');
    expect(existsSync(path.join(deployDir, 'current'))).toBe(false);
    expect(existsSync(path.join(deployDir, 'releases')) ? readdirSync(path.join(deployDir, 'releases')) : []).toEqual([]);
    expect(end).not.toContain(registry.password.reveal());
  });

  it('deploys the images it showed on a yes, with each step a ✓ line, and the app answers', async () => {
    const terminal = await startDeploy();
    const screen = await answerUpToTheDeploy(terminal, { newHostKey: false });
    const shown = [...screen.matchAll(/(web|worker): \(none\) -> (\S+)/g)].map((match) => [match[1], match[2]]);
    expect(shown).toHaveLength(2);
    await terminal.keys('y');
    const end = await terminal.waitFor(/\[exit \d+\]/, 300);
    expect(end, end).toContain('[exit 0]');
    expect(end).toMatch(/^deployed \S+$/m);
    for (const title of ['Connecting to', 'Preflight', 'Pulling', 'Switching']) expect(end).toMatch(new RegExp(`^✓ ${title}.* \\(\\d+\\.\\d s\\)$`, 'm'));
    expect(end).not.toContain(registry.password.reveal());
    const release = JSON.parse(readFileSync(path.join(deployDir, 'current', 'release.json'), 'utf8')) as { images: Record<string, string> };
    expect(Object.entries(release.images).sort()).toEqual(shown.sort());
    const response = await fetch(url, { signal: AbortSignal.timeout(10_000) });
    expect(response.status).toBe(200);
    expect(await response.text()).toContain('Hello from Hello Compose');
  });
});
