// Benchmarks ssh-deploy to a Docker Swarm (target: swarm), the figure beside bench:deploy's single-server
// one: the reference stack with two api replicas on the three-node swarm sandbox (three engines in network
// namespaces, the manager behind a loopback sshd, images from a throwaway registry). The same runs as
// bench:deploy's ssh-deploy: a first deploy, a redeploy of a new build of every service while bounded
// request loops hit the api and the frontend, a no-op deploy, and a redeploy where only the frontend changed.
// The request loops go through a forward that connects each request to a node accepting on the port (a
// load balancer in front of the nodes): this kernel has no IP_VS, so the app publishes in host mode.
// Printed per run: wall time, ssh-deploy's steps, the services swarm updated, and failed requests.
import { cpSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { EXIT, runScript, ToolError, type ScriptSpec } from '../lib/core/cli.ts';
import { Runner } from '../lib/core/exec.ts';
import { createLogger, formatTable, printJson } from '../lib/core/log.ts';
import { ensureDockerEngine, startRegistry } from '../lib/sandbox/sandbox.ts';
import { startSwarmCluster } from '../lib/sandbox/swarm-cluster.ts';
import { DEFAULT_COMPOSE_FILE, DEFAULT_REGISTRY_COMPOSE_FILE, SANDBOX_DIR, scriptArgv } from '../lib/app/target.ts';
import { resolveBaseImages } from '../lib/build/base-images.ts';
import { loadComposeApp } from '../lib/app/compose.ts';
import { requestLoop, tempDir, uniqueName } from '../test/e2e/harness.ts';
import { pushBenchImages } from './reference-images.ts';

const spec: ScriptSpec = {
  name: 'bench-swarm',
  summary:
    'Time ssh-deploy to a three-node Docker Swarm (the reference stack, two api replicas): a first deploy,\n' +
    'rolling updates under request loops, a no-op deploy; wall time, steps and failed requests.',
  options: {
    requests: { type: 'string', value: 'N', help: 'Upper bound of requests per loop and redeploy (default 5000; one loop on the api, one on the frontend).' },
    json: { type: 'boolean', help: 'Print the figures as JSON on stdout.' },
  },
  examples: ['npm run bench:swarm'],
};

interface Figures {
  run: string;
  wallSeconds: number;
  steps: { step: string; ms: number }[];
  /** Services the deploy changed (the others kept their image, so swarm left them as they ran). */
  updated: string[];
  requests?: number;
  failedRequests?: number;
  failures?: Record<string, number>;
}

const API_PORT = 8000;
const FRONTEND_PORT = 3000;

await runScript(spec, async (values) => {
  const json = values.json === true;
  const logger = createLogger({ prefix: spec.name, quiet: json });
  const runner = new Runner({ logger });
  const limit = Number(values.requests ?? 5000);
  await ensureDockerEngine(runner, SANDBOX_DIR);

  const work = tempDir('aidd-bench-swarm');
  const owner = uniqueName('bench-swarm');
  const dockerConfig = path.join(work, 'docker-config');
  const registry = await startRegistry(runner, path.join(work, 'registry'));
  const tokenEnv = { REGISTRY_USER: registry.user, REGISTRY_TOKEN: registry.password.reveal(), DOCKER_CONFIG: dockerConfig, CI: 'true' };
  logger.step('Starting a swarm of three engines (one manager behind sshd, two workers)');
  const cluster = await startSwarmCluster(runner, { ssh: { dir: path.join(work, 'swarm-ssh') } });
  const figures: Figures[] = [];

  try {
    await cluster.linkRegistry(registry.port);
    logger.step('Building and pushing the reference images (tags bench-v1, bench-v2: every service changed, bench-v3: only the frontend)');
    await pushBenchImages(runner, registry, owner, tokenEnv, work);
    // The database image reaches the nodes through the registry too (offline machines build a stand-in).
    const baseImages = await resolveBaseImages(await loadComposeApp(DEFAULT_COMPOSE_FILE), runner, logger);
    const postgresImage = baseImages.POSTGRES_IMAGE ? `${registry.address}/${owner}/postgres:offline` : undefined;
    if (postgresImage) {
      await runner.run({ argv: ['docker', 'tag', baseImages.POSTGRES_IMAGE!, postgresImage], timeoutMs: 30_000 });
      await runner.run({ argv: ['docker', 'push', '--quiet', postgresImage], env: tokenEnv, timeoutMs: 600_000 });
    }
    // The registry compose file with aidd.yml's swarm settings for this machine: two api replicas, host-mode ports.
    const appDir = path.join(work, 'app');
    cpSync(path.dirname(DEFAULT_REGISTRY_COMPOSE_FILE), appDir, { recursive: true, filter: (file) => !file.includes('node_modules') });
    const settings = path.join(appDir, 'aidd.yml');
    writeFileSync(settings, `${readFileSync(settings, 'utf8')}\ntarget: swarm\nswarm:\n  replicas: {api: 2}\n  publish: host\n  endpoint-mode: dnsrr\n`);
    const envFile = path.join(work, '.env.production');
    const lines = [
      'POSTGRES_USER=aidd', `POSTGRES_PASSWORD=Bench-${owner}-password`, 'POSTGRES_DB=aidd', 'BOT_MODE=offline', 'BIND_ADDRESS=0.0.0.0',
      `API_PORT=${API_PORT}`, `FRONTEND_PORT=${FRONTEND_PORT}`, `REGISTRY=${registry.address}`, `IMAGE_OWNER=${owner}`,
      ...(postgresImage ? [`POSTGRES_IMAGE=${postgresImage}`] : []),
    ];
    writeFileSync(envFile, `${lines.join('\n')}\n`, { mode: 0o600 });
    const ssh = cluster.ssh!;
    const sshFlags = ['--host', ssh.host, '--port', String(ssh.port), '--user', ssh.user, '--key', ssh.keyFile, '--known-hosts', ssh.knownHostsFile, '--path', `~/bench/${owner}`, '--project', owner];
    const urls = { api: `http://127.0.0.1:${await cluster.forward(API_PORT)}/health`, frontend: `http://127.0.0.1:${await cluster.forward(FRONTEND_PORT)}/` };

    const runs: [string, string, boolean][] = [
      ['first deploy', 'bench-v1', false],
      ['redeploy, every service changed', 'bench-v2', true],
      ['no-op deploy, same images', 'bench-v2', false],
      ['redeploy, only the frontend changed', 'bench-v3', true],
    ];
    for (const [run, tag, loaded] of runs) {
      logger.step(`ssh-deploy to the swarm: ${run}`);
      const started = Date.now();
      const done = runner.attempt({
        argv: scriptArgv('ssh-deploy', ['--compose', path.join(appDir, path.basename(DEFAULT_REGISTRY_COMPOSE_FILE)), ...sshFlags, '--registry', registry.address, '--owner', owner, '--tag', tag, '--server-env', envFile, '--timeout', '300', '--json']),
        env: tokenEnv,
        timeoutMs: 1_800_000,
      });
      const loops = loaded ? [requestLoop([urls.api], done, limit, { intervalMs: 5 }), requestLoop([urls.frontend], done, limit, { intervalMs: 5 })] : [];
      const result = await done;
      const wallSeconds = (Date.now() - started) / 1000;
      const counted = await Promise.all(loops);
      if (result.exitCode !== 0) throw new ToolError(`ssh-deploy failed (${run}): ${result.stderr.trim().split('\n').at(-1)}`);
      const report = JSON.parse(result.stdout) as { steps: { step: string; ms: number }[]; images: Record<string, string>; kept?: string[]; result: string };
      figures.push({
        run,
        wallSeconds,
        steps: report.steps,
        updated: report.result === 'unchanged' ? [] : Object.keys(report.images).filter((service) => !(report.kept ?? []).includes(service)).sort(),
        requests: loaded ? counted.reduce((sum, loop) => sum + loop.requests, 0) : undefined,
        failedRequests: loaded ? counted.reduce((sum, loop) => sum + loop.failed, 0) : undefined,
        failures: loaded ? Object.assign({}, ...counted.map((loop, index) => Object.fromEntries(Object.entries(loop.failures).map(([why, count]) => [`${index ? 'frontend' : 'api'} ${why}`, count])))) : undefined,
      });
    }
  } finally {
    await cluster.stop();
    registry.stop();
    rmSync(work, { recursive: true, force: true });
  }

  if (json) {
    printJson({ figures });
    return EXIT.ok;
  }
  const rows = figures.map((figure) => [
    figure.run,
    figure.wallSeconds.toFixed(1),
    figure.updated.length ? figure.updated.join(',') : 'none',
    figure.requests === undefined ? '-' : `${figure.failedRequests}/${figure.requests}${figure.failedRequests ? ` (${Object.entries(figure.failures ?? {}).map(([why, count]) => `${why}: ${count}`).join(', ')})` : ''}`,
  ]);
  process.stdout.write(`${formatTable(['run', 'wall s', 'updated services', 'failed requests'], rows)}\n`);
  for (const figure of figures) process.stdout.write(`${figure.run}: ${figure.steps.map((step) => `${step.step} ${(step.ms / 1000).toFixed(1)}`).join(', ')} s\n`);
  process.stdout.write(
    'Two api replicas, one of every other service, on three nodes; swarm replaces tasks one at a time, the new\n' +
      'one first (the database stops first). Requests: GET api /health and frontend / in two loops, each request\n' +
      '5 ms after the last answer, through a forward to the nodes. Compare with npm run bench:deploy (one server).\n',
  );
  return EXIT.ok;
});
