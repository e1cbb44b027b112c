// Host builds (aidd.yml offline-base.host-builds): the digest of a build context's sources, and real runs
// of real commands in a real git repository, skipped while the sources, the commands and the output are
// unchanged. Stamps go to a temporary AIDD_CACHE_DIR.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { stringify as yaml } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hostBuildCommands, runHostBuilds, sourceFilesCommand, sourcesDigest } from '../../lib/build/host-builds.ts';
import { loadComposeApp, type ComposeApp } from '../../lib/app/compose.ts';
import { EXIT, ToolError, UsageError } from '../../lib/core/cli.ts';
import { CommandError, Runner } from '../../lib/core/exec.ts';
import { createLogger } from '../../lib/core/log.ts';

const quiet = createLogger({ prefix: 'test', quiet: true });
const runner = new Runner({ logger: quiet });

/** Every temporary folder this file makes, removed at the end. */
const made: string[] = [];
function temporaryDir(name: string): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), `aidd-host-builds-${name}-`));
  made.push(dir);
  return dir;
}

const savedCacheDir = process.env.AIDD_CACHE_DIR;
beforeAll(() => {
  process.env.AIDD_CACHE_DIR = temporaryDir('cache');
});
afterAll(() => {
  if (savedCacheDir === undefined) delete process.env.AIDD_CACHE_DIR;
  else process.env.AIDD_CACHE_DIR = savedCacheDir;
  for (const dir of made) rmSync(dir, { recursive: true, force: true });
});

describe('the digest of a build context', () => {
  const dir = temporaryDir('digest');
  mkdirSync(path.join(dir, 'src'));
  writeFileSync(path.join(dir, 'package.json'), '{"name": "web"}\n');
  writeFileSync(path.join(dir, 'src', 'page.ts'), 'export const page = 1;\n');
  const files = ['package.json', 'src/page.ts'];
  const run = [['npm', 'ci'], ['npm', 'run', 'build']];
  const digest = () => sourcesDigest(dir, files, run);

  it('is the same for the same files in another order, or listed twice', () => {
    expect(sourcesDigest(dir, [...files].reverse(), run)).toBe(digest());
    expect(sourcesDigest(dir, [...files, ...files], run)).toBe(digest());
    expect(digest()).toMatch(/^[0-9a-f]{64}$/);
  });

  it("changes with a source file's content, and back when the content is restored", () => {
    const before = digest();
    writeFileSync(path.join(dir, 'src', 'page.ts'), 'export const page = 2;\n');
    expect(digest()).not.toBe(before);
    writeFileSync(path.join(dir, 'src', 'page.ts'), 'export const page = 1;\n');
    expect(digest()).toBe(before);
  });

  it('changes when a file is added, deleted (still listed, as git lists a deleted tracked file) or renamed', () => {
    const before = digest();
    writeFileSync(path.join(dir, 'src', 'extra.ts'), 'export {};\n');
    expect(sourcesDigest(dir, [...files, 'src/extra.ts'], run)).not.toBe(before);
    rmSync(path.join(dir, 'src', 'extra.ts'));
    expect(sourcesDigest(dir, [...files, 'src/extra.ts'], run)).not.toBe(before);
    expect(sourcesDigest(dir, ['package.json'], run)).not.toBe(before);
    writeFileSync(path.join(dir, 'src', 'renamed.ts'), readFileSync(path.join(dir, 'src', 'page.ts')));
    expect(sourcesDigest(dir, ['package.json', 'src/renamed.ts'], run)).not.toBe(before);
    expect(digest()).toBe(before);
  });

  it('changes with the commands, including how they split into arguments', () => {
    expect(sourcesDigest(dir, files, [['npm', 'ci']])).not.toBe(digest());
    expect(sourcesDigest(dir, files, [['npm', 'run', 'build'], ['npm', 'ci']])).not.toBe(digest());
    expect(sourcesDigest(dir, files, [['npm', 'ci'], ['npm', 'run build']])).not.toBe(digest());
    expect(sourcesDigest(dir, files, [['npm', 'ci', 'npm', 'run', 'build']])).not.toBe(digest());
  });
});

describe('host build commands', () => {
  it('run each argv in the build context, streamed and named after the folder; the source listing is read-only (it runs in dry-run too)', () => {
    const commands = hostBuildCommands({ dir: 'frontend', run: [['npm', 'ci'], ['npm', 'run', 'build']], output: '.next/standalone/server.js', set: { NEXT_BUILD: 'host' } }, '/apps/bot/frontend');
    expect(commands.map(({ argv, cwd, stream, title }) => ({ argv, cwd, stream, title }))).toEqual([
      { argv: ['npm', 'ci'], cwd: '/apps/bot/frontend', stream: true, title: 'frontend: npm ci' },
      { argv: ['npm', 'run', 'build'], cwd: '/apps/bot/frontend', stream: true, title: 'frontend: npm run build' },
    ]);
    expect(sourceFilesCommand('/apps/bot/frontend')).toMatchObject({ argv: ['git', '-C', '/apps/bot/frontend', 'ls-files', '-z', '--cached', '--others', '--exclude-standard', '--', '.'], readOnly: true });
  });
});

describe('running the host builds of an app', () => {
  /** A compose app whose build context web has a host build that counts its runs in a file outside the app. */
  async function hostBuildApp(options: { git: boolean; dir?: string; produce?: boolean }): Promise<{ app: ComposeApp; web: string; runs: () => number; failNext: (fail: boolean) => void }> {
    const root = temporaryDir('app');
    const appDir = path.join(root, 'app');
    const web = path.join(appDir, 'web');
    mkdirSync(path.join(web, 'src'), { recursive: true });
    const counter = path.join(root, 'runs.log');
    const failFlag = path.join(root, 'fail');
    // $1 the counter, $2 a file whose presence makes the build fail: the commands stay the same either way.
    const script = `echo run >> "$1"; if [ -e "$2" ]; then echo "build broke" >&2; exit 3; fi; ${options.produce === false ? 'true' : 'mkdir -p out && cat src/page.txt > out/result.txt'}`;
    writeFileSync(path.join(appDir, 'docker-compose.yml'), 'services:\n  web:\n    build: ./web\n');
    writeFileSync(
      path.join(appDir, 'aidd.yml'),
      yaml({
        'offline-base': {
          'debian-packages': ['nodejs'],
          images: { BASE_IMAGE: 'base' },
          'host-builds': [{ dir: options.dir ?? 'web', run: [['sh', '-c', script, 'build', counter, failFlag]], output: 'out/result.txt', set: { WEB_BUILD: 'host' } }],
        },
      }),
    );
    writeFileSync(path.join(web, 'Dockerfile'), 'ARG BASE_IMAGE=node:22-alpine\nARG WEB_BUILD=source\nFROM ${BASE_IMAGE}\nCOPY out/result.txt /result.txt\n');
    writeFileSync(path.join(web, '.gitignore'), 'out/\nnode_modules/\n');
    writeFileSync(path.join(web, 'src', 'page.txt'), 'one\n');
    if (options.git) {
      execFileSync('git', ['init', '-q', appDir]);
      execFileSync('git', ['-C', appDir, 'add', '-A']);
      execFileSync('git', ['-C', appDir, '-c', 'user.name=t', '-c', 'user.email=t@example.com', '-c', 'commit.gpgsign=false', 'commit', '-q', '-m', 'app']);
    }
    return {
      app: await loadComposeApp(path.join(appDir, 'docker-compose.yml')),
      web,
      runs: () => (existsSync(counter) ? readFileSync(counter, 'utf8').split('\n').filter(Boolean).length : 0),
      failNext: (fail) => (fail ? writeFileSync(failFlag, '') : rmSync(failFlag, { force: true })),
    };
  }

  it('runs the commands, then skips them while the sources and the output are unchanged; an edit to a tracked source or a deleted output runs them again', async () => {
    const { app, web, runs } = await hostBuildApp({ git: true });
    expect(app.config.offlineBase?.hostBuilds).toHaveLength(1);

    expect(await runHostBuilds(app, app.services, runner, quiet)).toEqual({ WEB_BUILD: 'host' });
    expect(runs()).toBe(1);
    expect(readFileSync(path.join(web, 'out', 'result.txt'), 'utf8')).toBe('one\n');

    expect(await runHostBuilds(app, app.services, runner, quiet)).toEqual({ WEB_BUILD: 'host' });
    expect(runs()).toBe(1);

    writeFileSync(path.join(web, 'src', 'page.txt'), 'two\n');
    await runHostBuilds(app, app.services, runner, quiet);
    expect(runs()).toBe(2);
    expect(readFileSync(path.join(web, 'out', 'result.txt'), 'utf8')).toBe('two\n');
    await runHostBuilds(app, app.services, runner, quiet);
    expect(runs()).toBe(2);

    rmSync(path.join(web, 'out', 'result.txt'));
    expect(await runHostBuilds(app, app.services, runner, quiet)).toEqual({ WEB_BUILD: 'host' });
    expect(runs()).toBe(3);
    expect(existsSync(path.join(web, 'out', 'result.txt'))).toBe(true);
  });

  it('runs only for the services being built: building others runs nothing and sets nothing', async () => {
    const { app, runs } = await hostBuildApp({ git: true });
    expect(await runHostBuilds(app, [], runner, quiet)).toEqual({});
    expect(runs()).toBe(0);
    expect(await runHostBuilds(app, app.services.filter((service) => service.name === 'web'), runner, quiet)).toEqual({ WEB_BUILD: 'host' });
    expect(runs()).toBe(1);
  });

  it('does not run for files git ignores or files outside the build context, and does for a new file git does not ignore', async () => {
    const { app, web, runs } = await hostBuildApp({ git: true });
    await runHostBuilds(app, app.services, runner, quiet);
    expect(runs()).toBe(1);

    mkdirSync(path.join(web, 'node_modules', 'left-pad'), { recursive: true });
    writeFileSync(path.join(web, 'node_modules', 'left-pad', 'index.js'), 'module.exports = 1;\n');
    writeFileSync(path.join(web, 'out', 'cache.bin'), 'anything\n');
    writeFileSync(path.join(app.dir, 'README.md'), 'outside web\n');
    await runHostBuilds(app, app.services, runner, quiet);
    expect(runs()).toBe(1);

    writeFileSync(path.join(web, 'src', 'new.txt'), 'untracked, not ignored\n');
    await runHostBuilds(app, app.services, runner, quiet);
    expect(runs()).toBe(2);
  });

  it('always runs outside a git work tree, where it cannot tell the sources', async () => {
    const savedCeiling = process.env.GIT_CEILING_DIRECTORIES;
    // Even if the temporary folder sat inside a repository, git must not find it.
    process.env.GIT_CEILING_DIRECTORIES = os.tmpdir();
    try {
      const { app, runs } = await hostBuildApp({ git: false });
      expect(await runHostBuilds(app, app.services, runner, quiet)).toEqual({ WEB_BUILD: 'host' });
      expect(await runHostBuilds(app, app.services, runner, quiet)).toEqual({ WEB_BUILD: 'host' });
      expect(runs()).toBe(2);
    } finally {
      if (savedCeiling === undefined) delete process.env.GIT_CEILING_DIRECTORIES;
      else process.env.GIT_CEILING_DIRECTORIES = savedCeiling;
    }
  });

  it('throws when a command fails and keeps no stamp of that run: the next call runs again', async () => {
    const { app, web, runs, failNext } = await hostBuildApp({ git: true });
    await runHostBuilds(app, app.services, runner, quiet);
    writeFileSync(path.join(web, 'src', 'page.txt'), 'two\n');
    failNext(true);
    const failure = await runHostBuilds(app, app.services, runner, quiet).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(CommandError);
    expect((failure as CommandError).message).toMatch(/^sh -c .* failed: build broke$/);
    expect(runs()).toBe(2);

    // The output of the first run is still there: only a missing stamp for these sources makes it run.
    failNext(false);
    await runHostBuilds(app, app.services, runner, quiet);
    expect(runs()).toBe(3);
    expect(readFileSync(path.join(web, 'out', 'result.txt'), 'utf8')).toBe('two\n');
  });

  it('after a failed run, sources put back as they were at an earlier good run still run again: the failure may have broken the output', async () => {
    const { app, web, runs, failNext } = await hostBuildApp({ git: true });
    await runHostBuilds(app, app.services, runner, quiet);
    writeFileSync(path.join(web, 'src', 'page.txt'), 'two\n');
    failNext(true);
    await expect(runHostBuilds(app, app.services, runner, quiet)).rejects.toBeInstanceOf(CommandError);
    failNext(false);
    writeFileSync(path.join(web, 'src', 'page.txt'), 'one\n');
    await runHostBuilds(app, app.services, runner, quiet);
    expect(runs()).toBe(3);
  });

  it('refuses a run that does not produce the output, naming the folder and the output', async () => {
    const { app, runs } = await hostBuildApp({ git: true, produce: false });
    const failure = await runHostBuilds(app, app.services, runner, quiet).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(ToolError);
    expect(failure).not.toBeInstanceOf(UsageError);
    expect((failure as ToolError).exitCode).toBe(EXIT.failed);
    expect((failure as ToolError).message).toMatch(/^web: `sh -c .*` did not produce out\/result\.txt; check aidd\.yml offline-base\.host-builds$/);
    expect(runs()).toBe(1);
  });

  it('refuses a dir that is not a folder of the app, naming it, before running anything', async () => {
    const { app, runs } = await hostBuildApp({ git: true, dir: 'webb' });
    const failure = await runHostBuilds(app, app.services, runner, quiet).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(UsageError);
    expect((failure as UsageError).exitCode).toBe(EXIT.usage);
    expect((failure as UsageError).message).toBe(`aidd.yml offline-base.host-builds[0].dir: webb is not a folder in ${app.dir}; name a build context of docker-compose.yml`);
    expect(runs()).toBe(0);
  });

  it('in dry-run lists the commands, runs none and keeps no stamp, and still returns the variables', async () => {
    const { app, web, runs } = await hostBuildApp({ git: true });
    // An output already there: a stamp written by the dry run would make the real run below skip.
    mkdirSync(path.join(web, 'out'));
    writeFileSync(path.join(web, 'out', 'result.txt'), 'stale\n');
    const dryRunner = new Runner({ logger: quiet, dryRun: true });
    expect(await runHostBuilds(app, app.services, dryRunner, quiet)).toEqual({ WEB_BUILD: 'host' });
    expect(runs()).toBe(0);
    expect(dryRunner.plan.some((line) => line.startsWith('sh -c '))).toBe(true);

    await runHostBuilds(app, app.services, runner, quiet);
    expect(runs()).toBe(1);
    expect(readFileSync(path.join(web, 'out', 'result.txt'), 'utf8')).toBe('one\n');
  });
});
