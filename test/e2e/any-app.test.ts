// Any compose app, not only AIDD Bot (issue 8), against the real registry, sshd and Docker engine on
// loopback. Hello Compose (one compose file with build: + image:, YAML anchors, no variables, no
// database) goes through build-push and ssh-deploy: first deploy without any .env, a second release,
// a no-op redeploy, --rollback, --status, --history. A fixture whose compose file needs variables but
// whose aidd.yml declares none is checked by setup-env and deployed. Bad input changes nothing.
import { mkdirSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { parse as parseYaml } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pullCommand } from '../../lib/build/docker.ts';
import { freePort } from '../../lib/core/net.ts';
import type { Registry, SshServer } from '../../lib/sandbox/sandbox.ts';
import { aiddArgv, REPO_ROOT, scriptArgv } from '../../lib/app/target.ts';
import { buildPushEnv, committedCopy, containerStarts, handshakes, removeProject, sandboxSshArgs, snapshot, startDeploySandbox, tempDir, testRunner, uniqueName, type AppCopy } from './harness.ts';

const runner = testRunner();
const owner = uniqueName('any-app');
const scratch = tempDir('aidd-any-app-e2e');
const dockerConfig = path.join(scratch, 'docker-config');
const HELLO_SOURCE = path.join(REPO_ROOT, 'examples', 'hello-compose');
const FIXTURE = path.join(REPO_ROOT, 'test', 'fixtures', 'needs-vars', 'docker-compose.yml');
/** Where Hello Compose publishes its web service: fixed, as the app has no variables. */
const HELLO_URL = 'http://127.0.0.1:8480';
/** Every byte the scripts printed, searched for secrets. */
const transcript: string[] = [];

let registry: Registry;
let server: SshServer;
let hello: AppCopy;
let deployDir: string;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

interface BuiltImage {
  service: string;
  repository: string;
  digest: string;
  ref: string;
}

interface BuildReport {
  revision: string;
  images: BuiltImage[];
}

function editFile(file: string, change: (text: string) => string): void {
  writeFileSync(file, change(readFileSync(file, 'utf8')));
}

async function runTool(script: string, args: string[], env: Record<string, string | undefined> = {}): Promise<Run> {
  const result = await runner.attempt({
    argv: scriptArgv(script, args),
    env: { ...buildPushEnv(registry, owner, dockerConfig), CI: 'true', ...env },
    timeoutMs: 600_000,
  });
  transcript.push(result.stdout, result.stderr);
  return { code: result.exitCode, stdout: result.stdout, stderr: result.stderr };
}

function buildPush(app: AppCopy, extra: string[] = []): Promise<Run> {
  return runTool('build-push', ['--compose', app.compose, '--registry', registry.address, '--owner', owner, '--json', ...extra]);
}

function sshArgs(project = owner, overrides: Record<string, string | null> = {}): string[] {
  return sandboxSshArgs(server, project, overrides);
}

function deploy(compose: string, args: string[], project = owner): Promise<Run> {
  return runTool('ssh-deploy', ['--compose', compose, ...sshArgs(project), '--registry', registry.address, '--timeout', '60', '--json', ...args]);
}

function writeScratch(name: string, content: string, mode = 0o644): string {
  const file = path.join(scratch, name);
  writeFileSync(file, content, { mode });
  return file;
}

/** A refusal: exit 2 and exactly one line on stderr, the error. */
function expectOneLineRefusal(run: Run, script: string, message: RegExp): void {
  expect(run.code, run.stderr).toBe(2);
  expect(run.stderr.trim().split('\n')).toEqual([expect.stringMatching(new RegExp(`^${script}: error: `))]);
  expect(run.stderr).toMatch(message);
}

function currentRelease(dir = deployDir): string {
  return path.basename(readlinkSync(path.join(dir, 'current')));
}

function releases(): string[] {
  return readdirSync(path.join(deployDir, 'releases')).sort();
}

function releaseRecord(id: string): { revision: string; images: Record<string, string> } {
  return JSON.parse(readFileSync(path.join(deployDir, 'releases', id, 'release.json'), 'utf8')) as { revision: string; images: Record<string, string> };
}

function readAudit(): Record<string, unknown>[] {
  return readFileSync(path.join(deployDir, 'deploys.log'), 'utf8').trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
}

/** Requests that write to this run's repositories (blob uploads, manifest puts), from the registry's access log. */
function registryWrites(): number {
  const pattern = new RegExp(`"(PUT|POST|PATCH|DELETE) /v2/${owner}/`);
  return readFileSync(registry.logFile, 'utf8').split('\n').filter((line) => pattern.test(line)).length;
}

async function localImages(...patterns: string[]): Promise<string[]> {
  const result = await runner.run({ argv: ['docker', 'image', 'ls', '--format', '{{.Repository}}:{{.Tag}}', ...patterns.flatMap((pattern) => ['--filter', `reference=${pattern}`])], readOnly: true });
  return result.stdout.split('\n').filter(Boolean).sort();
}

async function page(url: string): Promise<string> {
  const response = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  expect(response.status).toBe(200);
  return response.text();
}

/** build-push --json output for ssh-deploy --images-from. */
function imagesFile(name: string, report: { revision?: string; images: BuiltImage[] }): string {
  return writeScratch(`${name}.json`, JSON.stringify(report));
}

describe('any compose app: Hello Compose and a fixture with variables, built, deployed and refused like AIDD Bot', () => {
  let v1: BuildReport;
  let v2: BuildReport;
  let firstRelease: string;

  beforeAll(async () => {
    ({ registry, server } = await startDeploySandbox(runner));
    deployDir = path.join(server.home, 'apps', owner);
    mkdirSync(dockerConfig, { recursive: true });
    hello = await committedCopy(runner, HELLO_SOURCE, 'aidd-hello-compose');
  });

  afterAll(async () => {
    if (!registry) return;
    for (const project of [owner, `${owner}-vars`]) await removeProject(runner, project);
    const images = await localImages(`${registry.address}/${owner}/*`);
    if (images.length > 0) await runner.attempt({ argv: ['docker', 'image', 'rm', '--force', ...images], timeoutMs: 120_000 });
  });

  it('build-push builds both services from the anchored build and pushes them as REGISTRY/OWNER/hello-<service>', async () => {
    // Without Docker Hub the Dockerfile's ARG BUSYBOX_IMAGE gets the offline stand-in, announced in one
    // line; the announcement shows without --json, so the images come from the --output lines here.
    const offline = (await runner.attempt(pullCommand('busybox:1.36', 60_000))).exitCode !== 0;
    const outputFile = path.join(scratch, 'v1.output');
    const run = await runTool('build-push', ['--compose', hello.compose, '--registry', registry.address, '--owner', owner, '--output', outputFile]);
    expect(run.code, run.stderr).toBe(0);
    const announced = run.stderr.split('\n').filter((line) => line.includes('cannot be pulled'));
    expect(announced).toEqual(offline ? [expect.stringMatching(/^build-push: warning: busybox:1\.36 cannot be pulled; using offline base images/)] : []);

    const output = Object.fromEntries(readFileSync(outputFile, 'utf8').trim().split('\n').map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]));
    expect(Object.keys(output).sort()).toEqual(['revision', 'web_digest', 'web_image', 'worker_digest', 'worker_image']);
    expect(output.revision).toBe(await hello.sha());
    v1 = {
      revision: output.revision!,
      images: ['web', 'worker'].map((service) => ({ service, repository: `${registry.address}/${owner}/hello-${service}`, digest: output[`${service}_digest`]!, ref: output[`${service}_image`]! })),
    };
    for (const image of v1.images) expect(image.ref).toBe(`${image.repository}@${image.digest}`);
  });

  it('the first deploy needs no .env: pinned images without build:, both services healthy, smoke checks passed, the app revision recorded', async () => {
    expect(v1, 'the images of the first build-push').toBeDefined();
    const run = await deploy(hello.compose, ['--images-from', imagesFile('v1', v1)]);
    expect(run.code, run.stderr).toBe(0);
    const report = JSON.parse(run.stdout) as { result: string; release: string; checks: { name: string; ok: boolean }[] };
    expect(report.result).toBe('deployed');
    expect(report.checks.filter((check) => !check.ok)).toEqual([]);
    expect(report.checks.map((check) => check.name)).toEqual(expect.arrayContaining(['web container', 'worker container', 'web page', 'web health']));
    firstRelease = report.release;
    expect(currentRelease()).toBe(firstRelease);

    const refs = Object.fromEntries(v1.images.map((image) => [image.service, image.ref]));
    expect(releaseRecord(firstRelease)).toMatchObject({ revision: v1.revision, images: refs });
    const toolkitSha = (await runner.run({ argv: ['git', '-C', REPO_ROOT, 'rev-parse', 'HEAD'], readOnly: true })).stdout.trim();
    expect(v1.revision).not.toBe(toolkitSha);
    expect(readAudit().at(-1)).toMatchObject({ action: 'deploy', result: 'deployed', release: expect.stringMatching(new RegExp(`-${v1.revision.slice(0, 12)}$`)) });

    const released = parseYaml(readFileSync(path.join(deployDir, 'current', 'docker-compose.yml'), 'utf8'), { merge: true }) as { services: Record<string, { image: string; build?: unknown }> };
    for (const [service, spec] of Object.entries(released.services)) {
      expect(spec.build, `${service} keeps build:`).toBeUndefined();
      expect(spec.image).toBe(refs[service]);
    }
    expect(await page(HELLO_URL)).toContain('Hello from Hello Compose');
  });

  it('smoke-test checks the deployed app over SSH with its own checks', async () => {
    const run = await runTool('smoke-test', ['--compose', hello.compose, ...sshArgs(), '--timeout', '30', '--json']);
    expect(run.code, run.stderr).toBe(0);
    const result = JSON.parse(run.stdout) as { ok: boolean; checks: { name: string }[] };
    expect(result.checks.map((check) => check.name).sort()).toEqual(['web container', 'web health', 'web page', 'worker container']);
    expect(result.ok).toBe(true);
  });

  it('a second release after a committed change, deployed by tag: the revision comes from the app repository', async () => {
    editFile(path.join(hello.dir, 'www', 'index.html'), (text) => text.replace('</body>', '<p>Release two.</p>\n</body>'));
    await runner.run(hello.git(['commit', '--quiet', '--all', '--message', 'release two']));
    const built = await buildPush(hello);
    expect(built.code, built.stderr).toBe(0);
    v2 = JSON.parse(built.stdout) as BuildReport;
    expect(v2.revision).toBe(await hello.sha());
    for (const image of v2.images) expect(image).toMatchObject({ tags: [v2.revision, 'latest'], pushed: true });
    expect(v2.images.find((image) => image.service === 'web')!.digest).not.toBe(v1.images.find((image) => image.service === 'web')!.digest);

    // No --images-from: the images are REGISTRY/OWNER/<image-name>:TAG, and the revision is the app's HEAD.
    const run = await deploy(hello.compose, ['--owner', owner, '--tag', v2.revision]);
    expect(run.code, run.stderr).toBe(0);
    const report = JSON.parse(run.stdout) as { result: string; release: string };
    expect(report.result).toBe('deployed');
    expect(releaseRecord(report.release)).toMatchObject({
      revision: v2.revision,
      images: Object.fromEntries(v2.images.map((image) => [image.service, image.ref])),
    });
    expect(await page(HELLO_URL)).toContain('Release two.');
  });

  it('a redeploy of the same images changes nothing', async () => {
    const before = releases();
    const run = await deploy(hello.compose, ['--images-from', imagesFile('v2', v2)]);
    expect(run.code, run.stderr).toBe(0);
    expect((JSON.parse(run.stdout) as { result: string }).result).toBe('unchanged');
    expect(releases()).toEqual(before);
  });

  it('--rollback returns to the first release; --status and --history show it', async () => {
    const run = await runTool('ssh-deploy', ['--compose', hello.compose, ...sshArgs(), '--rollback', '--json']);
    expect(run.code, run.stderr).toBe(0);
    expect(currentRelease()).toBe(firstRelease);
    expect(await page(HELLO_URL)).not.toContain('Release two.');

    const status = await runTool('ssh-deploy', ['--compose', hello.compose, ...sshArgs(), '--status', '--json']);
    expect(status.code, status.stderr).toBe(0);
    const state = JSON.parse(status.stdout) as { current: string; release: { revision: string }; services: { service: string; state: string }[] };
    expect(state).toMatchObject({ current: firstRelease, release: { revision: v1.revision } });
    expect(state.services.map((service) => `${service.service}:${service.state}`).sort()).toEqual(['web:running', 'worker:running']);

    const history = await runTool('ssh-deploy', ['--compose', hello.compose, ...sshArgs(), '--history', '--json']);
    expect(history.code, history.stderr).toBe(0);
    const actions = (JSON.parse(history.stdout) as { action: string; result: string }[]).map((entry) => `${entry.action}:${entry.result}`);
    expect(actions).toEqual(['deploy:deployed', 'deploy:deployed', 'deploy:unchanged', 'rollback:ok']);
  });

  it('aidd status, logs and exec work on the live release over the same SSH connection', async () => {
    const aidd = async (args: string[], input?: string): Promise<Run> => {
      const result = await runner.attempt({ argv: aiddArgv([...args]), env: { ...buildPushEnv(registry, owner, dockerConfig), CI: 'true' }, input, timeoutMs: 120_000 });
      transcript.push(result.stdout, result.stderr);
      return { code: result.exitCode, stdout: result.stdout, stderr: result.stderr };
    };
    const target = ['--compose', hello.compose, ...sshArgs()];

    const status = await aidd(['status', ...target]);
    expect(status.code, status.stderr).toBe(0);
    expect(status.stdout).toContain(`current release: ${firstRelease}`);
    for (const service of ['web', 'worker']) {
      expect(status.stdout).toMatch(new RegExp(`^  ${service} +running +healthy +\\S+ +0 +${registry.address.replace(/\./g, '\\.')}/${owner}/hello-${service}@sha256:[0-9a-f]{64}$`, 'm'));
    }
    const json = JSON.parse((await aidd(['status', ...target, '--json'])).stdout) as { services: { service: string; image: string; restarts: number; startedAt: string }[] };
    expect(json.services.map((service) => service.image).every((image) => /@sha256:[0-9a-f]{64}$/.test(image))).toBe(true);
    expect(json.services.every((service) => service.restarts === 0 && Date.parse(service.startedAt) > 0)).toBe(true);

    const logs = await aidd(['logs', ...target, 'worker', '--tail', '5']);
    expect(logs.code, logs.stderr).toBe(0);
    const lines = logs.stdout.split('\n').filter(Boolean);
    expect(lines.length).toBeGreaterThan(0);
    expect(lines.every((line) => line.startsWith('worker | '))).toBe(true);
    const recent = await aidd(['logs', ...target, '--since', '1h']);
    expect(recent.code, recent.stderr).toBe(0);
    expect(recent.stdout).toMatch(/^worker \| /m);

    // Each word reaches the container's command as it is, quotes and $(...) included.
    const words = await aidd(['exec', 'web', ...target, '--', 'sh', '-c', 'echo "[$0] [$1]"', 'a b', '$(touch /tmp/aidd-exec-marker)']);
    expect(words.code, words.stderr).toBe(0);
    expect(words.stdout.trim()).toBe('[a b] [$(touch /tmp/aidd-exec-marker)]');
    expect((await aidd(['exec', 'web', ...target, '--', 'sh', '-c', 'exit 7'])).code).toBe(7);
    expect((await aidd(['exec', 'web', ...target, '--', 'sh', '-c', 'read line; echo "got $line"'], 'hello\n')).stdout.trim()).toBe('got hello');

    // deploy --diff: decided as the deploy would be, nothing changed on the server.
    const before = { releases: releases(), containers: await containerStarts(runner, owner) };
    const ref = (report: BuildReport, service: string) => report.images.find((image) => image.service === service)!.ref!;
    const diffArgs = ['deploy', ...target, '--registry', registry.address, '--images-from', imagesFile('v2-diff', v2), '--diff'];
    const diff = await aidd([...diffArgs, '--json']);
    expect(diff.code, diff.stderr).toBe(0);
    const changes = JSON.parse(diff.stdout) as { current: string; images: { service: string; from?: string; to: string; kept: boolean }[]; compose: string; env: Record<string, string[]> };
    expect(changes.current).toBe(firstRelease);
    expect(changes.images.find((image) => image.service === 'web')).toEqual({ service: 'web', from: ref(v1, 'web'), to: ref(v2, 'web'), kept: false });
    // Both services are built from one image holding the page, so the worker's content changed too.
    expect(changes.images.find((image) => image.service === 'worker')).toEqual({ service: 'worker', from: ref(v1, 'worker'), to: ref(v2, 'worker'), kept: false });
    expect(changes.compose).toMatch(new RegExp(`^-\\s+image: ${ref(v1, 'web').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm'));
    expect(changes.compose).toMatch(new RegExp(`^\\+\\s+image: ${ref(v2, 'web').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm'));
    expect(changes.env).toEqual({ added: [], removed: [], changed: [] });
    const text = await aidd(diffArgs);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toContain(`  web: ${ref(v1, 'web')} -> ${ref(v2, 'web')}`);
    expect(text.stdout).toContain(`  worker: ${ref(v1, 'worker')} -> ${ref(v2, 'worker')}`);
    expect({ releases: releases(), containers: await containerStarts(runner, owner) }).toEqual(before);

    const unknown = await aidd(['logs', ...target, 'nosuch']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr.trim()).toBe('ssh-deploy: error: --logs: "nosuch" is not a service of the compose file; its services are web, worker');
  });

  describe('a fixture whose compose file needs variables and whose aidd.yml declares none', () => {
    const apiKey = `key-${randomBytes(12).toString('hex')}`;

    it('setup-env --check names exactly its missing variables, GREETING and API_KEY', async () => {
      const envFile = writeScratch('needs-vars.env', `PORT=${await freePort()}\n`, 0o600);
      const run = await runTool('setup-env', ['--compose', FIXTURE, '--target', 'production', '--file', envFile, '--check', '--json']);
      expect(run.code, run.stderr).toBe(1);
      const result = JSON.parse(run.stdout) as { ok: boolean; problems: { name: string }[] };
      expect(result.ok).toBe(false);
      expect(result.problems.map((problem) => problem.name).sort()).toEqual(['API_KEY', 'GREETING']);
    });

    const project = `${owner}-vars`;
    let port: number;
    let images: string;

    it('deploys with a complete .env, whose values reach the container and never the output', async () => {
      expect(v1, 'the Hello Compose images of the first build-push').toBeDefined();
      port = await freePort();
      const envFile = writeScratch('needs-vars-complete.env', `GREETING=Hello from a fixture\nAPI_KEY=${apiKey}\nPORT=${port}\n`, 0o600);
      const web = v1.images.find((image) => image.service === 'web')!;
      images = imagesFile('needs-vars', { images: [{ ...web, service: 'greeter' }] });
      const run = await deploy(FIXTURE, ['--images-from', images, '--server-env', envFile], project);
      expect(run.code, run.stderr).toBe(0);
      expect((JSON.parse(run.stdout) as { result: string }).result).toBe('deployed');
      expect(await page(`http://127.0.0.1:${port}/health.json`)).toContain('ok');
      const id = (await runner.run({ argv: ['docker', 'ps', '--quiet', '--filter', `label=com.docker.compose.project=${project}`], readOnly: true })).stdout.trim();
      const env = (await runner.run({ argv: ['docker', 'inspect', '--format', '{{json .Config.Env}}', id], readOnly: true })).stdout;
      expect(JSON.parse(env)).toEqual(expect.arrayContaining(['GREETING=Hello from a fixture', `API_KEY=${apiKey}`]));
      expect(transcript.some((text) => text.includes(apiKey))).toBe(false);
    });

    it("a port something else holds: the error names the address and the service, and the previous release serves", async () => {
      // The proxy cannot listen where the new .env publishes greeter.
      const blocker = net.createServer();
      await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
      try {
        const busy = (blocker.address() as net.AddressInfo).port;
        const envFile = writeScratch('needs-vars-busy.env', `GREETING=Hello again\nAPI_KEY=${apiKey}\nPORT=${busy}\n`, 0o600);
        const run = await deploy(FIXTURE, ['--images-from', images, '--server-env', envFile], project);
        expect(run.code, run.stderr).toBe(4);
        const report = JSON.parse(run.stdout) as { result: string; error: string };
        expect(report.result).toBe('rolled-back');
        expect(report.error).toMatch(/the proxy cannot listen on 127\.0\.0\.1:\S+ for greeter: address already in use/);
        expect(await page(`http://127.0.0.1:${port}/health.json`)).toContain('ok');
      } finally {
        blocker.close();
      }
    });
  });

  describe('bad input: one line, exit 2, nothing built, pushed or changed on the server', () => {
    const cases: [string, (dir: string) => void, RegExp][] = [
      ['an aidd.yml with an unknown key', (dir) => editFile(path.join(dir, 'aidd.yml'), (text) => `${text}colour: blue\n`), /aidd\.yml.*colour/],
      ['a smoke check on a service that does not exist', (dir) => editFile(path.join(dir, 'aidd.yml'), (text) => text.replace('service: web', 'service: frontend')), /aidd\.yml.*smoke\[0\]\.service.*frontend/],
    ];

    it.each(cases)('%s', async (_name, edit, message) => {
      const bad = await committedCopy(runner, HELLO_SOURCE, 'aidd-hello-compose', { prepare: edit });
      const [images, writes, files, connections] = [await localImages(`${registry.address}/${owner}/*`), registryWrites(), snapshot(deployDir), handshakes(server.logFile)];
      expectOneLineRefusal(await buildPush(bad), 'build-push', message);
      const deployed = await deploy(bad.compose, ['--owner', owner]);
      expectOneLineRefusal(deployed, 'ssh-deploy', message);
      expect(await localImages(`${registry.address}/${owner}/*`)).toEqual(images);
      expect(registryWrites()).toBe(writes);
      expect(snapshot(deployDir)).toEqual(files);
      expect(handshakes(server.logFile)).toBe(connections);
    });

    it('an image: without a registry host while pushing', async () => {
      const bad = await committedCopy(runner, HELLO_SOURCE, 'aidd-hello-compose', { prepare: (dir) => editFile(path.join(dir, 'docker-compose.yml'), (text) => text.replace('image: hello-web:dev', 'image: acme/web')) });
      const [images, writes] = [await localImages(`${registry.address}/${owner}/*`, 'acme/web'), registryWrites()];
      expectOneLineRefusal(await buildPush(bad), 'build-push', /acme\/web/);
      expect(await localImages(`${registry.address}/${owner}/*`, 'acme/web')).toEqual(images);
      expect(registryWrites()).toBe(writes);
    });
  });
});
