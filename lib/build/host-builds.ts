// Builds run on the host for Dockerfiles that install from a package registry (npm, PyPI, ...) that
// containers on this machine cannot reach. Where the offline stand-ins are used, each of aidd.yml's
// offline-base.host-builds runs its commands in its build context first and hands the builds its `set`
// variables (NEXT_BUILD=host), which tell the Dockerfile to copy the output instead of installing.
// A run is skipped while its output exists and the sources (the files git does not ignore) are unchanged.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ToolError, UsageError } from '../core/cli.ts';
import { cacheDir } from '../core/cache-dir.ts';
import type { Command, Runner } from '../core/exec.ts';
import type { Logger } from '../core/log.ts';
import type { ComposeApp, ComposeService } from '../app/compose.ts';
import type { HostBuildSpec } from '../app/settings.ts';

export function hostBuildCommands(build: HostBuildSpec, dir: string): Command[] {
  return build.run.map((argv) => ({ argv, cwd: dir, timeoutMs: 1_800_000, stream: true, title: `${build.dir}: ${argv.join(' ')}` }));
}

/** The files under dir git does not ignore, tracked or not, NUL-separated; fails outside a work tree. */
export function sourceFilesCommand(dir: string): Command {
  return { argv: ['git', '-C', dir, 'ls-files', '-z', '--cached', '--others', '--exclude-standard', '--', '.'], readOnly: true, timeoutMs: 60_000 };
}

/** One digest of the commands and of every source file's name and content (a deleted one counts as such). */
export function sourcesDigest(dir: string, files: string[], run: string[][]): string {
  const hash = createHash('sha256').update(`${JSON.stringify(run)}\n`);
  for (const file of [...new Set(files)].sort()) {
    const full = path.join(dir, file);
    const content = existsSync(full) && statSync(full).isFile() ? createHash('sha256').update(readFileSync(full)).digest('hex') : 'missing';
    hash.update(`${file}\0${content}\n`);
  }
  return hash.digest('hex');
}

function stampFile(dir: string): string {
  return path.join(cacheDir(), 'host-builds', `${createHash('sha256').update(dir).digest('hex').slice(0, 16)}.sha256`);
}

async function currentDigest(runner: Runner, dir: string, build: HostBuildSpec): Promise<string | undefined> {
  const listing = await runner.attempt(sourceFilesCommand(dir));
  if (listing.exitCode !== 0) return undefined;
  return sourcesDigest(dir, listing.stdout.split('\0').filter(Boolean), build.run);
}

/**
 * Runs the host builds of the given services' build contexts that are out of date, and returns the
 * variables they set: building only the api runs nothing for the frontend.
 */
export async function runHostBuilds(app: ComposeApp, services: ComposeService[], runner: Runner, logger: Logger): Promise<Record<string, string>> {
  const contexts = new Set(services.flatMap((service) => (service.build ? [path.resolve(app.dir, service.build.context)] : [])));
  const variables: Record<string, string> = {};
  for (const [index, build] of (app.config.offlineBase?.hostBuilds ?? []).entries()) {
    const dir = path.resolve(app.dir, build.dir);
    if (!existsSync(dir) || !statSync(dir).isDirectory()) {
      throw new UsageError(`aidd.yml offline-base.host-builds[${index}].dir: ${build.dir} is not a folder in ${app.dir}; name a build context of ${path.basename(app.file)}`);
    }
    if (!contexts.has(dir)) continue;
    const commands = build.run.map((argv) => argv.join(' ')).join(' && ');
    const sets = Object.entries(build.set).map(([name, value]) => `${name}=${value}`).join(' ');
    const output = path.join(dir, build.output);
    const digest = await currentDigest(runner, dir, build);
    const stamp = stampFile(dir);
    if (digest && existsSync(output) && existsSync(stamp) && readFileSync(stamp, 'utf8').trim() === digest) {
      logger.step(`${build.dir}: ${build.output} is up to date (sources unchanged since \`${commands}\` on the host); the image copies it (${sets})`);
    } else {
      // A run that fails half-way may leave a broken output behind: only a finished run may be skipped next time.
      if (!runner.dryRun) rmSync(stamp, { force: true });
      logger.warn(`${build.dir}: containers here cannot reach package registries; building on the host (\`${commands}\`), the image copies ${build.output} (${sets})`);
      for (const command of hostBuildCommands(build, dir)) await runner.run(command);
      if (!runner.dryRun) {
        if (!existsSync(output)) throw new ToolError(`${build.dir}: \`${commands}\` did not produce ${build.output}; check aidd.yml offline-base.host-builds`);
        if (digest) {
          mkdirSync(path.dirname(stamp), { recursive: true });
          writeFileSync(stamp, `${digest}\n`);
        }
      }
    }
    Object.assign(variables, build.set);
  }
  return variables;
}
