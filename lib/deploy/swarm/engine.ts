// Deploys to a Docker Swarm through its manager: the same run as on one server (connect, pull, lock,
// upload, release record, audit, smoke test, rollback), with `docker stack deploy` as the switch. The
// swarm replaces each service's tasks one at a time, starting the new one first, and rolls an update
// back by itself when the new tasks do not stay healthy (stack-file.ts sets that up); this run then
// puts every service back on the live release, as it does on one server.
import { parse as parseEnv } from 'dotenv';
import { UsageError } from '../../core/cli.ts';
import type { ComposeApp } from '../../app/compose.ts';
import { registerSecret } from '../../core/secrets.ts';
import type { CheckOutcome } from '../../app/smoke.ts';
import {
  auditLine,
  backupPlan,
  begin,
  connectAndPull,
  DEADLINES_MS,
  describeActor,
  failedChecks,
  InterruptedError,
  newReleaseId,
  newReport,
  openSession,
  preflight,
  prepareRelease,
  releaseLock,
  releaseRevision,
  rollbackRelease,
  runRemote,
  StepOutcomeUnknownError,
  timed,
  withLock,
  type DeployReport,
  type DeployRequest,
  type RollbackRequest,
  type Session,
  type StatusReport,
} from '../engine.ts';
import { chooseImages, sha256, type ReleaseRecord } from '../release-plan.ts';
import * as scripts from '../remote-scripts.ts';
import { stackFile, swarmMigration } from './stack-file.ts';
import { parseStackStatus, verifyStack } from './access.ts';
import { releaseEnvScript, rollOutScript, stackStatusScript, swarmMigrateScript, type SwarmLogin, type SwarmSecrets } from './remote-scripts.ts';

export function swarmLogin(access: Pick<DeployRequest, 'registry' | 'registryUser' | 'registryToken'>): SwarmLogin {
  return { registry: access.registry, username: access.registryUser, token: access.registryToken?.reveal() };
}

/** Every value is a secret from here on, also in base64: the roll-out script carries values that way. */
function secretVariables(vars: Record<string, string>): Record<string, string> {
  for (const value of Object.values(vars)) {
    registerSecret(value);
    registerSecret(Buffer.from(value, 'utf8').toString('base64'));
  }
  return vars;
}

/** A release's variables as the server keeps them (its .env). */
async function releaseVariables(session: Session, release: string): Promise<Record<string, string>> {
  if (session.runner.dryRun) return {};
  const { stdout } = await runRemote(session, releaseEnvScript(session.layout, release), DEADLINES_MS.audit);
  return secretVariables(parseEnv(Buffer.from(stdout.trim(), 'base64').toString('utf8')));
}

/**
 * Deploys `release` (its stack file and .env on the manager) and waits until the stack converged. How long
 * it may take: the health timeout for each task the update replaces one by one, at least the timeout once.
 */
async function rollOut(session: Session, release: string, record: ReleaseRecord | undefined, login: SwarmLogin, healthTimeoutMs: number, vars?: Record<string, string>): Promise<void> {
  const values = vars ?? (await releaseVariables(session, release));
  const deadlineSeconds = Math.ceil(healthTimeoutMs / 1000);
  await runRemote(session, rollOutScript(session.layout, release, values, login, deadlineSeconds, swarmSecrets(record)), healthTimeoutMs + DEADLINES_MS.up);
}

/** A release's Swarm secrets (from its record): name -> the variable holding its value. */
function swarmSecrets(record: ReleaseRecord | undefined): SwarmSecrets {
  return Object.fromEntries(Object.values(record?.secrets ?? {}).map(({ object, variable }) => [object, variable]));
}

/**
 * The Swarm secret of each secret aidd.yml maps to a variable: the live release's where the value is the
 * same (services keep running), else a new one named after this release (a secret cannot change). The name
 * says nothing about the value.
 */
async function chooseSecrets(
  session: Session,
  app: ComposeApp,
  release: { id: string; vars: Record<string, string>; envUploaded: boolean; live?: string; liveRecord?: ReleaseRecord },
): Promise<NonNullable<ReleaseRecord['secrets']>> {
  const mapped = Object.entries(app.config.swarm.secrets);
  if (mapped.length === 0) return {};
  const liveVars = release.envUploaded && release.live ? await releaseVariables(session, release.live) : release.envUploaded ? {} : release.vars;
  return Object.fromEntries(
    mapped.map(([secret, variable]) => {
      if (!session.runner.dryRun && release.vars[variable] === undefined) throw new UsageError(`aidd.yml swarm.secrets.${secret}: ${variable} is not set in the release's .env; add it (--server-env)`);
      const kept = release.liveRecord?.secrets?.[secret];
      const same = kept !== undefined && kept.variable === variable && liveVars[variable] === release.vars[variable];
      return [secret, same ? kept : { object: `${secret}_${sha256(`${session.layout.project}\n${release.id}`).slice(0, 12)}`, variable }];
    }),
  );
}

export async function deployToSwarm(session: Session, request: DeployRequest, report = newReport('deploy')): Promise<DeployReport> {
  const { logger, layout } = session;
  const { pulledImages, contents, revision: built } = await connectAndPull(session, request, report);
  report.images = pulledImages;
  const revision = releaseRevision(session, request, built);
  const login = swarmLogin(request);

  return withLock(session, request.reason, report, async (state) => {
    const live = state.current;
    report.previous = live;
    const liveRecord = live ? state.records[live] : undefined;
    const id = newReleaseId(revision, new Date(), state.releases);
    const { images, kept } = chooseImages(pulledImages, contents, liveRecord);
    report.images = images;
    report.kept = kept;
    // The values the stack file's published ports are written with, and the roll-out's environment.
    const vars = request.env !== undefined ? secretVariables(parseEnv(request.env)) : live ? await releaseVariables(session, live) : {};
    const secrets = await chooseSecrets(session, request.app, { id, vars, envUploaded: request.env !== undefined, live, liveRecord });
    const secretObjects = Object.fromEntries(Object.entries(secrets).map(([secret, { object }]) => [secret, object]));
    const stack = stackFile(request.app.raw, images, request.app.config.swarm, vars, secretObjects);
    const record: ReleaseRecord = { id, revision, images, contents, secrets };
    if (live && state.currentComposeSha === sha256(stack) && (request.env === undefined || state.currentEnvSha === sha256(request.env))) {
      report.release = live;
      report.checks = await timed(session, report, 'verify', `Release ${live} already runs these images; checking its services`, () => verifyStack(session, request.app, request.healthTimeoutMs));
      report.ok = report.checks.every((check) => check.ok);
      report.result = report.ok ? 'unchanged' : 'failed';
      if (!report.ok) report.failedStep = 'verify';
      await releaseLock(session, auditLine({ action: 'deploy', release: live, result: report.result, images }));
      return report;
    }

    const { backup, backupNote } = backupPlan(request, live, id);
    const { migrate } = request.app.config;
    report.release = id;
    const line = (entry: Record<string, unknown>) => auditLine({ action: 'deploy', release: id, previous: live ?? null, backup: backupNote, ...entry });
    const releaseJson = JSON.stringify({ ...record, target: 'swarm', who: describeActor(), at: new Date().toISOString(), reason: request.reason, previous: live ?? null }, null, 2);
    await prepareRelease(session, report, {
      files: { id, compose: stack, releaseJson, env: request.env, envRequired: request.envRequired },
      live,
      backup,
      backupNote,
      migration: migrate && {
        title: `${migrate.service} ${migrate.command.join(' ')}`,
        script: swarmMigrateScript(
          layout,
          id,
          swarmMigration(request.app.raw, migrate, images, request.app.config.swarm, vars, secretObjects),
          vars,
          login,
          Math.ceil(request.healthTimeoutMs / 1000),
          swarmSecrets(record),
        ),
        deadlineMs: request.healthTimeoutMs + DEADLINES_MS.migrate,
      },
    });

    let failure: string | undefined;
    try {
      await timed(session, report, 'switch', `Rolling out ${id} (docker stack deploy, new tasks first)`, () => rollOut(session, id, record, login, request.healthTimeoutMs, vars));
      report.checks = await timed(session, report, 'verify', 'Smoke-testing', () => verifyStack(session, request.app, request.healthTimeoutMs));
      failure = failedChecks(report);
    } catch (error) {
      if (error instanceof StepOutcomeUnknownError) throw error;
      if (error instanceof InterruptedError) {
        // Rolled out but not verified: `current` still names the old release, which a re-run converges from.
        await runRemote(session, scripts.auditScript(layout, line({ result: 'interrupted', step: 'switch', detail: error.message })), DEADLINES_MS.audit);
        throw error;
      }
      failure = (error as Error).message;
    }
    if (failure === undefined) {
      await timed(session, report, 'finish', 'Finishing: current, audit, prune', () =>
        runRemote(session, scripts.finishScript(layout, id, line({ result: 'deployed', images }), { keep: request.keep, protect: live ? [live] : [] }), DEADLINES_MS.finish),
      );
      report.ok = true;
      report.result = 'deployed';
      return report;
    }

    report.error = `release ${id} failed: ${failure}`;
    logger.warn(report.error);
    if (!live) {
      await runRemote(session, scripts.auditScript(layout, line({ result: 'failed', step: report.failedStep ?? 'switch', detail: report.error })), DEADLINES_MS.audit);
      return report;
    }
    // Swarm rolls back only the service whose update failed: every service goes back to the live release.
    let recovered: CheckOutcome[] = [];
    try {
      await timed(session, report, 'rollback', `Rolling back to ${live}`, () => rollOut(session, live, liveRecord, login, request.healthTimeoutMs), false);
      recovered = await verifyStack(session, request.app, request.healthTimeoutMs);
    } catch (error) {
      recovered = [{ name: 'rollback', ok: false, attempts: 1, ms: 0, detail: (error as Error).message }];
    }
    const rollbackOk = recovered.every((check) => check.ok);
    report.result = rollbackOk ? 'rolled-back' : 'failed';
    if (!rollbackOk) report.error += `; rollback to ${live} is not healthy either`;
    await runRemote(session, scripts.discardReleaseScript(layout, id, line({ previous: live, result: report.result, restored: live, detail: report.error })), DEADLINES_MS.audit);
    return report;
  });
}

export async function rollbackSwarm(session: Session, request: RollbackRequest & { login: SwarmLogin }, report = newReport('rollback')): Promise<DeployReport> {
  const { layout } = session;
  await begin(session, report);
  return withLock(session, request.reason, report, async (state) => {
    report.previous = state.current;
    const release = rollbackRelease(session, state, request.to);
    report.release = release;
    let failure: string | undefined;
    try {
      await timed(session, report, 'switch', `Rolling out release ${release}`, () => rollOut(session, release, state.records[release], request.login, request.healthTimeoutMs));
    } catch (error) {
      if (error instanceof InterruptedError) throw error;
      failure = (error as Error).message;
    }
    report.checks = failure ? [] : await timed(session, report, 'verify', 'Smoke-testing', () => verifyStack(session, request.app, request.healthTimeoutMs));
    report.ok = failure === undefined && report.checks.every((check) => check.ok);
    report.result = report.ok ? 'deployed' : 'failed';
    if (!report.ok) {
      report.failedStep = failure ? 'switch' : 'verify';
      report.error = failure ?? `release ${release} is not healthy`;
    }
    const line = auditLine({ action: 'rollback', release, previous: state.current ?? null, result: report.ok ? 'ok' : 'failed' });
    if (report.ok) await runRemote(session, scripts.finishScript(layout, release, line, { keep: Number.MAX_SAFE_INTEGER, protect: [] }), DEADLINES_MS.finish);
    else await runRemote(session, scripts.auditScript(layout, line), DEADLINES_MS.audit);
    return report;
  });
}

/** `aidd status` on a swarm: the release, each service's replicas, image and nodes, and its tasks. */
export async function swarmStatus(session: Session): Promise<StatusReport> {
  await openSession(session);
  const facts = await preflight(session);
  const report: StatusReport = {
    current: facts.current,
    services: [],
    swarm: [],
    lock: facts.lock ? (JSON.parse(facts.lock) as Record<string, unknown>) : undefined,
    runningSteps: facts.runningSteps,
    backups: facts.backups,
  };
  if (!session.runner.dryRun) {
    const stack = parseStackStatus((await runRemote(session, stackStatusScript(session.layout), DEADLINES_MS.audit)).stdout, session.layout.project);
    report.services = stack.tasks;
    report.swarm = stack.services;
    if (facts.current) report.release = JSON.parse((await runRemote(session, scripts.releaseRecordScript(session.layout, facts.current), DEADLINES_MS.audit)).stdout) as Record<string, unknown>;
  }
  return report;
}
