// The deploy engine: preflight, pull, lock, upload, back up, migrate, switch, verify, finish, all
// over one SSH connection. Scripts are built in remote-scripts.ts; this file only sequences them,
// turns remote failures into one-line errors, and rolls back when a new release is not healthy.
// What a deploy decides (the no-op check, the backup source, the rollback target) it decides from the
// server's state as read under the lock, never from what it saw before.
import { randomBytes } from 'node:crypto';
import { parse as parseEnv } from 'dotenv';
import { createTwoFilesPatch } from 'diff';
import os from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { EXIT, ToolError, UsageError } from '../core/cli.ts';
import { formats } from '../env/env-schema.ts';
import type { ComposeApp, ContainerStatus } from '../app/compose.ts';
import { planRelease, sha256, type ReleaseRecord } from './release-plan.ts';
import { listenVariables, proxyMainConfig } from './proxy.ts';
import { lastLine, type Command, type Result } from '../core/exec.ts';
import { parsePublishedPort, projectStatus, publishedPortCommand, serviceContainerCommand } from '../app/local-stack.ts';
import type { Logger } from '../core/log.ts';
import * as scripts from './remote-scripts.ts';
import { REMOTE_EXIT, type BackupSpec, type ReadinessProbes, type RemoteLayout, type SwitchPlan } from './remote-scripts.ts';
import { freePort } from '../core/net.ts';
import { redact, registerSecret, type Secret } from '../core/secrets.ts';
import { runSmoke, type CheckOutcome, type StackAccess } from '../app/smoke.ts';
import type { SwarmServiceStatus } from './swarm/access.ts';
import { closeCommand, explainSshFailure, forwardCommand, openCommand, remoteCommand, remoteScriptCommand, type SshConnection } from './ssh.ts';

export interface Session extends SshConnection {
  logger: Logger;
  layout: RemoteLayout;
  /** Set by the script's signal handler; the run stops at the next step boundary. */
  interrupted?: NodeJS.Signals;
  /** The deploy lock while this run holds it. */
  lock?: Lock;
  /** RELEASE/STEP of a step running on the server apart from the connection, while this run waits for it. */
  runningStep?: string;
}

export interface StepTiming {
  step: string;
  ms: number;
}

/**
 * How long each remote step may take. deploy.yml's job timeout covers the longest possible run
 * (`longestRunMs`), checked by test/unit/workflows.test.ts.
 */
export const DEADLINES_MS = {
  preflight: 60_000,
  pull: 900_000,
  lock: 30_000,
  upload: 60_000,
  backup: 900_000,
  /** On top of the health timeout, which bounds the wait for the services the migration needs. */
  migrate: 600_000,
  up: 900_000,
  finish: 300_000,
  audit: 30_000,
  /** How long a step's outcome may stay unknown (the connection lost) before the run gives up waiting. */
  reconnect: 300_000,
} as const;

export const DEFAULT_HEALTH_TIMEOUT_MS = 180_000;

/**
 * The longest a deploy can run: every step to its deadline, the new release's checks, then a
 * rollback with its own checks. Opening and closing the connection: openCommand and closeCommand;
 * the four steps run apart from the connection (backup, migrate, switch, rollback) each take a start.
 */
export function longestRunMs(healthTimeoutMs: number): number {
  const d = DEADLINES_MS;
  const connection = 30_000 + 10_000;
  const beforeSwitch = d.preflight + d.pull + d.lock + d.upload + d.backup + healthTimeoutMs + d.migrate;
  const switchAndRollback = 2 * (d.up + healthTimeoutMs) + d.audit;
  return connection + beforeSwitch + switchAndRollback + 4 * d.audit + d.audit /* unlock */;
}

/** Runs a remote script; ssh trouble and known remote exits become one-line errors. */
export async function runRemote(session: Session, script: string, timeoutMs: number): Promise<Result> {
  const result = await session.runner.attempt(remoteScriptCommand(session.ssh, script, timeoutMs));
  if (result.exitCode === 0) return result;
  throw remoteError(session, result);
}

/** A step's outcome is unknown: the server could not be asked. Its lock stays, so nothing runs over the step. */
export class StepOutcomeUnknownError extends ToolError {
  readonly step: string;

  constructor(step: string) {
    super(`lost the connection while the server runs ${step}, which goes on without this run; the deploy lock stays. See it with --status, and once no step runs, --break-lock`);
    this.step = step;
  }
}

/**
 * Runs a step that must not stop halfway (backup, migrate, switch) on the server apart from the
 * connection, then waits until the server says it is over. Neither a first signal nor a dropped
 * connection stops it: the wait is asked again (over a new connection if need be); when the server
 * cannot be asked for DEADLINES_MS.reconnect past the step's deadline, StepOutcomeUnknownError.
 */
export async function runDetached(session: Session, release: string, step: string, script: string, deadlineMs: number): Promise<Result> {
  const { runner, layout, logger } = session;
  await runRemote(session, scripts.startStepScript(layout, release, step, script, Math.ceil(deadlineMs / 1000)), DEADLINES_MS.audit);
  if (runner.dryRun) return { exitCode: 0, stdout: '', stderr: '', skipped: true, durationMs: 0 };
  session.runningStep = `${release}/${step}`;
  const giveUpAt = Date.now() + deadlineMs + DEADLINES_MS.reconnect;
  for (;;) {
    const waited = await runner.attempt(remoteScriptCommand(session.ssh, scripts.waitStepScript(layout, release, step, 30), 60_000));
    if (waited.exitCode === REMOTE_EXIT.stepRunning) continue;
    const status = /^step-status=(\S+)$/m.exec(waited.stdout)?.[1];
    if (waited.exitCode !== 0 || status === undefined) {
      if (Date.now() > giveUpAt) throw new StepOutcomeUnknownError(session.runningStep);
      logger.warn(`cannot ask the server about ${step} (${lastLine(waited.stderr) || `exit ${waited.exitCode}`}); asking again, the step goes on`);
      await sleep(1_000);
      // The shared connection may be gone: open a new one (a failure here is retried the same way).
      await runner.attempt(openCommand(session.ssh));
      continue;
    }
    session.runningStep = undefined;
    const result: Result = { ...waited, stdout: waited.stdout.replace(/^step-status=.*\n?/m, ''), exitCode: status === 'lost' ? 1 : Number(status) };
    if (result.exitCode === 0) return result;
    throw remoteError(session, result);
  }
}

function remoteError(session: Session, result: Result): ToolError {
  const sshProblem = explainSshFailure(session.ssh, result);
  if (sshProblem) return sshProblem;
  const detail = redact(lastLine(result.stderr) || `exit code ${result.exitCode}`);
  if (result.exitCode === REMOTE_EXIT.loginRefused) return new ToolError(`${detail}; check REGISTRY_USER and REGISTRY_TOKEN`, EXIT.usage);
  if (result.exitCode === REMOTE_EXIT.notSwarmManager) return new ToolError(detail, EXIT.usage);
  if (result.exitCode === REMOTE_EXIT.noEnv) return new ToolError(`${detail}; pass --server-env .env.production on the first deploy`, EXIT.usage);
  if (result.exitCode === REMOTE_EXIT.backupFailed) return new ToolError(`${detail}; nothing was migrated. Pass --no-backup to deploy without a backup (audited)`);
  if (result.exitCode === REMOTE_EXIT.noBackup) return new ToolError(`${detail}; see the backups with --status`, EXIT.usage);
  if (result.exitCode === REMOTE_EXIT.stepStillRunning) {
    return new ToolError(`the server still runs ${detail} for a deploy; the lock stays until it ends (see --status), then --break-lock`, EXIT.refused);
  }
  if (result.exitCode === 124 || result.exitCode === 143) return new ToolError(`remote step timed out: ${detail}`);
  return new ToolError(`on ${session.ssh.host}: ${detail}`);
}

/** Opens the run's single SSH connection; every later step rides on it. */
export async function openSession(session: SshConnection): Promise<void> {
  if (session.runner.dryRun || session.connected) return;
  const result = await session.runner.attempt(openCommand(session.ssh));
  if (result.exitCode !== 0) throw explainSshFailure(session.ssh, { ...result, exitCode: 255 })!;
  session.connected = true;
}

export async function closeSession(session: SshConnection): Promise<void> {
  if (!session.runner.dryRun) await session.runner.attempt(closeCommand(session.ssh));
  session.connected = false;
}

/** The server's deploy state, as the preflight and lock scripts print it. */
export interface ServerState {
  current?: string;
  /** Release directories on the server. */
  releases: string[];
  /** release.json of each release directory that has one. */
  records: Record<string, ReleaseRecord>;
  /** Releases the audit log shows went live: a deploy or a rollback finished on them. */
  live: string[];
  currentComposeSha?: string;
  currentEnvSha?: string;
  /** Files under backups/: RELEASE.EXT, the data from before RELEASE was deployed. */
  backups: string[];
  /** Values in the live .env of the variables the lock was asked for (the proxy's listen addresses). */
  vars: Record<string, string>;
}

export interface ServerFacts extends ServerState {
  docker: string;
  compose: string;
  diskFreeKb: number;
  lock?: string;
  /** The state of the server's reverse proxy container: running, exited, ... or absent. */
  proxy: string;
  /** RELEASE/STEP of steps a deploy started on the server that still run. */
  runningSteps: string[];
}

/** NAME=VALUE lines; a name may repeat (one `release=` line per release). */
function parseLines(stdout: string): Map<string, string[]> {
  const lines = new Map<string, string[]>();
  for (const line of stdout.split('\n')) {
    const at = line.indexOf('=');
    if (at > 0) lines.set(line.slice(0, at), [...(lines.get(line.slice(0, at)) ?? []), line.slice(at + 1).trim()]);
  }
  return lines;
}

export function parseState(stdout: string): ServerState {
  const lines = parseLines(stdout);
  const one = (name: string) => lines.get(name)?.at(-1) || undefined;
  const records: Record<string, ReleaseRecord> = {};
  // A record line belongs to the release line before it.
  let release: string | undefined;
  for (const line of stdout.split('\n')) {
    if (line.startsWith('release=')) release = line.slice('release='.length).trim();
    else if (line.startsWith('record=') && release) {
      try {
        records[release] = JSON.parse(line.slice('record='.length)) as ReleaseRecord;
      } catch {
        // A release whose record cannot be read is never a rollback target.
      }
    }
  }
  return {
    current: one('current'),
    releases: lines.get('release') ?? [],
    records,
    live: lines.get('live') ?? [],
    currentComposeSha: one('current_compose_sha'),
    currentEnvSha: one('current_env_sha'),
    backups: lines.get('backup') ?? [],
    // `var NAME=value` lines: parseLines would key them by "var NAME".
    vars: parseEnv(stdout.split('\n').filter((line) => line.startsWith('var ')).map((line) => line.slice(4)).join('\n')),
  };
}

/** The backup taken before `release` was deployed: the data as it was before its migration. */
export function backupBefore(state: ServerState, release: string | undefined): string | undefined {
  return release ? state.backups.find((file) => file.slice(0, file.lastIndexOf('.')) === release) : undefined;
}

export function parseFacts(stdout: string): ServerFacts {
  const lines = parseLines(stdout);
  const one = (name: string) => lines.get(name)?.at(-1) || undefined;
  return {
    ...parseState(stdout),
    docker: one('docker') ?? '',
    compose: one('compose') ?? '',
    diskFreeKb: Number(one('disk_free_kb') ?? 0),
    lock: one('lock'),
    proxy: one('proxy') ?? 'absent',
    runningSteps: lines.get('running_step') ?? [],
  };
}

/**
 * Where a rollback from the current release goes: back along the `previous` chain of release
 * records, to the first release that is still on the server and went live. A release that was
 * interrupted at the switch or never verified is not on that chain.
 */
export function rollbackTarget(state: ServerState): string | undefined {
  const seen = new Set<string>();
  let candidate = state.current ? state.records[state.current]?.previous : undefined;
  while (candidate && !seen.has(candidate)) {
    seen.add(candidate);
    if (state.releases.includes(candidate) && state.live.includes(candidate)) return candidate;
    candidate = state.records[candidate]?.previous;
  }
  return undefined;
}

const MIN_FREE_KB = 1024 * 1024;

export async function preflight(session: Session): Promise<ServerFacts> {
  if (session.runner.dryRun) {
    await runRemote(session, scripts.preflightScript(session.layout), DEADLINES_MS.preflight);
    return { docker: '(dry-run)', compose: '(dry-run)', diskFreeKb: MIN_FREE_KB, releases: [], records: {}, live: [], backups: [], vars: {}, proxy: 'running', runningSteps: [] };
  }
  const facts = parseFacts((await runRemote(session, scripts.preflightScript(session.layout), DEADLINES_MS.preflight)).stdout);
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

/** Takes the deploy lock and returns the server's state as read under it. */
export async function takeLock(session: Session, reason: string, variables: string[] = []): Promise<ServerState> {
  const lock: Lock = {
    id: randomBytes(8).toString('hex'),
    owner: { who: describeActor(), at: new Date().toISOString(), reason, pid: process.pid },
  };
  lock.owner.id = lock.id;
  const result = await runRemote(session, scripts.lockScript(session.layout, JSON.stringify(lock.owner), variables), DEADLINES_MS.lock);
  if (session.runner.dryRun) {
    session.lock = lock;
    return { releases: [], records: {}, live: [], backups: [], vars: {} };
  }
  if (!result.stdout.startsWith('locked')) throw lockHeldError(result.stdout.replace(/^held/, '').trim());
  session.lock = lock;
  return parseState(result.stdout);
}

/** Frees this run's lock, after appending `auditLine` to the audit log when given. */
export async function releaseLock(session: Session, auditLine?: string): Promise<void> {
  if (!session.lock) return;
  await runRemote(session, scripts.unlockScript(session.layout, session.lock.id, auditLine), DEADLINES_MS.audit);
  session.lock = undefined;
}

/** A run stopped by SIGINT/SIGTERM at a step boundary; exits 130 or 143. */
export class InterruptedError extends ToolError {
  readonly signal: NodeJS.Signals;

  constructor(signal: NodeJS.Signals) {
    super(`interrupted by ${signal}; the deploy lock is released, run the same command again to finish`, signal === 'SIGINT' ? 130 : 143);
    this.signal = signal;
  }
}

/** Called between steps: a signal stops the run there, never in the middle of a remote step. */
export function checkpoint(session: Session): void {
  if (session.interrupted) throw new InterruptedError(session.interrupted);
}

/**
 * After a second signal: closes the connection, and frees this run's lock unless a step it started
 * still runs on the server (then the lock stays until --break-lock, which waits for the step).
 */
export async function abandon(session: Session): Promise<void> {
  if (!session.runningStep) await releaseLock(session).catch(() => undefined);
  await closeSession(session).catch(() => undefined);
}

/** Holds the lock while `work` runs, given the state read under it; released however `work` ends. */
/**
 * Holds the lock while `work` runs, given the state read under it. It is released however `work` ends,
 * except while a step on the server may still run (its outcome unknown): then it stays.
 */
export async function withLock<T>(session: Session, reason: string, report: DeployReport, work: (state: ServerState) => Promise<T>, variables: string[] = []): Promise<T> {
  const state = await timed(session, report, 'lock', "Locking the deploy path and reading the server's state", () => takeLock(session, reason, variables));
  try {
    return await work(state);
  } finally {
    if (!session.runningStep) await releaseLock(session);
  }
}

export function auditLine(entry: Record<string, unknown>): string {
  return JSON.stringify({ time: new Date().toISOString(), who: describeActor(), ...entry });
}

/** Release ids sort by time: 20261127T145000Z-abc1234; `-2`, `-3`... when one from the same second exists. */
export function newReleaseId(revision: string, now = new Date(), existing: string[] = []): string {
  const stamp = now.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  const base = `${stamp}-${(revision || 'norev').slice(0, 12)}`;
  let id = base;
  for (let attempt = 2; existing.includes(id); attempt += 1) id = `${base}-${attempt}`;
  return id;
}

/** `KIND REF VALUE` lines of the pull script -> each service's VALUE of that kind, where it has one. */
function pullFacts(stdout: string, kind: 'content' | 'revision', refs: Record<string, string>): Record<string, string> {
  const facts: Record<string, string> = {};
  const lines = stdout.split('\n').filter((line) => line.startsWith(`${kind} `));
  for (const [service, ref] of Object.entries(refs)) {
    const value = lines.find((line) => line.split(' ')[1] === ref)?.split(' ')[2];
    if (value) facts[service] = value;
  }
  return facts;
}

/** `content REF KEY` lines from the pull script -> each service's image content key. */
export function contentKeys(stdout: string, refs: Record<string, string>): Record<string, string> {
  return pullFacts(stdout, 'content', refs);
}

/** `revision REF SHA` lines from the pull script -> the commit each service's image was built from (its OCI label), where it has one. */
export function imageRevisions(stdout: string, refs: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(pullFacts(stdout, 'revision', refs)).filter(([, revision]) => revision !== '<no value>'));
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

/**
 * A StackAccess's baseUrl through SSH forwards: one per SERVICE:PORT, even when several checks ask for it at
 * once, to where `endpoint` says the server reaches it (its loopback unless a host is given). A failed
 * forward is asked again by the next check, not remembered.
 */
export function forwardedBaseUrl(session: Session, endpoint: (service: string, port: number) => Promise<{ host?: string; port: number }>): StackAccess['baseUrl'] {
  const forwarded = new Map<string, Promise<string>>();
  return (service, port) => {
    const key = `${service}:${port}`;
    let url = forwarded.get(key);
    if (!url) {
      url = (async () => {
        const remote = await endpoint(service, port);
        const localPort = await freePort();
        await session.runner.run(forwardCommand(session.ssh, localPort, remote.port, remote.host));
        return `http://127.0.0.1:${localPort}`;
      })();
      url.catch(() => forwarded.delete(key));
      forwarded.set(key, url);
    }
    return url;
  };
}

/**
 * Reaches the stack on the server: docker queries over SSH, HTTP through forwarded ports. A port the
 * proxy serves (`listen`, SERVICE:PORT -> the proxy's port on the server's loopback) is checked
 * through the proxy, as users reach it; any other through the port its container publishes.
 */
export function remoteAccess(session: Session, listen: Record<string, number> = {}, probes: ReadinessProbes = {}): StackAccess {
  const wrap = (command: Command) => remoteCommand(session.ssh, command);
  let listing: Promise<ContainerStatus[]> | undefined;
  const publishedPort = async (service: string, port: number) => {
    const id = (await session.runner.run(wrap(serviceContainerCommand(session.layout.project, service)))).stdout.split('\n')[0];
    if (!id) throw new ToolError(`service ${service} has no running container on the server`);
    const published = parsePublishedPort((await session.runner.attempt(wrap(publishedPortCommand(id, port)))).stdout);
    if (!published) throw new ToolError(`service ${service} does not publish port ${port} on the server`);
    return Number(published.split(':')[1]);
  };
  return {
    baseUrl: forwardedBaseUrl(session, async (service, port) => ({ port: listen[`${service}:${port}`] ?? (await publishedPort(service, port)) })),
    async healthcheckPasses(status) {
      const probe = probes[status.service];
      if (!probe) return undefined;
      return (await session.runner.attempt(wrap({ argv: ['timeout', '10', 'docker', 'exec', status.id, ...probe], readOnly: true, timeoutMs: 15_000 }))).exitCode === 0;
    },
    // The checks of every service ask at once: they share one answer from the server.
    containers: () => (listing ??= projectStatus(session.runner, session.layout.project, wrap).finally(() => (listing = undefined))),
  };
}

export async function verify(session: Session, app: ComposeApp, deadlineMs: number, listen: Record<string, number> = {}): Promise<CheckOutcome[]> {
  if (session.runner.dryRun) return [];
  return runSmoke(remoteAccess(session, listen, readinessProbes(app)), {
    services: app.services.map((service) => service.name),
    http: app.config.smoke,
    deadlineMs,
  });
}

/** How a release's switch goes: its routed services (from its record) beside the running ones, the rest in place. */
export function switchPlan(app: ComposeApp, record: ReleaseRecord | undefined, proxyImage: string, healthTimeoutMs: number, settled: string[] = []): SwitchPlan {
  const routed = record?.routed ?? [];
  return {
    routed,
    settled,
    listeners: Object.entries(record?.listen ?? {}).map(([key, port]) => `${port}=${key.slice(0, key.lastIndexOf(':'))}`),
    direct: app.services.map((service) => service.name).filter((name) => !routed.some((route) => route.service === name)),
    proxyImage,
    proxyMainConfig: proxyMainConfig(),
    healthTimeoutSeconds: Math.ceil(healthTimeoutMs / 1000),
    probes: Object.fromEntries(Object.entries(readinessProbes(app)).filter(([service]) => routed.some((route) => route.service === service))),
  };
}

/** Each service's healthcheck as an argv a deploy can run in its container (healthcheckArgv), where it has one. */
export function readinessProbes(app: ComposeApp): ReadinessProbes {
  return Object.fromEntries(
    Object.entries(app.raw.services).flatMap(([service, definition]) => {
      const probe = healthcheckArgv(definition.healthcheck);
      return probe ? [[service, probe]] : [];
    }),
  );
}

/**
 * A compose healthcheck's test as an argv docker exec can run, or undefined when it cannot be run as
 * written: disabled, NONE, or holding a variable compose would replace (the release's .env is not here).
 */
export function healthcheckArgv(healthcheck: unknown): string[] | undefined {
  if (!healthcheck || typeof healthcheck !== 'object' || (healthcheck as { disable?: unknown }).disable === true) return undefined;
  const test = (healthcheck as { test?: unknown }).test;
  const argv = typeof test === 'string' ? ['sh', '-c', test] : Array.isArray(test) && test.every((item) => typeof item === 'string') ? (test as string[]) : undefined;
  if (!argv || argv.length === 0 || argv.some((item) => item.includes('$'))) return undefined;
  if (argv[0] === 'CMD') return argv.length > 1 ? argv.slice(1) : undefined;
  if (argv[0] === 'CMD-SHELL') return argv.length === 2 ? ['sh', '-c', argv[1]!] : undefined;
  return argv[0] === 'NONE' ? undefined : argv;
}

export interface DeployRequest {
  app: ComposeApp;
  /** The proxy's image where the server does not run the proxy yet. */
  proxyImage: string;
  /** Image to deploy per app service: a tag or a digest ref. */
  refs: Record<string, string>;
  registry: string;
  registryUser?: string;
  registryToken?: Secret;
  /** Asks the registry which digest each tag names now (lib/build/registry-api.ts pinTagsWithin). */
  pinTags?: (refs: Record<string, string>) => Promise<Record<string, string>>;
  /** New .env content for the server; undefined keeps the current one. */
  env?: string;
  /** The app's compose needs variables, so a first deploy without `env` cannot start. */
  envRequired: boolean;
  /** The git revision to record, when given (--revision, or build-push's output with --images-from). */
  revision?: string;
  /**
   * Recorded when no revision is given and the images do not name one commit they were built from: the
   * commit of the app's repository, if it has one.
   */
  appRevision?: string;
  reason: string;
  keep: number;
  healthTimeoutMs: number;
  /** Migrate without a database backup (--no-backup); recorded in the audit log. */
  noBackup?: boolean;
}

export interface DeployReport {
  ok: boolean;
  action: 'deploy' | 'rollback' | 'restore-backup';
  result: 'deployed' | 'unchanged' | 'rolled-back' | 'restored' | 'failed';
  release?: string;
  previous?: string;
  images: Record<string, string>;
  /** Services whose image content did not change: they kept the live release's image and container. */
  kept?: string[];
  steps: StepTiming[];
  checks: CheckOutcome[];
  /** The step that failed or was interrupted. */
  failedStep?: string;
  error?: string;
  /**
   * Under backups/ on the server: the one a deploy took before migrating, or, for a rollback, the one
   * taken before the release it leaves was deployed. Either holds the data from before that migration.
   */
  backup?: string;
}

/** A report that says "failed" until the run proves otherwise; the caller keeps it, so a thrown error still has it. */
export function newReport(action: DeployReport['action']): DeployReport {
  return { ok: false, action, result: 'failed', images: {}, steps: [], checks: [] };
}

/** Runs and times one step; a pending signal stops the run before it, unless the step restores service. */
export async function timed<T>(session: Session, report: DeployReport, step: string, title: string, work: () => Promise<T>, interruptible = true): Promise<T> {
  const started = Date.now();
  let ended: ((ok: boolean) => void) | undefined;
  let ok = false;
  try {
    if (interruptible) checkpoint(session);
    ended = session.logger.task(title);
    const result = await work();
    ok = true;
    return result;
  } catch (error) {
    report.failedStep ??= step;
    throw error;
  } finally {
    ended?.(ok);
    report.steps.push({ step, ms: Date.now() - started });
  }
}

/** The first steps of a deploy and a rollback: connect, preflight, refuse early while another run holds the lock. */
export async function begin(session: Session, report: DeployReport, beside?: () => Promise<unknown>): Promise<ServerFacts> {
  const { ssh } = session;
  await timed(session, report, 'connect', `Connecting to ${ssh.user}@${ssh.host}:${ssh.port}`, () => openSession(session));
  // Work that needs no preflight result (the pull) starts with it over the same connection; a dry run
  // keeps one step after the other, so its plan reads in order.
  const started = beside && !session.runner.dryRun ? beside() : undefined;
  started?.catch(() => undefined);
  const facts = await timed(session, report, 'preflight', 'Preflight: docker, compose, disk, deploy path', () => preflight(session));
  session.logger.info(`docker ${facts.docker}, ${facts.compose}, ${Math.round(facts.diskFreeKb / 1024)} MiB free, current release ${facts.current ?? 'none'}`);
  if (facts.lock) throw lockHeldError(facts.lock);
  report.previous = facts.current;
  return facts;
}

/**
 * Connects, and pulls the request's images beside the preflight: the part of a deploy that needs no
 * lock (it changes nothing another run relies on, and it is the long part). Tags are pinned to digests
 * while the connection opens: the server then pulls only what it lacks (a no-op deploy pulls nothing
 * and needs no login), and a tag moved meanwhile cannot change this release. Where this machine
 * cannot ask the registry in time, the server's pull resolves them.
 */
export async function connectAndPull(
  session: Session,
  request: DeployRequest,
  report: DeployReport,
): Promise<{ facts: ServerFacts; pulledImages: Record<string, string>; contents: Record<string, string>; revision?: string }> {
  const pinning = session.runner.dryRun || !request.pinTags ? Promise.resolve(request.refs) : request.pinTags(request.refs).catch(() => request.refs);
  let refs = request.refs;
  const pull = () =>
    timed(session, report, 'pull', `Pulling ${Object.values(request.refs).join(', ')}`, async () => {
      refs = await pinning;
      return runRemote(
        session,
        scripts.pullScript(session.layout, { registry: request.registry, username: request.registryUser, token: request.registryToken?.reveal(), refs: Object.values(refs) }),
        DEADLINES_MS.pull,
      );
    });
  let pulling: Promise<Result> | undefined;
  const facts = await begin(session, report, () => (pulling = pull()));
  const pulled = await (pulling ?? pull());
  return {
    facts,
    pulledImages: session.runner.dryRun ? refs : pinnedRefs(pulled.stdout, refs),
    contents: contentKeys(pulled.stdout, refs),
    revision: builtRevision(imageRevisions(pulled.stdout, refs), Object.keys(refs)),
  };
}

/**
 * The commit the images were built from, when every one of them names the same one in its
 * org.opencontainers.image.revision label (build-push labels each image of a build with it). A label is
 * the image author's text: one that is not a plain revision is not used.
 */
export function builtRevision(revisions: Record<string, string>, services: string[]): string | undefined {
  const named = new Set(services.map((service) => revisions[service]));
  const [revision] = named;
  return named.size === 1 && revision !== undefined && formats.revision.check(revision, 'ci') === undefined ? revision : undefined;
}

/** What a release records as its revision: the one given, else the images' own, else the app repository's. */
export function releaseRevision(session: Session, request: DeployRequest, built: string | undefined): string {
  const revision = request.revision ?? built ?? request.appRevision;
  if (revision) return revision;
  session.logger.warn(`${request.app.dir} is not in a git repository with a commit, and the images name no commit they were built from; the release records revision "unknown" (pass --revision SHA)`);
  return 'unknown';
}

/** The report's failed checks in one line (its failed step then `verify`), or undefined when every check passed. */
export function failedChecks(report: DeployReport): string | undefined {
  const failed = report.checks.filter((check) => !check.ok);
  if (failed.length === 0) return undefined;
  report.failedStep = 'verify';
  return failed.map((check) => `${check.name} (${check.detail})`).join(', ');
}

/**
 * Whether a deploy over the live release backs its database up first: always when aidd.yml has a backup,
 * unless --no-backup (then the audit log says so). A migration without a backup section is refused.
 */
export function backupPlan(request: DeployRequest, live: string | undefined, id: string): { backup?: BackupSpec; backupNote?: string } {
  const { backup, migrate } = request.app.config;
  if (live && migrate && !backup && !request.noBackup) {
    throw new UsageError(`aidd.yml migrates (${migrate.service}) but has no backup: section; add one, or pass --no-backup to migrate without a backup (audited)`);
  }
  if (!live || !backup) return {};
  return request.noBackup ? { backupNote: 'skipped: --no-backup' } : { backup, backupNote: scripts.backupFileName(id, backup) };
}

export interface PreparedRelease {
  files: scripts.ReleaseFiles;
  /** The release live now, whose database the backup dumps. */
  live?: string;
  backup?: BackupSpec;
  /** What the audit log says about the backup (backupPlan). */
  backupNote?: string;
  /** The migration's script, run apart from the connection. */
  migration?: { title: string; script: string; deadlineMs: number };
}

/**
 * The steps before a new release goes live, while the live one serves: upload it, back up the live
 * release's database, migrate. Until the switch, a failure or interruption removes the new release again
 * (audited): nothing changed for users. A step that may still run keeps its release and the lock.
 */
export async function prepareRelease(session: Session, report: DeployReport, release: PreparedRelease): Promise<void> {
  const { layout, logger } = session;
  const { id } = release.files;
  try {
    await timed(session, report, 'upload', `Uploading release ${id}`, () => runRemote(session, scripts.uploadScript(layout, release.files), DEADLINES_MS.upload));
    if (release.backup) {
      const backup = release.backup;
      const saved = await timed(session, report, 'backup', `Backing up the database of ${release.live}`, () =>
        runDetached(session, id, 'backup', scripts.backupScript(layout, release.live!, id, backup), DEADLINES_MS.backup),
      );
      report.backup = scripts.backupFileName(id, backup);
      logger.info(saved.stdout.trim());
    } else if (release.backupNote) {
      logger.warn('no database backup before this deploy (--no-backup); recorded in the audit log');
    }
    const migration = release.migration;
    if (migration) await timed(session, report, 'migrate', `Migrating (${migration.title})`, () => runDetached(session, id, 'migrate', migration.script, migration.deadlineMs));
    checkpoint(session);
  } catch (error) {
    if (error instanceof StepOutcomeUnknownError) throw error;
    const interrupted = error instanceof InterruptedError;
    const detail = error instanceof Error ? error.message : String(error);
    const line = auditLine({
      action: interrupted ? 'interrupted' : 'deploy',
      release: id,
      previous: release.live ?? null,
      result: interrupted ? 'interrupted' : 'failed',
      step: report.failedStep ?? 'switch',
      detail,
      backup: release.backupNote,
    });
    await runRemote(session, scripts.discardReleaseScript(layout, id, line), DEADLINES_MS.audit);
    throw error;
  }
}

export async function deploy(session: Session, request: DeployRequest, report = newReport('deploy')): Promise<DeployReport> {
  const { logger, layout } = session;
  const { facts, pulledImages, contents, revision: built } = await connectAndPull(session, request, report);
  report.images = pulledImages;
  const envVars = request.env === undefined ? undefined : parseEnv(request.env);
  const revision = releaseRevision(session, request, built);

  return withLock(session, request.reason, report, async (state) => {
    const live = state.current;
    report.previous = live;
    const id = newReleaseId(revision, new Date(), state.releases);
    const plan = planRelease({
      app: request.app,
      project: layout.project,
      id,
      pulled: pulledImages,
      contents,
      live: live ? state.records[live] : undefined,
      vars: envVars ?? state.vars,
      envUploaded: request.env !== undefined,
      envChanged: request.env !== undefined && sha256(request.env) !== state.currentEnvSha,
    });
    const compose = plan.compose;
    report.images = plan.images;
    report.kept = plan.kept;
    if (plan.kept.length) logger.info(`unchanged content, kept running: ${plan.kept.join(', ')}`);
    const liveRecord = live ? state.records[live] : undefined;
    const unchanged =
      live &&
      state.currentComposeSha === sha256(compose) &&
      (request.env === undefined || state.currentEnvSha === sha256(request.env)) &&
      (liveRecord?.proxySha ?? '') === (plan.record.proxySha ?? '') &&
      // A stopped proxy is started again by a new release's switch.
      (plan.routed.length === 0 || facts.proxy === 'running');
    if (unchanged) {
      report.release = live;
      report.checks = await timed(session, report, 'verify', `Release ${live} already runs these images; checking its health`, () => verify(session, request.app, request.healthTimeoutMs, plan.record.listen));
      report.ok = report.checks.every((check) => check.ok);
      report.result = report.ok ? 'unchanged' : 'failed';
      if (!report.ok) report.failedStep = 'verify';
      await releaseLock(session, auditLine({ action: 'deploy', release: live, result: report.result, images: report.images }));
      return report;
    }

    const { migrate } = request.app.config;
    const { backup, backupNote } = backupPlan(request, live, id);
    report.release = id;
    const audit = (entry: Record<string, unknown>) =>
      runRemote(session, scripts.auditScript(layout, auditLine({ action: 'deploy', release: id, previous: live ?? null, backup: backupNote, ...entry })), DEADLINES_MS.audit);
    const releaseJson = JSON.stringify(
      { id, revision, ...plan.record, who: describeActor(), at: new Date().toISOString(), reason: request.reason, previous: live ?? null },
      null,
      2,
    );
    const switchTo = (release: string, record: ReleaseRecord | undefined, settled?: string[]) =>
      scripts.switchScript(layout, release, switchPlan(request.app, record, request.proxyImage, request.healthTimeoutMs, settled));

    await prepareRelease(session, report, {
      files: { id, compose, releaseJson, env: request.env, envRequired: request.envRequired, proxyConfig: plan.proxyConfig },
      live,
      backup,
      backupNote,
      migration: migrate && {
        title: `${migrate.service} ${migrate.command.join(' ')}`,
        script: scripts.migrateScript(layout, id, migrate, Math.round(request.healthTimeoutMs / 1000)),
        deadlineMs: request.healthTimeoutMs + DEADLINES_MS.migrate,
      },
    });

    // From here a failure (compose refusing to start, or a failed check) means rolling back.
    let failure: string | undefined;
    try {
      await timed(session, report, 'switch', `Switching to ${id}`, () => runDetached(session, id, 'up', switchTo(id, plan.record, plan.settled), DEADLINES_MS.up));
      report.checks = await timed(session, report, 'verify', 'Waiting for health and smoke-testing', () => verify(session, request.app, request.healthTimeoutMs, plan.record.listen));
      failure = failedChecks(report);
    } catch (error) {
      if (error instanceof StepOutcomeUnknownError) throw error;
      if (error instanceof InterruptedError) {
        // Switched but not verified: `current` still names the old release, and this one never
        // counts as live, so no rollback goes to it; a re-run converges.
        await audit({ action: 'interrupted', result: 'interrupted', step: 'switch', detail: error.message });
        throw error;
      }
      failure = (error as Error).message;
    }
    if (failure === undefined) {
      // The release a rollback from this one goes to is the one live until now: pruning keeps it.
      await timed(session, report, 'finish', 'Finishing: current, audit, prune', () =>
        runRemote(
          session,
          scripts.finishScript(layout, id, auditLine({ action: 'deploy', release: id, previous: live ?? null, result: 'deployed', images: report.images, backup: backupNote }), {
            keep: request.keep,
            protect: live ? [live] : [],
          }),
          DEADLINES_MS.finish,
        ),
      );
      report.ok = true;
      report.result = 'deployed';
      return report;
    }

    report.error = `release ${id} failed: ${failure}`;
    logger.warn(report.error);
    if (!live) {
      await audit({ result: 'failed', step: 'verify', detail: report.error });
      return report;
    }
    await timed(session, report, 'rollback', `Rolling back to ${live}`, () => runDetached(session, live, 'up', switchTo(live, liveRecord), DEADLINES_MS.up), false);
    const recovered = await verify(session, request.app, request.healthTimeoutMs, liveRecord?.listen);
    const rollbackOk = recovered.every((check) => check.ok);
    report.result = rollbackOk ? 'rolled-back' : 'failed';
    if (!rollbackOk) report.error += `; rollback to ${live} is not healthy either`;
    // The failed release is removed so a later --rollback can never pick it.
    const line = auditLine({ action: 'deploy', release: id, previous: live, result: report.result, restored: live, detail: report.error, backup: backupNote });
    await runRemote(session, scripts.discardReleaseScript(layout, id, line), DEADLINES_MS.audit);
    return report;
  }, request.env === undefined ? listenVariables(request.app) : []);
}

export interface ReleaseDiff {
  /** The live release, if any. */
  current?: string;
  /** Per service: the image live now, the one this deploy would run, and whether its content is the same (its container kept). */
  images: { service: string; from?: string; to: string; kept: boolean }[];
  /** A unified diff of the live release's compose file and the one this deploy would upload; empty when they are the same. */
  compose: string;
  /** The .env variables this deploy would add, remove or change, by name only; all empty without --server-env. */
  env: { added: string[]; removed: string[]; changed: string[] };
}

/**
 * What a deploy would change, decided as the deploy decides it (the same pull, the same plan), without
 * the lock, an upload or a switch: the pull only adds images to the server. Values never leave this
 * function: the .env is compared by name and value, and reported by name.
 */
export async function diffRelease(session: Session, request: DeployRequest): Promise<ReleaseDiff> {
  const { facts, pulledImages, contents } = await connectAndPull(session, request, newReport('deploy'));
  const live = facts.current ? facts.records[facts.current] : undefined;
  const files = session.runner.dryRun ? new Map<string, string[]>() : parseLines((await runRemote(session, scripts.currentFilesScript(session.layout), DEADLINES_MS.audit)).stdout);
  const decode = (name: string) => Buffer.from(files.get(name)?.[0] ?? '', 'base64').toString('utf8');
  const currentEnv = parseEnv(decode('env'));
  for (const value of Object.values(currentEnv)) registerSecret(value);
  const newEnv = request.env === undefined ? currentEnv : parseEnv(request.env);
  const plan = planRelease({
    app: request.app,
    project: session.layout.project,
    id: 'diff',
    pulled: pulledImages,
    contents,
    live,
    vars: newEnv,
    envUploaded: request.env !== undefined,
    envChanged: request.env !== undefined && sha256(request.env) !== facts.currentEnvSha,
  });
  const currentCompose = decode('compose');
  return {
    ...(facts.current ? { current: facts.current } : {}),
    images: Object.entries(plan.images).map(([service, to]) => ({ service, ...(live?.images?.[service] ? { from: live.images[service] } : {}), to, kept: plan.kept.includes(service) })),
    compose: currentCompose === plan.compose ? '' : createTwoFilesPatch('live release', 'this deploy', currentCompose, plan.compose, '', '', { context: 2 }),
    env: {
      added: Object.keys(newEnv).filter((name) => !(name in currentEnv)).sort(),
      removed: Object.keys(currentEnv).filter((name) => !(name in newEnv)).sort(),
      changed: Object.keys(newEnv).filter((name) => name in currentEnv && currentEnv[name] !== newEnv[name]).sort(),
    },
  };
}

export interface RollbackRequest {
  app: ComposeApp;
  proxyImage: string;
  /** A release id (--to); without it, the release before the current one on the chain of live releases. */
  to?: string;
  reason: string;
  healthTimeoutMs: number;
}

/** The release a rollback goes to: --to ID, else rollbackTarget; an error naming the choices when there is none. */
export function rollbackRelease(session: Session, state: ServerState, to: string | undefined): string {
  const target = to ?? rollbackTarget(state);
  if (session.runner.dryRun) return target ?? '(previous)';
  if (!target) {
    // Two rollbacks in a row go further back, not back and forth: the way to another release is --to.
    const others = state.releases.filter((release) => release !== state.current);
    const choice = others.length ? `; to go to another kept release, pass --to ID (${others.join(', ')})` : '';
    throw new ToolError(`no release that went live before ${state.current ?? 'the current one'} is kept on the server${choice}; see --history`);
  }
  if (!state.releases.includes(target)) throw new UsageError(`release ${target} is not on the server; kept releases: ${state.releases.join(', ') || 'none'}`);
  return target;
}

export async function rollback(session: Session, request: RollbackRequest, report = newReport('rollback')): Promise<DeployReport> {
  const { layout } = session;
  await begin(session, report);
  return withLock(session, request.reason, report, async (state) => {
    report.previous = state.current;
    report.backup = backupBefore(state, state.current);
    const release = rollbackRelease(session, state, request.to);
    report.release = release;
    const plan = switchPlan(request.app, state.records[release], request.proxyImage, request.healthTimeoutMs);
    await timed(session, report, 'switch', `Starting release ${release}`, () => runDetached(session, release, 'up', scripts.switchScript(layout, release, plan), DEADLINES_MS.up));
    report.checks = await timed(session, report, 'verify', 'Waiting for health and smoke-testing', () => verify(session, request.app, request.healthTimeoutMs, state.records[release]?.listen));
    report.ok = report.checks.every((check) => check.ok);
    report.result = report.ok ? 'deployed' : 'failed';
    if (!report.ok) report.failedStep = 'verify';
    const line = auditLine({ action: 'rollback', release, previous: state.current ?? null, result: report.ok ? 'ok' : 'failed', backup: report.backup });
    if (report.ok) await runRemote(session, scripts.finishScript(layout, release, line, { keep: Number.MAX_SAFE_INTEGER, protect: [] }), DEADLINES_MS.finish);
    else await runRemote(session, scripts.auditScript(layout, line), DEADLINES_MS.audit);
    return report;
  });
}

export interface RestoreRequest {
  app: ComposeApp;
  /** A file under backups/ on the server, RELEASE.EXT, as deploy and rollback reports name it. */
  backup: string;
  reason: string;
  healthTimeoutMs: number;
}

/**
 * Replaces the live release's database with a backup: never part of a deploy or a rollback, always
 * asked for by name, locked, run apart from the connection like a migration, checked and audited.
 */
export async function restoreBackup(session: Session, request: RestoreRequest, report = newReport('restore-backup')): Promise<DeployReport> {
  const { layout } = session;
  const spec = request.app.config.backup;
  if (!spec?.restore) throw new UsageError('aidd.yml backup: has no restore: command (run in the service container, reading a dump on stdin); add one to restore backups');
  const restore = spec.restore;
  report.backup = request.backup;
  await begin(session, report);
  return withLock(session, request.reason, report, async (state) => {
    const live = state.current ?? '(current)';
    if (!session.runner.dryRun) {
      if (!state.current) throw new ToolError('no release is live on the server; there is no database to restore into');
      if (!state.backups.includes(request.backup)) throw new UsageError(`there is no backup ${request.backup} on the server; it keeps: ${state.backups.join(', ') || 'none'}`);
    }
    report.release = live;
    report.previous = state.current;
    await timed(session, report, 'restore', `Restoring backups/${request.backup} into the database of ${live}`, () =>
      runDetached(session, live, 'restore', scripts.restoreScript(layout, live, request.backup, restore, spec.service), DEADLINES_MS.backup),
    );
    report.checks = await timed(session, report, 'verify', 'Waiting for health and smoke-testing', () => verify(session, request.app, request.healthTimeoutMs, state.records[live]?.listen));
    report.ok = report.checks.every((check) => check.ok);
    report.result = report.ok ? 'restored' : 'failed';
    if (!report.ok) report.failedStep = 'verify';
    await runRemote(session, scripts.auditScript(layout, auditLine({ action: 'restore-backup', release: live, backup: request.backup, result: report.ok ? 'ok' : 'failed' })), DEADLINES_MS.audit);
    return report;
  });
}

export interface StatusReport {
  current?: string;
  release?: Record<string, unknown>;
  services: ContainerStatus[];
  lock?: Record<string, unknown>;
  /** RELEASE/STEP of steps a deploy started on the server that still run (migrate, backup, switch). */
  runningSteps: string[];
  /** Backups kept on the server, for --restore-backup. */
  backups: string[];
  /** The server's reverse proxy container: running, exited, ... or absent. Not on a swarm. */
  proxy?: string;
  /** On a swarm: each service's replicas, image and nodes (`services` then lists its tasks). */
  swarm?: SwarmServiceStatus[];
}

export async function status(session: Session): Promise<StatusReport> {
  await openSession(session);
  const facts = await preflight(session);
  const report: StatusReport = { current: facts.current, services: [], lock: facts.lock ? (JSON.parse(facts.lock) as Record<string, unknown>) : undefined, runningSteps: facts.runningSteps, backups: facts.backups, proxy: facts.proxy };
  if (facts.current && !session.runner.dryRun) {
    report.release = JSON.parse((await runRemote(session, scripts.releaseRecordScript(session.layout, facts.current), DEADLINES_MS.audit)).stdout) as Record<string, unknown>;
    report.services = await remoteAccess(session).containers();
  }
  return report;
}

export async function history(session: Session, lines: number): Promise<Record<string, unknown>[]> {
  await openSession(session);
  const { stdout } = await runRemote(session, scripts.historyScript(session.layout, lines), DEADLINES_MS.audit);
  return stdout
    .split('\n')
    .filter((line) => line.trim().startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

/** Removes a stale lock on purpose; audited with the previous holder. Returns that holder, if any. */
export async function breakLock(session: Session): Promise<string | undefined> {
  await openSession(session);
  const { stdout } = await runRemote(session, scripts.breakLockScript(session.layout, auditLine({ action: 'break-lock', result: 'ok' })), DEADLINES_MS.audit);
  return stdout.startsWith('broke') ? stdout.slice(6).trim() : undefined;
}
