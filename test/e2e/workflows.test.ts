// The GitHub workflows themselves, run step by step on this machine by ./workflow-runner.ts against the
// sandbox registry and sshd: build.yml on a pull request (builds, publishes nothing), on a push to main
// (publishes :<sha> and :latest, job outputs) and by hand on a branch (:latest stays); deploy.yml
// deploying the commit built, rolling back, refused by a held lock, failing in a migration and failing
// before ssh-deploy. Each run's job summary and the notifications that a local stand-in for Telegram and
// a webhook received are checked, and no secret may show in any of it.
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { appendFileSync, mkdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveBaseImages } from '../../lib/build/base-images.ts';
import { loginCommand } from '../../lib/build/docker.ts';
import { RegistryClient } from '../../lib/build/registry-api.ts';
import { loadComposeApp } from '../../lib/app/compose.ts';
import { DEFAULT_COMPOSE_FILE, REPO_ROOT } from '../../lib/app/target.ts';
import { createLogger } from '../../lib/core/log.ts';
import { freePort } from '../../lib/core/net.ts';
import { closeSession, openSession, releaseLock, takeLock, type Session } from '../../lib/deploy/engine.ts';
import { resolveSshTarget } from '../../lib/deploy/ssh.ts';
import { startRegistry, startSshServer, type Registry, type SshServer } from '../../lib/sandbox/sandbox.ts';
import { getJson, handshakes, pushVariant, removeProject, requireDocker, SANDBOX_DIR, snapshot, tempDir, testRunner, uniqueName, useProxyImage } from './harness.ts';
import { commitOnBranch, loadWorkflow, repositoryFromCheckout, runStepKeys, runWorkflow, type JobRecord, type Repository, type StepStatus, type WorkflowEvent, type WorkflowRequest, type WorkflowRun } from './workflow-runner.ts';

const runner = testRunner();
const SERVICES = ['api', 'bot', 'frontend'];
const WORKFLOW_DIR = path.join(REPO_ROOT, '.github', 'workflows');
/** A GitHub owner with capitals, as some are: the workflows must lowercase it for the registry. */
const repositoryOwner = `Aidd-Wf-${randomBytes(3).toString('hex')}`;
const owner = repositoryOwner.toLowerCase();
/** Its own compose project on the sandbox server (the shared engine), set as the workflow variable. */
const project = uniqueName('aidd-workflow');
const deployPath = `~/apps/${project}`;
/** Holds secrets (the runners' docker logins, the .env files written): removed at the end. */
const scratch = tempDir('aidd-workflows-e2e');
const dockerConfig = path.join(scratch, 'docker-config');
const machines = path.join(scratch, 'runners');

let registry: Registry;
let server: SshServer;
let client: RegistryClient;
let repository: Repository;
let secrets: Record<string, string>;
let vars: Record<string, string>;
/** What this machine adds to a deploy job's environment, as a self-hosted runner's .env would. */
let deployMachine: Record<string, string>;
let apiPort: number;
let main: string;
let branch: string;
/** The image job's outputs from the push to main. */
let built: Record<string, string>;
let firstRelease: string;

/** Every step's output and summary, and every notification: searched for secrets at the end. */
const transcript: string[] = [];
/** Each run: step, as FILE:JOB#INDEX, with the statuses it had across the runs. */
const seen = new Map<string, Set<StepStatus>>();

interface Notification {
  url: string;
  body: Record<string, unknown>;
}
const notifications: Notification[] = [];
/** Stands in for the Telegram Bot API and a chat webhook: both POST JSON here. */
const receiver = http.createServer((request, response) => {
  let body = '';
  request.on('data', (chunk: Buffer) => (body += chunk.toString()));
  request.on('end', () => {
    notifications.push({ url: request.url ?? '', body: JSON.parse(body) as Record<string, unknown> });
    transcript.push(body);
    response.end('{"ok":true}');
  });
});

function request(workflow: string, event: WorkflowEvent, options: { secrets?: Record<string, string>; machineEnv?: Record<string, string> } = {}): WorkflowRequest {
  return {
    workflow,
    event,
    repository,
    // On GitHub the actor's GITHUB_TOKEN logs in to GHCR; here the sandbox registry's user and password.
    actor: registry.user,
    secrets: options.secrets ?? secrets,
    vars,
    machineEnv: options.machineEnv ?? {},
    nodeModules: path.join(REPO_ROOT, 'node_modules'),
    machines,
  };
}

async function runFile(file: string, event: WorkflowEvent, options: { secrets?: Record<string, string>; machineEnv?: Record<string, string> } = {}): Promise<WorkflowRun> {
  notifications.length = 0;
  const run = await runWorkflow(request(path.join(WORKFLOW_DIR, file), event, options));
  for (const job of run.jobs) {
    for (const step of job.steps) {
      transcript.push(step.stdout, step.stderr, step.summary);
      if (step.run === undefined) continue;
      const key = `${file}:${job.id}#${step.index}`;
      seen.set(key, (seen.get(key) ?? new Set()).add(step.status));
    }
  }
  return run;
}

function deploy(inputs: Record<string, string>, options: { secrets?: Record<string, string> } = {}): Promise<WorkflowRun> {
  return runFile('deploy.yml', { name: 'workflow_dispatch', ref: 'refs/heads/main', sha: main, inputs }, { ...options, machineEnv: deployMachine });
}

/** Each step as NAME STATUS OUTCOME: the path a job took. */
function stepPath(job: JobRecord): string[] {
  return job.steps.map((step) => `${step.name} ${step.status} ${step.outcome}`);
}

function onlyJob(run: WorkflowRun): JobRecord {
  expect(run.jobs).toHaveLength(1);
  return run.jobs[0]!;
}

function step(job: JobRecord, name: string) {
  const found = job.steps.find((candidate) => candidate.name === name);
  expect(found, `${name} in ${job.steps.map((candidate) => candidate.name).join(', ')}`).toBeDefined();
  return found!;
}

const deployDir = () => path.join(server.home, 'apps', project);
const currentRelease = () => path.basename(readlinkSync(path.join(deployDir(), 'current')));
const releaseImages = (id: string) => (JSON.parse(readFileSync(path.join(deployDir(), 'releases', id, 'release.json'), 'utf8')) as { images: Record<string, string> }).images;
const imagesOf = (outputs: Record<string, string>) => Object.fromEntries(SERVICES.map((service) => [service, outputs[`${service}_image`]!]));

/** The one line each notification target got: the same text to Telegram (the chat) and to the webhook. */
function notified(): string {
  // Named, not shown: the paths hold the bot token and the webhook's secret.
  const targets: Record<string, string> = { [`/bot${secrets.NOTIFY_TELEGRAM_TOKEN}/sendMessage`]: 'telegram', [new URL(secrets.NOTIFY_WEBHOOK_URL!).pathname]: 'webhook' };
  expect(notifications.map((item) => targets[item.url] ?? 'another path').sort()).toEqual(['telegram', 'webhook']);
  expect(notifications.find((item) => item.url.includes('sendMessage'))!.body.chat_id).toBe(secrets.NOTIFY_TELEGRAM_CHAT_ID);
  const texts = [...new Set(notifications.map((item) => String(item.body.text)))];
  expect(texts).toHaveLength(1);
  return texts[0]!;
}

/** How ssh-deploy names this deploy in a notification. */
const where = () => `${project} on ${server.user}@${server.host}:${deployPath}`;
const by = () => `(by ${registry.user} (GitHub Actions))`;

async function manifestDigest(service: string, tag: string): Promise<string | undefined> {
  return (await client.manifest(`${owner}/aidd-${service}`, tag))?.digest;
}

async function apiHealth() {
  return getJson(`http://127.0.0.1:${apiPort}/health`);
}

describe('the GitHub workflows, run step by step against the sandbox registry and server', () => {
  beforeAll(async () => {
    await requireDocker(runner);
    registry = await startRegistry(runner, path.join(SANDBOX_DIR, 'registry'));
    server = await startSshServer(runner, path.join(SANDBOX_DIR, 'sshd'));
    client = new RegistryClient(registry.address, { username: registry.user, password: registry.password });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    const receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
    apiPort = await freePort();

    // The sandbox server is this machine's engine, which cannot pull caddy:2 or postgres:16-alpine: deploy
    // jobs get the stand-ins through the runner machine's environment (a GitHub runner has neither
    // variable). setup-env --from-env writes POSTGRES_IMAGE into the server's .env from there.
    const baseImages = await resolveBaseImages(await loadComposeApp(DEFAULT_COMPOSE_FILE), runner, createLogger({ prefix: 'e2e', quiet: true }));
    deployMachine = { AIDD_PROXY_IMAGE: await useProxyImage(runner), ...(baseImages.POSTGRES_IMAGE ? { POSTGRES_IMAGE: baseImages.POSTGRES_IMAGE } : {}) };

    mkdirSync(machines);
    ({ sha: main, ...repository } = await repositoryFromCheckout(REPO_ROOT, path.join(scratch, 'repository'), `${repositoryOwner}/aidd-devops`));
    secrets = {
      GITHUB_TOKEN: registry.password.reveal(),
      HOST: server.host,
      USER: server.user,
      SSH_KEY: readFileSync(server.keyFile, 'utf8'),
      SSH_KNOWN_HOSTS: readFileSync(server.knownHostsFile, 'utf8'),
      POSTGRES_PASSWORD: `Pg-${randomBytes(12).toString('base64url')}`,
      NOTIFY_TELEGRAM_TOKEN: `999:${randomBytes(20).toString('hex')}`,
      NOTIFY_TELEGRAM_CHAT_ID: '-10042',
      NOTIFY_WEBHOOK_URL: `${receiverUrl}/hook/${randomBytes(12).toString('hex')}`,
    };
    vars = {
      REGISTRY: registry.address,
      BOT_MODE: 'offline',
      API_PORT: String(apiPort),
      FRONTEND_PORT: String(await freePort()),
      SSH_PORT: String(server.port),
      DEPLOY_PATH: deployPath,
      COMPOSE_PROJECT_NAME: project,
      NOTIFY_TELEGRAM_API: receiverUrl,
    };
  });

  afterAll(async () => {
    receiver.close();
    rmSync(scratch, { recursive: true, force: true });
    if (!registry) return;
    await removeProject(runner, project, { volumes: true });
    // Its .env and backups hold the test's database password and data.
    rmSync(deployDir(), { recursive: true, force: true });
    const images = (await runner.run({ argv: ['docker', 'image', 'ls', '--format', '{{.Repository}}:{{.Tag}}', `${registry.address}/${owner}/*`], readOnly: true })).stdout.split('\n').filter(Boolean);
    if (images.length > 0) await runner.attempt({ argv: ['docker', 'image', 'rm', '--force', ...images], timeoutMs: 120_000 });
  });

  it('the runner: file commands carry to later steps, bash -e without pipefail, status functions, and a loud failure on what it cannot evaluate', async () => {
    const workflow = (steps: string) => {
      const file = path.join(scratch, `runner-check-${randomBytes(3).toString('hex')}.yml`);
      writeFileSync(file, `name: runner check\non: push\nenv:\n  GREETING: hello\njobs:\n  check:\n    runs-on: ubuntu-latest\n    steps:\n${steps}`);
      return file;
    };
    const event: WorkflowEvent = { name: 'push', ref: 'refs/heads/main', sha: main };
    const checked = await runWorkflow(request(workflow(`
      - id: write
        run: |
          echo "single=one" >> "$GITHUB_OUTPUT"
          { echo 'multi<<END'; echo 'line 1'; echo 'line 2'; echo 'END'; } >> "$GITHUB_OUTPUT"
          echo "FROM_ENV_FILE=set earlier" >> "$GITHUB_ENV"
          mkdir "$RUNNER_TEMP/bin" && printf '#!/bin/sh\\necho a tool on PATH\\n' > "$RUNNER_TEMP/bin/added-tool" && chmod +x "$RUNNER_TEMP/bin/added-tool"
          echo "$RUNNER_TEMP/bin" >> "$GITHUB_PATH"
      - id: read
        env:
          MULTI: \${{ steps.write.outputs.multi }}
        run: |
          echo "$MULTI|\${{ steps.write.outputs.single }}|$FROM_ENV_FILE|\${{ env.FROM_ENV_FILE }}|$GREETING|$(added-tool)"
          false | true
      - run: exit 3
      - name: after a failure
        run: echo never
      - name: on failure
        if: failure() && steps.read.outcome == 'success'
        run: echo "\${{ format('{0} of {1}', github.event_name, github.ref_name) }}"
`), event));
    const job = onlyJob(checked);
    expect(stepPath(job)).toEqual(['echo "single=one" >> "$GITHUB_OUTPUT" ran success', 'echo "$MULTI|${{ steps.write.outputs.single }}|$FROM_ENV_FILE|${{ env.FROM_ENV_FILE }}|$GREETING|$(added-tool)" ran success', 'exit 3 ran failure', 'after a failure skipped skipped', 'on failure ran success']);
    expect(job.steps[0]!.outputs).toEqual({ single: 'one', multi: 'line 1\nline 2' });
    expect(job.steps[1]!.stdout).toBe('line 1\nline 2|one|set earlier|set earlier|hello|a tool on PATH\n');
    expect(job.steps[2]!.exitCode).toBe(3);
    expect(job.steps[4]!.stdout).toBe('push of main\n');
    expect(job.result).toBe('failure');

    await expect(runWorkflow(request(workflow('      - run: echo ${{ github.head_ref_name }}\n'), event))).rejects.toThrow(/github\.head_ref_name is not provided by the workflow runner/);
    await expect(runWorkflow(request(workflow("      - run: echo ${{ hashFiles('package-lock.json') }}\n"), event))).rejects.toThrow(/Unrecognized function: 'hashFiles'/);
    await expect(runWorkflow(request(workflow('      - uses: actions/cache@v4\n'), event))).rejects.toThrow(/action actions\/cache is not emulated/);
  });

  it('build.yml on a pull request: three check legs build their service, and the registry gets no tag', async () => {
    const run = await runFile('build.yml', { name: 'pull_request', ref: 'refs/pull/7/merge', sha: main });
    const failedSteps = run.jobs.flatMap((job) => job.steps.filter((item) => item.outcome === 'failure').map((item) => `${job.name} / ${item.name}: ${item.stderr}`));
    expect(run.jobs.map((job) => [job.id, job.name, job.result]), failedSteps.join('\n')).toEqual([
      ...SERVICES.map((service) => ['check', `build (${service})`, 'success']),
      ['image', 'image (${{ matrix.service }})', 'skipped'],
    ]);
    for (const [index, service] of SERVICES.entries()) {
      const job = run.jobs[index]!;
      expect(stepPath(job).slice(-2)).toEqual(['npm ci --no-audit --no-fund not emulated success', `Build ${service} ran success`]);
      expect(step(job, `Build ${service}`).env).toEqual({ REGISTRY: registry.address, IMAGE_OWNER: repositoryOwner });
      expect(job.summary).toContain(`### build-push: ok\n\ncommit \`${main}\``);
      expect(job.summary).toMatch(new RegExp(`^\\| ${service} \\| ${main.slice(0, 12)}, latest \\| - \\| .* \\| no \\|$`, 'm'));
      expect(await manifestDigest(service, main)).toBeUndefined();
      expect(await manifestDigest(service, 'latest')).toBeUndefined();
    }
    expect(notifications).toEqual([]);
  });

  it('build.yml on a push to main: publishes :<sha> and :latest, and the image job outputs name each digest', async () => {
    const run = await runFile('build.yml', { name: 'push', ref: 'refs/heads/main', sha: main });
    expect(run.jobs.map((job) => [job.id, job.result])).toEqual([['check', 'skipped'], ...SERVICES.map(() => ['image', 'success'])]);
    built = run.outputs.image!;
    expect(built.revision).toBe(main);
    for (const [index, service] of SERVICES.entries()) {
      const job = run.jobs[index + 1]!;
      const build = step(job, `Build and publish ${service}`);
      expect(build.env).toMatchObject({ REGISTRY: registry.address, IMAGE_OWNER: repositoryOwner, REGISTRY_USER: registry.user, AIDD_NO_LATEST: '' });
      const digest = await manifestDigest(service, main);
      expect(digest).toMatch(/^sha256:[0-9a-f]{64}$/);
      expect(await manifestDigest(service, 'latest')).toBe(digest);
      // Each leg writes only its own service's lines, and the job's outputs: map gathers all three.
      expect(build.outputs).toEqual({ [`${service}_image`]: `${registry.address}/${owner}/aidd-${service}@${digest}`, [`${service}_digest`]: digest, revision: main });
      expect(built[`${service}_image`]).toBe(`${registry.address}/${owner}/aidd-${service}@${digest}`);
      expect(built[`${service}_digest`]).toBe(digest);
      expect(job.summary).toMatch(new RegExp(`^\\| ${service} \\| ${main.slice(0, 12)}, latest \\| \`${digest}\` \\| .* \\| pushed \\|$`, 'm'));
    }
    expect(notifications).toEqual([]);
  });

  it('build.yml run by hand on another branch sets AIDD_NO_LATEST: :<sha> is published, :latest stays', async () => {
    // A change to the frontend only: a deploy of this build replaces the frontend and keeps the others.
    branch = await commitOnBranch(repository, 'feature', 'a frontend change on a branch', (dir) => appendFileSync(path.join(dir, 'examples', 'aidd-bot', 'frontend', 'app', 'page.tsx'), '// changed on a branch\n'));
    const run = await runFile('build.yml', { name: 'workflow_dispatch', ref: 'refs/heads/feature', sha: branch });
    expect(run.jobs.map((job) => [job.id, job.result])).toEqual([['check', 'skipped'], ...SERVICES.map(() => ['image', 'success'])]);
    expect(run.outputs.image!.revision).toBe(branch);
    for (const [index, service] of SERVICES.entries()) {
      const job = run.jobs[index + 1]!;
      expect(step(job, `Build and publish ${service}`).env.AIDD_NO_LATEST).toBe('true');
      const digest = await manifestDigest(service, branch);
      expect(digest).toMatch(/^sha256:/);
      expect(digest).not.toBe(built[`${service}_digest`]);
      expect(await manifestDigest(service, 'latest')).toBe(built[`${service}_digest`]);
      expect(job.summary).toMatch(new RegExp(`^\\| ${service} \\| ${branch.slice(0, 12)} \\| \`${digest}\` \\| .* \\| pushed \\|$`, 'm'));
    }
  });

  it('deploy.yml deploys the commit built: the digests the build job output, healthy, summarized and notified', async () => {
    const job = onlyJob(await deploy({ action: 'deploy', tag: main, reason: 'first deploy from the workflow test' }));
    expect(job.result, job.steps.map((item) => item.stderr).join('\n')).toBe('success');
    expect(stepPath(job).slice(2)).toEqual([
      'npm ci --no-audit --no-fund not emulated success',
      'Image owner ran success',
      'Write .env.production from the secrets ran success',
      'Deploy ran success',
      'Report a failure before the deploy skipped skipped',
    ]);
    expect(step(job, 'Image owner').outputs).toEqual({ name: owner });
    const envFile = path.join(job.workspace!, '.env.production');
    expect(statSync(envFile).mode & 0o777).toBe(0o600);
    // Only the names set by the workflow and its variables: the file holds the database password too.
    const written = readFileSync(envFile, 'utf8').split('\n').filter((line) => /^(REGISTRY|IMAGE_OWNER|IMAGE_TAG|BOT_MODE|API_PORT)=/.test(line));
    expect(written.sort()).toEqual([`API_PORT=${apiPort}`, 'BOT_MODE=offline', `IMAGE_OWNER=${owner}`, `IMAGE_TAG=${main}`, `REGISTRY=${registry.address}`]);

    firstRelease = currentRelease();
    expect(firstRelease).toMatch(new RegExp(`-${main.slice(0, 12)}$`));
    expect(releaseImages(firstRelease)).toEqual(imagesOf(built));
    expect(await apiHealth()).toMatchObject({ status: 200, body: { database: 'ok' } });
    expect(job.summary).toContain(`### deploy: deployed\n\nrelease \`${firstRelease}\`, previous \`-\``);
    for (const service of SERVICES) expect(job.summary).toContain(`| ${service} | \`${built[`${service}_image`]}\` | new |`);
    expect(notified()).toBe(`deploy of ${where()}: deployed ${firstRelease} ${by()}`);
  });

  it('deploy.yml action=rollback goes back to the release before, skipping the .env step', async () => {
    // A second release to go back from: the branch's build.
    const second = onlyJob(await deploy({ action: 'deploy', tag: branch, reason: 'the branch build' }));
    expect(second.result, second.steps.map((item) => item.stderr).join('\n')).toBe('success');
    const secondRelease = currentRelease();
    expect(secondRelease).not.toBe(firstRelease);
    // The release records the commit its images were built from (their label), not the one the workflow ran on.
    expect(secondRelease).toMatch(new RegExp(`-${branch.slice(0, 12)}$`));
    const frontend = `${registry.address}/${owner}/aidd-frontend@${await manifestDigest('frontend', branch)}`;
    // The api and bot images of the branch differ from main's only in their labels: their containers stay.
    expect(releaseImages(secondRelease)).toEqual({ ...imagesOf(built), frontend });
    expect(second.summary).toContain(`| api | \`${built.api_image}\` | kept (content unchanged) |`);
    expect(second.summary).toContain(`| frontend | \`${frontend}\` | new |`);
    expect(notified()).toBe(`deploy of ${where()}: deployed ${secondRelease} ${by()}`);

    const job = onlyJob(await deploy({ action: 'rollback', reason: 'back to main' }));
    expect(job.result, job.steps.map((item) => item.stderr).join('\n')).toBe('success');
    expect(stepPath(job).slice(3)).toEqual([
      'Image owner ran success',
      'Write .env.production from the secrets skipped skipped',
      'Roll back ran success',
      'Report a failure before the deploy skipped skipped',
    ]);
    expect(currentRelease()).toBe(firstRelease);
    expect(await apiHealth()).toMatchObject({ status: 200, body: { database: 'ok' } });
    expect(job.summary).toContain(`### rollback: deployed\n\nrelease \`${firstRelease}\`, previous \`${secondRelease}\``);
    expect(notified()).toMatch(new RegExp(`^rollback of ${where()}: rolled back to ${firstRelease}\\b.* \\(by ${registry.user} \\(GitHub Actions\\)\\)$`));
  });

  it('deploy.yml fails, changing nothing, while another run holds the deploy lock', async () => {
    // The lock as the toolkit takes it: the same lock script over SSH, held until released.
    const { target, cleanup } = resolveSshTarget({ host: server.host, user: server.user, port: String(server.port), key: server.keyFile, 'known-hosts': server.knownHostsFile, path: deployPath });
    const session: Session = { runner, logger: createLogger({ prefix: 'e2e', quiet: true }), ssh: target, layout: { deployPath, project } };
    try {
      await openSession(session);
      await takeLock(session, 'held by the workflow test');
      const job = onlyJob(await deploy({ action: 'deploy', tag: branch, reason: 'while locked' }));
      expect(job.result).toBe('failure');
      expect(stepPath(job).slice(-2)).toEqual(['Deploy ran failure', 'Report a failure before the deploy skipped skipped']);
      const deployStep = step(job, 'Deploy');
      expect(deployStep.exitCode).toBe(3);
      expect(deployStep.stderr).toMatch(/^::error title=ssh-deploy::deploy lock is held by .+ since \S+ \(held by the workflow test\)/m);
      expect(job.summary).toMatch(/^### deploy: failed\n[\s\S]*^\*\*deploy lock is held by .+ since \S+ \(held by the workflow test\); wait for it/m);
      expect(notified()).toMatch(new RegExp(`^deploy of ${where()}: FAILED: deploy lock is held by .+ since \\S+ \\(held by the workflow test\\)`));
      expect(currentRelease()).toBe(firstRelease);
    } finally {
      await releaseLock(session);
      await closeSession(session);
      cleanup();
    }
  });

  it('deploy.yml fails in the migration: the backup is named, the release before keeps serving', async () => {
    // One tag for all three services, as the workflow deploys: the api's migration raises, the rest as built.
    mkdirSync(dockerConfig, { recursive: true });
    await runner.run({ ...loginCommand(registry.address, registry.user, registry.password), env: { DOCKER_CONFIG: dockerConfig } });
    // A build context of its own: the scratch folder holds the runners' checkouts, node_modules included.
    const context = path.join(scratch, 'broken-migration');
    mkdirSync(context, { recursive: true });
    writeFileSync(path.join(context, '0003_fails.py'), ['revision = "0003"', 'down_revision = "0002"', 'def upgrade():', '    raise RuntimeError("migration 0003 fails on purpose")', ''].join('\n'));
    for (const service of SERVICES) {
      const extra = service === 'api' ? 'COPY 0003_fails.py /app/migrations/versions/0003_fails.py\n' : '';
      await pushVariant(runner, dockerConfig, `FROM ${built[`${service}_image`]}\n${extra}`, `${registry.address}/${owner}/aidd-${service}:broken-migration`, context);
    }
    const job = onlyJob(await deploy({ action: 'deploy', tag: 'broken-migration', reason: 'a migration that fails' }));
    expect(job.result).toBe('failure');
    expect(stepPath(job).slice(-2)).toEqual(['Deploy ran failure', 'Report a failure before the deploy skipped skipped']);
    expect(step(job, 'Deploy').exitCode).toBe(1);
    expect(job.summary).toMatch(/^### deploy: failed\n/);
    expect(job.summary).toMatch(/^\*\*.*migration failed.*\*\* \(step: migrate\)$/m);
    expect(job.summary).toMatch(/^Database backup taken before the migration: `backups\/\S+\.dump` on the server$/m);
    expect(notified()).toMatch(new RegExp(`^deploy of ${where()}: FAILED: .*migration failed`));
    expect(currentRelease()).toBe(firstRelease);
    expect(await apiHealth()).toMatchObject({ status: 200, body: { database: 'ok' } });
  });

  it('deploy.yml without a required secret fails writing the .env and reports it without touching the server', async () => {
    const withoutPassword = Object.fromEntries(Object.entries(secrets).filter(([name]) => name !== 'POSTGRES_PASSWORD'));
    const before = snapshot(deployDir());
    const connections = handshakes(server.logFile);
    const job = onlyJob(await deploy({ action: 'deploy', tag: main }, { secrets: withoutPassword }));
    expect(job.result).toBe('failure');
    expect(stepPath(job).slice(3)).toEqual([
      'Image owner ran success',
      'Write .env.production from the secrets ran failure',
      'Deploy skipped skipped',
      'Report a failure before the deploy ran failure',
    ]);
    expect(step(job, 'Write .env.production from the secrets').stderr).toMatch(/^setup-env: error: .*POSTGRES_PASSWORD/m);
    expect(step(job, 'Report a failure before the deploy').env.WHAT).toBe('writing .env.production from the secrets failed');
    expect(job.summary).toMatch(/^### deploy: failed\n[\s\S]*^\*\*failed before the deploy started: writing \.env\.production from the secrets failed\*\*$/m);
    expect(notified()).toBe(`deploy of ${where()}: FAILED before the deploy started: writing .env.production from the secrets failed ${by()}`);
    expect(handshakes(server.logFile)).toBe(connections);
    expect(snapshot(deployDir())).toEqual(before);
  });

  it('ran every run: step of both workflows, and saw each one that has an if: skipped by it too', () => {
    for (const file of ['build.yml', 'deploy.yml']) {
      const jobs = loadWorkflow(path.join(WORKFLOW_DIR, file)).jobs;
      for (const key of runStepKeys(path.join(WORKFLOW_DIR, file))) {
        const [jobId, index] = key.split('#');
        const spec = jobs[jobId!]!.steps[Number(index)]!;
        const statuses = [...(seen.get(`${file}:${key}`) ?? [])].sort();
        // npm ci is the one run: step the runner does not run (node_modules is the toolkit's own).
        if (/^npm ci\b/.test(spec.run!)) {
          expect(statuses, `${file} ${key}`).toEqual(['not emulated']);
          continue;
        }
        expect(statuses, `${file} ${key} ${spec.name ?? spec.run}`).toContain('ran');
        if (spec.if !== undefined) expect(statuses, `${file} ${key} ${spec.name}`).toContain('skipped');
      }
    }
  });

  it('no secret shows in any step output, job summary or notification', () => {
    // HOST and USER are secrets by the workflow's naming only: every notification names where it deployed.
    const values: Record<string, string> = {
      GITHUB_TOKEN: secrets.GITHUB_TOKEN!,
      POSTGRES_PASSWORD: secrets.POSTGRES_PASSWORD!,
      NOTIFY_TELEGRAM_TOKEN: secrets.NOTIFY_TELEGRAM_TOKEN!,
      'the secret part of NOTIFY_WEBHOOK_URL': secrets.NOTIFY_WEBHOOK_URL!.split('/').at(-1)!,
      'a line of SSH_KEY': secrets.SSH_KEY!.split('\n')[1]!,
    };
    expect(transcript.length).toBeGreaterThan(50);
    // Counted, not shown: a failure must not print the secret it found.
    for (const [name, value] of Object.entries(values)) expect(transcript.filter((text) => text.includes(value)).length, name).toBe(0);
  });
});
