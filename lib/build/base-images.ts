// Base images for machines that cannot pull from Docker Hub: when an official image an app names
// (python:3.12-slim, postgres:16-alpine, ...) is neither present nor pullable, build a stand-in from
// Debian packages once, cache it by content, and hand it over under the name aidd.yml gives it: a
// compose variable (`${VAR:-official}`) or a Dockerfile build ARG (`ARG NAME=official`, for compose
// files without variables). Such a machine's containers cannot reach package registries either, so the
// host builds of aidd.yml run then too (host-builds.ts).
import { createHash } from 'node:crypto';
import { copyFileSync, cpSync, existsSync, mkdirSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { ComposeApp, ComposeService } from '../app/compose.ts';
import { interpolationDefaults } from '../app/interpolate.ts';
import { buildCommand, imageExistsCommand, importCommand, pullCommand } from './docker.ts';
import { runHostBuilds } from './host-builds.ts';
import { ToolError } from '../core/cli.ts';
import { cacheDir } from '../core/cache-dir.ts';
import { executablesOnPath } from '../core/path-search.ts';
import type { Command, Runner } from '../core/exec.ts';
import type { Logger } from '../core/log.ts';

const DEBIAN_SUITE = 'bookworm';
const DEBIAN_MIRROR = 'http://deb.debian.org/debian';

export function baseImageTag(packages: string[]): string {
  const hash = createHash('sha256').update(`${DEBIAN_SUITE}\n${[...packages].sort().join('\n')}`).digest('hex');
  return `aidd-offline-base:${hash.slice(0, 12)}`;
}

export function derivedImageTag(variable: string, baseTag: string, dockerfileText: string): string {
  const hash = createHash('sha256').update(`${baseTag}\n${dockerfileText}`).digest('hex');
  return `aidd-offline-${variable.toLowerCase().replace(/_image$/, '').replace(/_/g, '-')}:${hash.slice(0, 12)}`;
}

export function debootstrapCommand(packages: string[], rootfs: string): Command {
  return {
    argv: ['debootstrap', '--variant=minbase', `--include=${packages.join(',')}`, DEBIAN_SUITE, rootfs, DEBIAN_MIRROR],
    timeoutMs: 1_200_000,
  };
}

export function tarCommand(rootfs: string, tarball: string): Command {
  return { argv: ['tar', '-C', rootfs, '-cf', tarball, '.'], timeoutMs: 600_000 };
}

/** The host-node stand-in: the base plus this Node.js and npm, named by all three (a newer node makes a new image). */
export function hostNodeImageTag(baseTag: string, nodeVersion: string, arch: string, npmVersion: string | undefined): string {
  return `aidd-offline-node:${createHash('sha256').update(`${baseTag}\n${nodeVersion}\n${arch}\n${npmVersion ?? 'no npm'}`).digest('hex').slice(0, 12)}`;
}

/** The npm package folder behind the `npm` on PATH (.../npm/bin/npm-cli.js), as the official node images ship it. */
export function npmPackageDir(pathVariable = process.env.PATH ?? ''): { dir: string; version: string } | undefined {
  const npm = executablesOnPath('npm', pathVariable)[0];
  if (!npm) return undefined;
  const dir = path.resolve(realpathSync(npm), '..', '..');
  const manifest = path.join(dir, 'package.json');
  if (!existsSync(manifest)) return undefined;
  const { name, version } = JSON.parse(readFileSync(manifest, 'utf8')) as { name?: string; version?: string };
  return name === 'npm' && version ? { dir, version } : undefined;
}

async function imageExists(runner: Runner, ref: string): Promise<boolean> {
  return (await runner.attempt(imageExistsCommand(ref))).exitCode === 0;
}

/** The global `ARG NAME=default`s of a Dockerfile: those before its first FROM, which FROM lines can use. */
export function dockerfileArgDefaults(text: string): Record<string, string> {
  const defaults: Record<string, string> = {};
  for (const line of text.replace(/\\\r?\n/g, ' ').split(/\r?\n/)) {
    const instruction = /^\s*([A-Za-z]+)\s+(.*)$/.exec(line);
    if (!instruction) continue;
    const keyword = instruction[1]!.toUpperCase();
    if (keyword === 'FROM') break;
    if (keyword !== 'ARG') continue;
    for (const match of instruction[2]!.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=(?:"([^"]*)"|'([^']*)'|(\S*))/g)) {
      defaults[match[1]!] = match[2] ?? match[3] ?? match[4]!;
    }
  }
  return defaults;
}

/** The build ARG defaults of a service's Dockerfile that its compose build.args leave alone. */
export function buildArgDefaults(app: ComposeApp, service: ComposeService): Record<string, string> {
  const build = service.build;
  if (!build) return {};
  const dockerfile = path.resolve(app.dir, build.context, build.dockerfile ?? 'Dockerfile');
  if (!existsSync(dockerfile)) return {};
  const defaults = dockerfileArgDefaults(readFileSync(dockerfile, 'utf8'));
  for (const name of Object.keys(build.args)) delete defaults[name];
  return defaults;
}

/**
 * The official images each offline-base name stands in for, from the compose file's `${NAME:-image}`
 * (unless the environment sets NAME: compose takes that) and from `ARG NAME=image` in the Dockerfiles
 * it builds. Names this app does not use are left out.
 */
export function officialImages(
  names: string[],
  composeDefaults: Record<string, string>,
  argDefaults: Record<string, string>[],
  env: Record<string, string | undefined>,
): Record<string, string[]> {
  const official: Record<string, string[]> = {};
  for (const name of names) {
    const refs = [env[name] ? undefined : composeDefaults[name], ...argDefaults.map((defaults) => defaults[name])].filter((ref): ref is string => !!ref);
    if (refs.length > 0) official[name] = [...new Set(refs)];
  }
  return official;
}

/** The stand-ins a service's build takes as build args: those named after an ARG its Dockerfile leaves to its default. */
export function offlineBuildArgs(app: ComposeApp, service: ComposeService, baseImages: Record<string, string>): Record<string, string> {
  const defaults = buildArgDefaults(app, service);
  return Object.fromEntries(Object.entries(baseImages).filter(([name]) => name in defaults));
}

/**
 * Returns each offline-base name mapped to its locally built stand-in, and the variables of the host
 * builds of the services to build (default: all), or nothing when every official image is available.
 * Compose takes them as variables; builds take them as build args (offlineBuildArgs).
 */
export async function resolveBaseImages(app: ComposeApp, runner: Runner, logger: Logger, services = app.services): Promise<Record<string, string>> {
  const offline = app.config.offlineBase;
  if (!offline) return {};
  const wanted = officialImages(
    Object.keys(offline.images),
    interpolationDefaults(app.variables),
    app.services.map((service) => buildArgDefaults(app, service)),
    process.env,
  );
  const unavailable: string[] = [];
  for (const ref of new Set(Object.values(wanted).flat())) {
    if (await imageExists(runner, ref)) continue;
    if ((await runner.attempt(pullCommand(ref, 60_000))).exitCode !== 0) unavailable.push(ref);
  }
  if (unavailable.length === 0) return {};

  const baseTag = baseImageTag(offline.debianPackages);
  logger.warn(`${unavailable.join(', ')} cannot be pulled; using offline base images built from Debian packages (${baseTag})`);
  if (!(await imageExists(runner, baseTag))) await buildBaseImage(offline.debianPackages, baseTag, runner, logger);

  const resolved: Record<string, string> = {};
  for (const name of Object.keys(wanted)) {
    const kind = offline.images[name]!;
    if (kind === 'base') {
      resolved[name] = baseTag;
      continue;
    }
    if (kind === 'host-node') {
      resolved[name] = await hostNodeImage(name, baseTag, runner, logger);
      continue;
    }
    const dockerfile = path.resolve(app.dir, kind);
    const tag = derivedImageTag(name, baseTag, readFileSync(dockerfile, 'utf8'));
    if (!(await imageExists(runner, tag))) {
      logger.step(`Building ${tag} from ${path.relative(process.cwd(), dockerfile)}`);
      await runner.run(buildCommand({ context: path.dirname(dockerfile), dockerfile, tags: [tag], buildArgs: { BASE_IMAGE: baseTag } }));
    }
    resolved[name] = tag;
  }
  return { ...resolved, ...(await runHostBuilds(app, services, runner, logger)) };
}

/**
 * The base with the Node.js this toolkit runs on, and its npm, for apps whose Node.js must be newer than
 * Debian's (Next.js needs 20.9; Debian 12 has 18): /usr/local/bin/node and npm where the official node
 * images have them.
 */
async function hostNodeImage(name: string, baseTag: string, runner: Runner, logger: Logger): Promise<string> {
  if (process.platform !== 'linux') {
    throw new ToolError(`offline-base.images.${name}: host-node copies this machine's Node.js into a Linux image, which needs Linux; pull the official image instead`);
  }
  const npm = npmPackageDir();
  const tag = hostNodeImageTag(baseTag, process.version, process.arch, npm?.version);
  if (await imageExists(runner, tag)) return tag;
  const work = path.join(cacheDir(), tag.replace(/[:/]/g, '-'));
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  logger.step(`Building ${tag}: ${baseTag} with this machine's Node.js ${process.version}${npm ? ` and npm ${npm.version}` : ' (no npm found on PATH)'}`);
  const dockerfile = ['ARG BASE_IMAGE', 'FROM ${BASE_IMAGE}', 'COPY node /usr/local/bin/node'];
  if (npm) {
    dockerfile.push(
      'COPY npm /usr/local/lib/node_modules/npm',
      'RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx',
    );
  }
  try {
    copyFileSync(process.execPath, path.join(work, 'node'));
    if (npm) cpSync(npm.dir, path.join(work, 'npm'), { recursive: true });
    writeFileSync(path.join(work, 'Dockerfile'), `${dockerfile.join('\n')}\n`);
    await runner.run(buildCommand({ context: work, tags: [tag], buildArgs: { BASE_IMAGE: baseTag } }));
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return tag;
}

/** Builds an image holding a minimal Debian with `packages`, tagged `tag` (debootstrap, then docker import). */
export async function buildBaseImage(packages: string[], tag: string, runner: Runner, logger: Logger): Promise<void> {
  const work = path.join(cacheDir(), tag.replace(/[:/]/g, '-'));
  const rootfs = path.join(work, 'rootfs');
  const tarball = path.join(work, 'rootfs.tar');
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  logger.step(`Building ${tag} with debootstrap (a few minutes, once per package list)`);
  try {
    await runner.run(debootstrapCommand(packages, rootfs));
    await runner.run(tarCommand(rootfs, tarball));
    await runner.run(importCommand(tarball, tag));
  } finally {
    if (!runner.dryRun && existsSync(work)) rmSync(work, { recursive: true, force: true });
  }
}
