// Shared set-up for tests that drive the real Docker engine, registry and sshd on loopback.
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { cpSync, existsSync, lstatSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { resolveBaseImages } from '../../lib/build/base-images.ts';
import { resolveProxyImage } from '../../lib/build/proxy-image.ts';
import { PROXY_CONFIG_DIR, PROXY_CONTAINER } from '../../lib/deploy/proxy.ts';
import { composeCommand, loadComposeApp, type ComposeApp, type ComposeTarget } from '../../lib/app/compose.ts';
import { Runner, type Command } from '../../lib/core/exec.ts';
import { createLogger } from '../../lib/core/log.ts';
import { freePort } from '../../lib/core/net.ts';
import { ensureDockerEngine, startRegistry, startSshServer, type Registry, type SshServer } from '../../lib/sandbox/sandbox.ts';
import { DEFAULT_COMPOSE_FILE, detectComposeCli, SANDBOX_DIR } from '../../lib/app/target.ts';

export { SANDBOX_DIR };

export function testRunner(): Runner {
  return new Runner({ logger: createLogger({ prefix: 'e2e', quiet: !process.env.AIDD_TEST_VERBOSE }) });
}

/** The Docker engine must answer: with CI set, a missing engine fails the suite instead of skipping it. */
export async function requireDocker(runner: Runner): Promise<void> {
  await ensureDockerEngine(runner, SANDBOX_DIR);
}

/** What every deploy test stands on: the Docker engine, the proxy image, and the sandbox's registry and sshd. */
export async function startDeploySandbox(runner: Runner): Promise<{ registry: Registry; server: SshServer }> {
  await requireDocker(runner);
  await useProxyImage(runner);
  const registry = await startRegistry(runner, path.join(SANDBOX_DIR, 'registry'));
  const server = await startSshServer(runner, path.join(SANDBOX_DIR, 'sshd'));
  return { registry, server };
}

export function uniqueName(prefix: string): string {
  return `${prefix}-${randomBytes(3).toString('hex')}`;
}

export function tempDir(prefix: string): string {
  return mkdtempSync(path.join(os.tmpdir(), `${prefix}-`));
}

/** Writes an env file from the example with overrides; mode 0600 as it holds secrets. */
export function writeEnvFile(file: string, example: string, overrides: Record<string, string>): void {
  const lines = readFileSync(example, 'utf8').split('\n').filter((line) => {
    const name = /^([A-Za-z_][A-Za-z0-9_]*)=/.exec(line)?.[1];
    return !name || !(name in overrides);
  });
  for (const [name, value] of Object.entries(overrides)) lines.push(`${name}=${value}`);
  writeFileSync(file, lines.join('\n') + '\n', { mode: 0o600 });
}

export interface TestStack {
  app: ComposeApp;
  target: ComposeTarget;
  /** Variables compose needs besides the env file: offline base images. */
  env: Record<string, string>;
  apiPort: number;
  frontendPort: number;
  compose(args: string[], extra?: Partial<Command>): Command;
}

/** A uniquely named copy of the reference stack with its own ports, ready for `up`. */
export async function prepareReferenceStack(runner: Runner, prefix = 'aidd-e2e'): Promise<TestStack> {
  const app = await loadComposeApp(DEFAULT_COMPOSE_FILE);
  const env = await resolveBaseImages(app, runner, createLogger({ prefix: 'e2e' }));
  const [apiPort, frontendPort] = [await freePort(), await freePort()];
  const envFile = path.join(tempDir(prefix), '.env');
  writeEnvFile(envFile, path.join(app.dir, '.env.example'), {
    API_PORT: String(apiPort),
    FRONTEND_PORT: String(frontendPort),
    POSTGRES_PASSWORD: randomBytes(12).toString('base64url'),
  });
  const target: ComposeTarget = { cli: await detectComposeCli(runner), files: app.files, projectName: uniqueName(prefix), projectDir: app.dir, envFile };
  return {
    app,
    target,
    env,
    apiPort,
    frontendPort,
    compose: (args, extra = {}) => composeCommand(target, args, { env, timeoutMs: 1_800_000, ...extra }),
  };
}

/** Everything the project created carries its compose label: list it to prove teardown. */
export async function projectLeftovers(runner: Runner, projectName: string): Promise<string[]> {
  const label = `label=com.docker.compose.project=${projectName}`;
  const kinds: [string, string[]][] = [
    ['container', ['docker', 'ps', '--all', '--quiet', '--filter', label]],
    ['volume', ['docker', 'volume', 'ls', '--quiet', '--filter', label]],
    ['network', ['docker', 'network', 'ls', '--quiet', '--filter', label]],
  ];
  const leftovers: string[] = [];
  for (const [kind, argv] of kinds) {
    const ids = (await runner.run({ argv, readOnly: true })).stdout.split('\n').filter(Boolean);
    leftovers.push(...ids.map((id) => `${kind} ${id}`));
  }
  return leftovers;
}

export async function getJson(url: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

export interface AppCopy {
  dir: string;
  /** Its docker-compose.yml. */
  compose: string;
  git(args: string[]): Command;
  /** The commit build-push and ssh-deploy record for it. */
  sha(): Promise<string>;
}

/** Copies an app's folder without its .env, installed packages and build output: git ignores them, and the copy's own builds remake them. */
export function copySources(source: string, dir: string): void {
  cpSync(source, dir, { recursive: true, filter: (file) => !['.env', 'node_modules', '.next'].includes(path.basename(file)) });
}

/**
 * A committed copy of an app directory (an .env, node_modules and .next left out) in a temporary git repository of its own:
 * the tools must record its revision, not the toolkit's, and callers may change and commit files without
 * touching the project. `prepare` edits the copy before the first commit.
 */
export async function committedCopy(runner: Runner, source: string, prefix: string, options: { prepare?: (dir: string) => void; remote?: string } = {}): Promise<AppCopy> {
  const dir = path.join(tempDir(prefix), path.basename(source));
  copySources(source, dir);
  options.prepare?.(dir);
  const git = (args: string[]): Command => ({ argv: ['git', '-C', dir, '-c', 'user.name=aidd-test', '-c', 'user.email=aidd-test@example.com', ...args], timeoutMs: 30_000 });
  const steps = [['init', '--quiet'], ...(options.remote ? [['remote', 'add', 'origin', options.remote]] : []), ['add', '--all'], ['commit', '--quiet', '--message', prefix]];
  for (const args of steps) await runner.run(git(args));
  const sha = async () => (await runner.run(git(['rev-parse', 'HEAD']))).stdout.trim();
  return { dir, compose: path.join(dir, 'docker-compose.yml'), git, sha };
}

/** A committed copy of the reference stack (examples/aidd-bot). */
export function committedStackCopy(runner: Runner, prefix: string, options: { prepare?: (dir: string) => void; remote?: string } = {}): Promise<AppCopy> {
  return committedCopy(runner, path.dirname(DEFAULT_COMPOSE_FILE), prefix, options);
}

/** The environment build-push reads in CI, pointed at a sandbox registry, with GitHub's own variables cleared. */
export function buildPushEnv(registry: Registry, owner: string, dockerConfig: string): Record<string, string | undefined> {
  return {
    DOCKER_CONFIG: dockerConfig,
    REGISTRY: registry.address,
    IMAGE_OWNER: owner,
    REGISTRY_USER: registry.user,
    REGISTRY_TOKEN: registry.password.reveal(),
    GITHUB_OUTPUT: undefined,
    GITHUB_REF: undefined,
    GITHUB_SERVER_URL: undefined,
    GITHUB_REPOSITORY: undefined,
  };
}

/** Names, sizes and times of everything under a deploy dir: proof that a refused run changed nothing. */
export function snapshot(dir: string): string[] {
  const entries: string[] = [];
  if (!existsSync(dir)) return entries;
  const walk = (current: string) => {
    for (const name of readdirSync(current)) {
      const full = path.join(current, name);
      const stat = lstatSync(full);
      entries.push(`${path.relative(dir, full)} ${stat.size} ${stat.mtimeMs}`);
      if (stat.isDirectory()) walk(full);
    }
  };
  walk(dir);
  return entries.sort();
}

/** SSH authentications the sandbox sshd logged: each is one handshake. */
export function handshakes(sshdLog: string): number {
  return (readFileSync(sshdLog, 'utf8').match(/Accepted publickey/g) ?? []).length;
}

/**
 * The proxy image for deploys to the sandbox server, which is this machine's engine: the official one
 * where Docker Hub answers, otherwise the stand-in built from Debian's caddy. Set as AIDD_PROXY_IMAGE,
 * so every ssh-deploy the tests start uses it.
 */
export async function useProxyImage(runner: Runner): Promise<string> {
  const image = await resolveProxyImage(runner, createLogger({ prefix: 'e2e', quiet: true }));
  process.env.AIDD_PROXY_IMAGE = image;
  return image;
}

/**
 * Takes a compose project off this machine's engine: its containers, then its networks (and volumes when
 * asked), by the label both compose versions set, and its routes in the proxy.
 */
export async function removeProject(runner: Runner, project: string, options: { volumes?: boolean } = {}): Promise<void> {
  const ids = async (list: string[]) =>
    (await runner.attempt({ argv: ['docker', ...list, '--quiet', '--filter', `label=com.docker.compose.project=${project}`], readOnly: true })).stdout.split('\n').filter(Boolean);
  const containers = await ids(['ps', '--all']);
  if (containers.length > 0) await runner.attempt({ argv: ['docker', 'rm', '--force', ...containers], timeoutMs: 120_000 });
  const networks = await ids(['network', 'ls']);
  if (networks.length > 0) await runner.attempt({ argv: ['docker', 'network', 'rm', ...networks], timeoutMs: 60_000 });
  const volumes = options.volumes ? await ids(['volume', 'ls']) : [];
  if (volumes.length > 0) await runner.attempt({ argv: ['docker', 'volume', 'rm', '--force', ...volumes], timeoutMs: 60_000 });
  await removeProxyRoutes(runner, project);
}

/** Removes an app's routes from the server's proxy, as a person taking the app off the server would. */
export async function removeProxyRoutes(runner: Runner, project: string): Promise<void> {
  const file = `${PROXY_CONFIG_DIR}/apps/${project}.caddy`;
  const removed = await runner.attempt({ argv: ['docker', 'exec', PROXY_CONTAINER, 'rm', file], timeoutMs: 30_000 });
  if (removed.exitCode === 0) {
    await runner.attempt({ argv: ['docker', 'exec', PROXY_CONTAINER, 'caddy', 'reload', '--config', `${PROXY_CONFIG_DIR}/Caddyfile`, '--adapter', 'caddyfile'], timeoutMs: 30_000 });
  }
}

/** The SSH flags of a sandbox server for one project deployed under ~/apps/PROJECT; an override of null drops the flag. */
export function sandboxSshArgs(server: SshServer, project: string, overrides: Record<string, string | null> = {}): string[] {
  const flags: Record<string, string | null> = {
    host: server.host,
    port: String(server.port),
    user: server.user,
    key: server.keyFile,
    'known-hosts': server.knownHostsFile,
    path: `~/apps/${project}`,
    project,
    ...overrides,
  };
  return Object.entries(flags).flatMap(([name, value]) => (value === null ? [] : [`--${name}`, value]));
}

/** Builds an image from a Dockerfile on stdin, tags it `ref` and pushes it; returns its digest ref. */
export async function pushVariant(runner: Runner, dockerConfig: string, dockerfile: string, ref: string, context: string): Promise<string> {
  const env = { DOCKER_CONFIG: dockerConfig };
  await runner.run({ argv: ['docker', 'build', '--quiet', '--tag', ref, '--file', '-', context], input: dockerfile, env, timeoutMs: 300_000 });
  await runner.run({ argv: ['docker', 'push', ref], env, timeoutMs: 300_000 });
  const digest = (await runner.run({ argv: ['docker', 'image', 'inspect', '--format', '{{join .RepoDigests "\\n"}}', ref] })).stdout
    .split('\n')
    .find((line) => line.startsWith(ref.replace(/:[^:]+$/, '@')));
  return digest!;
}

export interface LoadResult {
  requests: number;
  failed: number;
  /** Status codes or error names of the failures, with counts. */
  failures: Record<string, number>;
  /** Requests sent again after a reused keep-alive connection was reset before any response. */
  retried: number;
}

export interface LoadOptions {
  intervalMs?: number;
  /**
   * Send a GET once more on a fresh connection when a reused keep-alive connection was reset before any
   * response, as browsers do (RFC 9112 9.3.1; Node's documentation of `request.reusedSocket`). A proxy
   * reload closes idle connections, and a request racing that close is lost by a client that never
   * retries. Off: every such reset counts as a failure.
   */
  retryReusedConnectionReset?: boolean;
}

/** One GET over `agent`: the status, or the error with whether the connection had carried requests before. */
function get(url: string, agent: http.Agent): Promise<{ status: number } | { error: NodeJS.ErrnoException; reused: boolean }> {
  return new Promise((resolve) => {
    const request = http.get(url, { agent, timeout: 5_000 }, (response) => {
      response.resume();
      response.on('end', () => resolve({ status: response.statusCode ?? 0 }));
      response.on('error', (error) => resolve({ error, reused: false }));
    });
    request.on('timeout', () => request.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })));
    request.on('error', (error) => resolve({ error, reused: request.reusedSocket }));
  });
}

/**
 * GETs each url in turn until `done` settles, at most `limit` requests, `intervalMs` apart, over
 * keep-alive connections as browsers hold them: a bounded load on loopback that counts every request
 * not answered 200.
 */
export async function requestLoop(urls: string[], done: Promise<unknown>, limit: number, options: LoadOptions = {}): Promise<LoadResult> {
  let settled = false;
  void done.then(
    () => (settled = true),
    () => (settled = true),
  );
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const result: LoadResult = { requests: 0, failed: 0, failures: {}, retried: 0 };
  const fail = (why: string) => {
    result.failed += 1;
    result.failures[why] = (result.failures[why] ?? 0) + 1;
  };
  try {
    while (!settled && result.requests < limit) {
      const url = urls[result.requests % urls.length]!;
      result.requests += 1;
      let outcome = await get(url, agent);
      if ('error' in outcome && outcome.reused && outcome.error.code === 'ECONNRESET' && options.retryReusedConnectionReset) {
        result.retried += 1;
        outcome = await get(url, agent);
      }
      if ('error' in outcome) fail(outcome.error.code ?? outcome.error.name);
      else if (outcome.status !== 200) fail(`HTTP ${outcome.status}`);
      await new Promise((resolve) => setTimeout(resolve, options.intervalMs ?? 10));
    }
  } finally {
    agent.destroy();
  }
  return result;
}

/** Each container of a compose project as SERVICE -> "ID STARTED_AT", to tell which ones a deploy replaced. */
export async function containerStarts(runner: Runner, project: string): Promise<Record<string, string>> {
  const ids = (await runner.run({ argv: ['docker', 'ps', '--quiet', '--filter', `label=com.docker.compose.project=${project}`, '--filter', 'label=com.docker.compose.oneoff=False'], readOnly: true })).stdout.split('\n').filter(Boolean);
  if (ids.length === 0) return {};
  const lines = (await runner.run({ argv: ['docker', 'inspect', '--format', '{{index .Config.Labels "com.docker.compose.service"}} {{.Id}} {{.State.StartedAt}}', ...ids], readOnly: true })).stdout.split('\n').filter(Boolean);
  return Object.fromEntries(lines.map((line) => [line.slice(0, line.indexOf(' ')), line.slice(line.indexOf(' ') + 1)]));
}
