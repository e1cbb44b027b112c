// Deploys to a Docker Swarm (target: swarm) on the swarm sandbox: three engines in network namespaces,
// the manager reached over SSH with strict host keys, images from the suite's registry with a real
// docker login. Hello Compose, changed as a team would for a swarm (web published on every address,
// two replicas, a variable from the uploaded .env), goes through build-push and ssh-deploy: a first
// deploy, a rolling update under a bounded request loop, a release whose health fails and which swarm
// rolls back by itself, --rollback, --status and --history.
//
// The kernel here has no IP_VS (lib/sandbox/swarm-cluster.ts), so the app publishes in host mode with
// dnsrr; the request loop goes through the sandbox's forward, which connects each request to a node
// that accepts on the port, as a load balancer in front of the nodes would. The routing mesh is not tested.
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT } from '../../lib/core/cli.ts';
import { startRegistry, type Registry } from '../../lib/sandbox/sandbox.ts';
import { startSwarmCluster, type SwarmCluster } from '../../lib/sandbox/swarm-cluster.ts';
import { aiddArgv, DEFAULT_COMPOSE_FILE, REPO_ROOT, scriptArgv } from '../../lib/app/target.ts';
import { loadComposeApp } from '../../lib/app/compose.ts';
import { resolveBaseImages } from '../../lib/build/base-images.ts';
import { createLogger } from '../../lib/core/log.ts';
import { buildPushEnv, committedCopy, committedStackCopy, SANDBOX_DIR, sandboxSshArgs, tempDir, testRunner, uniqueName, type AppCopy } from './harness.ts';

const runner = testRunner();
const owner = uniqueName('swarm');
const scratch = tempDir('aidd-swarm-deploy-e2e');
const dockerConfig = path.join(scratch, 'docker-config');
const HELLO_SOURCE = path.join(REPO_ROOT, 'examples', 'hello-compose');
/** web's published port on each node that runs one of its tasks. */
const WEB_PORT = 8480;
/** A value only the uploaded .env holds: it must reach the service and never an output or the stack file. */
const GREETING = `greeting-${owner}-7731`;
/** AIDD Bot's database password, in its uploaded .env only. */
const postgresPassword = `pw-${owner}-7732`;
const transcript: string[] = [];

let registry: Registry;
let cluster: SwarmCluster;
let app: AppCopy;
let webPort: number;
let envFile: string;
const built: Record<string, string> = {};

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

interface Report {
  ok: boolean;
  result: string;
  release: string;
  previous?: string;
  images: Record<string, string>;
  error?: string;
  steps: { step: string; ms: number }[];
}

/** Polls `check` every 500 ms until it returns a value, at most `timeoutMs`. */
async function until<T>(what: string, check: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const value = await check();
    if (value !== undefined) return value;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  throw new Error(`${what}: not within ${timeoutMs / 1000}s`);
}

function editFile(file: string, change: (text: string) => string): void {
  writeFileSync(file, change(readFileSync(file, 'utf8')));
}

async function runTool(script: string, args: string[]): Promise<Run> {
  return run(scriptArgv(script, args));
}

async function run(argv: string[]): Promise<Run> {
  const result = await runner.attempt({ argv, env: { ...buildPushEnv(registry, owner, dockerConfig), CI: 'true' }, timeoutMs: 600_000 });
  transcript.push(result.stdout, result.stderr);
  return { code: result.exitCode, stdout: result.stdout, stderr: result.stderr };
}

function sshArgs(): string[] {
  return sandboxSshArgs(cluster.ssh!, owner);
}

async function deployRelease(name: string, args: string[] = []): Promise<{ run: Run; report: Report }> {
  const build = await runTool('build-push', ['--compose', app.compose, '--registry', registry.address, '--owner', owner, '--json']);
  expect(build.code, build.stderr).toBe(0);
  built[name] = path.join(scratch, `${name}.json`);
  writeFileSync(built[name]!, build.stdout);
  const run = await runTool('ssh-deploy', ['--compose', app.compose, ...sshArgs(), '--registry', registry.address, '--images-from', built[name]!, '--timeout', '90', '--json', ...args]);
  return { run, report: JSON.parse(run.stdout) as Report };
}

async function commitPage(text: string): Promise<void> {
  editFile(path.join(app.dir, 'www', 'index.html'), (html) => html.replace(/<p class="release">.*<\/p>\n|<\/body>/, (match) => `<p class="release">${text}</p>\n${match.startsWith('<p') ? '' : match}`));
  await runner.run(app.git(['commit', '--quiet', '--all', '--message', text]));
}

/** One GET on a fresh connection through the forward (a node per connection): the body, or why it failed. */
function get(port = webPort, pathname = '/'): Promise<{ ok: boolean; body: string }> {
  return new Promise((resolve) => {
    const request = http.get({ host: '127.0.0.1', port, path: pathname, agent: false, timeout: 3_000 }, (response) => {
      let body = '';
      response.on('data', (chunk: Buffer) => (body += chunk.toString()));
      response.on('end', () => resolve({ ok: response.statusCode === 200, body: response.statusCode === 200 ? body : `HTTP ${response.statusCode}` }));
    });
    request.on('timeout', () => request.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })));
    request.on('error', (error: NodeJS.ErrnoException) => resolve({ ok: false, body: `error ${error.code ?? error.message}` }));
  });
}

/** Requests one after another until `done` settles (at most `limit`): how many failed, and which releases answered. */
async function loadDuring(done: Promise<unknown>, limit: number, port = webPort, pathname = '/'): Promise<{ requests: number; failures: string[]; releases: Set<string> }> {
  let settled = false;
  void done.finally(() => (settled = true)).catch(() => undefined);
  const outcome = { requests: 0, failures: [] as string[], releases: new Set<string>() };
  while (!settled && outcome.requests < limit) {
    outcome.requests += 1;
    const answer = await get(port, pathname);
    if (!answer.ok) outcome.failures.push(answer.body);
    else outcome.releases.add(/<p class="release">(.*)<\/p>/.exec(answer.body)?.[1] ?? 'none');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return outcome;
}

async function managerDocker(args: string[]): Promise<string> {
  return (await runner.run(cluster.docker(cluster.manager, args))).stdout.trim();
}

/** Nodes of the running tasks of a service. */
async function taskNodes(service: string, stack = owner): Promise<string[]> {
  const lines = await managerDocker(['service', 'ps', `${stack}_${service}`, '--filter', 'desired-state=running', '--format', '{{.Node}} {{.CurrentState}}']);
  return lines.split('\n').filter((line) => / Running /.test(line)).map((line) => line.split(' ')[0]!).sort();
}

/** The Swarm secrets the deploys made. */
async function greetingSecrets(): Promise<string[]> {
  return (await managerDocker(['secret', 'ls', '--filter', 'label=com.aidd-devops.secret', '--format', '{{.Name}}'])).split('\n').filter(Boolean);
}

/** /run/secrets/greeting as a web task reads it, on a node running one. */
async function secretInWebTask(): Promise<string> {
  const [first] = await taskNodes('web');
  const node = cluster.nodes.find((candidate) => candidate.name === first)!;
  const id = (await runner.run(cluster.docker(node, ['ps', '--quiet', '--filter', `label=com.docker.swarm.service.name=${owner}_web`]))).stdout.split('\n')[0]!;
  return (await runner.run(cluster.docker(node, ['exec', id, 'cat', '/run/secrets/greeting']))).stdout;
}

function deployDir(): string {
  return path.join(cluster.ssh!.home, 'apps', owner);
}

beforeAll(async () => {
  registry = await startRegistry(runner, path.join(SANDBOX_DIR, 'registry'));
  cluster = await startSwarmCluster(runner, { dispatcherHeartbeat: '1s', ssh: { dir: path.join(SANDBOX_DIR, 'swarm-ssh') } });
  await cluster.linkRegistry(registry.port);
});

afterAll(async () => {
  await cluster?.stop();
  rmSync(scratch, { recursive: true, force: true });
});

describe('deploys an app to a Docker Swarm (target: swarm)', () => {
  beforeAll(async () => {
    webPort = await cluster.forward(WEB_PORT);
    app = await committedCopy(runner, HELLO_SOURCE, 'aidd-hello-swarm', {
      prepare: (dir) => {
        editFile(path.join(dir, 'docker-compose.yml'), (text) =>
          text
            // A swarm publishes on every address of its nodes; the firewall decides who reaches them.
            .replace('"127.0.0.1:8480:8080"', '"8480:8080"')
            .replace('interval: 3s', 'interval: 1s')
            .replace('    image: hello-web:dev\n', '    image: hello-web:dev\n    environment:\n      GREETING: ${GREETING:-hello}\n    secrets: [greeting]\n')
            .concat('\nsecrets:\n  greeting:\n    file: ./greeting.txt\n'),
        );
        // On a laptop the secret is this file; on the swarm, the value of GREETING in the uploaded .env.
        writeFileSync(path.join(dir, 'greeting.txt'), 'hello from a file\n');
        editFile(
          path.join(dir, 'aidd.yml'),
          (text) => `${text}\ntarget: swarm\nswarm:\n  replicas: {web: 2}\n  # This kernel has no IP_VS: no routing mesh, no virtual IPs.\n  publish: host\n  endpoint-mode: dnsrr\n  secrets: {greeting: GREETING}\n`,
        );
      },
    });
    envFile = path.join(scratch, '.env.production');
    writeFileSync(envFile, `GREETING=${GREETING}\n`, { mode: 0o600 });
  });

  it('deploys the first release as a stack: two web tasks on two nodes, pinned by digest, the .env values in the services only', async () => {
    await commitPage('one');
    const { run, report } = await deployRelease('one', ['--server-env', envFile]);
    expect(run.code, run.stderr).toBe(0);
    expect(report).toMatchObject({ ok: true, result: 'deployed' });
    expect(report.steps.map((step) => step.step)).toEqual(['connect', 'preflight', 'pull', 'lock', 'upload', 'switch', 'verify', 'finish']);
    expect((await taskNodes('web')).length).toBe(2);
    expect(new Set(await taskNodes('web')).size).toBe(2);
    expect(await taskNodes('worker')).toHaveLength(1);
    const image = await managerDocker(['service', 'inspect', `${owner}_web`, '--format', '{{.Spec.TaskTemplate.ContainerSpec.Image}}']);
    expect(image).toBe(report.images.web);
    expect(image).toMatch(new RegExp(`^${registry.address.replace(/\./g, '\\.')}/${owner}/hello-web@sha256:[0-9a-f]{64}$`));
    // The value is in the service's environment, written nowhere in the release's stack file, and in no output.
    expect(await managerDocker(['service', 'inspect', `${owner}_web`, '--format', '{{json .Spec.TaskTemplate.ContainerSpec.Env}}'])).toContain(`GREETING=${GREETING}`);
    const stack = readFileSync(path.join(deployDir(), 'current', 'docker-compose.yml'), 'utf8');
    expect(stack).toContain('${GREETING:-hello}');
    expect(stack).not.toContain(GREETING);
    // The compose file's secret is a Swarm secret made from the .env value, a file in the web tasks.
    expect(await greetingSecrets()).toHaveLength(1);
    expect(await secretInWebTask()).toBe(GREETING);
    expect((await get()).body).toContain('<p class="release">one</p>');
  });

  it('rolls a new release out with no failed request, one task at a time', async () => {
    await commitPage('two');
    const deploying = deployRelease('two');
    const load = await loadDuring(deploying, 3_000);
    const { run, report } = await deploying;
    expect(run.code, run.stderr).toBe(0);
    expect(report).toMatchObject({ ok: true, result: 'deployed', images: { worker: expect.any(String) } });
    expect(load.failures).toEqual([]);
    expect(load.requests).toBeGreaterThan(50);
    expect(load.releases).toContain('two');
    expect((await get()).body).toContain('<p class="release">two</p>');
    expect(await taskNodes('web')).toHaveLength(2);
    // The value did not change: the same Swarm secret, none made or left behind.
    expect(await greetingSecrets()).toHaveLength(1);
    expect(await secretInWebTask()).toBe(GREETING);
  });

  it('lets swarm roll back a release whose new tasks never turn healthy, with no failed request, and puts every service back', async () => {
    rmSync(path.join(app.dir, 'www', 'health.json'));
    await commitPage('broken');
    const deploying = deployRelease('broken');
    const load = await loadDuring(deploying, 3_000);
    const { run, report } = await deploying;
    expect(run.code, run.stderr).toBe(EXIT.rolledBack);
    expect(report).toMatchObject({ ok: false, result: 'rolled-back' });
    expect(report.error).toMatch(/swarm rolled back the update of .*web/);
    expect(load.failures).toEqual([]);
    // The broken release's page itself answers: while its first new task was starting, the forward (a
    // load balancer without health checks of its own) may have sent it requests. Now only two answers.
    expect((await get()).body).toContain('<p class="release">two</p>');
    expect(new Set(await Promise.all(Array.from({ length: 6 }, async () => /<p class="release">(.*)<\/p>/.exec((await get()).body)?.[1])))).toEqual(new Set(['two']));
    // The release that failed is gone from the server; `current` still names the one serving.
    expect(report.previous).toBeDefined();
    expect((JSON.parse(readFileSync(path.join(deployDir(), 'current', 'release.json'), 'utf8')) as { id: string }).id).toBe(report.previous);
    expect(existsSync(path.join(deployDir(), 'releases', report.release))).toBe(false);
  });

  it('goes back to the release before with --rollback, and says what runs where with --status and --history', async () => {
    const rollback = await runTool('ssh-deploy', ['--compose', app.compose, ...sshArgs(), '--rollback', '--json']);
    expect(rollback.code, rollback.stderr).toBe(0);
    expect(JSON.parse(rollback.stdout)).toMatchObject({ ok: true, action: 'rollback' });
    expect((await get()).body).toContain('<p class="release">one</p>');

    const status = await runTool('ssh-deploy', ['--compose', app.compose, ...sshArgs(), '--status', '--json']);
    expect(status.code, status.stderr).toBe(0);
    const state = JSON.parse(status.stdout) as { current: string; swarm: { service: string; running: number; desired: number; image: string; nodes: string[] }[] };
    const web = state.swarm.find((service) => service.service === 'web')!;
    expect(web).toMatchObject({ running: 2, desired: 2 });
    expect(web.nodes).toHaveLength(2);
    expect(web.image).toMatch(/@sha256:[0-9a-f]{64}$/);
    const text = await run(aiddArgv(['status', '--compose', app.compose, ...sshArgs()]));
    expect(text.stdout).toMatch(/^ {2}web +2\/2 +aidd-sw\S+-\d,aidd-sw\S+-\d +\S+@sha256:/m);

    // aidd logs: docker service logs on the manager, each line named by its task and node.
    const logs = await run(aiddArgv(['logs', '--compose', app.compose, ...sshArgs(), '--tail', '5', 'worker']));
    expect(logs.code, logs.stderr).toBe(0);
    expect(logs.stdout).toMatch(new RegExp(`^${owner}_worker\\.1\\.\\S+@aidd-sw\\S+\\s+\\| worker: started$`, 'm'));

    const history = await runTool('ssh-deploy', ['--compose', app.compose, ...sshArgs(), '--history', '--json']);
    const entries = (JSON.parse(history.stdout) as { action: string; result: string }[]).map((entry) => `${entry.action} ${entry.result}`);
    expect(entries).toEqual(['deploy deployed', 'deploy deployed', 'deploy rolled-back', 'rollback ok']);
  });

  it('ends, bounded, when a worker stops in the middle of the rolling update; only requests in flight to it fail, the worker service moves to the nodes left', async () => {
    await commitPage('three');
    const deploying = deployRelease('three', ['--timeout', '40']);
    const load = loadDuring(deploying, 5_000);
    // Once swarm updates web, a worker running one of its tasks stops (its engine killed: a crashed server).
    const stopped = await until('the update of web under way, a worker running one of its tasks', async () => {
      const state = await managerDocker(['service', 'inspect', `${owner}_web`, '--format', '{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}']);
      if (state !== 'updating') return undefined;
      const running = await taskNodes('web');
      return cluster.nodes.find((node) => node !== cluster.manager && running.includes(node.name));
    }, 120_000);
    cluster.killNode(stopped);
    try {
      const { run, report } = await deploying;
      // Only a request in flight to the stopped node can fail (its connection reset), as with a crashed server.
      const { failures, requests } = await load;
      expect(failures.length).toBeLessThanOrEqual(3);
      for (const failure of failures) expect(failure).toMatch(/^error (ECONNRESET|ECONNREFUSED|ETIMEDOUT)$/);
      expect(requests).toBeGreaterThan(20);
      // The lost task fails the update; with host-mode ports (this kernel) and two nodes left, swarm 20.10
      // may keep a replacement task pending ("host-mode port already in use"), so the run may end deployed,
      // rolled back, or failed with that service named. It ends within its deadlines, and says which.
      if (run.code === 0) expect(report.result).toBe('deployed');
      else expect(report.error).toMatch(/web/);
      expect([0, EXIT.rolledBack, EXIT.failed]).toContain(run.code);
      // The worker service (no published port) runs its task on a node left.
      await until(
        'the worker task on a node left',
        async () => {
          const running = await taskNodes('worker');
          return running.length === 1 && running[0] !== stopped.name ? running : undefined;
        },
        120_000,
      );
      // A web task still answers on the manager (the stopped engine's containers live on: a crashed engine, not a crashed server).
      expect((await get(await cluster.forward(WEB_PORT, [cluster.manager]))).ok).toBe(true);
    } finally {
      await cluster.startNode(stopped);
      await until(`${stopped.name} Ready again`, async () => ((await managerDocker(['node', 'inspect', stopped.name, '--format', '{{.Status.State}}'])) === 'ready' ? true : undefined), 60_000);
    }
  });
});

describe('deploys AIDD Bot to a Docker Swarm (--target swarm): PostgreSQL pinned to the manager, migrations as a one-off task', () => {
  const botOwner = uniqueName('swarm-bot');
  const API_PORT = 8000;
  let bot: AppCopy;
  let botEnv: string;
  let apiPort: number;

  function botArgs(): string[] {
    return ['--compose', path.join(bot.dir, 'docker-compose.registry.yml'), ...sandboxSshArgs(cluster.ssh!, botOwner), '--target', 'swarm', '--registry', registry.address, '--timeout', '150', '--json'];
  }

  /** build-push of the copy's current commit, then a deploy of exactly those images. */
  async function deployBot(args: string[] = []): Promise<{ run: Run; report: Report }> {
    const build = await runTool('build-push', ['--compose', bot.compose, '--registry', registry.address, '--owner', botOwner, '--json']);
    expect(build.code, build.stderr).toBe(0);
    const images = path.join(scratch, `bot-${await bot.sha()}.json`);
    writeFileSync(images, build.stdout);
    const run = await runTool('ssh-deploy', [...botArgs(), '--images-from', images, ...args]);
    return { run, report: JSON.parse(run.stdout) as Report };
  }

  async function psql(query: string): Promise<string> {
    const id = await managerDocker(['ps', '--quiet', '--filter', `label=com.docker.swarm.service.name=${botOwner}_postgres`]);
    expect(id).not.toBe('');
    return managerDocker(['exec', id, 'psql', '-U', 'aidd', '-d', 'aidd', '-tAc', query]);
  }

  async function apiHealth(): Promise<Record<string, unknown>> {
    const response = await fetch(`http://127.0.0.1:${apiPort}/health`, { signal: AbortSignal.timeout(5_000) });
    expect(response.status).toBe(200);
    return (await response.json()) as Record<string, unknown>;
  }

  beforeAll(async () => {
    bot = await committedStackCopy(runner, 'aidd-bot-swarm', {
      prepare: (dir) => editFile(path.join(dir, 'aidd.yml'), (text) => `${text}\nswarm:\n  replicas: {api: 2}\n  publish: host\n  endpoint-mode: dnsrr\n`),
    });
    // The offline PostgreSQL stand-in reaches the nodes through the registry, as any image does.
    const baseImages = await resolveBaseImages(await loadComposeApp(DEFAULT_COMPOSE_FILE), runner, createLogger({ prefix: 'e2e', quiet: true }));
    let postgresImage = '';
    if (baseImages.POSTGRES_IMAGE) {
      postgresImage = `${registry.address}/${botOwner}/postgres:offline`;
      await runner.run({ argv: ['docker', 'login', registry.address, '--username', registry.user, '--password-stdin'], input: registry.password.reveal(), env: { DOCKER_CONFIG: dockerConfig }, timeoutMs: 30_000 });
      await runner.run({ argv: ['docker', 'tag', baseImages.POSTGRES_IMAGE, postgresImage], timeoutMs: 30_000 });
      await runner.run({ argv: ['docker', 'push', postgresImage], env: { DOCKER_CONFIG: dockerConfig }, timeoutMs: 600_000 });
    }
    botEnv = path.join(scratch, 'bot.env.production');
    writeFileSync(
      botEnv,
      `POSTGRES_USER=aidd\nPOSTGRES_PASSWORD=${postgresPassword}\nPOSTGRES_DB=aidd\nBOT_MODE=offline\nBIND_ADDRESS=0.0.0.0\nAPI_PORT=${API_PORT}\nFRONTEND_PORT=3000\nREGISTRY=${registry.address}\nIMAGE_OWNER=${botOwner}\n${postgresImage ? `POSTGRES_IMAGE=${postgresImage}\n` : ''}`,
      { mode: 0o600 },
    );
    apiPort = await cluster.forward(API_PORT);
  });

  it('first deploy: the database started first on the manager, the migration run once, two api tasks on two nodes', async () => {
    const { run, report } = await deployBot(['--server-env', botEnv]);
    expect(run.code, run.stderr).toBe(0);
    expect(report).toMatchObject({ ok: true, result: 'deployed' });
    expect(report.steps.map((step) => step.step)).toEqual(['connect', 'preflight', 'pull', 'lock', 'upload', 'migrate', 'switch', 'verify', 'finish']);
    const api = await taskNodes('api', botOwner);
    expect(new Set(api).size).toBe(2);
    expect(await taskNodes('postgres', botOwner)).toEqual([cluster.manager.name]);
    expect(await apiHealth()).toMatchObject({ database: 'ok', migration: '0002' });
  });

  it('redeploys a new api build with no failed request: a backup first, the rows kept', async () => {
    await psql("INSERT INTO tg_users (id, username) VALUES (7733, 'before-swarm-redeploy') ON CONFLICT DO NOTHING");
    editFile(path.join(bot.dir, 'api', 'app', 'main.py'), (text) => `${text}\n# release two\n`);
    await runner.run(bot.git(['commit', '--quiet', '--all', '--message', 'api: release two']));
    const deploying = deployBot();
    const load = await loadDuring(deploying, 3_000, apiPort, '/health');
    const { run, report } = await deploying;
    expect(run.code, run.stderr).toBe(0);
    expect(report).toMatchObject({ ok: true, result: 'deployed', kept: expect.arrayContaining(['bot', 'frontend']) });
    expect(report.steps.map((step) => step.step)).toEqual(['connect', 'preflight', 'pull', 'lock', 'upload', 'backup', 'migrate', 'switch', 'verify', 'finish']);
    expect(load.failures).toEqual([]);
    expect(load.requests).toBeGreaterThan(50);
    expect(readFileSync(path.join(cluster.ssh!.home, 'apps', botOwner, 'backups', `${report.release}.dump`)).length).toBeGreaterThan(1000);
    expect(await psql('SELECT username FROM tg_users WHERE id = 7733')).toBe('before-swarm-redeploy');
    expect(await taskNodes('api', botOwner)).toHaveLength(2);
  });
});

it('never printed a value of an uploaded .env or the registry token', () => {
  const output = transcript.join('\n');
  expect(output).not.toContain(GREETING);
  expect(output).not.toContain('7732');
  expect(output).not.toContain(registry.password.reveal());
});
