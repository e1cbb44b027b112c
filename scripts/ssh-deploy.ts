// Deploy the registry images to a server over SSH: health-checked, locked, audited, reversible.
import { readFileSync } from 'node:fs';
import { EXIT, isInteractive, parseSeconds, runScript, stringValue, ToolError, UsageError, type ScriptSpec, type Values } from '../lib/core/cli.ts';
import { defaultProjectName, loadComposeApp, type ComposeApp } from '../lib/app/compose.ts';
import { appServices, breakLock, closeSession, deploy, describeActor, history, rollback, status, type DeployReport, type DeployRequest, type Session } from '../lib/deploy/engine.ts';
import { readEnvFile } from '../lib/env/env-file.ts';
import { validate } from '../lib/env/env-schema.ts';
import { deployWalkthrough, type WalkthroughResult } from '../lib/deploy/walkthrough.ts';
import { Runner } from '../lib/core/exec.ts';
import { notifyTargetsFromEnv, NOTIFY_VARIABLES, sendNotifications } from '../lib/deploy/notify.ts';
import { AIDD_BOT_ENV } from '../env/schema.ts';
import { createLogger, printJson } from '../lib/core/log.ts';
import { registerSecret, Secret } from '../lib/core/secrets.ts';
import { formatOutcomes } from '../lib/app/smoke.ts';
import { resolveSshTarget, SSH_FLAGS } from '../lib/deploy/ssh.ts';
import { DEFAULT_REGISTRY_COMPOSE_FILE, REPO_ROOT } from '../lib/app/target.ts';


const spec: ScriptSpec = {
  name: 'ssh-deploy',
  summary:
    'Deploy the app to a server over SSH: preflight, lock, pull, upload the release and .env (0600),\n' +
    'back up the database, migrate, switch, wait for health and smoke-test; roll back automatically when\n' +
    'the new release is unhealthy. One SSH connection per run; host keys are always checked.\n' +
    'On a terminal, a guided walkthrough asks for whatever the flags left out (and helps you verify and\n' +
    'add the server key); without one, a missing answer is an error naming its flag.\n' +
    'Registry credentials come only from REGISTRY_USER and REGISTRY_TOKEN (or GHCR_TOKEN).\n' +
    `The result of a deploy or rollback is sent to Telegram and/or a JSON webhook when set: ${NOTIFY_VARIABLES.join(', ')}.`,
  options: {
    ...SSH_FLAGS,
    compose: { type: 'string', value: 'PATH', env: 'AIDD_COMPOSE_FILE', help: 'Registry compose file (default: the AIDD Bot docker-compose.registry.yml).' },
    project: { type: 'string', value: 'NAME', env: 'COMPOSE_PROJECT_NAME', help: 'Compose project name on the server (default: the compose directory name).' },
    // Not --env-file: node (through tsx) would take that flag and load the file into the environment.
    'server-env': { type: 'string', value: 'PATH', env: 'AIDD_SERVER_ENV', help: 'The .env to upload (e.g. .env.production); without it the server keeps its .env.' },
    registry: { type: 'string', value: 'HOST', env: 'REGISTRY', help: 'Registry of the images (default ghcr.io).' },
    owner: { type: 'string', value: 'NAME', env: 'IMAGE_OWNER', help: 'Registry namespace of the images, e.g. your GitHub user.' },
    tag: { type: 'string', value: 'TAG', env: 'IMAGE_TAG', help: 'Image tag to deploy (default latest); pinned to its digest in the release.' },
    'images-from': { type: 'string', value: 'FILE', env: 'AIDD_IMAGES_FILE', help: 'build-push --json output: deploy exactly those images.' },
    revision: { type: 'string', value: 'SHA', env: 'GITHUB_SHA', help: 'Git revision recorded with the release (default: git rev-parse HEAD).' },
    reason: { type: 'string', value: 'TEXT', help: 'Why: recorded in the lock and the audit log.' },
    keep: { type: 'string', value: 'N', env: 'AIDD_KEEP_RELEASES', help: 'Releases and backups to keep on the server (default 5).' },
    timeout: { type: 'string', value: 'SECONDS', help: 'Deadline for the new release to become healthy (default 180).' },
    rollback: { type: 'boolean', help: 'Go back to the previous release (or --to ID).' },
    to: { type: 'string', value: 'ID', help: 'Release id for --rollback.' },
    status: { type: 'boolean', help: 'Show the current release, its services and health, and the lock.' },
    history: { type: 'boolean', help: 'Show the audit log (last 20 actions).' },
    'break-lock': { type: 'boolean', help: 'Remove a stale deploy lock (audited).' },
    'dry-run': { type: 'boolean', help: 'Print every command and remote script, secrets redacted; run nothing.' },
    json: { type: 'boolean', help: 'Print the result as JSON on stdout.' },
    verbose: { type: 'boolean', short: 'v', help: 'Print every command before it runs.' },
  },
  examples: [
    'REGISTRY_USER=me REGISTRY_TOKEN=... npx tsx scripts/ssh-deploy.ts --host 203.0.113.10 --user deploy --owner me --server-env .env.production',
    'npx tsx scripts/ssh-deploy.ts --host 203.0.113.10 --user deploy --status',
    'npx tsx scripts/ssh-deploy.ts --host 203.0.113.10 --user deploy --rollback',
  ],
};

interface BuildOutput {
  revision?: string;
  images?: { service: string; repository: string; tags?: string[]; ref?: string | null }[];
}

/** Which image each app service runs: exactly what build-push made, or REGISTRY/OWNER/NAME:TAG. */
function imageRefs(values: Values, app: ComposeApp, registry: string): { refs: Record<string, string>; revision?: string } {
  const services = appServices(app);
  const imagesFrom = stringValue(values, 'images-from');
  if (imagesFrom) {
    let output: BuildOutput;
    try {
      output = JSON.parse(readFileSync(imagesFrom, 'utf8')) as BuildOutput;
    } catch {
      throw new UsageError(`--images-from ${imagesFrom} is not readable build-push --json output`);
    }
    const refs: Record<string, string> = {};
    for (const image of output.images ?? []) {
      if (services.includes(image.service)) refs[image.service] = image.ref ?? `${image.repository}:${image.tags?.[0] ?? 'latest'}`;
    }
    if (Object.keys(refs).length === 0) throw new UsageError(`--images-from ${imagesFrom} lists none of ${services.join(', ')}`);
    return { refs, revision: output.revision };
  }
  const owner = stringValue(values, 'owner')?.toLowerCase();
  if (!owner) throw new UsageError('no image owner given; pass --owner NAME or set IMAGE_OWNER (or --images-from FILE)');
  const tag = stringValue(values, 'tag') ?? 'latest';
  const refs = Object.fromEntries(services.map((service) => [service, `${registry}/${owner}/${app.config.imageName.replace('{service}', service)}:${tag}`]));
  return { refs };
}

/**
 * Reads the .env to upload and checks it against the production schema before anything connects;
 * its secret values are registered so no output, plan or error can show them.
 */
function readProductionEnv(file: string): string {
  const env = readEnvFile(file);
  if (!env) throw new UsageError(`--server-env ${file} does not exist; create it with: npx tsx scripts/setup-env.ts --target production --file ${file}`);
  for (const spec of AIDD_BOT_ENV.variables) if (spec.secret) registerSecret(env.values[spec.name]);
  const problems = [
    ...env.malformed.map((line) => `line ${line.line}: ${line.reason}`),
    ...validate(env.values, AIDD_BOT_ENV, 'production').map((problem) => `${problem.name}: ${problem.reason}`),
  ];
  if (problems.length > 0) {
    throw new UsageError(`--server-env ${file} is not ready for production (${problems.join('; ')}); fix it with: npx tsx scripts/setup-env.ts --target production --file ${file}`);
  }
  return env.text;
}

async function deployRequestFrom(
  values: Values,
  app: ComposeApp,
  runner: Runner,
  settings: Pick<DeployRequest, 'reason' | 'keep' | 'healthTimeoutMs'>,
  typed: Pick<WalkthroughResult, 'token' | 'registryUser'>,
): Promise<DeployRequest> {
  const registry = stringValue(values, 'registry') ?? 'ghcr.io';
  const { refs, revision } = imageRefs(values, app, registry);
  const envFile = stringValue(values, 'server-env');
  const tokenValue = process.env.REGISTRY_TOKEN ?? process.env.GHCR_TOKEN;
  return {
    app,
    refs,
    registry,
    registryUser: typed.registryUser ?? process.env.REGISTRY_USER,
    registryToken: typed.token ?? (tokenValue ? new Secret(tokenValue) : undefined),
    env: envFile ? readProductionEnv(envFile) : undefined,
    revision: stringValue(values, 'revision') ?? revision ?? (await gitRevision(runner)),
    ...settings,
  };
}

async function gitRevision(runner: Runner): Promise<string> {
  const result = await runner.attempt({ argv: ['git', '-C', REPO_ROOT, 'rev-parse', 'HEAD'], readOnly: true, timeoutMs: 10_000 });
  return result.exitCode === 0 ? result.stdout.trim() : 'unknown';
}

/** One line on how it ended: printed, and sent to the notification targets. */
function outcomeLine(report: DeployReport): string {
  const where = report.release ? ` ${report.release}` : '';
  const lines: Record<DeployReport['result'], string> = {
    deployed: `${report.action === 'rollback' ? 'rolled back to' : 'deployed'}${where}`,
    unchanged: `no change: release${where} already runs these images, and it is healthy`,
    'rolled-back': `FAILED: ${report.error}; rolled back to ${report.previous}, which is serving`,
    failed: `FAILED: ${report.error ?? 'see the checks'}`,
  };
  return lines[report.result];
}

await runScript(spec, async (flags) => {
  const json = flags.json === true;
  const logger = createLogger({ prefix: spec.name, quiet: json });
  const runner = new Runner({ logger, dryRun: flags['dry-run'] === true, verbose: flags.verbose === true });
  const app = loadComposeApp(stringValue(flags, 'compose') ?? DEFAULT_REGISTRY_COMPOSE_FILE);
  const keep = Number(stringValue(flags, 'keep') ?? 5);
  if (!Number.isInteger(keep) || keep < 1) throw new UsageError(`--keep ${String(flags.keep)} must be a whole number of releases, 1 or more`);
  const healthTimeoutMs = parseSeconds(stringValue(flags, 'timeout'), '--timeout', 180) * 1000;
  const reason = stringValue(flags, 'reason') ?? 'deploy';
  const modes = ['rollback', 'status', 'history', 'break-lock'].filter((mode) => flags[mode] === true);
  if (modes.length > 1) throw new UsageError(`--${modes.join(' and --')} cannot be combined; pick one`);
  if (stringValue(flags, 'to') && !flags.rollback) throw new UsageError('--to ID only goes with --rollback');

  // On a terminal, a walkthrough asks for what the flags left out; elsewhere a missing answer is an error.
  const deploying = modes.length === 0;
  const missing = !stringValue(flags, 'host') || !stringValue(flags, 'user') || (deploying && !stringValue(flags, 'owner') && !stringValue(flags, 'images-from'));
  const walkthrough: WalkthroughResult = isInteractive() && !json && !runner.dryRun && missing ? await deployWalkthrough(flags, runner, deploying) : { values: flags };
  const values = walkthrough.values;

  // Everything that can be checked locally is checked before the first connection.
  const { target, deployPath, cleanup } = resolveSshTarget(values);
  const session: Session = { runner, logger, ssh: target, layout: { deployPath, project: stringValue(values, 'project') ?? defaultProjectName(app.dir) } };
  try {
    if (values.status) {
      const report = await status(session);
      if (json) printJson(report);
      else {
        process.stdout.write(`current release: ${report.current ?? 'none'}\n`);
        for (const service of report.services) process.stdout.write(`  ${service.service.padEnd(12)} ${service.state}, ${service.health}\n`);
        if (report.lock) process.stdout.write(`lock held by ${String(report.lock.who)} since ${String(report.lock.at)}\n`);
      }
      return report.services.every((service) => service.state === 'running' && service.health !== 'unhealthy') ? EXIT.ok : EXIT.failed;
    }
    if (values.history) {
      const entries = await history(session, 20);
      if (json) printJson(entries);
      else for (const entry of entries) process.stdout.write(`${String(entry.time)}  ${String(entry.action).padEnd(11)} ${String(entry.result).padEnd(12)} ${String(entry.release ?? '')}  ${String(entry.who ?? '')}\n`);
      return EXIT.ok;
    }
    if (values['break-lock']) {
      const holder = await breakLock(session);
      if (json) printJson({ broken: holder !== undefined, holder: holder ? JSON.parse(holder) : null });
      else process.stdout.write(holder ? `removed the lock held by ${holder}\n` : 'no lock was held\n');
      return EXIT.ok;
    }

    // Inputs are all read and checked here, before the first connection.
    const action = values.rollback ? 'rollback' : 'deploy';
    const deployRequest = values.rollback ? undefined : await deployRequestFrom(values, app, runner, { reason, keep, healthTimeoutMs }, walkthrough);
    const run = () =>
      deployRequest ? deploy(session, deployRequest) : rollback(session, { app, to: stringValue(values, 'to'), reason: `rollback: ${reason}`, healthTimeoutMs });

    const notify = (line: string) =>
      runner.dryRun
        ? Promise.resolve()
        : sendNotifications(notifyTargetsFromEnv(process.env), `${action} of ${session.layout.project} on ${target.user}@${target.host}:${deployPath}: ${line} (by ${describeActor()})`, logger);
    let report: DeployReport;
    try {
      report = await run();
    } catch (error) {
      await notify(`FAILED: ${(error as Error).message}`);
      throw error;
    }
    if (json) printJson(report);
    else if (!runner.dryRun) {
      if (report.checks.length) process.stdout.write(`${formatOutcomes(report.checks)}\n`);
      process.stdout.write(`${outcomeLine(report)}\n`);
    }
    await notify(outcomeLine(report));
    if (report.result === 'rolled-back') return EXIT.rolledBack;
    if (!report.ok && !runner.dryRun) throw new ToolError(report.error ?? `${report.action} failed`);
    return EXIT.ok;
  } finally {
    await closeSession(session);
    cleanup();
  }
});
