// Times scripts/build-push.ts on the reference stack in three situations: a cold build (no layer of the
// app cached, an empty registry), a warm build with no change, and a build after a change to one service.
// It works on a committed temporary copy of the stack, a throwaway registry and a private DOCKER_CONFIG,
// so neither the repository nor ~/.docker is touched. Where the official base images cannot be pulled, the
// frontend's Next.js build runs on the host first (offline-base.host-builds): that is timed on its own,
// just before build-push, which then finds it up to date.
import { appendFileSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { ImageResult } from '../lib/build/build.ts';
import { EXIT, runScript, ToolError, type ScriptSpec } from '../lib/core/cli.ts';
import { Runner } from '../lib/core/exec.ts';
import { createLogger, formatTable, printJson } from '../lib/core/log.ts';
import { ensureDockerEngine, startRegistry } from '../lib/sandbox/sandbox.ts';
import { scriptArgv } from '../lib/app/target.ts';
import { loadComposeApp } from '../lib/app/compose.ts';
import { resolveBaseImages } from '../lib/build/base-images.ts';
import { buildPushEnv, committedStackCopy, SANDBOX_DIR, tempDir, uniqueName } from '../test/e2e/harness.ts';

const spec: ScriptSpec = {
  name: 'bench-build',
  summary:
    'Time build-push on the reference stack: cold (nothing of the app cached, empty registry), warm with\n' +
    'no change, and after a change to one service (frontend). Uses a temporary committed copy of the stack,\n' +
    'a throwaway registry on 127.0.0.1 and a private DOCKER_CONFIG.',
  options: { json: { type: 'boolean', help: 'Print the figures as JSON on stdout.' } },
  examples: ['npm run bench:build'],
};

interface Scenario {
  name: string;
  seconds: number;
  /** The host builds and stand-ins, or 0 where the official base images are pulled. */
  hostBuildSeconds: number;
  images: ImageResult[];
}

/** A build step right after each FROM with a value unique to this run: no layer of the app can come from an earlier build. */
function bustLayerCache(stackDir: string, nonce: string): void {
  for (const service of readdirSync(stackDir, { withFileTypes: true }).filter((entry) => entry.isDirectory())) {
    const dockerfile = path.join(stackDir, service.name, 'Dockerfile');
    let text: string;
    try {
      text = readFileSync(dockerfile, 'utf8');
    } catch {
      continue;
    }
    writeFileSync(dockerfile, text.replace(/^(FROM .*)$/gm, `$1\nRUN echo ${nonce} > /etc/aidd-bench-nonce`));
  }
}

await runScript(spec, async (values) => {
  const json = values.json === true;
  const logger = createLogger({ prefix: spec.name, quiet: json });
  const runner = new Runner({ logger });
  await ensureDockerEngine(runner, SANDBOX_DIR);

  const registryDir = tempDir('aidd-bench-registry');
  const registry = await startRegistry(runner, registryDir);
  const owner = uniqueName('bench');
  const dockerConfig = tempDir('aidd-bench-docker-config');
  const env = buildPushEnv(registry, owner, dockerConfig);
  let stackDir = '';
  const scenarios: Scenario[] = [];

  const measure = async (name: string) => {
    logger.step(`${name}: building api, bot and frontend`);
    const hostBuildStarted = Date.now();
    await resolveBaseImages(await loadComposeApp(path.join(stackDir, 'docker-compose.yml')), runner, logger);
    const hostBuildSeconds = (Date.now() - hostBuildStarted) / 1000;
    const started = Date.now();
    const result = await runner.attempt({
      argv: scriptArgv('build-push', ['--compose', path.join(stackDir, 'docker-compose.yml'), '--json']),
      env,
      timeoutMs: 1_800_000,
    });
    if (result.exitCode !== 0) throw new ToolError(`${name}: build-push failed: ${result.stderr.trim().split('\n').at(-1)}`);
    const images = (JSON.parse(result.stdout) as { images: ImageResult[] }).images;
    scenarios.push({ name, seconds: (Date.now() - started) / 1000, hostBuildSeconds, images });
  };

  try {
    const stack = await committedStackCopy(runner, 'aidd-bench-stack', { prepare: (dir) => bustLayerCache(dir, owner) });
    stackDir = stack.dir;

    await measure('cold');
    await measure('warm, no change');
    appendFileSync(path.join(stackDir, 'frontend', 'app', 'page.tsx'), `// bench change ${Date.now()}\n`);
    await runner.run(stack.git(['commit', '--quiet', '--all', '--message', 'change frontend']));
    await measure('frontend changed');
  } finally {
    const images = await runner.attempt({ argv: ['docker', 'image', 'ls', '--format', '{{.Repository}}:{{.Tag}}', `${registry.address}/${owner}/*`], readOnly: true });
    const refs = images.stdout.split('\n').filter(Boolean);
    if (refs.length > 0) await runner.attempt({ argv: ['docker', 'image', 'rm', '--force', ...refs], timeoutMs: 120_000 });
    registry.stop();
    rmSync(registryDir, { recursive: true, force: true });
    if (stackDir) rmSync(path.dirname(stackDir), { recursive: true, force: true });
    rmSync(dockerConfig, { recursive: true, force: true });
  }

  if (json) {
    printJson({ scenarios });
    return EXIT.ok;
  }
  const services = scenarios[0]!.images.map((image) => image.service);
  const header = ['scenario', 'host build s', 'build-push s', 'cache hits', 'pushed', ...services.map((service) => `${service} s`)];
  const rows = scenarios.map((scenario) => [
    scenario.name,
    scenario.hostBuildSeconds.toFixed(1),
    scenario.seconds.toFixed(1),
    `${scenario.images.filter((image) => image.cacheHit).length}/${scenario.images.length}`,
    `${scenario.images.filter((image) => image.pushed).length}/${scenario.images.length}`,
    ...services.map((service) => scenario.images.find((image) => image.service === service)!.seconds.toFixed(1)),
  ]);
  process.stdout.write(`${formatTable(header, rows)}\n`);
  process.stdout.write(
    'Per-service seconds are build + push, 2 builds at a time; base images are local (nothing pulled).\n' +
    'host build s: the offline stand-ins and the frontend built on the host (npm ci, next build), where the\n' +
    'official base images cannot be pulled; skipped while the frontend is unchanged.\n' +
    'After a commit every image carries the new revision label, so all are pushed, but only the changed\n' +
    "service's layers are rebuilt and uploaded; the others send a new manifest only.\n",
  );
  return EXIT.ok;
});
