// The deploy engine: preflight, lock, pull, upload, back up, migrate, switch, verify, finish, all
// over one SSH connection. Scripts are built in remote-scripts.ts; this file only sequences them,
// turns remote failures into one-line errors, and rolls back when a new release is not healthy.
import { createHash, randomBytes } from 'node:crypto';
import os from 'node:os';
import { parseDocument } from 'yaml';
import { EXIT, ToolError, UsageError } from '../core/cli.ts';
import type { ComposeApp } from '../app/compose.ts';
import { lastLine, type Command, type Result, type Runner } from '../core/exec.ts';
import { parsePublishedPort, projectStatus, publishedPortCommand, serviceContainerCommand } from '../app/local-stack.ts';
import type { Logger } from '../core/log.ts';
import * as scripts from './remote-scripts.ts';
import { REMOTE_EXIT, type RemoteLayout } from './remote-scripts.ts';
import { freePort } from '../core/net.ts';
import { redact, type Secret } from '../core/secrets.ts';
import { runSmoke, type CheckOutcome, type StackAccess } from '../app/smoke.ts';
import { closeCommand, explainSshFailure, forwardCommand, openCommand, remoteCommand, remoteScriptCommand, type SshTarget } from './ssh.ts';

export interface Session {
  runner: Runner;
  logger: Logger;
  ssh: SshTarget;
  layout: RemoteLayout;
}

export interface StepTiming {
  step: string;
  ms: number;
}

/** Runs a remote script; ssh trouble and known remote exits become one-line errors. */
export async function runRemote(session: Session, script: string, timeoutMs: number): Promise<Result> {
  const result = await session.runner.attempt(remoteScriptCommand(session.ssh, script, timeoutMs));
  if (result.exitCode === 0) return result;
  throw remoteError(session, result);
}

function remoteError(session: Session, result: Result): ToolError {
  const sshProblem = explainSshFailure(session.ssh, result);
  if (sshProblem) return sshProblem;
  const detail = redact(lastLine(result.stderr) || `exit code ${result.exitCode}`);
  if (result.exitCode === REMOTE_EXIT.loginRefused) return new ToolError(`${detail}; check REGISTRY_USER and REGISTRY_TOKEN`, EXIT.usage);
  if (result.exitCode === REMOTE_EXIT.noEnv) return new ToolError(`${detail}; pass --server-env .env.production on the first deploy`, EXIT.usage);
  if (result.exitCode === 124 || result.exitCode === 143) return new ToolError(`remote step timed out: ${detail}`);
  return new ToolError(`on ${session.ssh.host}: ${detail}`);
}

/** Opens the run's single SSH connection; every later step rides on it. */
export async function openSession(session: Session): Promise<void> {
  if (session.runner.dryRun) return;
  const result = await session.runner.attempt(openCommand(session.ssh));
  if (result.exitCode !== 0) throw explainSshFailure(session.ssh, { ...result, exitCode: 255 })!;
}

export async function closeSession(session: Session): Promise<void> {
  if (!session.runner.dryRun) await session.runner.attempt(closeCommand(session.ssh));
}

export interface ServerFacts {
  docker: string;
  compose: string;
  diskFreeKb: number;
  current?: string;
  releases: string[];
  lock?: string;
  currentComposeSha?: string;
  currentEnvSha?: string;
}

export function parseFacts(stdout: string): ServerFacts {
  const facts = new Map<string, string>();
  for (const line of stdout.split('\n')) {
    const at = line.indexOf('=');
    if (at > 0) facts.set(line.slice(0, at), line.slice(at + 1).trim());
  }
  return {
    docker: facts.get('docker') ?? '',
    compose: facts.get('compose') ?? '',
    diskFreeKb: Number(facts.get('disk_free_kb') ?? 0),
    current: facts.get('current') || undefined,
    releases: (facts.get('releases') ?? '').split(' ').filter(Boolean),
    lock: facts.get('lock') || undefined,
    currentComposeSha: facts.get('current_compose_sha') || undefined,
    currentEnvSha: facts.get('current_env_sha') || undefined,
  };
}

const MIN_FREE_KB = 1024 * 1024;

export async function preflight(session: Session): Promise<ServerFacts> {
  if (session.runner.dryRun) {
    await runRemote(session, scripts.preflightScript(session.layout), 60_000);
    return { docker: '(dry-run)', compose: '(dry-run)', diskFreeKb: MIN_FREE_KB, releases: [] };
  }
  const facts = parseFacts((await runRemote(session, scripts.preflightScript(session.layout), 60_000)).stdout);
  if (facts.diskFreeKb < MIN_FREE_KB) {
    throw new ToolError(`only ${Math.round(facts.diskFreeKb / 1024)} MiB free at ${session.layout.deployPath} on ${session.ssh.host}; free at least 1 GiB (docker system prune)`);
  }
  return facts;
}

export function lockHeldError(ownerJson: string): ToolError {
  let owner: Record<string, unknown> = {};
  try {
    owner = JSON.parse(ownerJson) as Record<string, unknown>;
  } catch {
    // An unreadable owner file still means the lock is held.
  }
  const who = `${owner.who ?? 'unknown'} since ${owner.at ?? 'unknown time'} (${owner.reason ?? 'no reason given'})`;
  return new ToolError(`deploy lock is held by ${who}; wait for it, or if it is stale run ssh-deploy --break-lock`, EXIT.refused);
}

export interface Lock {
  id: string;
  owner: Record<string, unknown>;
}

export function describeActor(): string {
  return process.env.GITHUB_ACTOR ? `${process.env.GITHUB_ACTOR} (GitHub Actions)` : `${os.userInfo().username}@${os.hostname()}`;
}

export async function takeLock(session: Session, reason: string, release?: string): Promise<Lock> {
  const lock: Lock = {
    id: randomBytes(8).toString('hex'),
    owner: { who: describeActor(), at: new Date().toISOString(), reason, release, pid: process.pid },
  };
  lock.owner.id = lock.id;
  const result = await runRemote(session, scripts.lockScript(session.layout, JSON.stringify(lock.owner)), 30_000);
  if (!session.runner.dryRun && result.stdout.startsWith('held')) throw lockHeldError(result.stdout.slice(5).trim());
  return lock;
}

export async function releaseLock(session: Session, lock: Lock): Promise<void> {
  await runRemote(session, scripts.unlockScript(session.layout, lock.id), 30_000);
}

/** A run stopped by SIGINT/SIGTERM at a step boundary; exits 130 or 143. */
export class InterruptedError extends ToolError {
  constructor(readonly signal: NodeJS.Signals) {
    super(`interrupted by ${signal}; the deploy lock is released, run the same command again to finish`, signal === 'SIGINT' ? 130 : 143);
  }
}

let interruptedBy: NodeJS.Signals | undefined;

/** Called between steps: a signal stops the run there, never in the middle of a remote step. */
function checkpoint(): void {
  if (interruptedBy) throw new InterruptedError(interruptedBy);
}

/**
 * Holds the lock while `work` runs and releases it on success, failure, SIGINT and SIGTERM. The first
 * signal lets the running remote step finish and stops at the next step boundary, so no remote
 * command outlives the lock; a second signal frees the lock and exits at once.
 */
export async function withLock<T>(session: Session, reason: string, release: string | undefined, work: (lock: Lock) => Promise<T>): Promise<T> {
  const lock = await takeLock(session, reason, release);
  const onSignal = (signal: NodeJS.Signals) => {
    if (interruptedBy) {
      session.logger.warn(`${signal} again: releasing the deploy lock and exiting now`);
      void releaseLock(session, lock)
        .catch(() => undefined)
        .finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
      return;
    }
    interruptedBy = signal;
    session.logger.warn(`${signal}: stopping after the current step (send it again to stop at once)`);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    return await work(lock);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await releaseLock(session, lock);
  }
}

export function auditLine(entry: Record<string, unknown>): string {
  return JSON.stringify({ time: new Date().toISOString(), who: describeActor(), ...entry });
}

/** Release ids sort by time: 20261127T145000Z-abc1234. */
export function newReleaseId(revision: string, now = new Date()): string {
  const stamp = now.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  return `${stamp}-${(revision || 'norev').slice(0, 12)}`;
}

export function checkReleaseId(id: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(id)) throw new UsageError(`--to ${id} is not a release id; list them with --history`);
  return id;
}

/** Services of the registry compose file whose image the toolkit builds: aidd-{service}. */
export function appServices(app: ComposeApp): string[] {
  return app.services
    .filter((service) => service.image?.includes(`/${app.config.imageName.replace('{service}', service.name)}:`))
    .map((service) => service.name);
}

/** The release's compose file: the registry compose with each app image pinned to an exact ref. */
export function renderReleaseCompose(app: ComposeApp, pinned: Record<string, string>): string {
  const doc = parseDocument(app.text);
  for (const [service, ref] of Object.entries(pinned)) doc.setIn(['services', service, 'image'], ref);
  return doc.toString();
}

/** `digest REF REPO@sha256:..` lines from the pull script -> service refs pinned by digest. */
export function pinnedRefs(stdout: string, refs: Record<string, string>): Record<string, string> {
  const pinned: Record<string, string> = {};
  const lines = stdout.split('\n').filter((line) => line.startsWith('digest '));
  for (const [service, ref] of Object.entries(refs)) {
    const line = lines.find((candidate) => candidate.split(' ')[1] === ref);
    const repository = ref.includes('@') ? ref.slice(0, ref.indexOf('@')) : ref.replace(/:[^:/]+$/, '');
    const digestRef = line?.split(' ').slice(2).find((item) => item.startsWith(`${repository}@`));
    pinned[service] = digestRef ?? ref;
  }
  return pinned;
}

export function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** Reaches the stack on the server: docker queries over SSH, HTTP through forwarded ports. */
export function remoteAccess(session: Session): StackAccess {
  const wrap = (command: Command) => remoteCommand(session.ssh, command);
  const forwarded = new Map<string, string>();
  return {
    async baseUrl(service, port) {
      const key = `${service}:${port}`;
      const known = forwarded.get(key);
      if (known) return known;
      const id = (await session.runner.run(wrap(serviceContainerCommand(session.layout.project, service)))).stdout.split('\n')[0];
      if (!id) throw new ToolError(`service ${service} has no running container on the server`);
      const published = parsePublishedPort((await session.runner.attempt(wrap(publishedPortCommand(id, port)))).stdout);
      if (!published) throw new ToolError(`service ${service} does not publish port ${port} on the server`);
      const localPort = await freePort();
      await session.runner.run(forwardCommand(session.ssh, localPort, Number(published.split(':')[1])));
      const url = `http://127.0.0.1:${localPort}`;
      forwarded.set(key, url);
      return url;
    },
    containers: () => projectStatus(session.runner, session.layout.project, wrap),
  };
}

export async function verify(session: Session, app: ComposeApp, deadlineMs: number): Promise<CheckOutcome[]> {
  if (session.runner.dryRun) return [];
  return runSmoke(remoteAccess(session), {
    services: app.services.map((service) => service.name),
    http: app.config.smoke,
    deadlineMs,
  });
}

export interface DeployRequest {
  app: ComposeApp;
  /** Image to deploy per app service: a tag or a digest ref. */
  refs: Record<string, string>;
  registry: string;
  registryUser?: string;
  registryToken?: Secret;
  /** New .env content for the server; undefined keeps the current one. */
  env?: string;
  revision: string;
  reason: string;
  keep: number;
  healthTimeoutMs: number;
}

export interface DeployReport {
  ok: boolean;
  action: 'deploy' | 'rollback';
  result: 'deployed' | 'unchanged' | 'rolled-back' | 'failed';
  release?: string;
  previous?: string;
  images: Record<string, string>;
  steps: StepTiming[];
  checks: CheckOutcome[];
  error?: string;
}

/** Runs and times one step; a pending signal stops the run before it, unless the step restores service. */
async function timed<T>(steps: StepTiming[], logger: Logger, step: string, work: () => Promise<T>, interruptible = true): Promise<T> {
  if (interruptible) checkpoint();
  logger.step(step);
  const started = Date.now();
  try {
    return await work();
  } finally {
    steps.push({ step, ms: Date.now() - started });
  }
}

/** The first steps of a deploy and a rollback: connect, preflight, refuse while another run holds the lock. */
async function begin(session: Session, action: DeployReport['action']): Promise<{ report: DeployReport; steps: StepTiming[]; facts: ServerFacts }> {
  const { logger } = session;
  const steps: StepTiming[] = [];
  const report: DeployReport = { ok: false, action, result: 'failed', images: {}, steps, checks: [] };
  await timed(steps, logger, `Connecting to ${session.ssh.user}@${session.ssh.host}:${session.ssh.port}`, () => openSession(session));
  const facts = await timed(steps, logger, 'Preflight: docker, compose, disk, deploy path', () => preflight(session));
  logger.info(`docker ${facts.docker}, ${facts.compose}, ${Math.round(facts.diskFreeKb / 1024)} MiB free, current release ${facts.current ?? 'none'}`);
  if (facts.lock) throw lockHeldError(facts.lock);
  report.previous = facts.current;
  return { report, steps, facts };
}

export async function deploy(session: Session, request: DeployRequest): Promise<DeployReport> {
  const { logger } = session;
  const { report, steps, facts } = await begin(session, 'deploy');

  const pulled = await timed(steps, logger, `Pulling ${Object.values(request.refs).join(', ')}`, () =>
    runRemote(
      session,
      scripts.pullScript(session.layout, {
        registry: request.registry,
        username: request.registryUser,
        token: request.registryToken?.reveal(),
        refs: Object.values(request.refs),
      }),
      900_000,
    ),
  );
  report.images = session.runner.dryRun ? request.refs : pinnedRefs(pulled.stdout, request.refs);
  const compose = renderReleaseCompose(request.app, report.images);

  const unchanged = facts.currentComposeSha === sha256(compose) && (request.env === undefined || facts.currentEnvSha === sha256(request.env));
  if (unchanged && facts.current) {
    report.release = facts.current;
    report.checks = await timed(steps, logger, `Release ${facts.current} already runs these images; checking its health`, () =>
      verify(session, request.app, request.healthTimeoutMs),
    );
    report.ok = report.checks.every((check) => check.ok);
    report.result = report.ok ? 'unchanged' : 'failed';
    await runRemote(session, scripts.auditScript(session.layout, auditLine({ action: 'deploy', release: facts.current, result: report.result, images: report.images })), 30_000);
    return report;
  }

  const id = newReleaseId(request.revision);
  report.release = id;
  return withLock(session, request.reason, id, async () => {
    const releaseJson = JSON.stringify(
      { id, revision: request.revision, images: report.images, who: describeActor(), at: new Date().toISOString(), reason: request.reason, previous: facts.current ?? null },
      null,
      2,
    );
    const audit = (entry: Record<string, unknown>) =>
      runRemote(session, scripts.auditScript(session.layout, auditLine({ action: 'deploy', release: id, previous: facts.current ?? null, ...entry })), 30_000);
    // Until the switch, a failure or interruption removes the new release: nothing changed for users.
    let stage = 'upload';
    try {
      await timed(steps, logger, `Uploading release ${id}`, () =>
        runRemote(session, scripts.uploadScript(session.layout, { id, compose, releaseJson, env: request.env }), 60_000),
      );
      const { backup, migrate } = request.app.config;
      if (backup && facts.current) {
        stage = 'backup';
        const saved = await timed(steps, logger, 'Backing up the database', () =>
          runRemote(session, scripts.backupScript(session.layout, facts.current!, id, backup, request.keep), 900_000),
        );
        logger.info(saved.stdout.trim());
      }
      if (migrate) {
        stage = 'migrate';
        await timed(steps, logger, `Migrating (${migrate.service} ${migrate.command.join(' ')})`, () =>
          runRemote(session, scripts.migrateScript(session.layout, id, migrate, Math.round(request.healthTimeoutMs / 1000)), request.healthTimeoutMs + 600_000),
        );
      }
      checkpoint();
    } catch (error) {
      const interrupted = error instanceof InterruptedError;
      const detail = error instanceof Error ? error.message : String(error);
      await runRemote(
        session,
        scripts.discardReleaseScript(session.layout, id, auditLine({ action: interrupted ? 'interrupted' : 'deploy', release: id, result: interrupted ? 'interrupted' : 'failed', step: stage, detail })),
        30_000,
      );
      throw error;
    }

    // From here a failure (compose refusing to start, or a failed check) means rolling back.
    let failure: string | undefined;
    try {
      await timed(steps, logger, `Switching to ${id}`, () => runRemote(session, scripts.upScript(session.layout, id), 900_000));
      report.checks = await timed(steps, logger, 'Waiting for health and smoke-testing', () => verify(session, request.app, request.healthTimeoutMs));
      const failed = report.checks.filter((check) => !check.ok);
      if (failed.length > 0) failure = failed.map((check) => `${check.name} (${check.detail})`).join(', ');
    } catch (error) {
      if (error instanceof InterruptedError) {
        // Switched but not verified: `current` still names the old release; a re-run converges.
        await audit({ action: 'interrupted', result: 'interrupted', step: 'switch', detail: error.message });
        throw error;
      }
      failure = (error as Error).message;
    }
    if (failure === undefined) {
      await timed(steps, logger, 'Finishing: current, audit, prune', () =>
        runRemote(session, scripts.finishScript(session.layout, id, auditLine({ action: 'deploy', release: id, previous: facts.current ?? null, result: 'deployed', images: report.images }), request.keep), 300_000),
      );
      report.ok = true;
      report.result = 'deployed';
      return report;
    }

    report.error = `release ${id} failed: ${failure}`;
    logger.warn(report.error);
    if (!facts.current) {
      await audit({ result: 'failed', step: 'verify', detail: report.error });
      return report;
    }
    await timed(steps, logger, `Rolling back to ${facts.current}`, () => runRemote(session, scripts.upScript(session.layout, facts.current!), 900_000), false);
    const recovered = await verify(session, request.app, request.healthTimeoutMs);
    const rollbackOk = recovered.every((check) => check.ok);
    report.result = rollbackOk ? 'rolled-back' : 'failed';
    if (!rollbackOk) report.error += `; rollback to ${facts.current} is not healthy either`;
    // The failed release is removed so a later --rollback can never pick it.
    const line = auditLine({ action: 'deploy', release: id, previous: facts.current, result: report.result, restored: facts.current, detail: report.error });
    await runRemote(session, scripts.discardReleaseScript(session.layout, id, line), 30_000);
    return report;
  });
}

export interface RollbackRequest {
  app: ComposeApp;
  to?: string;
  reason: string;
  healthTimeoutMs: number;
}

export function previousRelease(releases: string[], current: string | undefined): string | undefined {
  const sorted = [...releases].sort();
  const at = current ? sorted.indexOf(current) : sorted.length;
  return at > 0 ? sorted[at - 1] : undefined;
}

export async function rollback(session: Session, request: RollbackRequest): Promise<DeployReport> {
  const { logger } = session;
  const { report, steps, facts } = await begin(session, 'rollback');
  const target = request.to ? checkReleaseId(request.to) : previousRelease(facts.releases, facts.current);
  if (!session.runner.dryRun) {
    if (!target) throw new ToolError(`no release before ${facts.current ?? 'the current one'} to roll back to; see --history`);
    if (!facts.releases.includes(target)) throw new UsageError(`release ${target} is not on the server; kept releases: ${facts.releases.join(', ') || 'none'}`);
  }
  report.release = target ?? '(previous)';
  return withLock(session, request.reason, report.release, async () => {
    await timed(steps, logger, `Starting release ${report.release}`, () => runRemote(session, scripts.upScript(session.layout, report.release!), 900_000));
    report.checks = await timed(steps, logger, 'Waiting for health and smoke-testing', () => verify(session, request.app, request.healthTimeoutMs));
    report.ok = report.checks.every((check) => check.ok);
    report.result = report.ok ? 'deployed' : 'failed';
    const line = auditLine({ action: 'rollback', release: report.release, previous: facts.current ?? null, result: report.ok ? 'ok' : 'failed' });
    if (report.ok) await runRemote(session, scripts.finishScript(session.layout, report.release!, line, Number.MAX_SAFE_INTEGER), 60_000);
    else await runRemote(session, scripts.auditScript(session.layout, line), 30_000);
    return report;
  });
}

export interface StatusReport {
  current?: string;
  release?: Record<string, unknown>;
  services: { service: string; state: string; health: string }[];
  lock?: Record<string, unknown>;
}

export async function status(session: Session): Promise<StatusReport> {
  await openSession(session);
  const facts = await preflight(session);
  const report: StatusReport = { current: facts.current, services: [], lock: facts.lock ? (JSON.parse(facts.lock) as Record<string, unknown>) : undefined };
  if (facts.current && !session.runner.dryRun) {
    report.release = JSON.parse((await runRemote(session, scripts.releaseRecordScript(session.layout, facts.current), 30_000)).stdout) as Record<string, unknown>;
    report.services = await remoteAccess(session).containers();
  }
  return report;
}

export async function history(session: Session, lines: number): Promise<Record<string, unknown>[]> {
  await openSession(session);
  const { stdout } = await runRemote(session, scripts.historyScript(session.layout, lines), 30_000);
  return stdout
    .split('\n')
    .filter((line) => line.trim().startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

/** Removes a stale lock on purpose; audited with the previous holder. Returns that holder, if any. */
export async function breakLock(session: Session): Promise<string | undefined> {
  await openSession(session);
  const { stdout } = await runRemote(session, scripts.breakLockScript(session.layout, auditLine({ action: 'break-lock', result: 'ok' })), 30_000);
  return stdout.startsWith('broke') ? stdout.slice(6).trim() : undefined;
}
