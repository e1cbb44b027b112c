// The toolkit's main job on the built-in default: bring the AIDD Bot reference stack up on this
// machine's Docker engine, offline if need be, and prove it healthy with the smoke checks.
import { chmodSync, copyFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { EXIT, parseSeconds, runScript, stringValue, type ScriptSpec } from '../lib/cli.ts';
import { resolveBaseImages } from '../lib/base-images.ts';
import { composeCommand, loadComposeApp, type ComposeTarget } from '../lib/compose.ts';
import { Runner } from '../lib/exec.ts';
import { localAccess } from '../lib/local-stack.ts';
import { createLogger, printJson } from '../lib/log.ts';
import { ensureDockerEngine } from '../lib/sandbox.ts';
import { formatOutcomes, runSmoke } from '../lib/smoke.ts';
import { DEFAULT_COMPOSE_FILE, detectComposeCli, REPO_ROOT } from '../lib/target.ts';

const spec: ScriptSpec = {
  name: 'rehearse',
  summary:
    'Run the stack end to end on this machine: create the .env from .env.example when missing (mode 0600),\n' +
    'fall back to offline base images when Docker Hub cannot be reached, build and start every service\n' +
    'with compose, and smoke-test it. Defaults to the built-in AIDD Bot stack.',
  options: {
    compose: { type: 'string', value: 'PATH', env: 'AIDD_COMPOSE_FILE', help: 'Compose file of the target app (default: built-in AIDD Bot stack).' },
    project: { type: 'string', value: 'NAME', env: 'COMPOSE_PROJECT_NAME', help: 'Compose project name (default aidd-rehearsal).' },
    timeout: { type: 'string', value: 'SECONDS', help: 'Deadline for the stack to become healthy (default 180).' },
    'dry-run': { type: 'boolean', help: 'Print the commands that would change anything, run none of them.' },
    verbose: { type: 'boolean', short: 'v', help: 'Print every command before it runs.' },
    json: { type: 'boolean', help: 'Print the result as JSON on stdout.' },
  },
  examples: ['npm start', 'npx tsx scripts/rehearse.ts --dry-run'],
};

await runScript(spec, async (values) => {
  const json = values.json === true;
  const logger = createLogger({ prefix: spec.name, quiet: json });
  const runner = new Runner({ logger, dryRun: values['dry-run'] === true, verbose: values.verbose === true });
  const app = loadComposeApp(stringValue(values, 'compose') ?? DEFAULT_COMPOSE_FILE);
  const projectName = stringValue(values, 'project') ?? 'aidd-rehearsal';
  const deadlineMs = parseSeconds(stringValue(values, 'timeout'), '--timeout', 180) * 1000;

  logger.step('Checking the Docker engine');
  await ensureDockerEngine(runner, path.join(REPO_ROOT, '.cache', 'sandbox'));

  const envFile = path.join(app.dir, '.env');
  if (!existsSync(envFile) && !runner.dryRun) {
    copyFileSync(path.join(app.dir, '.env.example'), envFile);
    chmodSync(envFile, 0o600);
    logger.info(`created ${path.relative(process.cwd(), envFile)} from .env.example (mode 0600)`);
  }

  logger.step('Resolving base images');
  const baseImages = await resolveBaseImages(app, runner, logger);
  const target: ComposeTarget = { cli: await detectComposeCli(runner), files: [app.file], projectName, projectDir: app.dir, envFile };

  logger.step(`Building and starting ${app.services.map((service) => service.name).join(', ')} (project ${projectName})`);
  await runner.run(composeCommand(target, ['up', '--detach', '--build'], { env: baseImages, stream: true, timeoutMs: 1_800_000 }));
  if (runner.dryRun) return EXIT.ok;

  logger.step('Smoke-testing the stack');
  const outcomes = await runSmoke(localAccess(runner, projectName), {
    services: app.services.map((service) => service.name),
    http: app.config.smoke,
    deadlineMs,
  });
  const ok = outcomes.every((outcome) => outcome.ok);
  if (json) printJson({ ok, project: projectName, baseImages, checks: outcomes });
  else process.stdout.write(`${formatOutcomes(outcomes)}\n`);
  if (!ok) return EXIT.failed;
  logger.step(`Stack ${projectName} is up. Stop it with: ${[...target.cli, '-p', projectName, '--project-directory', path.relative(process.cwd(), app.dir), 'down'].join(' ')}`);
  return EXIT.ok;
});
