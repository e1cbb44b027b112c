// Zero-downtime switches behind the server's reverse proxy (Caddy), against the real registry, sshd and
// Docker engine on loopback. Hello Compose (web + worker) is deployed from committed copies; a bounded
// request loop on 127.0.0.1 runs through every switch and counts each request not answered 200. Covered:
// a redeploy under load; a release whose new container never turns healthy; a rollback; a deploy where
// only one service's content changed; a no-op deploy; the proxy container restarted; a second app on
// the same proxy; a domain served over HTTPS by the proxy's internal CA.
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../lib/core/net.ts';
import { PROXY_CONFIG_DIR, PROXY_CONTAINER } from '../../lib/deploy/proxy.ts';
import type { Registry, SshServer } from '../../lib/sandbox/sandbox.ts';
import { REPO_ROOT, scriptArgv } from '../../lib/app/target.ts';
import {
  buildPushEnv,
  committedCopy,
  containerStarts,
  pushVariant,
  removeProject,
  requestLoop,
  sandboxSshArgs,
  startDeploySandbox,
  tempDir,
  testRunner,
  uniqueName,
  type LoadOptions,
  type LoadResult,
} from './harness.ts';

const runner = testRunner();
const owner = uniqueName('proxy');
const scratch = tempDir('aidd-proxy-e2e');
const dockerConfig = path.join(scratch, 'docker-config');
const HELLO_SOURCE = path.join(REPO_ROOT, 'examples', 'hello-compose');
/** Enough requests to cover a switch several times over; each loop stops when the deploy does. */
const LOAD_LIMIT = 4000;

let registry: Registry;
let server: SshServer;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

interface Report {
  result: string;
  release: string;
  kept?: string[];
  error?: string;
}

interface HelloApp {
  project: string;
  compose: string;
  port: number;
  url: string;
}

/** A committed copy of Hello Compose publishing web on `port`, with aidd.yml extended by `extraSettings`. */
async function helloCopy(project: string, extraSettings = ''): Promise<HelloApp> {
  const port = await freePort();
  const { compose } = await committedCopy(runner, HELLO_SOURCE, `aidd-${project}`, {
    prepare: (dir) => {
      const file = path.join(dir, 'docker-compose.yml');
      writeFileSync(file, readFileSync(file, 'utf8').replace('127.0.0.1:8480:8080', `127.0.0.1:${port}:8080`));
      if (extraSettings) writeFileSync(path.join(dir, 'aidd.yml'), `${readFileSync(path.join(dir, 'aidd.yml'), 'utf8')}\n${extraSettings}`);
    },
  });
  return { project, compose, port, url: `http://127.0.0.1:${port}` };
}

async function runTool(script: string, args: string[]): Promise<Run> {
  const result = await runner.attempt({ argv: scriptArgv(script, args), env: { ...buildPushEnv(registry, owner, dockerConfig), CI: 'true' }, timeoutMs: 600_000 });
  return { code: result.exitCode, stdout: result.stdout, stderr: result.stderr };
}

function imagesFile(name: string, refs: Record<string, string>): string {
  const file = path.join(scratch, `${name}.json`);
  writeFileSync(file, JSON.stringify({ revision: `rev-${name}`, images: Object.entries(refs).map(([service, ref]) => ({ service, repository: ref.split('@')[0], ref })) }));
  return file;
}

function deploy(app: HelloApp, name: string, refs: Record<string, string>, extra: string[] = []): Promise<Run> {
  return runTool('ssh-deploy', ['--compose', app.compose, ...sandboxSshArgs(server, app.project), '--registry', registry.address, '--images-from', imagesFile(name, refs), '--timeout', '60', '--json', ...extra]);
}

/** Runs `work` while a request loop hits `urls`; returns both outcomes. */
async function underLoad<T>(urls: string[], work: () => Promise<T>, options: LoadOptions = {}): Promise<{ outcome: T; load: LoadResult }> {
  const done = work();
  const load = await requestLoop(urls, done, LOAD_LIMIT, options);
  return { outcome: await done, load };
}

function report(run: Run): Report {
  return JSON.parse(run.stdout) as Report;
}

async function text(url: string): Promise<string> {
  const response = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  expect(response.status).toBe(200);
  return response.text();
}

async function appRoutes(project: string): Promise<string> {
  return (await runner.run({ argv: ['docker', 'exec', PROXY_CONTAINER, 'cat', `${PROXY_CONFIG_DIR}/apps/${project}.caddy`], readOnly: true })).stdout;
}

/** A web image serving `release` at /release.txt; `healthy: false` removes the page its healthcheck fetches. */
function webVariant(base: string, release: string, healthy = true): Promise<string> {
  const steps = [`FROM ${base}`, 'USER 0', `RUN echo ${release} > /www/release.txt${healthy ? '' : ' && rm /www/health.json'}`, 'USER 65534:65534'];
  return pushVariant(runner, dockerConfig, `${steps.join('\n')}\n`, `${base.split('@')[0]}:${release}`, scratch);
}

describe('zero-downtime switches behind the reverse proxy', () => {
  let app: HelloApp;
  let v1: Record<string, string>;
  let v2: Record<string, string>;

  beforeAll(async () => {
    ({ registry, server } = await startDeploySandbox(runner));
    app = await helloCopy(owner);
    const built = await runTool('build-push', ['--compose', app.compose, '--registry', registry.address, '--owner', owner, '--json']);
    expect(built.code, built.stderr).toBe(0);
    v1 = Object.fromEntries((JSON.parse(built.stdout) as { images: { service: string; ref: string }[] }).images.map((image) => [image.service, image.ref]));
  });

  afterAll(async () => {
    for (const project of [owner, `${owner}-b`, `${owner}-tls`]) await removeProject(runner, project);
  });

  it('the first deploy starts the proxy, which serves the web port the compose file publishes', async () => {
    const run = await deploy(app, 'v1', v1);
    expect(run.code, run.stderr).toBe(0);
    expect(report(run).result).toBe('deployed');
    expect(await text(app.url)).toContain('Hello from Hello Compose');
    const routes = await appRoutes(owner);
    expect(routes).toContain(`http://:${app.port} {`);
    expect(routes).toMatch(/reverse_proxy 127\.0\.0\.1:\d+/);
    // The container publishes on a loopback slot port; the proxy holds the published one.
    const published = (await runner.run({ argv: ['docker', 'ps', '--filter', `label=com.docker.compose.project=${owner}`, '--filter', 'label=com.docker.compose.service=web', '--format', '{{.Ports}}'] })).stdout;
    expect(published).toMatch(/^127\.0\.0\.1:\d+->8080\/tcp/);
    expect(published).not.toContain(`:${app.port}->`);
  });

  it('a redeploy of a changed web under load: no failed request, the worker (content unchanged) keeps its container', async () => {
    const worker = await pushVariant(runner, dockerConfig, `FROM ${v1.worker}\nLABEL build=v2\n`, `${v1.worker!.split('@')[0]}:v2`, scratch);
    v2 = { web: await webVariant(v1.web!, 'v2'), worker };
    const before = await containerStarts(runner, owner);
    const { outcome: run, load } = await underLoad([app.url, `${app.url}/health.json`], () => deploy(app, 'v2', v2));
    expect(run.code, run.stderr).toBe(0);
    expect(report(run)).toMatchObject({ result: 'deployed', kept: ['worker'] });
    expect(load.requests).toBeGreaterThan(200);
    expect(load.failures).toEqual({});
    expect((await text(`${app.url}/release.txt`)).trim()).toBe('v2');
    const after = await containerStarts(runner, owner);
    expect(after.worker).toBe(before.worker);
    expect(after.web).not.toBe(before.web);
  });

  it('a no-op deploy of the same images restarts nothing', async () => {
    const before = await containerStarts(runner, owner);
    const run = await deploy(app, 'v2-again', v2);
    expect(run.code, run.stderr).toBe(0);
    expect(report(run).result).toBe('unchanged');
    expect(await containerStarts(runner, owner)).toEqual(before);
  });

  it('a release whose new web never turns healthy is removed under load; the old container serves every request', async () => {
    const serving = await containerStarts(runner, owner);
    const broken = await webVariant(v1.web!, 'broken', false);
    const { outcome: run, load } = await underLoad([app.url], () => deploy(app, 'broken', { ...v2, web: broken }));
    expect(run.code, run.stderr).toBe(4);
    expect(report(run).result).toBe('rolled-back');
    expect(report(run).error).toMatch(/new web container did not become healthy/);
    expect(load.failures).toEqual({});
    expect(await containerStarts(runner, owner)).toEqual(serving);
    expect((await text(`${app.url}/release.txt`)).trim()).toBe('v2');
  });

  it('--rollback switches back through the proxy under load without a failed request', async () => {
    const { outcome: run, load } = await underLoad([app.url], () => runTool('ssh-deploy', ['--compose', app.compose, ...sandboxSshArgs(server, owner), '--rollback', '--json']));
    expect(run.code, run.stderr).toBe(0);
    expect(load.failures).toEqual({});
    const missing = await fetch(`${app.url}/release.txt`, { signal: AbortSignal.timeout(10_000) });
    expect(missing.status).toBe(404);
  });

  it('the proxy container restarted (as after a reboot) serves the same routes', async () => {
    const routes = await appRoutes(owner);
    await runner.run({ argv: ['docker', 'restart', '--time', '5', PROXY_CONTAINER], timeoutMs: 60_000 });
    let served = false;
    for (let attempt = 0; attempt < 50 && !served; attempt++) {
      served = await fetch(app.url, { signal: AbortSignal.timeout(2_000) }).then((response) => response.status === 200, () => false);
      if (!served) await new Promise((resolve) => setTimeout(resolve, 200));
    }
    expect(served).toBe(true);
    expect(await appRoutes(owner)).toBe(routes);
  });

  // A new app adds listeners, which Caddy applies by a graceful reload: in-flight requests finish, idle
  // keep-alive connections close. The first app's load therefore runs as a browser would, sending a GET
  // again when a reused connection was reset before any response; every other error still counts.
  it('a second app deploys behind the same proxy without touching the first one', async () => {
    const second = await helloCopy(`${owner}-b`);
    const before = await containerStarts(runner, owner);
    const routes = await appRoutes(owner);
    const { outcome: run, load } = await underLoad([app.url], () => deploy(second, 'second', v2), { retryReusedConnectionReset: true });
    expect(run.code, run.stderr).toBe(0);
    expect(load.failures).toEqual({});
    expect(load.requests).toBeGreaterThan(50);
    // One reload closes the loop's one idle connection at most once.
    expect(load.retried).toBeLessThanOrEqual(1);
    expect(await text(second.url)).toContain('Hello from Hello Compose');
    expect(await appRoutes(owner)).toBe(routes);
    expect(await containerStarts(runner, owner)).toEqual(before);
  });

  it('serves a domain over HTTPS with a certificate from the proxy internal CA', async () => {
    const port = await freePort();
    const secure = await helloCopy(`${owner}-tls`, `proxy:\n  sites:\n    - domain: hello.test\n      service: web\n      port: 8080\n      tls: internal\n      listen: 127.0.0.1:${port}\n`);
    const run = await deploy(secure, 'tls', v2);
    expect(run.code, run.stderr).toBe(0);
    const ca = path.join(scratch, 'proxy-root.crt');
    let page = '';
    for (let attempt = 0; attempt < 50 && !page.includes('Hello from Hello Compose'); attempt++) {
      const root = await runner.attempt({ argv: ['docker', 'exec', PROXY_CONTAINER, 'cat', '/data/caddy/pki/authorities/local/root.crt'], readOnly: true });
      if (root.exitCode === 0) {
        writeFileSync(ca, root.stdout);
        const fetched = await runner.attempt({ argv: ['curl', '--silent', '--show-error', '--max-time', '5', '--cacert', ca, '--resolve', `hello.test:${port}:127.0.0.1`, `https://hello.test:${port}/`], readOnly: true });
        page = fetched.stdout;
      }
      if (!page.includes('Hello from Hello Compose')) await new Promise((resolve) => setTimeout(resolve, 200));
    }
    expect(page).toContain('Hello from Hello Compose');
  });
});
