// build-push against the real Docker engine and a real registry with htpasswd on 127.0.0.1: tags,
// digests and labels as the registry and the engine see them, a second build that pushes nothing,
// a refused login that changes nothing, --no-push, and the registry compose file pulled and run.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveBaseImages } from '../../lib/build/base-images.ts';
import type { ImageResult } from '../../lib/build/build.ts';
import { composeCommand, loadComposeApp, type ComposeTarget } from '../../lib/app/compose.ts';
import type { Result } from '../../lib/core/exec.ts';
import { localAccess } from '../../lib/app/local-stack.ts';
import { createLogger } from '../../lib/core/log.ts';
import { freePort } from '../../lib/core/net.ts';
import { startRegistry, type Registry } from '../../lib/sandbox/sandbox.ts';
import { runSmoke } from '../../lib/app/smoke.ts';
import { detectComposeCli, scriptArgv } from '../../lib/app/target.ts';
import { buildPushEnv, committedStackCopy, requireDocker, SANDBOX_DIR, tempDir, testRunner, uniqueName, writeEnvFile, type AppCopy } from './harness.ts';

const runner = testRunner();
const SERVICES = ['api', 'bot', 'frontend'];
/** Unique per run, so runs sharing the sandbox registry never see each other's images. */
const owner = uniqueName('e2e-build');
const dockerConfig = tempDir('aidd-docker-config');
const outputFile = path.join(tempDir('aidd-build-output'), 'github_output');
let registry: Registry;
let stackDir: string;
let sha: string;
let published: ImageResult[];

interface BuildReport {
  ok: boolean;
  registry: string;
  owner: string;
  revision: string;
  dirty: boolean;
  images: ImageResult[];
}

let git: AppCopy['git'];

/** Runs the script as CI would: no stdin, credentials only in the environment, a private DOCKER_CONFIG. */
function buildPush(args: string[], env: Record<string, string> = {}): Promise<Result> {
  return runner.attempt({
    argv: scriptArgv('build-push', ['--compose', path.join(stackDir, 'docker-compose.yml'), '--json', ...args]),
    env: { ...buildPushEnv(registry, owner, dockerConfig), ...env },
    timeoutMs: 900_000,
  });
}

function report(result: Result): BuildReport {
  expect(result.exitCode, result.stderr).toBe(0);
  const parsed = JSON.parse(result.stdout) as BuildReport;
  parsed.images.sort((a, b) => a.service.localeCompare(b.service));
  return parsed;
}

/** Reads the registry's HTTP API directly, with basic auth: an independent check of what build-push says. */
async function registryGet(pathname: string): Promise<Response> {
  return fetch(`http://${registry.address}${pathname}`, {
    headers: {
      Authorization: `Basic ${Buffer.from(`${registry.user}:${registry.password.reveal()}`).toString('base64')}`,
      Accept: 'application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json',
    },
    signal: AbortSignal.timeout(10_000),
  });
}

async function registryTags(service: string): Promise<string[]> {
  const response = await registryGet(`/v2/${owner}/aidd-${service}/tags/list`);
  if (response.status === 404) return [];
  return (((await response.json()) as { tags: string[] | null }).tags ?? []).sort();
}

async function registryDigest(service: string, tag: string): Promise<string | null> {
  return (await registryGet(`/v2/${owner}/aidd-${service}/manifests/${tag}`)).headers.get('docker-content-digest');
}

/** Requests that write to this run's repositories (blob uploads, manifest puts), from the registry's access log. */
function registryWrites(): number {
  const pattern = new RegExp(`"(PUT|POST|PATCH|DELETE) /v2/${owner}/`);
  return readFileSync(registry.logFile, 'utf8').split('\n').filter((line) => pattern.test(line)).length;
}

async function ownImages(): Promise<string[]> {
  const result = await runner.run({ argv: ['docker', 'image', 'ls', '--format', '{{.Repository}}:{{.Tag}}', `${registry.address}/${owner}/*`], readOnly: true });
  return result.stdout.split('\n').filter(Boolean);
}

describe('build-push on a real engine and registry', () => {
  beforeAll(async () => {
    await requireDocker(runner);
    registry = await startRegistry(runner, path.join(SANDBOX_DIR, 'registry'));
    // A committed copy of the reference stack: images are tagged with the commit, and the test may change files.
    ({ dir: stackDir, git } = await committedStackCopy(runner, 'aidd-build-stack', { remote: 'https://github.com/example/aidd-bot.git' }));
    sha = (await runner.run(git(['rev-parse', 'HEAD']))).stdout.trim();
  });

  afterAll(async () => {
    if (!registry) return;
    const images = await ownImages();
    if (images.length > 0) await runner.attempt({ argv: ['docker', 'image', 'rm', '--force', ...images], timeoutMs: 120_000 });
  });

  it('--no-push builds and tags all three images and leaves the registry untouched', async () => {
    const result = report(await buildPush(['--no-push']));
    expect(result).toMatchObject({ ok: true, registry: registry.address, owner, revision: sha, dirty: false });
    expect(result.images.map((image) => [image.service, image.tags, image.digest, image.ref, image.pushed])).toEqual(
      SERVICES.map((service) => [service, [sha, 'latest'], null, null, false]),
    );
    expect((await ownImages()).sort()).toEqual(SERVICES.flatMap((service) => [`${registry.address}/${owner}/aidd-${service}:${sha}`, `${registry.address}/${owner}/aidd-${service}:latest`]).sort());
    for (const service of SERVICES) expect(await registryTags(service)).toEqual([]);
    expect(registryWrites()).toBe(0);
  });

  it('builds and pushes all three, tagged by commit and latest, with the digests the registry reports', async () => {
    const summaryFile = path.join(path.dirname(outputFile), 'step_summary.md');
    const result = report(await buildPush(['--output', outputFile], { GITHUB_STEP_SUMMARY: summaryFile }));
    published = result.images;
    for (const image of published) {
      const repository = `${registry.address}/${owner}/aidd-${image.service}`;
      expect(image).toMatchObject({ repository, tags: [sha, 'latest'], pushed: true, ref: `${repository}@${image.digest}` });
      expect(image.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
      expect(image.sizeBytes).toBeGreaterThan(0);
      expect(await registryTags(image.service)).toEqual([sha, 'latest'].sort());
      expect(await registryDigest(image.service, sha)).toBe(image.digest);
      expect(await registryDigest(image.service, 'latest')).toBe(image.digest);
    }
    expect(readFileSync(outputFile, 'utf8').trim().split('\n')).toEqual([
      ...published.flatMap((image) => [`${image.service}_image=${image.ref}`, `${image.service}_digest=${image.digest}`]),
      `revision=${sha}`,
    ]);
    // The job summary on GitHub Actions: one row per image with its whole digest.
    const summary = readFileSync(summaryFile, 'utf8');
    expect(summary).toContain(`### build-push: ok\n\ncommit \`${sha}\``);
    for (const image of published) expect(summary).toMatch(new RegExp(`^\\| ${image.service} \\| .* \\| \`${image.digest}\` \\| .* \\| pushed \\|$`, 'm'));
  });

  it('labels each image with its OCI source, revision, created (the commit time) and title', async () => {
    const committedAt = (await runner.run(git(['log', '-1', '--format=%cI']))).stdout.trim();
    for (const service of SERVICES) {
      const inspect = await runner.run({ argv: ['docker', 'image', 'inspect', '--format', '{{json .Config.Labels}}', `${registry.address}/${owner}/aidd-${service}:${sha}`], readOnly: true });
      expect(JSON.parse(inspect.stdout)).toMatchObject({
        'org.opencontainers.image.source': 'https://github.com/example/aidd-bot',
        'org.opencontainers.image.revision': sha,
        'org.opencontainers.image.created': committedAt,
        'org.opencontainers.image.title': `aidd-${service}`,
      });
    }
  });

  it('a second build with no change hits the cache for every step and pushes nothing', async () => {
    const writesBefore = registryWrites();
    const result = report(await buildPush([]));
    expect(result.images.map((image) => [image.service, image.cacheHit, image.pushed, image.digest])).toEqual(
      published.map((image) => [image.service, true, false, image.digest]),
    );
    expect(registryWrites()).toBe(writesBefore);
  });

  it('a wrong password fails first, with one line naming REGISTRY_TOKEN, and adds no tag', async () => {
    // A new commit, so that a push, had one happened, would have added tags.
    await runner.run({ argv: ['sh', '-c', `echo '// changed' >> ${path.join(stackDir, 'frontend', 'app', 'page.tsx')}`] });
    await runner.run(git(['commit', '--quiet', '--all', '--message', 'change']));
    const tagsBefore = await Promise.all(SERVICES.map(registryTags));
    const writesBefore = registryWrites();
    const result = await buildPush([], { REGISTRY_TOKEN: 'not-the-password-1234' });
    expect(result.exitCode).toBe(2);
    expect(result.stdout).toBe('');
    expect(result.stderr.trim().split('\n')).toEqual([
      `build-push: error: docker login to ${registry.address} as ${registry.user} was refused: check REGISTRY_TOKEN and --username/REGISTRY_USER`,
    ]);
    expect(await Promise.all(SERVICES.map(registryTags))).toEqual(tagsBefore);
    expect(registryWrites()).toBe(writesBefore);
  });

  it('a failed build publishes nothing, not even the services that built', async () => {
    await runner.run({ argv: ['sh', '-c', `echo 'RUN exit 3' >> ${path.join(stackDir, 'frontend', 'Dockerfile')}`] });
    await runner.run(git(['commit', '--quiet', '--all', '--message', 'break the frontend']));
    const writesBefore = registryWrites();
    const result = await buildPush([]);
    expect(result.exitCode).toBe(1);
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    expect(result.stderr).toMatch(/^build-push: error: build of frontend failed \(nothing was pushed\): .*exit code: 3/);
    const partial = JSON.parse(result.stdout) as BuildReport;
    expect(partial.ok).toBe(false);
    expect(partial.images.map((image) => [image.service, image.pushed]).sort()).toEqual([['api', false], ['bot', false]]);
    expect(registryWrites()).toBe(writesBefore);
  });

  it('docker-compose.registry.yml pulls the pinned digests from the registry, comes up and passes the smoke test', async () => {
    // Remove the local copies so the stack can only run from what the registry serves.
    await runner.run({ argv: ['docker', 'image', 'rm', '--force', ...(await ownImages())], timeoutMs: 120_000 });
    const app = await loadComposeApp(path.join(stackDir, 'docker-compose.registry.yml'));
    // aidd.yml's offline-base names the build-arg variables too, whose defaults only the build compose file has.
    const baseImages = await resolveBaseImages(await loadComposeApp(path.join(stackDir, 'docker-compose.yml')), runner, createLogger({ prefix: 'e2e', quiet: true }));
    const [apiPort, frontendPort] = [await freePort(), await freePort()];
    const envFile = path.join(tempDir('aidd-registry-stack'), '.env');
    writeEnvFile(envFile, path.join(stackDir, '.env.example'), { API_PORT: String(apiPort), FRONTEND_PORT: String(frontendPort), POSTGRES_PASSWORD: uniqueName('pw') });
    const target: ComposeTarget = { cli: await detectComposeCli(runner), files: [app.file], projectName: uniqueName('aidd-e2e-registry'), projectDir: stackDir, envFile };
    const digestOf = (service: string) => `@${published.find((image) => image.service === service)!.digest}`;
    const env = {
      ...baseImages,
      DOCKER_CONFIG: dockerConfig,
      REGISTRY: registry.address,
      IMAGE_OWNER: owner,
      IMAGE_TAG: sha,
      API_IMAGE_DIGEST: digestOf('api'),
      BOT_IMAGE_DIGEST: digestOf('bot'),
      FRONTEND_IMAGE_DIGEST: digestOf('frontend'),
    };
    const compose = (args: string[]) => composeCommand(target, args, { env, timeoutMs: 900_000 });
    try {
      await runner.run(compose(['pull', ...SERVICES]));
      const pulled = await runner.run({ argv: ['docker', 'image', 'ls', '--digests', '--format', '{{.Repository}}@{{.Digest}}', `${registry.address}/${owner}/*`], readOnly: true });
      expect(pulled.stdout.split('\n').filter(Boolean).sort()).toEqual(published.map((image) => image.ref).sort());

      // As on a server: migrations are a one-off step before the stack starts (the api never migrates there).
      await runner.run(compose(['run', '--rm', '-T', 'api', 'migrate']));
      await runner.run(compose(['up', '--detach']));
      const outcomes = await runSmoke(localAccess(runner, target.projectName), {
        services: app.services.map((service) => service.name),
        http: app.config.smoke,
        deadlineMs: 180_000,
      });
      expect(outcomes.filter((outcome) => !outcome.ok)).toEqual([]);
    } finally {
      await runner.attempt(compose(['down', '--volumes', '--remove-orphans']));
    }
  });
});
