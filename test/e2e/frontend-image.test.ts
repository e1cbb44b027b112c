// The reference frontend's Dockerfile, both ways (issue 13): NEXT_BUILD=source runs npm ci and next build
// in the image, as on GitHub's runners, with its packages from a registry mirror on 127.0.0.1 (containers
// here cannot reach the npm registry); NEXT_BUILD=host copies the host's build, as the toolkit does here.
// Both must give the same /app, owned by and run as the non-root user, serving the page.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveBaseImages } from '../../lib/build/base-images.ts';
import { buildFlags, type BuildSpec } from '../../lib/build/docker.ts';
import { loadComposeApp } from '../../lib/app/compose.ts';
import type { Command } from '../../lib/core/exec.ts';
import { createLogger } from '../../lib/core/log.ts';
import { freePort } from '../../lib/core/net.ts';
import { DEFAULT_COMPOSE_FILE } from '../../lib/app/target.ts';
import { startNpmMirror, type NpmMirror } from './npm-mirror.ts';
import { copySources, getJson, requireDocker, tempDir, testRunner, uniqueName } from './harness.ts';

const runner = testRunner();
const FRONTEND = path.join(path.dirname(DEFAULT_COMPOSE_FILE), 'frontend');
const name = uniqueName('aidd-e2e-frontend');
const images = { source: `${name}:source`, host: `${name}:host` };
const containers: string[] = [];
let nodeBase: string;
let mirror: NpmMirror;

/** The legacy builder, as compose v1 builds; host networking so the build reaches the mirror on 127.0.0.1. */
function build(spec: BuildSpec): Command {
  return { argv: ['docker', 'build', '--network', 'host', ...buildFlags(spec), spec.context], env: { DOCKER_BUILDKIT: '0' }, timeoutMs: 1_200_000 };
}

/** The frontend's sources without what npm ci and next build wrote on the host. */
function sourcesOnly(): string {
  const dir = path.join(tempDir('aidd-frontend-source'), 'frontend');
  copySources(FRONTEND, dir);
  return dir;
}

async function inImage(image: string, script: string): Promise<string> {
  return (await runner.run({ argv: ['docker', 'run', '--rm', '--entrypoint', 'sh', image, '-c', script], timeoutMs: 120_000 })).stdout;
}

/** Every path under /app with its owner, the build id (a random name per build) written as BUILD_ID. */
async function layout(image: string): Promise<string[]> {
  const buildId = (await inImage(image, 'cat /app/.next/BUILD_ID')).trim();
  const listing = await inImage(image, 'cd /app && find . -path ./node_modules -prune -o -printf "%p %u:%g\\n" && ls node_modules');
  return listing.split('\n').filter(Boolean).map((line) => line.replaceAll(buildId, 'BUILD_ID')).sort();
}

describe('the frontend Dockerfile builds from source and from the host build alike', () => {
  beforeAll(async () => {
    await requireDocker(runner);
    // The toolkit's own offline choice: the host-node stand-in, and the host build run (or found up to date).
    const offline = await resolveBaseImages(await loadComposeApp(DEFAULT_COMPOSE_FILE), runner, createLogger({ prefix: 'e2e', quiet: true }));
    nodeBase = offline.NODE_BASE_IMAGE ?? 'node:22-alpine';
    expect(offline.NEXT_BUILD ?? 'host').toBe('host');
    mirror = await startNpmMirror(runner);
  });

  afterAll(async () => {
    await mirror?.close();
    if (containers.length) await runner.attempt({ argv: ['docker', 'rm', '--force', ...containers], timeoutMs: 60_000 });
    await runner.attempt({ argv: ['docker', 'image', 'rm', '--force', images.source, images.host], timeoutMs: 60_000 });
  });

  it('NEXT_BUILD=source runs npm ci (every package from the mirror, checked against the lockfile) and next build in the image', async () => {
    await runner.run(build({ context: sourcesOnly(), tags: [images.source], buildArgs: { BASE_IMAGE: nodeBase, NEXT_BUILD: 'source', NPM_CONFIG_REGISTRY: mirror.url } }));
    expect(mirror.missing).toEqual([]);
    expect(mirror.served).toContain('/next/-/next-16.4.6.tgz');
    const lock = JSON.parse(readFileSync(path.join(FRONTEND, 'package-lock.json'), 'utf8')) as { packages: Record<string, unknown> };
    expect(mirror.served.length).toBeGreaterThan(10);
    expect(mirror.served.length).toBeLessThanOrEqual(Object.keys(lock.packages).length);
  });

  it('NEXT_BUILD=host copies the host build, and both images hold the same /app, owned by 10001, run as 10001', async () => {
    await runner.run(build({ context: FRONTEND, tags: [images.host], buildArgs: { BASE_IMAGE: nodeBase, NEXT_BUILD: 'host' } }));
    const [source, host] = [await layout(images.source), await layout(images.host)];
    expect(source).toEqual(host);
    expect(source).toEqual(expect.arrayContaining(['./server.js 10001:10001', './.next/static 10001:10001', './public/robots.txt 10001:10001', 'next', 'react']));
    // /app itself stays root's (WORKDIR makes it): the server cannot replace its own code.
    expect(source).toContain('. root:root');
    expect(source.filter((line) => line.startsWith('./') && !line.endsWith(' 10001:10001'))).toEqual([]);
    for (const image of Object.values(images)) {
      const config = (await runner.run({ argv: ['docker', 'image', 'inspect', '--format', '{{json .Config}}', image], timeoutMs: 30_000 })).stdout;
      expect(JSON.parse(config)).toMatchObject({ User: '10001:10001', Cmd: ['node', 'server.js'], WorkingDir: '/app' });
    }
  });

  it('the image built from source serves /healthz and the page, which says the api is unreachable when it is', async () => {
    const port = await freePort();
    const id = (await runner.run({
      argv: ['docker', 'run', '--detach', '--publish', `127.0.0.1:${port}:3000`, '--env', 'API_URL=http://127.0.0.1:9', images.source],
      timeoutMs: 60_000,
    })).stdout.trim();
    containers.push(id);
    let health: Awaited<ReturnType<typeof getJson>> | undefined;
    for (let attempt = 0; attempt < 60 && health?.status !== 200; attempt++) {
      health = await getJson(`http://127.0.0.1:${port}/healthz`).catch(() => undefined);
      if (health?.status !== 200) await new Promise((resolve) => setTimeout(resolve, 500));
    }
    expect(health).toMatchObject({ status: 200, body: { status: 'ok' } });
    const page = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(10_000) });
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('The statistics API is not available right now');
    const uid = await runner.run({ argv: ['docker', 'exec', id, 'node', '-e', 'console.log(process.getuid())'], timeoutMs: 30_000 });
    expect(uid.stdout.trim()).toBe('10001');
  });

  it('NEXT_BUILD=host without a host build stops with one line saying what to run', async () => {
    const result = await runner.attempt(build({ context: sourcesOnly(), tags: [`${name}:refused`], buildArgs: { BASE_IMAGE: nodeBase, NEXT_BUILD: 'host' } }));
    expect(result.exitCode).not.toBe(0);
    expect(result.stdout + result.stderr).toContain('NEXT_BUILD=host: no .next/standalone/server.js; run npm ci && npm run build in the frontend folder first');
  });
});
