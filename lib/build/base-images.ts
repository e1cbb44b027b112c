// Base images for machines that cannot pull from Docker Hub: when a compose default image
// (python:3.12-slim, postgres:16-alpine, ...) is neither present nor pullable, build a stand-in
// from Debian packages once, cache it by content, and point the compose variables at it.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { interpolationDefaults, type ComposeApp } from '../app/compose.ts';
import { buildCommand, imageExistsCommand, importCommand, pullCommand } from './docker.ts';
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

function cacheDir(): string {
  return process.env.AIDD_CACHE_DIR ?? path.join(os.homedir(), '.cache', 'aidd-devops');
}

async function imageExists(runner: Runner, ref: string): Promise<boolean> {
  return (await runner.attempt(imageExistsCommand(ref))).exitCode === 0;
}

/**
 * Returns the variables to set for compose and image builds: empty when every default image is
 * available, otherwise each offline variable mapped to its locally built stand-in.
 */
export async function resolveBaseImages(app: ComposeApp, runner: Runner, logger: Logger): Promise<Record<string, string>> {
  const offline = app.config.offlineBase;
  if (!offline) return {};
  const defaults = interpolationDefaults(app.text);
  // Only the variables this compose file uses: the registry file has no build base images, say.
  const wanted = Object.keys(offline.images).filter((variable) => !process.env[variable] && defaults[variable] !== undefined);
  const unavailable: string[] = [];
  for (const variable of wanted) {
    const ref = defaults[variable]!;
    if (await imageExists(runner, ref)) continue;
    if ((await runner.attempt(pullCommand(ref, 60_000))).exitCode !== 0) unavailable.push(ref);
  }
  if (unavailable.length === 0) return {};

  const baseTag = baseImageTag(offline.debianPackages);
  logger.warn(`${unavailable.join(', ')} cannot be pulled; using offline base images built from Debian packages (${baseTag})`);
  if (!(await imageExists(runner, baseTag))) await buildBaseImage(offline.debianPackages, baseTag, runner, logger);

  const resolved: Record<string, string> = {};
  for (const variable of wanted) {
    const kind = offline.images[variable]!;
    if (kind === 'base') {
      resolved[variable] = baseTag;
      continue;
    }
    const dockerfile = path.resolve(app.dir, kind);
    const tag = derivedImageTag(variable, baseTag, readFileSync(dockerfile, 'utf8'));
    if (!(await imageExists(runner, tag))) {
      logger.step(`Building ${tag} from ${path.relative(process.cwd(), dockerfile)}`);
      await runner.run(buildCommand({ context: path.dirname(dockerfile), dockerfile, tags: [tag], buildArgs: { BASE_IMAGE: baseTag } }));
    }
    resolved[variable] = tag;
  }
  return resolved;
}

async function buildBaseImage(packages: string[], tag: string, runner: Runner, logger: Logger): Promise<void> {
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
