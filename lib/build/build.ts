// Building and publishing a compose app's images: which services (the compose file's build sections),
// how each image is named and tagged, which builder the machine has and how it caches, and how a
// build is pushed without re-sending what the registry already holds.
import path from 'node:path';
import { ToolError, UsageError } from '../core/cli.ts';
import { executablesOnPath } from '../core/path-search.ts';
import type { ComposeApp, ComposeService } from '../app/compose.ts';
import { projectVariables } from '../app/compose-file.ts';
import { interpolate } from '../app/interpolate.ts';
import { imageName } from '../app/images.ts';
import { offlineBuildArgs } from './base-images.ts';
import type { Revision } from '../app/revision.ts';
import {
  buildFlags,
  buildxInspectCommand,
  buildxVersionCommand,
  clientVersionCommand,
  imageInspectCommand,
  parseImageInspect,
  pullCommand,
  pushCommand,
  type LocalImage,
} from './docker.ts';
import type { Command, Result, Runner } from '../core/exec.ts';
import { markdownTable } from '../core/github-actions.ts';
import { formatTable, type Logger } from '../core/log.ts';
import type { RegistryClient, RemoteManifest } from './registry-api.ts';

/** The repository page for the `source` label: GitHub Actions' own variables, else the origin remote. */
export function sourceUrl(env: NodeJS.ProcessEnv, remote: string | undefined): string | undefined {
  if (env.GITHUB_SERVER_URL && env.GITHUB_REPOSITORY) return `${env.GITHUB_SERVER_URL}/${env.GITHUB_REPOSITORY}`;
  const trimmed = remote?.trim().replace(/\.git$/, '');
  if (!trimmed) return undefined;
  const scp = /^[\w.-]+@([\w.-]+):(.+)$/.exec(trimmed);
  if (scp) return `https://${scp[1]}/${scp[2]}`;
  try {
    const url = new URL(trimmed);
    // A remote may embed a token (https://TOKEN@github.com/...): a label is public, so drop it.
    url.username = '';
    url.password = '';
    return url.protocol === 'ssh:' ? `https://${url.hostname}${url.pathname}` : url.toString();
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------- names, tags, labels

const SEMVER = /^v?(\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?)$/;

/** --version-tag, else a `refs/tags/vX.Y.Z` GITHUB_REF; other refs give no version tag. */
export function resolveVersionTag(flag: string | undefined, githubRef: string | undefined): string | undefined {
  if (flag !== undefined) {
    const match = SEMVER.exec(flag);
    if (!match) throw new UsageError(`--version-tag ${flag} is not a semantic version; use e.g. --version-tag 1.2.3 or v1.2.3`);
    return match[1];
  }
  const tag = githubRef?.startsWith('refs/tags/') ? githubRef.slice('refs/tags/'.length) : undefined;
  return tag ? SEMVER.exec(tag)?.[1] : undefined;
}

/**
 * The commit sha always; `latest` (unless left where it is) and the version only for a clean tree, so a
 * dirty build never becomes latest.
 */
export function imageTags(revision: Pick<Revision, 'sha' | 'dirty'>, version: string | undefined, latest = true): string[] {
  if (revision.dirty) return [`${revision.sha}-dirty`];
  return [revision.sha, ...(latest ? ['latest'] : []), ...(version ? [version] : [])];
}

export function ociLabels(input: { source: string | undefined; revision: Revision; title: string; created: string }): Record<string, string> {
  return {
    ...(input.source ? { 'org.opencontainers.image.source': input.source } : {}),
    'org.opencontainers.image.revision': input.revision.sha,
    'org.opencontainers.image.created': input.created,
    'org.opencontainers.image.title': input.title,
  };
}

export interface ImagePlan {
  service: string;
  /** REGISTRY/OWNER/IMAGE, lowercase as registries require. */
  repository: string;
  /** OWNER/IMAGE: the repository's path in the registry API. */
  repositoryPath: string;
  tags: string[];
  context: string;
  dockerfile?: string;
  buildArgs: Record<string, string>;
  labels: Record<string, string>;
}

/** The services with a `build:` section: the compose file is the only list of what to build. */
export function selectServices(app: ComposeApp, names: string[]): ComposeService[] {
  const buildable = app.services.filter((service) => service.build);
  if (buildable.length === 0) throw new UsageError(`${app.file} has no service with a build: section; nothing to build`);
  for (const name of names) {
    if (!buildable.some((service) => service.name === name)) {
      throw new UsageError(`--service ${name}: ${app.file} has no build: section for it; buildable services: ${buildable.map((service) => service.name).join(', ')}`);
    }
  }
  return names.length === 0 ? buildable : buildable.filter((service) => names.includes(service.name));
}

export interface PlanOptions {
  registry: string;
  owner: string;
  revision: Revision;
  tags: string[];
  source: string | undefined;
  /** The moment a dirty build was made; a clean build is dated by its commit. */
  now: string;
  /** Variables for `${...}` in build args: the shell's, the app's .env, offline base images. */
  vars: Record<string, string | undefined>;
  /** Offline stand-ins by name; a Dockerfile ARG of that name gets its stand-in as a build arg. */
  baseImages: Record<string, string>;
}

export function planImage(app: ComposeApp, service: ComposeService, options: PlanOptions): ImagePlan {
  const build = service.build!;
  const name = imageName(app, service, options);
  const where = `${app.file} services.${service.name}.build.args`;
  // An arg without a value takes the variable's, and is left out when there is none, as compose does.
  const buildArgs = Object.entries(build.args).flatMap(([name, value]): [string, string][] => {
    if (value !== null) return [[name, interpolate(value, options.vars, `${where}.${name}`)]];
    const fromVars = options.vars[name];
    return fromVars === undefined ? [] : [[name, fromVars]];
  });
  return {
    service: service.name,
    repository: name.repository,
    repositoryPath: name.path,
    tags: options.tags,
    context: path.resolve(app.dir, build.context),
    ...(build.dockerfile ? { dockerfile: path.resolve(app.dir, build.context, build.dockerfile) } : {}),
    // The compose file's own args win over a stand-in for an ARG of the same name.
    buildArgs: { ...offlineBuildArgs(app, service, options.baseImages), ...Object.fromEntries(buildArgs) },
    labels: ociLabels({
      source: options.source,
      revision: options.revision,
      title: name.path.slice(name.path.lastIndexOf('/') + 1),
      created: options.revision.dirty ? options.now : options.revision.committedAt,
    }),
  };
}

/** What compose would substitute: the shell wins over the app's .env; offline base images fill the defaults. */
export function interpolationVars(app: ComposeApp, baseImages: Record<string, string>): Record<string, string | undefined> {
  return { ...projectVariables(app.dir), ...baseImages };
}

// ---------------------------------------------------------------- the builder and its cache

export type Builder =
  /** docker buildx; its driver decides whether registry/gha cache exports work (not with `docker`). */
  | { kind: 'buildx'; driver: string }
  /** A docker client older than 23.0 drives the daemon's built-in BuildKit with DOCKER_BUILDKIT=1. */
  | { kind: 'buildkit'; client: string }
  | { kind: 'legacy' };

export type CacheMode =
  /** buildx on GitHub Actions: the Actions cache, one scope per service so matrix jobs keep their own. */
  | 'gha'
  /** buildx elsewhere: a REPO:buildcache manifest with every layer (mode=max), written only when pushing. */
  | 'registry'
  /** BuildKit: cache metadata inside the pushed image (BUILDKIT_INLINE_CACHE=1), read back from REPO:latest. */
  | 'inline'
  /** Legacy builder: pull REPO:latest, then --cache-from it. */
  | 'pulled-image'
  /** Legacy builder when REPO:latest cannot be pulled: its --cache-from would disable the engine's own cache. */
  | 'local';

export function describeBuilder(builder: Builder): string {
  if (builder.kind === 'buildx') return `docker buildx (driver ${builder.driver})`;
  if (builder.kind === 'buildkit') return `BuildKit through ${builder.client}`;
  return 'legacy docker build';
}

/** A client version with BuildKit built in: 18.09 up to 22.x; from 23.0 on it needs the buildx plugin. */
export function hasBuiltinBuildKit(clientVersion: string): boolean {
  const match = /^(\d+)\.(\d+)/.exec(clientVersion.trim());
  if (!match) return false;
  const [major, minor] = [Number(match[1]), Number(match[2])];
  return (major > 18 || (major === 18 && minor >= 9)) && major < 23;
}

export function parseBuildxDriver(inspectOutput: string): string | undefined {
  return /^Driver:\s*(\S+)/m.exec(inspectOutput)?.[1];
}

export async function detectBuilder(runner: Runner): Promise<Builder> {
  if ((await runner.attempt(buildxVersionCommand())).exitCode === 0) {
    return { kind: 'buildx', driver: parseBuildxDriver((await runner.attempt(buildxInspectCommand())).stdout) ?? 'docker' };
  }
  for (const client of executablesOnPath('docker')) {
    if (hasBuiltinBuildKit((await runner.attempt(clientVersionCommand(client))).stdout)) return { kind: 'buildkit', client };
  }
  return { kind: 'legacy' };
}

/** buildx's type=gha cache needs the runtime variables crazy-max/ghaction-github-runtime exposes. */
export function hasGithubActionsCache(env: NodeJS.ProcessEnv): boolean {
  return Boolean((env.ACTIONS_CACHE_URL || env.ACTIONS_RESULTS_URL) && env.ACTIONS_RUNTIME_TOKEN);
}

export function cacheMode(builder: Builder, githubActionsCache: boolean): CacheMode {
  if (builder.kind === 'legacy') return 'pulled-image';
  // The docker driver cannot export a cache; inline metadata is all it has.
  if (builder.kind === 'buildkit' || builder.driver === 'docker') return 'inline';
  return githubActionsCache ? 'gha' : 'registry';
}

export function describeCache(mode: CacheMode): string {
  return {
    gha: 'GitHub Actions cache, one scope per service',
    registry: 'registry cache at REPO:buildcache',
    inline: 'inline cache from REPO:latest',
    'pulled-image': 'layers of REPO:latest, pulled first',
    local: "the engine's own layer cache",
  }[mode];
}

/** The one build command for a plan, whatever the builder; the image always ends up in the local engine. */
export function imageBuildCommand(builder: Builder, plan: ImagePlan, options: { cache: CacheMode; push: boolean; stream: boolean }): Command {
  const latest = `${plan.repository}:latest`;
  const buildArgs = options.cache === 'inline' ? { ...plan.buildArgs, BUILDKIT_INLINE_CACHE: '1' } : plan.buildArgs;
  const cacheFrom = {
    gha: [`type=gha,scope=${plan.service}`],
    registry: [`type=registry,ref=${plan.repository}:buildcache`],
    inline: [latest],
    'pulled-image': [latest],
    local: [],
  }[options.cache];
  const cacheTo = {
    gha: [`type=gha,scope=${plan.service},mode=max`],
    // Writing the cache is a push: never with --no-push.
    registry: options.push ? [`type=registry,ref=${plan.repository}:buildcache,mode=max`] : [],
    inline: [],
    'pulled-image': [],
    local: [],
  }[options.cache];
  const flags = buildFlags({
    context: plan.context,
    ...(plan.dockerfile ? { dockerfile: plan.dockerfile } : {}),
    tags: plan.tags.map((tag) => `${plan.repository}:${tag}`),
    buildArgs,
    labels: plan.labels,
    cacheFrom,
  });
  const common = { timeoutMs: 1_800_000, stream: options.stream, title: `building ${plan.service}` };
  if (builder.kind === 'buildx') {
    // --load: pushes go through `docker push` after every build succeeded, and skip what the registry has.
    const exports = cacheTo.flatMap((ref) => ['--cache-to', ref]);
    return { argv: ['docker', 'buildx', 'build', '--progress=plain', '--load', ...flags, ...exports, plan.context], ...common };
  }
  if (builder.kind === 'buildkit') {
    return { argv: [builder.client, 'build', '--progress=plain', ...flags, plan.context], env: { DOCKER_BUILDKIT: '1' }, ...common };
  }
  return { argv: ['docker', 'build', ...flags, plan.context], env: { DOCKER_BUILDKIT: '0' }, ...common };
}

export interface CacheUse {
  /** Steps that produce a layer or config (FROM excluded). */
  steps: number;
  cached: number;
}

/** Counts cached steps in a build log: BuildKit's `#N CACHED` or the legacy builder's `---> Using cache`. */
export function parseCacheUse(log: string): CacheUse {
  const lines = log.split('\n');
  if (lines.some((line) => /^Step \d+\/\d+ : /.test(line))) {
    let afterFrom = false;
    let steps = 0;
    let cached = 0;
    for (const line of lines) {
      const step = /^Step \d+\/\d+ : (\S+)/.exec(line);
      if (step) {
        const from = step[1]!.toUpperCase() === 'FROM';
        afterFrom ||= from;
        if (afterFrom && !from) steps++;
      } else if (line.trim() === '---> Using cache') cached++;
    }
    return { steps, cached };
  }
  const steps = new Set<string>();
  const cached = new Set<string>();
  for (const line of lines) {
    const step = /^#(\d+) \[(?:[^\]\s]+ )?\d+\/\d+\] (\S+)/.exec(line);
    if (step && step[2]!.toUpperCase() !== 'FROM') steps.add(step[1]!);
    const hit = /^#(\d+) CACHED\s*$/.exec(line);
    if (hit) cached.add(hit[1]!);
  }
  return { steps: steps.size, cached: [...cached].filter((id) => steps.has(id)).length };
}

// ---------------------------------------------------------------- build, then publish

export interface BuiltImage {
  plan: ImagePlan;
  /** Undefined in dry-run, where nothing was built. */
  local: LocalImage | undefined;
  cache: CacheUse;
  seconds: number;
}

export async function buildImage(
  runner: Runner,
  builder: Builder,
  plan: ImagePlan,
  options: { cache: CacheMode; push: boolean; stream: boolean },
): Promise<BuiltImage> {
  const started = Date.now();
  // Missing on a first build or without read access: then only the engine's own cache can help.
  const pulled = options.cache !== 'pulled-image' || (await runner.attempt(pullCommand(`${plan.repository}:latest`))).exitCode === 0;
  const result = await runner.attempt(imageBuildCommand(builder, plan, { ...options, cache: pulled ? options.cache : 'local' }));
  // The builder's last line says what broke; the whole command line would drown it.
  if (result.exitCode !== 0) throw new ToolError(lastOutputLine(result));
  const local = result.skipped ? undefined : parseImageInspect((await runner.run(imageInspectCommand(`${plan.repository}:${plan.tags[0]}`))).stdout);
  return { plan, local, cache: parseCacheUse(`${result.stdout}\n${result.stderr}`), seconds: (Date.now() - started) / 1000 };
}

/** True when the registry's manifest describes this local image (config digest, or the id itself on a containerd store). */
export function registryHasImage(remote: RemoteManifest | undefined, localId: string): boolean {
  return remote !== undefined && (remote.configDigest === localId || remote.digest === localId);
}

export interface Publication {
  digest: string | null;
  pushed: boolean;
  seconds: number;
}

/** Pushes each tag the registry does not already point at this image, then reads back the published digest. */
export async function publishImage(runner: Runner, registry: RegistryClient, built: BuiltImage, logger: Logger): Promise<Publication> {
  const started = Date.now();
  const { plan, local } = built;
  let pushed = false;
  for (const tag of plan.tags) {
    if (local) {
      const remote = await registry.manifest(plan.repositoryPath, tag).catch((error: Error) => {
        logger.warn(`cannot read ${plan.repository}:${tag} from the registry (${error.message}); pushing it`);
        return undefined;
      });
      if (registryHasImage(remote, local.id)) continue;
    }
    const result = await runner.run(pushCommand(`${plan.repository}:${tag}`));
    pushed ||= !result.skipped;
  }
  const remote = local ? await registry.manifest(plan.repositoryPath, plan.tags[0]!) : undefined;
  if (local && !remote) throw new ToolError(`${plan.repository}:${plan.tags[0]} is not in the registry after the push`);
  return { digest: remote?.digest ?? null, pushed, seconds: (Date.now() - started) / 1000 };
}

/** Runs tasks with at most `limit` at a time; every task runs to its end, failures included. */
export async function mapWithLimit<T, R>(items: T[], limit: number, task: (item: T) => Promise<R>): Promise<PromiseSettledResult<R>[]> {
  const results: PromiseSettledResult<R>[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      try {
        results[index] = { status: 'fulfilled', value: await task(items[index]!) };
      } catch (reason) {
        results[index] = { status: 'rejected', reason };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

// ---------------------------------------------------------------- credentials and results

export const TOKEN_VARIABLES = ['REGISTRY_TOKEN', 'GHCR_TOKEN', 'GITHUB_TOKEN'] as const;

/** The registry password comes only from the environment, so it never shows up in argv or shell history. */
export function registryToken(env: NodeJS.ProcessEnv): { variable: string; value: string } | undefined {
  for (const variable of TOKEN_VARIABLES) {
    const value = env[variable];
    if (value) return { variable, value };
  }
  return undefined;
}

/** A refused login is bad input (exit 2, naming the variable); anything else is a failure. */
export function loginError(registry: string, username: string, tokenVariable: string, result: Result): ToolError {
  const output = `${result.stderr}\n${result.stdout}`;
  if (/unauthorized|401|incorrect username or password|authentication required|denied/i.test(output)) {
    return new UsageError(`docker login to ${registry} as ${username} was refused: check ${tokenVariable} and --username/REGISTRY_USER`);
  }
  return new ToolError(`docker login to ${registry} failed: ${lastOutputLine(result)}`);
}

function lastOutputLine(result: Result): string {
  const lines = `${result.stdout}\n${result.stderr}`.split('\n').map((line) => line.trim()).filter(Boolean);
  return lines.at(-1) ?? `exit code ${result.exitCode}`;
}

export interface ImageResult {
  service: string;
  repository: string;
  tags: string[];
  /** Null when nothing was pushed (--no-push, --dry-run): only a registry gives an image a digest. */
  digest: string | null;
  ref: string | null;
  sizeBytes: number;
  seconds: number;
  cacheHit: boolean;
  pushed: boolean;
}

export function imageResult(built: BuiltImage, publication: Publication | undefined): ImageResult {
  const digest = publication?.digest ?? null;
  return {
    service: built.plan.service,
    repository: built.plan.repository,
    tags: built.plan.tags,
    digest,
    ref: digest ? `${built.plan.repository}@${digest}` : null,
    sizeBytes: built.local?.size ?? 0,
    seconds: Math.round((built.seconds + (publication?.seconds ?? 0)) * 10) / 10,
    cacheHit: built.local !== undefined && built.cache.cached === built.cache.steps,
    pushed: publication?.pushed ?? false,
  };
}

/**
 * GITHUB_OUTPUT lines for the deploy step: `<service>_image` pins the digest; without one (--no-push)
 * it falls back to the first tag and `<service>_digest` is empty.
 */
export function githubOutputLines(images: ImageResult[], revision: Revision): string[] {
  const lines = images.flatMap((image) => [
    `${image.service}_image=${image.ref ?? `${image.repository}:${image.tags[0]}`}`,
    `${image.service}_digest=${image.digest ?? ''}`,
  ]);
  return [...lines, `revision=${revision.sha}`];
}

const SUMMARY_HEADER = ['service', 'tags', 'digest', 'size', 'seconds', 'cache', 'push'];

/** The images of a run as a table on the terminal. */
export function summaryTable(images: ImageResult[], built: BuiltImage[]): string {
  return formatTable(SUMMARY_HEADER, summaryRows(images, built));
}

/** The same for the job summary on GitHub Actions, with whole digests (what a deploy pins). */
export function summaryMarkdown(images: ImageResult[], built: BuiltImage[], revision: string, ok: boolean): string {
  const rows = summaryRows(images, built).map((row, index) => row.map((cell, column) => (column === 2 && images[index]!.digest ? `\`${images[index]!.digest}\`` : cell)));
  return `### build-push: ${ok ? 'ok' : 'failed'}\n\ncommit \`${revision}\`\n\n${markdownTable(SUMMARY_HEADER, rows)}\n`;
}

function summaryRows(images: ImageResult[], built: BuiltImage[]): string[][] {
  return images.map((image) => {
    const { cache, local } = built.find((item) => item.plan.service === image.service)!;
    return [
      image.service,
      image.tags.map((tag) => (/^[0-9a-f]{40}/.test(tag) ? `${tag.slice(0, 12)}${tag.slice(40)}` : tag)).join(', '),
      image.digest ? image.digest.slice(0, 19) : '-',
      image.sizeBytes ? `${(image.sizeBytes / 1e6).toFixed(1)} MB` : '-',
      image.seconds.toFixed(1),
      !local ? '-' : image.cacheHit ? 'hit' : `miss (${cache.cached}/${cache.steps} steps cached)`,
      image.pushed ? 'pushed' : image.digest ? 'already there' : 'no',
    ];
  });
}
