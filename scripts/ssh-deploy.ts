// Deploy the registry images to a server over SSH: health-checked, locked, audited, reversible.
import { EXIT, isInteractive, parseSeconds, runScript, stringValue, ToolError, UsageError, type ScriptSpec } from '../lib/core/cli.ts';
import { defaultProjectName, loadComposeApp } from '../lib/app/compose.ts';
import {
  abandon,
  breakLock,
  closeSession,
  DEFAULT_HEALTH_TIMEOUT_MS,
  deploy,
  describeActor,
  diffRelease,
  history,
  newReport,
  openSession,
  restoreBackup,
  rollback,
  status,
  type Session,
} from '../lib/deploy/engine.ts';
import { checkDeployInputs } from '../lib/deploy/inputs.ts';
import { deployRequestFrom, registryAccess } from '../lib/deploy/request.ts';
import { deployToSwarm, rollbackSwarm, swarmLogin, swarmStatus } from '../lib/deploy/swarm/engine.ts';
import { checkSwarmRun } from '../lib/deploy/swarm/inputs.ts';
import { failureJson, outcomeLine } from '../lib/deploy/outcome.ts';
import { checkLogsOptions, checkServices, execCommand, logsCommand } from '../lib/deploy/operate.ts';
import { formatStatus } from '../lib/deploy/status-view.ts';
import { formatDiff } from '../lib/deploy/diff-view.ts';
import { deploySummary } from '../lib/deploy/summary.ts';
import { appendStepSummary } from '../lib/core/github-actions.ts';
import { liveOutputWanted, terminalBoard } from '../lib/core/live-output.ts';
import { DEFAULT_PROXY_IMAGE, PROXY_CONTAINER } from '../lib/deploy/proxy.ts';
import type { WalkthroughResult } from '../lib/deploy/walkthrough.ts';
import { Runner } from '../lib/core/exec.ts';
import { notifyTargetsFromEnv, NOTIFY_VARIABLES, sendNotifications } from '../lib/deploy/notify.ts';
import { createLogger, printJson } from '../lib/core/log.ts';
import { formatOutcomes } from '../lib/app/smoke.ts';
import { resolveSshTarget, SSH_FLAGS } from '../lib/deploy/ssh.ts';
import { DEFAULT_REGISTRY_COMPOSE_FILE } from '../lib/app/target.ts';

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
    compose: { type: 'string', multiple: true, value: 'PATH', env: 'AIDD_COMPOSE_FILE', help: 'Registry compose file (default: the AIDD Bot docker-compose.registry.yml); repeat to merge several in order.' },
    project: { type: 'string', value: 'NAME', env: 'COMPOSE_PROJECT_NAME', help: 'Compose project name on the server, the stack name on a swarm (default: the compose directory name).' },
    target: {
      type: 'string',
      value: 'compose|swarm',
      env: 'AIDD_TARGET',
      help: "How the server runs the app: compose on one server, or a Docker Swarm whose manager is --host (default: aidd.yml's target, else compose).",
    },
    // Not --env-file: node (through tsx) would take that flag and load the file into the environment.
    'server-env': { type: 'string', value: 'PATH', env: 'AIDD_SERVER_ENV', help: 'The .env to upload (e.g. .env.production); without it the server keeps its .env.' },
    registry: { type: 'string', value: 'HOST', env: 'REGISTRY', help: 'Registry of the images (default ghcr.io).' },
    owner: { type: 'string', value: 'NAME', env: 'IMAGE_OWNER', help: 'Registry namespace of the images, e.g. your GitHub user.' },
    tag: { type: 'string', value: 'TAG', env: 'IMAGE_TAG', help: 'Image tag to deploy (default latest); pinned to its digest in the release.' },
    'images-from': { type: 'string', value: 'FILE', env: 'AIDD_IMAGES_FILE', help: 'build-push --json output: deploy exactly those images.' },
    revision: {
      type: 'string',
      value: 'SHA',
      help: "Git revision recorded with the release (default: the commit the images were built from, by their org.opencontainers.image.revision label, else the commit of the app's repository).",
    },
    reason: { type: 'string', value: 'TEXT', help: 'Why: recorded in the lock and the audit log.' },
    keep: { type: 'string', value: 'N', env: 'AIDD_KEEP_RELEASES', help: 'Releases and backups to keep on the server (default 5).' },
    'proxy-image': {
      type: 'string',
      value: 'IMAGE',
      env: 'AIDD_PROXY_IMAGE',
      help: `Image the server starts the reverse proxy from where it does not run yet (default ${DEFAULT_PROXY_IMAGE}).`,
    },
    timeout: { type: 'string', value: 'SECONDS', help: 'Deadline for the new release to become healthy (default 180).' },
    'no-backup': { type: 'boolean', help: 'Migrate without backing up the database first (recorded in the audit log).' },
    'restore-backup': {
      type: 'string',
      value: 'FILE',
      help: 'Replace the live database with a backup (backups/FILE, as reports name it); stops the other services meanwhile; audited.',
    },
    yes: { type: 'boolean', help: 'Confirm --restore-backup without a prompt (required without a terminal).' },
    unpinned: {
      type: 'string',
      multiple: true,
      value: 'SERVICE',
      help: 'An app service --images-from leaves out on purpose: it runs the image its compose line names, unpinned; repeatable.',
    },
    rollback: { type: 'boolean', help: 'Go back to the release that was live before the current one (or --to ID).' },
    to: { type: 'string', value: 'ID', help: 'Release id for --rollback.' },
    status: { type: 'boolean', help: 'Show the current release, its services and health, and the lock.' },
    history: { type: 'boolean', help: 'Show the audit log (last 20 actions).' },
    'break-lock': { type: 'boolean', help: 'Remove a stale deploy lock (audited).' },
    diff: { type: 'boolean', help: 'Show what this deploy would change (images, compose file, .env names) and change nothing; the pull only adds images.' },
    logs: { type: 'boolean', help: "Print the live release's logs, each line prefixed with its service; services as words after the flags (default all)." },
    follow: { type: 'boolean', short: 'f', help: 'With --logs: keep printing new lines until Ctrl-C.' },
    since: { type: 'string', value: 'WHEN', help: 'With --logs: only lines since a duration ago (10m, 1h30m) or a date (2026-11-28T10:00:00Z).' },
    tail: { type: 'string', value: 'N', help: 'With --logs: the last N lines of each container, or all (default 100; all with --since).' },
    exec: { type: 'string', value: 'SERVICE', help: "Run the command after -- in the service's running container (a TTY when this is a terminal); exits with its code." },
    'dry-run': { type: 'boolean', help: 'Print every command and remote script, secrets redacted; run nothing.' },
    json: { type: 'boolean', help: 'Print the result as one JSON object on stdout, failures included.' },
    'report-failure': { type: 'string', value: 'TEXT', help: 'Only report a deploy that failed before ssh-deploy ran (TEXT says where): notifications and --json.' },
    verbose: { type: 'boolean', short: 'v', help: 'Print every command before it runs.' },
  },
  positionals: '[SERVICE... with --logs | -- COMMAND... with --exec]',
  examples: [
    'REGISTRY_USER=me REGISTRY_TOKEN=... npx tsx scripts/ssh-deploy.ts --host 203.0.113.10 --user deploy --owner me --server-env .env.production',
    'npx tsx scripts/ssh-deploy.ts --host 203.0.113.10 --user deploy --status',
    'npx tsx scripts/ssh-deploy.ts --host 203.0.113.10 --user deploy --rollback',
    'npx tsx scripts/ssh-deploy.ts --host 203.0.113.10 --user deploy --logs --follow --since 10m api',
    'npx tsx scripts/ssh-deploy.ts --host 203.0.113.10 --user deploy --exec postgres -- psql -U aidd',
  ],
};

await runScript(spec, async (flags) => {
  const json = flags.json === true;
  const modes = ['rollback', 'restore-backup', 'status', 'history', 'break-lock', 'diff', 'logs', 'exec', 'report-failure'].filter((name) => flags[name] === true || stringValue(flags, name));
  const mode = modes[0] ?? 'deploy';
  // A deploy, a rollback and a restore keep their report from the start, so a failure can still show how far they got.
  const report = mode === 'deploy' || mode === 'rollback' || mode === 'restore-backup' ? newReport(mode) : undefined;
  // On a terminal their steps are live lines with a spinner and elapsed time; --verbose prints every command.
  const live = report && !json && flags.verbose !== true && liveOutputWanted() ? terminalBoard() : undefined;
  const logger = createLogger({ prefix: spec.name, quiet: json, live });
  const runner = new Runner({ logger, dryRun: flags['dry-run'] === true, verbose: flags.verbose === true, live });
  // Where the notifications say it happened, from the flags alone: a run may fail before the target is resolved.
  const where = `${stringValue(flags, 'user') ?? '?'}@${stringValue(flags, 'host') ?? '?'}:${stringValue(flags, 'path') ?? '/opt/aidd'}`;
  let project = stringValue(flags, 'project') ?? '';
  let printed = false;
  let summarized = false;
  // The job summary on GitHub Actions: one section per run, however it ends.
  const summarize = (value: Parameters<typeof deploySummary>[0]) => {
    if (summarized || runner.dryRun) return;
    summarized = true;
    appendStepSummary(deploySummary(value));
  };
  let notified = false;
  const output = (value: unknown) => {
    printJson(value);
    printed = true;
  };
  const notify = async (line: string) => {
    if (notified || runner.dryRun || !(report || mode === 'report-failure')) return;
    notified = true;
    await sendNotifications(notifyTargetsFromEnv(process.env), `${report?.action ?? 'deploy'} of ${project || 'the app'} on ${where}: ${line} (by ${describeActor()})`, logger);
  };

  try {
    if (modes.length > 1) throw new UsageError(`--${modes.join(' and --')} cannot be combined; pick one`);
    if (stringValue(flags, 'to') && !flags.rollback) throw new UsageError('--to ID only goes with --rollback');
    const words = (flags._ as string[] | undefined) ?? [];
    if (words.length > 0 && mode !== 'logs' && mode !== 'exec') throw new UsageError(`unexpected ${JSON.stringify(words[0])}: words after the flags go only with --logs (services) or --exec (the command)`);
    for (const flag of ['follow', 'since', 'tail'] as const) {
      if (flags[flag] !== undefined && mode !== 'logs') throw new UsageError(`--${flag} only goes with --logs`);
    }
    const logsOptions = mode === 'logs' ? checkLogsOptions(stringValue(flags, 'since'), stringValue(flags, 'tail')) : undefined;
    const reportFailure = stringValue(flags, 'report-failure');
    if (reportFailure) {
      await notify(`FAILED before the deploy started: ${reportFailure}`);
      const failed = { ...newReport('deploy'), error: `failed before the deploy started: ${reportFailure}` };
      summarize(failed);
      output(failed);
      return EXIT.failed;
    }
    const app = await loadComposeApp((flags.compose as string[] | undefined) ?? DEFAULT_REGISTRY_COMPOSE_FILE, { runner });
    project ||= defaultProjectName(app.dir);
    const keep = Number(stringValue(flags, 'keep') ?? 5);
    if (!Number.isInteger(keep) || keep < 1) throw new UsageError(`--keep ${String(flags.keep)} must be a whole number of releases, 1 or more`);
    const healthTimeoutMs = parseSeconds(stringValue(flags, 'timeout'), '--timeout', DEFAULT_HEALTH_TIMEOUT_MS / 1000) * 1000;
    const reason = stringValue(flags, 'reason') ?? 'deploy';

    // On a terminal, a walkthrough asks for what the flags left out; elsewhere a missing answer is an error.
    // A --diff is decided as a deploy is: it needs the same inputs.
    const deploying = mode === 'deploy' || mode === 'diff';
    const appServices = app.services.map((service) => service.name);
    const logServices = mode === 'logs' ? checkServices('--logs', words, appServices) : [];
    const execService = stringValue(flags, 'exec');
    if (execService) checkServices('--exec', [execService], appServices);
    const missing = !stringValue(flags, 'host') || !stringValue(flags, 'user') || (deploying && !stringValue(flags, 'owner') && !stringValue(flags, 'images-from'));
    const walkthrough: WalkthroughResult = isInteractive() && !json && !runner.dryRun && missing
        ? await (await import('../lib/deploy/walkthrough.ts')).deployWalkthrough(flags, runner, mode === 'deploy' || mode === 'diff' ? mode : 'server', project)
        : { values: flags };
    const values = walkthrough.values;

    // Inputs are all read and checked here, before the first connection.
    const deployment = deploying ? await deployRequestFrom(values, app, runner, { reason, keep, healthTimeoutMs }, walkthrough) : undefined;
    const deployRequest = deployment?.request;
    checkDeployInputs({ values, project, config: app.config, services: deployment?.services ?? [], request: deployRequest });
    const runsOn = stringValue(values, 'target') ?? app.config.target;
    if (runsOn !== 'compose' && runsOn !== 'swarm') throw new UsageError(`--target ${JSON.stringify(runsOn)} is neither compose nor swarm`);
    if (runsOn === 'swarm') checkSwarmRun(app, mode, deployRequest?.env);
    const restoring = stringValue(values, 'restore-backup');
    if (restoring && values.yes !== true) {
      // Everything written since the backup is lost: a person confirms on a terminal, CI says so with a flag.
      if (!isInteractive() || json) throw new UsageError('--restore-backup replaces the database of the live release with the backup; confirm with --yes (on a terminal you are asked)');
      // Loaded only here: the prompt library is most of a start-up that CI never needs.
      const prompts = await import('@clack/prompts');
      const { answered, cancelled } = await import('../lib/core/prompts.ts');
      const sure = answered(
        await prompts.confirm({ message: `Replace the database of the live release on ${stringValue(values, 'host')} with backups/${restoring}? Everything written since that backup is lost.`, initialValue: false }),
        'nothing was restored',
      );
      if (!sure) cancelled('nothing was restored');
    }
    const { target, deployPath, cleanup } = resolveSshTarget(values);
    // process.exit (a second signal) skips finally blocks; the private SSH directory goes anyway.
    process.on('exit', cleanup);
    const session: Session = { runner, logger, ssh: target, layout: { deployPath, project, target: runsOn } };
    const onSwarm = runsOn === 'swarm';
    let firstSignalAt = 0;
    const onSignal = (signal: NodeJS.Signals) => {
      // Logs and exec hold no lock and start no step: a signal ends them at once (and a --follow that way).
      if (mode === 'logs' || mode === 'exec') {
        void abandon(session).finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
        return;
      }
      // tsx passes on a terminal's Ctrl-C that this process got already when it does not hear back
      // within 30 ms: one key press can arrive twice. A second signal counts from a second on.
      if (session.interrupted && Date.now() - firstSignalAt < 1_000) return;
      if (session.interrupted) {
        // A step running on the server goes on without this run, so its lock stays until it is over.
        const step = session.runningStep;
        logger.warn(
          step
            ? `${signal} again: exiting now. The server goes on running ${step} and the deploy lock stays; see it with --status (same flags), and once no step is listed as running, remove the lock with --break-lock`
            : `${signal} again: releasing the deploy lock and exiting now`,
        );
        if (json && !printed) output(failureJson(mode, report, new Error(`interrupted twice by ${signal}${step ? `; ${step} still runs on the server, the lock stays` : ''}`)));
        void abandon(session).finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
        return;
      }
      session.interrupted = signal;
      firstSignalAt = Date.now();
      logger.warn(`${signal}: stopping after the current step (send it again to stop at once)`);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    try {
      if (mode === 'status') {
        const state = onSwarm ? await swarmStatus(session) : await status(session);
        if (json) output(state);
        else process.stdout.write(formatStatus(state, PROXY_CONTAINER));
        const healthy = state.swarm
          ? state.swarm.every((service) => service.running === service.desired)
          : state.services.every((service) => service.state === 'running' && service.health !== 'unhealthy');
        return healthy ? EXIT.ok : EXIT.failed;
      }
      if (mode === 'history') {
        const entries = await history(session, 20);
        if (json) output(entries);
        else for (const entry of entries) process.stdout.write(`${String(entry.time)}  ${String(entry.action).padEnd(11)} ${String(entry.result).padEnd(12)} ${String(entry.release ?? '')}  ${String(entry.who ?? '')}\n`);
        return EXIT.ok;
      }
      if (mode === 'diff' && deployRequest) {
        const diff = await diffRelease(session, deployRequest);
        if (json) output(diff);
        else if (!runner.dryRun) process.stdout.write(formatDiff(diff));
        return EXIT.ok;
      }
      if (logsOptions) {
        await openSession(session);
        const result = await runner.attempt(logsCommand(target, { target: runsOn, project, services: logServices, follow: flags.follow === true, ...logsOptions }));
        return result.exitCode === 0 ? EXIT.ok : EXIT.failed;
      }
      if (execService) {
        await openSession(session);
        return (await runner.attempt(execCommand(target, runsOn, project, execService, words, Boolean(process.stdin.isTTY && process.stdout.isTTY)))).exitCode;
      }
      if (mode === 'break-lock') {
        const holder = await breakLock(session);
        if (json) output({ broken: holder !== undefined, holder: holder ? JSON.parse(holder) : null });
        else process.stdout.write(holder ? `removed the lock held by ${holder}\n` : 'no lock was held\n');
        return EXIT.ok;
      }

      if (deployRequest && walkthrough.confirm && onSwarm) {
        await walkthrough.confirm(`the swarm stack ${project} gets ${Object.values(deployRequest.refs).join(', ')}\n`);
      } else if (deployRequest && walkthrough.confirm) {
        // The person sees what would change before saying yes, and the deploy then installs exactly
        // the images shown (pinned by digest), even if a tag moves meanwhile.
        const diff = await diffRelease(session, deployRequest);
        await walkthrough.confirm(formatDiff(diff));
        deployRequest.refs = Object.fromEntries(diff.images.map((image) => [image.service, image.to]));
      }
      const rollbackRequest = { app, proxyImage: stringValue(values, 'proxy-image') ?? DEFAULT_PROXY_IMAGE, to: stringValue(values, 'to'), reason: `rollback: ${reason}`, healthTimeoutMs };
      const done = deployRequest
        ? await (onSwarm ? deployToSwarm : deploy)(session, deployRequest, report)
        : restoring
          ? await restoreBackup(session, { app, backup: restoring, reason: `restore-backup: ${reason}`, healthTimeoutMs }, report)
          : onSwarm
            ? await rollbackSwarm(session, { ...rollbackRequest, login: swarmLogin(registryAccess(values)) }, report)
            : await rollback(session, rollbackRequest, report);
      if (json) output(done);
      else if (!runner.dryRun) {
        if (done.checks.length) process.stdout.write(`${formatOutcomes(done.checks)}\n`);
        process.stdout.write(`${outcomeLine(done)}\n`);
      }
      await notify(outcomeLine(done));
      summarize(done);
      if (done.result === 'rolled-back') return EXIT.rolledBack;
      if (!done.ok && !runner.dryRun) throw new ToolError(done.error ?? `${done.action} failed`);
      return EXIT.ok;
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      await closeSession(session);
      cleanup();
    }
  } catch (error) {
    if (json && !printed) output(failureJson(mode, report, error));
    if (report) summarize(failureJson(mode, report, error));
    await notify(`FAILED: ${error instanceof Error ? error.message : String(error)}`);
    throw error;
  }
});
