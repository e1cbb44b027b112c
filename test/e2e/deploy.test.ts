// ssh-deploy and smoke-test against the real sshd, registry and engine on loopback: first deploy,
// redeploy, no-op, automatic rollback, failed migration, locking, SIGINT, bad input, data and secrets.
import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { chownSync, existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveBaseImages } from '../../lib/build/base-images.ts';
import { loadComposeApp } from '../../lib/app/compose.ts';
import { createLogger } from '../../lib/core/log.ts';
import { freePort } from '../../lib/core/net.ts';
import type { Registry, SshServer } from '../../lib/sandbox/sandbox.ts';
import { DEFAULT_COMPOSE_FILE, scriptArgv } from '../../lib/app/target.ts';
import { getJson, handshakes, pushVariant as pushImageVariant, removeProxyRoutes, SANDBOX_DIR, sandboxSshArgs, snapshot, startDeploySandbox, tempDir, testRunner, uniqueName } from './harness.ts';
import { startOnTerminal } from './terminal.ts';

const runner = testRunner();
const owner = uniqueName('deploy');
const scratch = tempDir('aidd-deploy-e2e');
const dockerConfig = path.join(scratch, 'docker-config');
/** TMPDIR of every run: where the scripts make their private SSH directories, which must not outlive a run. */
const runTmp = path.join(scratch, 'tmp');
const postgresPassword = `Pg-${randomBytes(12).toString('base64url')}`;
/** Every byte the scripts printed, searched for secrets at the end. */
const transcript: string[] = [];

let registry: Registry;
let server: SshServer;
let deployDir: string;
let apiPort: number;
let envFile: string;
let images: Record<string, string> = {};

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function sshArgs(overrides: Record<string, string | null> = {}): string[] {
  return sandboxSshArgs(server, owner, overrides);
}

function scriptEnv(extra: Record<string, string> = {}): Record<string, string> {
  return { REGISTRY_USER: registry.user, REGISTRY_TOKEN: registry.password.reveal(), DOCKER_CONFIG: dockerConfig, CI: 'true', TMPDIR: runTmp, ...extra };
}

async function runTool(script: string, args: string[], env: Record<string, string> = scriptEnv()): Promise<Run> {
  const result = await runner.attempt({ argv: scriptArgv(script, args), env, timeoutMs: 600_000 });
  transcript.push(result.stdout, result.stderr);
  return { code: result.exitCode, stdout: result.stdout, stderr: result.stderr };
}

/** `detached`: a process group of its own, like a terminal's foreground job, so a Ctrl-C can be sent to all of it. */
function startTool(script: string, args: string[], env = scriptEnv(), detached = false): { child: ChildProcess; done: Promise<Run>; stderr: () => string } {
  const [program, ...argv] = scriptArgv(script, args);
  const child = spawn(program!, argv, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const done = new Promise<Run>((resolve) =>
    child.on('close', (code, signal) => {
      transcript.push(stdout, stderr);
      resolve({ code: code ?? (signal === 'SIGINT' ? 130 : 1), stdout, stderr });
    }),
  );
  return { child, done, stderr: () => stderr };
}

/**
 * A refusal is exactly one error line (after any progress lines); stdout is empty, or with --json one
 * JSON object saying the same.
 */
function expectOneLineError(run: Run, message: RegExp): void {
  const errors = run.stderr.split('\n').filter((line) => line.startsWith('ssh-deploy: error:'));
  expect(errors, run.stderr).toHaveLength(1);
  expect(run.stderr.trim().split('\n').at(-1)).toBe(errors[0]);
  expect(errors[0]).toMatch(message);
  if (run.stdout !== '') expect(JSON.parse(run.stdout)).toMatchObject({ ok: false, result: 'failed', error: errors[0]!.replace('ssh-deploy: error: ', '') });
}

/** Private SSH directories left in the runs' TMPDIR. */
function sshLeftovers(): string[] {
  return readdirSync(runTmp).filter((name) => name.startsWith('aidd-ssh-'));
}

/** Writes a build-push style images file choosing one ref per service. */
function imagesFile(name: string, refs: Record<string, string>): string {
  const file = path.join(scratch, `${name}.json`);
  writeFileSync(file, JSON.stringify({ revision: `rev-${name}`, images: Object.entries(refs).map(([service, ref]) => ({ service, repository: ref.split('@')[0], ref })) }));
  return file;
}

function deploy(imagesName: string, refs: Record<string, string>, extra: string[] = []): Promise<Run> {
  return runTool('ssh-deploy', [...sshArgs(), '--registry', registry.address, '--images-from', imagesFile(imagesName, refs), '--timeout', '120', '--json', ...extra]);
}

function pushVariant(dockerfile: string, ref: string, context = scratch): Promise<string> {
  return pushImageVariant(runner, dockerConfig, dockerfile, ref, context);
}

function readAudit(): Record<string, unknown>[] {
  return readFileSync(path.join(deployDir, 'deploys.log'), 'utf8').trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
}

function currentRelease(): string {
  return path.basename(readlinkSync(path.join(deployDir, 'current')));
}

function releases(): string[] {
  return readdirSync(path.join(deployDir, 'releases')).sort();
}

function releaseImages(id: string): Record<string, string> {
  return (JSON.parse(readFileSync(path.join(deployDir, 'releases', id, 'release.json'), 'utf8')) as { images: Record<string, string> }).images;
}

/** Images of a kept release that differ from the running ones: deploying them runs every step. */
function otherImages(): Record<string, string> {
  const running = JSON.stringify(releaseImages(currentRelease()));
  const other = releases().map(releaseImages).find((candidate) => JSON.stringify(candidate) !== running);
  expect(other).toBeDefined();
  return other!;
}

async function psql(query: string): Promise<string> {
  const id = (await runner.run({ argv: ['docker', 'ps', '-q', '--filter', `label=com.docker.compose.project=${owner}`, '--filter', 'label=com.docker.compose.service=postgres'] })).stdout.trim();
  return (await runner.run({ argv: ['docker', 'exec', id, 'psql', '-U', 'aidd', '-d', 'aidd', '-tAc', query], timeoutMs: 30_000 })).stdout.trim();
}

async function apiHealth(): Promise<{ status: number; body: Record<string, unknown> }> {
  return getJson(`http://127.0.0.1:${apiPort}/health`);
}

describe('ssh-deploy against a real sshd, registry and Docker engine', () => {
  beforeAll(async () => {
    ({ registry, server } = await startDeploySandbox(runner));
    deployDir = path.join(server.home, 'apps', owner);
    mkdirSync(dockerConfig, { recursive: true });
    mkdirSync(runTmp);

    const baseImages = await resolveBaseImages(await loadComposeApp(DEFAULT_COMPOSE_FILE), runner, createLogger({ prefix: 'e2e', quiet: true }));
    const built = await runTool('build-push', ['--registry', registry.address, '--owner', owner, '--json']);
    expect(built.code, built.stderr).toBe(0);
    const output = JSON.parse(built.stdout) as { images: { service: string; ref: string }[] };
    images = Object.fromEntries(output.images.map((image) => [image.service, image.ref]));

    apiPort = await freePort();
    envFile = path.join(scratch, '.env.production');
    const postgresImage = baseImages.POSTGRES_IMAGE ? `POSTGRES_IMAGE=${baseImages.POSTGRES_IMAGE}\n` : '';
    writeFileSync(
      envFile,
      `POSTGRES_USER=aidd\nPOSTGRES_PASSWORD=${postgresPassword}\nPOSTGRES_DB=aidd\nBOT_MODE=offline\nAPI_PORT=${apiPort}\nFRONTEND_PORT=${await freePort()}\nREGISTRY=${registry.address}\nIMAGE_OWNER=${owner}\n${postgresImage}`,
      { mode: 0o600 },
    );
  });

  afterAll(async () => {
    await removeProxyRoutes(runner, owner);
    if (!deployDir || !existsSync(path.join(deployDir, 'current'))) return;
    const dir = path.join(deployDir, 'current');
    await runner.attempt({
      argv: ['docker-compose', '--project-name', owner, '--project-directory', dir, '--file', path.join(dir, 'docker-compose.yml'), '--env-file', path.join(dir, '.env'), 'down', '--volumes'],
      timeoutMs: 300_000,
    });
  });

  it('first deploy to an empty server path: one handshake, pinned digests, .env 0600, audited', async () => {
    const before = handshakes(server.logFile);
    const run = await deploy('v1', images, ['--server-env', envFile]);
    expect(run.code, run.stderr).toBe(0);
    expect(handshakes(server.logFile) - before).toBe(1);
    const report = JSON.parse(run.stdout) as { result: string; release: string; images: Record<string, string> };
    expect(report.result).toBe('deployed');
    expect(currentRelease()).toBe(report.release);
    const release = JSON.parse(readFileSync(path.join(deployDir, 'current', 'release.json'), 'utf8')) as { images: Record<string, string>; revision: string };
    expect(release.images).toEqual(images);
    expect(release.revision).toBe('rev-v1');
    expect(statSync(path.join(deployDir, 'current', '.env')).mode & 0o777).toBe(0o600);
    expect(readFileSync(path.join(deployDir, 'current', 'docker-compose.yml'), 'utf8')).toContain(`image: ${images.api}`);
    expect(await apiHealth()).toMatchObject({ status: 200, body: { database: 'ok', migration: '0002' } });
    expect(readAudit().at(-1)).toMatchObject({ action: 'deploy', result: 'deployed', release: report.release });
  });

  it('smoke-test checks the server over the same kind of SSH connection', async () => {
    const run = await runTool('smoke-test', [...sshArgs(), '--json']);
    expect(run.code, run.stderr).toBe(0);
    const result = JSON.parse(run.stdout) as { ok: boolean; checks: { name: string; ok: boolean }[] };
    expect(result.checks.map((check) => check.name)).toEqual(
      expect.arrayContaining(['postgres container', 'bot container', 'api health', 'api stats', 'frontend page']),
    );
    expect(result.ok).toBe(true);
  });

  it('a second deploy of a new build backs up the database and keeps its rows', async () => {
    await psql("INSERT INTO tg_users (id, username) VALUES (777, 'before-redeploy') ON CONFLICT DO NOTHING");
    await psql("INSERT INTO messages (user_id, text) VALUES (777, 'kept')");
    const v2: Record<string, string> = {};
    for (const [service, ref] of Object.entries(images)) {
      v2[service] = await pushVariant(`FROM ${ref}\nENV AIDD_BUILD=v2\n`, `${ref.split('@')[0]}:v2`);
    }
    const previous = currentRelease();
    const run = await deploy('v2', v2);
    expect(run.code, run.stderr).toBe(0);
    expect(currentRelease()).not.toBe(previous);
    expect(readdirSync(path.join(deployDir, 'backups')).filter((name) => name.endsWith('.dump'))).toHaveLength(1);
    expect(await psql("SELECT count(*) FROM messages WHERE text = 'kept'")).toBe('1');
    images = v2;
  });

  it('a no-op deploy of the same digests changes nothing, reports it, and notifies Telegram and a webhook', async () => {
    const received: { url: string; body: Record<string, unknown> }[] = [];
    const listener = http.createServer((request, response) => {
      let body = '';
      request.on('data', (chunk: Buffer) => (body += chunk.toString()));
      request.on('end', () => {
        received.push({ url: request.url ?? '', body: JSON.parse(body) as Record<string, unknown> });
        response.end('{"ok":true}');
      });
    });
    await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
    const { port } = listener.address() as AddressInfo;
    const telegramToken = `999:${randomBytes(20).toString('hex')}`;
    const before = releases();
    try {
      const run = await runTool(
        'ssh-deploy',
        [...sshArgs(), '--registry', registry.address, '--images-from', imagesFile('v2-again', images), '--json'],
        scriptEnv({
          NOTIFY_TELEGRAM_TOKEN: telegramToken,
          NOTIFY_TELEGRAM_CHAT_ID: '-10042',
          NOTIFY_TELEGRAM_API: `http://127.0.0.1:${port}`,
          NOTIFY_WEBHOOK_URL: `http://127.0.0.1:${port}/hook/secret-part`,
        }),
      );
      expect(run.code, run.stderr).toBe(0);
      expect((JSON.parse(run.stdout) as { result: string }).result).toBe('unchanged');
      expect(releases()).toEqual(before);
      expect(received.map((item) => item.url).sort()).toEqual([`/bot${telegramToken}/sendMessage`, '/hook/secret-part']);
      for (const item of received) expect(String(item.body.text)).toMatch(new RegExp(`^deploy of ${owner} on aidd-deploy@127\\.0\\.0\\.1:~/apps/${owner}: no change: release \\S+ already runs these images`));
      expect(received.find((item) => item.url.includes('sendMessage'))?.body.chat_id).toBe('-10042');
      expect(run.stderr).not.toContain(telegramToken);
      expect(run.stderr).not.toContain('secret-part');
    } finally {
      listener.close();
    }
  });

  it('a release whose api fails its healthcheck rolls back; the previous release keeps serving', async () => {
    const serving = currentRelease();
    const broken = await pushVariant(`FROM ${images.api}\nCMD ["sh", "-c", "exec python3 -m http.server 8000"]\n`, `${images.api!.split('@')[0]}:broken-health`);
    const run = await deploy('broken-health', { ...images, api: broken });
    expect(run.code, run.stderr).toBe(4);
    const report = JSON.parse(run.stdout) as { result: string; previous: string; error: string };
    expect(report).toMatchObject({ result: 'rolled-back', previous: serving });
    expect(report.error).toMatch(/api/);
    expect(currentRelease()).toBe(serving);
    expect(await apiHealth()).toMatchObject({ status: 200, body: { database: 'ok' } });
    expect(readAudit().at(-1)).toMatchObject({ result: 'rolled-back', restored: serving });
    expect(await psql("SELECT count(*) FROM messages WHERE text = 'kept'")).toBe('1');
  });

  it('a failing migration switches nothing and leaves the database intact', async () => {
    const serving = currentRelease();
    const before = releases();
    const migration = [
      'revision = "0003"',
      'down_revision = "0002"',
      'from alembic import op',
      'def upgrade():',
      '    op.execute("ALTER TABLE messages ADD COLUMN broken integer")',
      '    op.execute("SELECT no_such_function()")',
      'def downgrade():',
      '    pass',
    ].join('\n');
    writeFileSync(path.join(scratch, '0003_broken.py'), `${migration}\n`);
    const broken = await pushVariant(`FROM ${images.api}\nCOPY 0003_broken.py /app/migrations/versions/0003_broken.py\n`, `${images.api!.split('@')[0]}:broken-migration`);
    const run = await deploy('broken-migration', { ...images, api: broken });
    expect(run.code, run.stderr).toBe(1);
    expect(run.stderr).toMatch(/migration failed/);
    // --json ends with one object that says where it failed and which backup was taken before.
    const report = JSON.parse(run.stdout) as { backup: string };
    expect(report).toMatchObject({ ok: false, action: 'deploy', result: 'failed', failedStep: 'migrate', previous: serving, error: expect.stringMatching(/migration failed/) });
    expect(existsSync(path.join(deployDir, 'backups', report.backup))).toBe(true);
    expect(currentRelease()).toBe(serving);
    expect(releases()).toEqual(before);
    expect(await psql('SELECT version_num FROM alembic_version')).toBe('0002');
    expect(await psql("SELECT count(*) FROM information_schema.columns WHERE table_name = 'messages' AND column_name = 'broken'")).toBe('0');
    expect(await psql("SELECT count(*) FROM messages WHERE text = 'kept'")).toBe('1');
    expect(await apiHealth()).toMatchObject({ status: 200 });
    expect(readAudit().at(-1)).toMatchObject({ result: 'failed', step: 'migrate' });
  });

  it('--rollback returns to the release live before, skipping one that never went live, with the data in place; --history shows it all', async () => {
    const [first] = releases();
    // A release switched to but interrupted before its checks: it sorts between the two live ones, and
    // its compose file cannot start. Only the audit log and release.json say it never went live.
    const interrupted = `${first}-interrupted`;
    const { uid, gid } = statSync(deployDir);
    mkdirSync(path.join(deployDir, 'releases', interrupted));
    writeFileSync(path.join(deployDir, 'releases', interrupted, 'docker-compose.yml'), 'services:\n  api:\n    image: no-such-image:never\n');
    writeFileSync(path.join(deployDir, 'releases', interrupted, 'release.json'), JSON.stringify({ id: interrupted, previous: first }));
    writeFileSync(path.join(deployDir, 'releases', interrupted, '.env'), '');
    for (const item of ['', 'docker-compose.yml', 'release.json', '.env']) chownSync(path.join(deployDir, 'releases', interrupted, item), uid, gid);
    const run = await runTool('ssh-deploy', [...sshArgs(), '--rollback', '--json']);
    expect(run.code, run.stderr).toBe(0);
    expect(currentRelease()).toBe(first);
    rmSync(path.join(deployDir, 'releases', interrupted), { recursive: true });
    expect(await psql("SELECT count(*) FROM messages WHERE text = 'kept'")).toBe('1');
    const history = await runTool('ssh-deploy', [...sshArgs(), '--history', '--json']);
    const actions = (JSON.parse(history.stdout) as { action: string; result: string }[]).map((entry) => `${entry.action}:${entry.result}`);
    expect(actions).toEqual(['deploy:deployed', 'deploy:deployed', 'deploy:unchanged', 'deploy:rolled-back', 'deploy:failed', 'rollback:ok']);
    const status = await runTool('ssh-deploy', [...sshArgs(), '--status', '--json']);
    expect(JSON.parse(status.stdout)).toMatchObject({ current: first });
  });

  it('never migrates without a backup: with the database down the deploy stops at the backup, changing nothing', async () => {
    const serving = currentRelease();
    const before = releases();
    const postgres = (await runner.run({ argv: ['docker', 'ps', '-q', '--filter', `label=com.docker.compose.project=${owner}`, '--filter', 'label=com.docker.compose.service=postgres'] })).stdout.trim();
    await runner.run({ argv: ['docker', 'stop', postgres], timeoutMs: 60_000 });
    try {
      const run = await deploy('database-down', images);
      expect(run.code, run.stderr).toBe(1);
      expect(run.stderr).toMatch(/no running postgres container to back up; nothing was migrated\. Pass --no-backup/);
      expect(JSON.parse(run.stdout)).toMatchObject({ ok: false, failedStep: 'backup' });
      expect(currentRelease()).toBe(serving);
      expect(releases()).toEqual(before);
      expect(readAudit().at(-1)).toMatchObject({ result: 'failed', step: 'backup' });
    } finally {
      await runner.run({ argv: ['docker', 'start', postgres], timeoutMs: 60_000 });
    }
    const database = async () => (await apiHealth().catch(() => ({ body: {} as Record<string, unknown> }))).body.database;
    for (let tries = 0; tries < 120 && (await database()) !== 'ok'; tries += 1) await sleep(500);
    expect(await apiHealth()).toMatchObject({ status: 200, body: { database: 'ok' } });
  });

  it('refuses a second deploy while one runs, naming the holder', async () => {
    const first = startTool('ssh-deploy', [...sshArgs(), '--registry', registry.address, '--images-from', imagesFile('lock-a', images), '--reason', 'lock test']);
    for (let waited = 0; waited < 600 && !existsSync(path.join(deployDir, 'lock', 'owner.json')); waited += 1) await sleep(100);
    expect(existsSync(path.join(deployDir, 'lock'))).toBe(true);
    const second = await deploy('lock-b', images);
    expect(second.code).toBe(3);
    expectOneLineError(second, /^ssh-deploy: error: deploy lock is held by .+ since .+ \(lock test\)/);
    const done = await first.done;
    expect(done.code, done.stderr).toBe(0);
    expect(existsSync(path.join(deployDir, 'lock'))).toBe(false);
  });

  it('SIGINT midway releases the lock, and a re-run converges', async () => {
    const [first] = releases();
    const target = JSON.parse(readFileSync(path.join(deployDir, 'releases', first!, 'release.json'), 'utf8')) as { images: Record<string, string> };
    const run = startTool('ssh-deploy', [...sshArgs(), '--registry', registry.address, '--images-from', imagesFile('interrupted', target.images)]);
    for (let waited = 0; waited < 600 && !/Migrating|Switching/.test(run.stderr()); waited += 1) await sleep(100);
    expect(run.stderr()).toMatch(/Migrating|Switching/);
    run.child.kill('SIGINT');
    const interrupted = await run.done;
    expect(interrupted.code).toBe(130);
    expect(existsSync(path.join(deployDir, 'lock'))).toBe(false);
    expect(sshLeftovers()).toEqual([]);
    expect(readAudit().at(-1)).toMatchObject({ action: 'interrupted' });
    const again = await deploy('converge', target.images);
    expect(again.code, again.stderr).toBe(0);
    expect(await apiHealth()).toMatchObject({ status: 200 });
    expect(await psql("SELECT count(*) FROM messages WHERE text = 'kept'")).toBe('1');
  });

  it('a stale lock refuses deploys until --break-lock removes it, and the break is audited', async () => {
    const lockDir = path.join(deployDir, 'lock');
    const { uid, gid } = statSync(deployDir);
    mkdirSync(lockDir);
    writeFileSync(path.join(lockDir, 'owner.json'), '{"who":"crashed@laptop","at":"2026-01-01T00:00:00Z","reason":"deploy"}\n');
    for (const item of [lockDir, path.join(lockDir, 'owner.json')]) chownSync(item, uid, gid);

    const refused = await deploy('stale-lock', images);
    expect(refused.code).toBe(3);
    expectOneLineError(refused, /deploy lock is held by crashed@laptop since 2026-01-01T00:00:00Z \(deploy\)/);

    const broken = await runTool('ssh-deploy', [...sshArgs(), '--break-lock']);
    expect(broken.code, broken.stderr).toBe(0);
    expect(broken.stdout).toContain('crashed@laptop');
    expect(existsSync(lockDir)).toBe(false);
    expect(readAudit().at(-1)).toMatchObject({ action: 'break-lock' });

    const again = await deploy('after-break', images);
    expect(again.code, again.stderr).toBe(0);
  });

  it('the guided walkthrough on a terminal asks what the flags left out, has the person verify the host key, and deploys', async () => {
    const knownHosts = path.join(scratch, 'walkthrough', 'known_hosts');
    const other = otherImages();
    const token = registry.password.reveal();
    const argv = [...scriptArgv('ssh-deploy'), '--project', owner, '--registry', registry.address, '--images-from', imagesFile('walkthrough', other), '--path', `~/apps/${owner}`, '--known-hosts', knownHosts];
    const expected = (await runner.run({ argv: ['ssh-keygen', '-lf', path.join(SANDBOX_DIR, 'sshd', 'ssh_host_ed25519_key.pub')] })).stdout.split(' ')[1]!;
    const terminal = await startOnTerminal(runner, argv, { unset: ['REGISTRY_TOKEN', 'REGISTRY_USER'] });
    const answer = async (prompt: string, text?: string) => {
      await terminal.waitFor(prompt);
      if (text !== undefined) await terminal.type(text);
      await terminal.keys('Enter');
    };
    try {
      await answer('Server address', server.host);
      await answer('SSH user', server.user);
      await answer('SSH port', String(server.port));
      await answer('Private key file', server.keyFile);
      await answer('Fetch the key with ssh-keyscan');
      expect(await terminal.waitFor('Does it match exactly?')).toContain(expected);
      await terminal.keys('y');
      await answer('Upload a .env for the server?');
      await answer('.env file for the server', envFile);
      await answer('Registry token', token);
      await answer('Registry user', registry.user);
      const question = await terminal.waitFor('Deploy now?');
      expect(question).toContain('token given (hidden)');
      // What the deploy changes, by name only: the images, and the .env's variables without their values.
      expect(question).toContain('What this deploy changes on the server');
      expect(question).not.toContain(postgresPassword);
      await terminal.keys('Enter');
      const shown = await terminal.waitFor('[exit 0]', 180);
      expect(shown).toMatch(/deployed \d{8}T\d{6}Z-/);
      expect(shown).not.toContain(token);
      expect(shown).not.toContain(postgresPassword);
      expect(readFileSync(knownHosts, 'utf8')).toMatch(new RegExp(`^\\[127\\.0\\.0\\.1\\]:${server.port} ssh-ed25519 `, 'm'));
      expect(statSync(knownHosts).mode & 0o777).toBe(0o600);
      expect(JSON.parse(readFileSync(path.join(deployDir, 'current', 'release.json'), 'utf8'))).toMatchObject({ images: other });
    } finally {
      await terminal.close();
    }
  });

  describe('bad input: one line, non-zero, server untouched', () => {
    const wrongKey = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIC1Yf2m0vB7L9FDcW2R0eUu2r0Kc0rO8Jp2m5qQ4b1Xy';
    const cases: [string, () => Promise<Record<string, string>>, number, RegExp][] = [
      ['an unknown host key', async () => ({ 'known-hosts': writeScratch('empty_known_hosts', '') }), 3, /host key of 127\.0\.0\.1:\d+ is not in /],
      ['a changed host key', async () => ({ 'known-hosts': writeScratch('changed_known_hosts', `[127.0.0.1]:${server.port} ${wrongKey}\n`) }), 3, /host key of 127\.0\.0\.1:\d+ does not match/],
      ['a wrong user', async () => ({ user: 'nobody-here' }), 2, /nobody-here@127\.0\.0\.1:\d+ refused the key/],
      ['an unreadable key file', async () => ({ key: path.join(scratch, 'no-such-key') }), 2, /SSH key .*no-such-key cannot be read/],
      ['an unreachable port', async () => ({ port: String(await freePort()) }), 2, /cannot reach 127\.0\.0\.1:\d+/],
    ];

    function writeScratch(name: string, content: string): string {
      const file = path.join(scratch, name);
      writeFileSync(file, content);
      return file;
    }

    it.each(cases)('%s', async (_name, overrides, code, message) => {
      const before = snapshot(deployDir);
      const run = await runTool('ssh-deploy', [...sshArgs(await overrides()), '--registry', registry.address, '--images-from', imagesFile('bad-input', images)]);
      expect(run.code).toBe(code);
      expectOneLineError(run, message);
      expect(snapshot(deployDir)).toEqual(before);
    });

    it('a hostile value, or an images file that leaves services out, before any connection', async () => {
      const before = snapshot(deployDir);
      const handshakesBefore = handshakes(server.logFile);
      const marker = path.join(scratch, 'PWNED');
      const hostile = await runTool('ssh-deploy', [...sshArgs(), '--registry', registry.address, '--images-from', imagesFile('hostile', images), '--revision', `x$(touch ${marker})`]);
      expect(hostile.code).toBe(2);
      expectOneLineError(hostile, /^ssh-deploy: error: --revision "x\$\(touch .*PWNED\)" is not a revision/);
      const partial = await runTool('ssh-deploy', [...sshArgs(), '--registry', registry.address, '--owner', owner, '--images-from', imagesFile('partial', { api: images.api! })]);
      expect(partial.code).toBe(2);
      expectOneLineError(partial, /^ssh-deploy: error: --images-from .* has no image for bot, frontend; .* --unpinned bot --unpinned frontend/);
      expect(existsSync(marker)).toBe(false);
      expect(handshakes(server.logFile)).toBe(handshakesBefore);
      expect(snapshot(deployDir)).toEqual(before);
    });

    it('a bad registry token', async () => {
      const before = snapshot(deployDir);
      const v3 = await pushVariant(`FROM ${images.api}\nENV AIDD_BUILD=v3\n`, `${images.api!.split('@')[0]}:v3`);
      // The server (this machine's engine) must lack the image: one it has is never pulled, so no login is tried.
      for (const ref of [`${images.api!.split('@')[0]}:v3`, v3]) await runner.attempt({ argv: ['docker', 'image', 'rm', ref], timeoutMs: 60_000 });
      expect((await runner.attempt({ argv: ['docker', 'image', 'inspect', v3], readOnly: true })).exitCode).not.toBe(0);
      const run = await runTool(
        'ssh-deploy',
        [...sshArgs(), '--registry', registry.address, '--images-from', imagesFile('bad-token', { ...images, api: v3 })],
        scriptEnv({ REGISTRY_TOKEN: 'wrong-registry-token' }),
      );
      expect(run.code).toBe(2);
      expectOneLineError(run, /docker login to 127\.0\.0\.1:\d+ refused.*check REGISTRY_USER and REGISTRY_TOKEN/);
      expect(snapshot(deployDir)).toEqual(before);
    });
  });

  it('a deploy configured like the workflow (SSH_* from the environment) shows no secret in any output or in ps', async () => {
    const keyBody = readFileSync(server.keyFile, 'utf8').split('\n')[1]!;
    const secrets = [registry.password.reveal(), postgresPassword, keyBody];
    // Other images than the running ones, so every step runs: login, upload of the .env, backup, migrate, switch.
    const other = otherImages();
    // Shaped like the deploy workflow: the server, key and host key come from the environment (secrets).
    const run = startTool(
      'ssh-deploy',
      ['--project', owner, '--registry', registry.address, '--images-from', imagesFile('ps', other), '--server-env', envFile],
      scriptEnv({
        SSH_HOST: server.host,
        SSH_PORT: String(server.port),
        SSH_USER: server.user,
        SSH_KEY: readFileSync(server.keyFile, 'utf8'),
        SSH_KNOWN_HOSTS: readFileSync(server.knownHostsFile, 'utf8'),
        DEPLOY_PATH: `~/apps/${owner}`,
      }),
    );
    const processLists: string[] = [];
    for (let sample = 0; sample < 300 && run.child.exitCode === null; sample += 1) {
      processLists.push((await runner.run({ argv: ['ps', '-eo', 'args'] })).stdout);
      await sleep(100);
    }
    const done = await run.done;
    expect(done.code, done.stderr).toBe(0);
    expect(done.stderr).toMatch(/Uploading release[\s\S]*Backing up[\s\S]*Switching/);
    expect(processLists.length).toBeGreaterThan(20);
    for (const secret of secrets) {
      expect(processLists.some((list) => list.includes(secret))).toBe(false);
      expect(transcript.some((text) => text.includes(secret))).toBe(false);
    }
  });

  /** An expand-only migration file (it adds, never drops), written to the scratch dir for an image build. */
  function expandMigration(revision: string, previous: string, statements: string[]): string {
    const file = `${revision}_expand.py`;
    const body = [`revision = "${revision}"`, `down_revision = "${previous}"`, 'from alembic import op', 'def upgrade():', ...statements.map((sql) => `    op.execute("${sql}")`), 'def downgrade():', '    pass'];
    writeFileSync(path.join(scratch, file), `${body.join('\n')}\n`);
    return `COPY ${file} /app/migrations/versions/${file}\n`;
  }

  let backupBeforeMigration: string;

  // The last deploys: they leave the database migrations ahead of every other image.
  it('a migrated release that fails its checks rolls back to one that runs healthy on the newer schema, naming the backup from before', async () => {
    const serving = currentRelease();
    const steps = expandMigration('0003', '0002', ['ALTER TABLE messages ADD COLUMN source text']);
    // Healthy to docker (its /health answers 200), but its checks fail: the database is not there for it.
    const broken = await pushVariant(
      `FROM ${images.api}\n${steps}RUN mkdir -p /tmp/www && printf '%s' '{"status": "ok", "database": "down"}' > /tmp/www/health\nCMD ["python3", "-m", "http.server", "8000", "--directory", "/tmp/www"]\n`,
      `${images.api!.split('@')[0]}:migrated-broken`,
    );
    const run = await runTool('ssh-deploy', [...sshArgs(), '--registry', registry.address, '--images-from', imagesFile('migrated-broken', { ...images, api: broken }), '--timeout', '30', '--json']);
    expect(run.code, run.stderr).toBe(4);
    const report = JSON.parse(run.stdout) as { release: string; backup: string };
    expect(report).toMatchObject({ result: 'rolled-back', previous: serving, failedStep: 'verify', backup: `${report.release}.dump` });
    expect(existsSync(path.join(deployDir, 'backups', report.backup))).toBe(true);
    expect(await psql('SELECT version_num FROM alembic_version')).toBe('0003');
    expect(currentRelease()).toBe(serving);
    expect(await apiHealth()).toMatchObject({ status: 200, body: { database: 'ok' } });
    expect(await psql("SELECT count(*) FROM messages WHERE text = 'kept'")).toBe('1');
    expect(readAudit().at(-1)).toMatchObject({ result: 'rolled-back', restored: serving, backup: report.backup });
    backupBeforeMigration = report.backup;
  });

  it('--restore-backup brings back the data from before the migration, only when confirmed, and audits it', async () => {
    await psql("INSERT INTO messages (user_id, text) VALUES (777, 'after-the-backup')");
    const restore = ['--restore-backup', backupBeforeMigration, '--timeout', '120', '--json'];
    const unconfirmed = await runTool('ssh-deploy', [...sshArgs(), ...restore]);
    expect(unconfirmed.code, unconfirmed.stderr).toBe(2);
    expect(unconfirmed.stderr).toMatch(/confirm with --yes/);
    expect(await psql("SELECT count(*) FROM messages WHERE text = 'after-the-backup'")).toBe('1');

    const run = await runTool('ssh-deploy', [...sshArgs(), ...restore, '--yes']);
    expect(run.code, run.stderr).toBe(0);
    expect(JSON.parse(run.stdout)).toMatchObject({ ok: true });
    // The rows and the schema are the backup's: the row written after it is gone, the one before is back.
    expect(await psql("SELECT count(*) FROM messages WHERE text = 'after-the-backup'")).toBe('0');
    expect(await psql("SELECT count(*) FROM messages WHERE text = 'kept'")).toBe('1');
    expect(await psql('SELECT version_num FROM alembic_version')).toBe('0002');
    expect(await apiHealth()).toMatchObject({ status: 200, body: { database: 'ok', migration: '0002' } });
    expect(readAudit().at(-1)).toMatchObject({ action: 'restore-backup' });
  });

  it("a terminal's Ctrl-C during a migration lets it finish on the server; the lock goes only once it is over", async () => {
    const serving = currentRelease();
    const steps = expandMigration('0003', '0002', ['ALTER TABLE messages ADD COLUMN source text']) + expandMigration('0004', '0003', ['SELECT pg_sleep(8)', 'ALTER TABLE messages ADD COLUMN note text']);
    const slow = await pushVariant(`FROM ${images.api}\n${steps}`, `${images.api!.split('@')[0]}:slow-migration`);
    const run = startTool('ssh-deploy', [...sshArgs(), '--registry', registry.address, '--images-from', imagesFile('slow-migration', { ...images, api: slow })], scriptEnv(), true);
    for (let waited = 0; waited < 600 && !/Migrating/.test(run.stderr()); waited += 1) await sleep(100);
    await sleep(2_000);
    // What a Ctrl-C on a terminal does: SIGINT to every process of the foreground group, ssh included.
    process.kill(-run.child.pid!, 'SIGINT');
    const interrupted = await run.done;
    expect(interrupted.code, interrupted.stderr).toBe(130);
    // One key press is one signal, even when tsx passes it on as well.
    expect(interrupted.stderr).not.toMatch(/SIGINT again/);
    // The migration ran to its end on the server before the run let go of the lock.
    expect(await psql('SELECT version_num FROM alembic_version')).toBe('0004');
    expect(await psql("SELECT count(*) FROM information_schema.columns WHERE table_name = 'messages' AND column_name = 'note'")).toBe('1');
    expect(existsSync(path.join(deployDir, 'lock'))).toBe(false);
    expect(readAudit().at(-1)).toMatchObject({ action: 'interrupted', step: 'switch' });
    // Nothing was switched, and the release still serving runs on the schema one step ahead (expand/contract).
    expect(currentRelease()).toBe(serving);
    expect(await apiHealth()).toMatchObject({ status: 200, body: { database: 'ok' } });
    expect(await psql("SELECT count(*) FROM messages WHERE text = 'kept'")).toBe('1');
  });

  it('no run left its private SSH directory behind: deploys, refusals, signals, smoke tests', () => {
    expect(sshLeftovers()).toEqual([]);
  });
});
