import { chmodSync, mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  cacheMode,
  githubOutputLines,
  hasBuiltinBuildKit,
  hasGithubActionsCache,
  imageBuildCommand,
  imageResult,
  imageTags,
  loginError,
  mapWithLimit,
  parseBuildxDriver,
  parseCacheUse,
  planImage,
  registryHasImage,
  registryToken,
  resolveVersionTag,
  selectServices,
  sourceUrl,
  summaryTable,
  type Builder,
  type BuiltImage,
  type ImagePlan,
} from '../../lib/build/build.ts';
import { executablesOnPath } from '../../lib/core/path-search.ts';
import type { Revision } from '../../lib/app/revision.ts';
import { EXIT, UsageError } from '../../lib/core/cli.ts';
import { loadComposeApp } from '../../lib/app/compose.ts';
import { interpolate } from '../../lib/app/interpolate.ts';
import { buildCommand, loginCommand } from '../../lib/build/docker.ts';
import { describe as describeCommand, type Result } from '../../lib/core/exec.ts';
import { Secret } from '../../lib/core/secrets.ts';
import { DEFAULT_COMPOSE_FILE } from '../../lib/app/target.ts';

const SHA = '0123456789abcdef0123456789abcdef01234567';
const revision: Revision = { sha: SHA, dirty: false, committedAt: '2026-01-02T03:04:05+00:00' };

const plan: ImagePlan = {
  service: 'api',
  repository: 'ghcr.io/acme/aidd-api',
  repositoryPath: 'acme/aidd-api',
  tags: [SHA, 'latest'],
  context: '/src/api',
  buildArgs: { BASE_IMAGE: 'python:3.12-slim' },
  labels: { 'org.opencontainers.image.revision': SHA },
};

function result(stderr: string, exitCode = 1): Result {
  return { exitCode, stdout: '', stderr, skipped: false, durationMs: 1 };
}

describe('tags and versions', () => {
  it('tags a clean tree with the full sha and latest, plus the version when there is one', () => {
    expect(imageTags(revision, undefined)).toEqual([SHA, 'latest']);
    expect(imageTags(revision, '1.2.3')).toEqual([SHA, 'latest', '1.2.3']);
    expect(imageTags(revision, '1.2.3', false)).toEqual([SHA, '1.2.3']);
    expect(imageTags(revision, undefined, false)).toEqual([SHA]);
  });

  it('tags a dirty tree <sha>-dirty only: never latest, never a version', () => {
    expect(imageTags({ ...revision, dirty: true }, '1.2.3')).toEqual([`${SHA}-dirty`]);
  });

  it('takes the version from --version-tag or a v* tag ref, and names a bad flag', () => {
    expect(resolveVersionTag('v1.2.3', undefined)).toBe('1.2.3');
    expect(resolveVersionTag('2.0.0-rc.1', 'refs/tags/v9.9.9')).toBe('2.0.0-rc.1');
    expect(resolveVersionTag(undefined, 'refs/tags/v1.4.0')).toBe('1.4.0');
    expect(resolveVersionTag(undefined, 'refs/tags/nightly')).toBeUndefined();
    expect(resolveVersionTag(undefined, 'refs/heads/main')).toBeUndefined();
    expect(() => resolveVersionTag('latest', undefined)).toThrow(UsageError);
    expect(() => resolveVersionTag('1.2', undefined)).toThrow('--version-tag 1.2 is not a semantic version; use e.g. --version-tag 1.2.3 or v1.2.3');
  });
});

describe('source label', () => {
  it('prefers the GitHub Actions repository, else the origin remote as an https page', () => {
    expect(sourceUrl({ GITHUB_SERVER_URL: 'https://github.com', GITHUB_REPOSITORY: 'acme/bot' }, 'git@x:y/z.git')).toBe('https://github.com/acme/bot');
    expect(sourceUrl({}, 'git@github.com:acme/bot.git\n')).toBe('https://github.com/acme/bot');
    expect(sourceUrl({}, 'ssh://git@github.com/acme/bot.git')).toBe('https://github.com/acme/bot');
    expect(sourceUrl({}, '')).toBeUndefined();
  });

  it('drops credentials embedded in a remote URL: labels are public', () => {
    expect(sourceUrl({}, 'https://x-access-token:ghs_secret@github.com/acme/bot.git')).toBe('https://github.com/acme/bot');
  });
});

describe('compose interpolation for build args', () => {
  it('substitutes values and defaults like compose', () => {
    const vars = { SET: 'value', EMPTY: '' };
    expect(interpolate('${SET}', vars, 'x')).toBe('value');
    expect(interpolate('${MISSING:-python:3.12-slim}', vars, 'x')).toBe('python:3.12-slim');
    expect(interpolate('${EMPTY:-fallback}', vars, 'x')).toBe('fallback');
    expect(interpolate('${EMPTY-fallback}', vars, 'x')).toBe('');
    expect(interpolate('$${SET} ${MISSING}', vars, 'x')).toBe('${SET} ');
  });

  it('names a required variable that is missing', () => {
    expect(() => interpolate('${TOKEN:?set TOKEN}', {}, 'compose.yml services.api.build.args')).toThrow(
      'compose.yml services.api.build.args: variable TOKEN is not set (set TOKEN)',
    );
  });
});

describe('services and image plans from the compose file', async () => {
  const app = await loadComposeApp(DEFAULT_COMPOSE_FILE);

  it('builds every service with a build: section, and no other', () => {
    expect(selectServices(app, []).map((service) => service.name)).toEqual(['api', 'bot', 'frontend']);
    expect(selectServices(app, ['frontend']).map((service) => service.name)).toEqual(['frontend']);
  });

  it('refuses a service without a build: section, listing the buildable ones', () => {
    const error = (() => {
      try {
        selectServices(app, ['postgres']);
      } catch (caught) {
        return caught as UsageError;
      }
    })();
    expect(error?.exitCode).toBe(EXIT.usage);
    expect(error?.message).toMatch(/^--service postgres: .* has no build: section for it; buildable services: api, bot, frontend$/);
  });

  it('names the image REGISTRY/owner/aidd-<service>, resolves build args and labels it', () => {
    const api = app.services.find((service) => service.name === 'api')!;
    const image = planImage(app, api, {
      registry: 'ghcr.io',
      owner: 'acme',
      revision,
      tags: imageTags(revision, undefined),
      source: 'https://github.com/acme/bot',
      now: '2030-01-01T00:00:00Z',
      vars: { PYTHON_BASE_IMAGE: 'aidd-offline-base:abc' },
      baseImages: { PYTHON_BASE_IMAGE: 'aidd-offline-base:abc' },
    });
    expect(image).toMatchObject({
      service: 'api',
      repository: 'ghcr.io/acme/aidd-api',
      repositoryPath: 'acme/aidd-api',
      tags: [SHA, 'latest'],
      context: path.join(app.dir, 'api'),
      buildArgs: { BASE_IMAGE: 'aidd-offline-base:abc' },
      labels: {
        'org.opencontainers.image.source': 'https://github.com/acme/bot',
        'org.opencontainers.image.revision': SHA,
        'org.opencontainers.image.created': revision.committedAt,
        'org.opencontainers.image.title': 'aidd-api',
      },
    });
    const dirty = planImage(app, api, { registry: 'r', owner: 'o', revision: { ...revision, dirty: true }, tags: [], source: undefined, now: '2030-01-01T00:00:00Z', vars: {}, baseImages: {} });
    expect(dirty.labels['org.opencontainers.image.created']).toBe('2030-01-01T00:00:00Z');
    expect(dirty.labels).not.toHaveProperty('org.opencontainers.image.source');
    expect(dirty.buildArgs).toEqual({ BASE_IMAGE: 'python:3.12-slim' });
  });
});

describe('builder detection', () => {
  it('knows which client versions carry BuildKit without buildx', () => {
    expect(hasBuiltinBuildKit('20.10.24+dfsg1\n')).toBe(true);
    expect(hasBuiltinBuildKit('18.09.1')).toBe(true);
    expect(hasBuiltinBuildKit('18.06.0-ce')).toBe(false);
    expect(hasBuiltinBuildKit('28.2.2')).toBe(false);
    expect(hasBuiltinBuildKit('')).toBe(false);
  });

  it("reads the buildx builder's driver", () => {
    expect(parseBuildxDriver('Name:          mybuilder\nDriver:        docker-container\nNodes:\n')).toBe('docker-container');
    expect(parseBuildxDriver('nothing here')).toBeUndefined();
  });

  it('lists each docker client on PATH once, in PATH order', () => {
    const root = mkdtempSync(path.join(os.tmpdir(), 'aidd-clients-'));
    const [first, second, alias, empty] = ['a', 'b', 'c', 'd'].map((name) => path.join(root, name));
    for (const dir of [first!, second!, alias!, empty!]) mkdirSync(dir);
    for (const dir of [first!, second!]) {
      writeFileSync(path.join(dir, 'docker'), '#!/bin/sh\n');
      chmodSync(path.join(dir, 'docker'), 0o755);
    }
    symlinkSync(path.join(second!, 'docker'), path.join(alias!, 'docker'));
    expect(executablesOnPath('docker', [empty, first, alias, second].join(path.delimiter))).toEqual([path.join(first!, 'docker'), path.join(alias!, 'docker')]);
  });

  it('picks the cache each builder supports', () => {
    expect(cacheMode({ kind: 'legacy' }, true)).toBe('pulled-image');
    expect(cacheMode({ kind: 'buildkit', client: '/usr/bin/docker' }, true)).toBe('inline');
    expect(cacheMode({ kind: 'buildx', driver: 'docker' }, true)).toBe('inline');
    expect(cacheMode({ kind: 'buildx', driver: 'docker-container' }, true)).toBe('gha');
    expect(cacheMode({ kind: 'buildx', driver: 'docker-container' }, false)).toBe('registry');
    expect(hasGithubActionsCache({ ACTIONS_CACHE_URL: 'https://x', ACTIONS_RUNTIME_TOKEN: 't' })).toBe(true);
    expect(hasGithubActionsCache({ ACTIONS_CACHE_URL: 'https://x' })).toBe(false);
  });
});

describe('build commands', () => {
  const tagged = ['--tag', `ghcr.io/acme/aidd-api:${SHA}`, '--tag', 'ghcr.io/acme/aidd-api:latest'];
  const labels = ['--label', `org.opencontainers.image.revision=${SHA}`];

  it('keeps the plain docker build command as it was', () => {
    expect(buildCommand({ context: 'ctx', tags: ['t'], buildArgs: { A: '1' } }).argv).toEqual(['docker', 'build', '--tag', 't', '--build-arg', 'A=1', 'ctx']);
  });

  it("drives the daemon's BuildKit through the old client, with inline cache from :latest", () => {
    const command = imageBuildCommand({ kind: 'buildkit', client: '/usr/bin/docker' }, plan, { cache: 'inline', push: true, stream: false });
    expect(command.env).toEqual({ DOCKER_BUILDKIT: '1' });
    expect(command.argv).toEqual([
      '/usr/bin/docker', 'build', '--progress=plain', ...tagged,
      '--build-arg', 'BASE_IMAGE=python:3.12-slim', '--build-arg', 'BUILDKIT_INLINE_CACHE=1',
      ...labels, '--cache-from', 'ghcr.io/acme/aidd-api:latest', '/src/api',
    ]);
  });

  it('uses the GitHub Actions cache with one scope per service under buildx', () => {
    const command = imageBuildCommand({ kind: 'buildx', driver: 'docker-container' }, plan, { cache: 'gha', push: false, stream: false });
    expect(command.argv.slice(0, 5)).toEqual(['docker', 'buildx', 'build', '--progress=plain', '--load']);
    expect(command.argv).toContain('type=gha,scope=api');
    expect(command.argv.slice(-3)).toEqual(['--cache-to', 'type=gha,scope=api,mode=max', '/src/api']);
    expect(command.argv).not.toContain('BUILDKIT_INLINE_CACHE=1');
  });

  it('writes the registry cache only when pushing', () => {
    const buildx: Builder = { kind: 'buildx', driver: 'docker-container' };
    const pushing = imageBuildCommand(buildx, plan, { cache: 'registry', push: true, stream: false }).argv;
    const local = imageBuildCommand(buildx, plan, { cache: 'registry', push: false, stream: false }).argv;
    expect(pushing).toContain('type=registry,ref=ghcr.io/acme/aidd-api:buildcache,mode=max');
    expect(local).toContain('type=registry,ref=ghcr.io/acme/aidd-api:buildcache');
    expect(local).not.toContain('--cache-to');
  });

  it('falls back to the legacy builder, from pulled :latest layers or the local cache only', () => {
    const pulled = imageBuildCommand({ kind: 'legacy' }, plan, { cache: 'pulled-image', push: true, stream: true });
    expect(pulled).toMatchObject({ env: { DOCKER_BUILDKIT: '0' }, stream: true });
    expect(pulled.argv.slice(0, 2)).toEqual(['docker', 'build']);
    expect(pulled.argv.slice(-3)).toEqual(['--cache-from', 'ghcr.io/acme/aidd-api:latest', '/src/api']);
    expect(imageBuildCommand({ kind: 'legacy' }, plan, { cache: 'local', push: true, stream: false }).argv).not.toContain('--cache-from');
  });
});

describe('login', () => {
  it('sends the password on stdin, never in argv', () => {
    const password = new Secret('registry-password-123');
    const command = loginCommand('ghcr.io', 'me', password);
    expect(command.argv).toEqual(['docker', 'login', 'ghcr.io', '--username', 'me', '--password-stdin']);
    expect(command.input).toBe(password);
    expect(describeCommand(command)).not.toContain('registry-password-123');
  });

  it('takes the token from REGISTRY_TOKEN, then GHCR_TOKEN, then GITHUB_TOKEN', () => {
    expect(registryToken({ GITHUB_TOKEN: 'g', GHCR_TOKEN: 'h' })).toEqual({ variable: 'GHCR_TOKEN', value: 'h' });
    expect(registryToken({ REGISTRY_TOKEN: 'r', GITHUB_TOKEN: 'g' })).toEqual({ variable: 'REGISTRY_TOKEN', value: 'r' });
    expect(registryToken({ REGISTRY_TOKEN: '' })).toBeUndefined();
  });

  it('turns a refused login into bad input naming the variable, other failures into exit 1', () => {
    const refused = loginError('127.0.0.1:5000', 'me', 'GHCR_TOKEN', result('Error response from daemon: login attempt to http://127.0.0.1:5000/v2/ failed with status: 401 Unauthorized'));
    expect(refused.exitCode).toBe(EXIT.usage);
    expect(refused.message).toBe('docker login to 127.0.0.1:5000 as me was refused: check GHCR_TOKEN and --username/REGISTRY_USER');
    const down = loginError('127.0.0.1:5000', 'me', 'REGISTRY_TOKEN', result('Error response from daemon: Get "http://127.0.0.1:5000/v2/": dial tcp: connection refused'));
    expect(down.exitCode).toBe(EXIT.failed);
    expect(down.message).toMatch(/^docker login to 127.0.0.1:5000 failed: .*connection refused"?$/);
  });
});

describe('cache use in build logs', () => {
  it('counts BuildKit steps and CACHED ones, leaving out FROM and internal steps', () => {
    const log = [
      '#1 [internal] load build definition from Dockerfile',
      '#4 [1/4] FROM docker.io/library/python:3.12-slim',
      '#5 [2/4] WORKDIR /app',
      '#5 CACHED',
      '#6 [builder 3/4] COPY requirements.txt ./',
      '#6 CACHED',
      '#7 [4/4] RUN pip install -r requirements.txt',
      '#7 0.345 Collecting fastapi',
      '#7 [4/4] RUN pip install -r requirements.txt',
      '#7 DONE 2.1s',
    ].join('\n');
    expect(parseCacheUse(log)).toEqual({ steps: 3, cached: 2 });
  });

  it("counts the legacy builder's steps after FROM and its `Using cache` lines", () => {
    const log = [
      'Step 1/5 : ARG BASE_IMAGE=python:3.12-slim',
      'Step 2/5 : FROM ${BASE_IMAGE}',
      ' ---> 409d7d54bf72',
      'Step 3/5 : WORKDIR /app',
      ' ---> Using cache',
      ' ---> 065135fe57ea',
      'Step 4/5 : COPY . .',
      ' ---> da8393ac2006',
      'Step 5/5 : LABEL org.opencontainers.image.title=aidd-api',
      ' ---> Using cache',
    ].join('\n');
    expect(parseCacheUse(log)).toEqual({ steps: 3, cached: 2 });
  });
});

describe('results', () => {
  const built: BuiltImage = { plan, local: { id: 'sha256:config', size: 12_500_000, labels: {} }, cache: { steps: 3, cached: 3 }, seconds: 4.26 };

  it('recognises an image the registry already holds by config digest, or by id on a containerd store', () => {
    expect(registryHasImage({ digest: 'sha256:manifest', mediaType: 'm', configDigest: 'sha256:config' }, 'sha256:config')).toBe(true);
    expect(registryHasImage({ digest: 'sha256:manifest', mediaType: 'm' }, 'sha256:manifest')).toBe(true);
    expect(registryHasImage({ digest: 'sha256:manifest', mediaType: 'm', configDigest: 'sha256:other' }, 'sha256:config')).toBe(false);
    expect(registryHasImage(undefined, 'sha256:config')).toBe(false);
  });

  it('reports the JSON contract, with a null digest when nothing was pushed', () => {
    expect(imageResult(built, { digest: 'sha256:abc', pushed: false, seconds: 0.5 })).toEqual({
      service: 'api',
      repository: 'ghcr.io/acme/aidd-api',
      tags: [SHA, 'latest'],
      digest: 'sha256:abc',
      ref: 'ghcr.io/acme/aidd-api@sha256:abc',
      sizeBytes: 12_500_000,
      seconds: 4.8,
      cacheHit: true,
      pushed: false,
    });
    expect(imageResult({ ...built, cache: { steps: 3, cached: 1 } }, undefined)).toMatchObject({ digest: null, ref: null, cacheHit: false, pushed: false });
  });

  it('writes GITHUB_OUTPUT lines that pin the digest, falling back to the tag without one', () => {
    const pushed = imageResult(built, { digest: 'sha256:abc', pushed: true, seconds: 1 });
    const unpushed = { ...imageResult(built, undefined), service: 'bot', repository: 'ghcr.io/acme/aidd-bot' };
    expect(githubOutputLines([pushed, unpushed], revision)).toEqual([
      'api_image=ghcr.io/acme/aidd-api@sha256:abc',
      'api_digest=sha256:abc',
      `bot_image=ghcr.io/acme/aidd-bot:${SHA}`,
      'bot_digest=',
      `revision=${SHA}`,
    ]);
  });

  it('prints a table of service, tags, digest, size, seconds, cache and push', () => {
    const table = summaryTable([imageResult(built, { digest: `sha256:${'f'.repeat(64)}`, pushed: true, seconds: 1 })], [built]).split('\n');
    expect(table[0]).toMatch(/^service\s+tags\s+digest\s+size\s+seconds\s+cache\s+push$/);
    expect(table[1]).toMatch(/^api\s+0123456789ab, latest\s+sha256:ffffffffffff\s+12\.5 MB\s+5\.3\s+hit\s+pushed$/);
  });
});

describe('mapWithLimit', () => {
  it('runs at most N tasks at once and keeps every outcome in order', async () => {
    let running = 0;
    let peak = 0;
    const outcomes = await mapWithLimit([1, 2, 3, 4, 5], 2, async (item) => {
      running++;
      peak = Math.max(peak, running);
      await new Promise((resolve) => setTimeout(resolve, 5));
      running--;
      if (item === 3) throw new Error('three failed');
      return item * 10;
    });
    expect(peak).toBe(2);
    expect(outcomes.map((outcome) => (outcome.status === 'fulfilled' ? outcome.value : (outcome.reason as Error).message))).toEqual([10, 20, 'three failed', 40, 50]);
  });
});
