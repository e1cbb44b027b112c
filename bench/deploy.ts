// Benchmarks scripts/ssh-deploy.ts against a naive baseline that runs the D2 manual steps as separate
// ssh/scp commands (mkdir, scp compose, scp .env, docker login, pull, migrate, up, health loop). Both
// deploy the same images to the same loopback sshd as the same user: a first deploy, then a redeploy of
// a new build of every service while bounded request loops hit the api and the frontend on 127.0.0.1
// (through the reverse proxy for ssh-deploy; straight to the containers that `up -d` recreates for the
// manual steps); then, for ssh-deploy, a no-op deploy and a deploy where only the frontend changed.
// Printed per run: wall time, time inside docker commands (timed on the server by docker/docker-compose
// shims put first on the session PATH), the rest as overhead, SSH handshakes from the sshd log, the
// containers that were replaced (by id and start time), and failed requests.
import { chmodSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { EXIT, runScript, ToolError, type ScriptSpec } from '../lib/core/cli.ts';
import { Runner, type Command } from '../lib/core/exec.ts';
import { createLogger, formatTable, printJson } from '../lib/core/log.ts';
import { freePort } from '../lib/core/net.ts';
import { ensureDockerEngine, startRegistry, startSshServer, type SshServer } from '../lib/sandbox/sandbox.ts';
import { DEFAULT_COMPOSE_FILE, DEFAULT_REGISTRY_COMPOSE_FILE, SANDBOX_DIR, scriptArgv } from '../lib/app/target.ts';
import { containerStarts, removeProject, requestLoop, tempDir, uniqueName } from '../test/e2e/harness.ts';
import { resolveProxyImage } from '../lib/build/proxy-image.ts';
import { resolveBaseImages } from '../lib/build/base-images.ts';
import { loadComposeApp } from '../lib/app/compose.ts';
import { builtServices } from '../lib/app/images.ts';
import { pushBenchImages } from './reference-images.ts';

const spec: ScriptSpec = {
  name: 'bench-deploy',
  summary:
    'Time ssh-deploy against the D2 manual steps run as separate ssh/scp commands, on a loopback sshd:\n' +
    'wall time, docker time, overhead, SSH handshakes, and failed api requests during a redeploy.',
  options: {
    requests: { type: 'string', value: 'N', help: 'Upper bound of requests per loop and redeploy (default 5000; one loop on the api, one on the frontend).' },
    json: { type: 'boolean', help: 'Print the figures as JSON on stdout.' },
  },
  examples: ['npm run bench:deploy'],
};

interface Figures {
  method: string;
  run: string;
  wallSeconds: number;
  dockerSeconds: number;
  handshakes: number;
  /** Services whose container was replaced. */
  restarted: string[];
  requests?: number;
  failedRequests?: number;
  /** What the failed requests got: a status code or an error code, with counts. */
  failures?: Record<string, number>;
  /** ssh-deploy's own step timings (its --json report). */
  steps?: { step: string; ms: number }[];
}


/** docker and docker-compose shims that log each call's start and end (ns), then behave as the real ones. */
function installShims(dir: string, log: string): void {
  for (const tool of ['docker', 'docker-compose']) {
    const file = path.join(dir, tool);
    writeFileSync(
      file,
      `#!/bin/sh\nPATH=$(echo "$PATH" | sed "s#${dir}:##")\nstart=$(date +%s%N)\n${tool} "$@"\nrc=$?\necho "$start $(date +%s%N)" >> ${log}\nexit $rc\n`,
    );
    chmodSync(file, 0o755);
  }
  writeFileSync(log, '');
  chmodSync(log, 0o666);
}

/** Wall time during which at least one docker command ran: calls that overlap count once. */
function dockerSeconds(log: string): number {
  const spans = readFileSync(log, 'utf8').split('\n').filter(Boolean).map((line) => line.split(' ').map(Number) as [number, number]).sort((a, b) => a[0] - b[0]);
  let total = 0;
  let end = -Infinity;
  for (const [start, stop] of spans) {
    if (stop <= end) continue;
    total += stop - Math.max(start, end);
    end = stop;
  }
  return total / 1e9;
}

function handshakes(server: SshServer): number {
  return (readFileSync(server.logFile, 'utf8').match(/Accepted publickey/g) ?? []).length;
}

await runScript(spec, async (values) => {
  const json = values.json === true;
  const logger = createLogger({ prefix: spec.name, quiet: json });
  const runner = new Runner({ logger });
  const limit = Number(values.requests ?? 5000);
  await ensureDockerEngine(runner, SANDBOX_DIR);

  const work = tempDir('aidd-bench-deploy');
  chmodSync(work, 0o755);
  const shimDir = path.join(work, 'shims');
  const dockerLog = path.join(work, 'docker-ns.log');
  mkdirSync(shimDir, { mode: 0o755 });
  installShims(shimDir, dockerLog);
  const registry = await startRegistry(runner, path.join(work, 'registry'));
  const server = await startSshServer(runner, path.join(work, 'sshd'), 'aidd-deploy', [`SetEnv PATH=${shimDir}:/usr/local/bin:/usr/bin:/bin`]);
  const owner = uniqueName('bench');
  const dockerConfig = path.join(work, 'docker-config');
  const proxyImage = await resolveProxyImage(runner, logger);
  const tokenEnv = { REGISTRY_USER: registry.user, REGISTRY_TOKEN: registry.password.reveal(), DOCKER_CONFIG: dockerConfig, CI: 'true', AIDD_PROXY_IMAGE: proxyImage };
  const figures: Figures[] = [];
  const projects: string[] = [];

  try {
    logger.step('Building and pushing the reference images (tags bench-v1, bench-v2: every service changed, bench-v3: only the frontend)');
    await pushBenchImages(runner, registry, owner, tokenEnv, work);
    const baseImages = await resolveBaseImages(await loadComposeApp(DEFAULT_COMPOSE_FILE), runner, logger);
    const registryApp = await loadComposeApp(DEFAULT_REGISTRY_COMPOSE_FILE);

    const sshFlags = (name: string) => ['--host', server.host, '--port', String(server.port), '--user', server.user, '--key', server.keyFile, '--known-hosts', server.knownHostsFile, '--path', `~/bench/${name}`, '--project', name];
    const sshBase = ['-p', String(server.port), '-i', server.keyFile, '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=yes', '-o', `UserKnownHostsFile=${server.knownHostsFile}`];
    const ssh = (command: string, input?: string): Command => ({ argv: ['ssh', ...sshBase, `${server.user}@${server.host}`, command], input, timeoutMs: 900_000 });
    const scp = (from: string, to: string): Command => ({ argv: ['scp', '-q', '-P', String(server.port), '-i', server.keyFile, '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=yes', '-o', `UserKnownHostsFile=${server.knownHostsFile}`, from, `${server.user}@${server.host}:${to}`], timeoutMs: 120_000 });

    const envFile = (name: string, tag: string, ports: { api: number; frontend: number }) => {
      const file = path.join(work, `${name}-${tag}.env`);
      const lines = [
        'POSTGRES_USER=aidd', `POSTGRES_PASSWORD=Bench-${owner}-password`, 'POSTGRES_DB=aidd', 'BOT_MODE=offline',
        `API_PORT=${ports.api}`, `FRONTEND_PORT=${ports.frontend}`, `COMPOSE_PROJECT_NAME=${name}`,
        `REGISTRY=${registry.address}`, `IMAGE_OWNER=${owner}`, `IMAGE_TAG=${tag}`,
        ...Object.entries(baseImages).filter(([variable]) => variable === 'POSTGRES_IMAGE').map(([variable, value]) => `${variable}=${value}`),
      ];
      writeFileSync(file, `${lines.join('\n')}\n`, { mode: 0o600 });
      return file;
    };

    const methods: Record<string, (name: string, tag: string, env: string) => Promise<{ step: string; ms: number }[] | undefined>> = {
      'ssh-deploy': async (name, tag, env) => {
        const result = await runner.attempt({ argv: scriptArgv('ssh-deploy', [...sshFlags(name), '--registry', registry.address, '--owner', owner, '--tag', tag, '--server-env', env, '--json']), env: tokenEnv, timeoutMs: 1_800_000 });
        if (result.exitCode !== 0) throw new ToolError(`ssh-deploy failed: ${result.stderr.trim().split('\n').at(-1)}`);
        return (JSON.parse(result.stdout) as { steps: { step: string; ms: number }[] }).steps;
      },
      'manual D2 steps': async (name, _tag, env) => {
        const dir = `bench/${name}`;
        await runner.run(ssh(`mkdir -p ${dir}`));
        await runner.run(scp(DEFAULT_REGISTRY_COMPOSE_FILE, `${dir}/docker-compose.yml`));
        await runner.run(scp(env, `${dir}/.env`));
        await runner.run(ssh(`docker login ${registry.address} --username ${registry.user} --password-stdin`, registry.password.reveal()));
        // Only the app images: the database image is local on this offline machine.
        await runner.run(ssh(`cd ${dir} && docker-compose pull --quiet ${builtServices(registryApp, { registry: registry.address, owner }).map((service) => service.name).join(' ')}`));
        await runner.run(ssh(`cd ${dir} && docker-compose run --rm -T api migrate && docker-compose up -d`));
        await runner.run(ssh(`cd ${dir} && for i in $(seq 1 180); do [ -z "$(docker-compose ps | grep -E 'starting|unhealthy')" ] && exit 0; sleep 1; done; exit 1`));
        return undefined;
      },
    };

    const runs: Record<string, [string, string, boolean][]> = {
      'ssh-deploy': [
        ['first deploy', 'bench-v1', false],
        ['redeploy, every service changed', 'bench-v2', true],
        ['no-op deploy, same images', 'bench-v2', false],
        ['redeploy, only the frontend changed', 'bench-v3', true],
      ],
      'manual D2 steps': [
        ['first deploy', 'bench-v1', false],
        ['redeploy, every service changed', 'bench-v2', true],
      ],
    };
    for (const [method, deploy] of Object.entries(methods)) {
      const name = `${owner}-${method === 'ssh-deploy' ? 'toolkit' : 'manual'}`;
      projects.push(name);
      const ports = { api: await freePort(), frontend: await freePort() };
      for (const [run, tag, loaded] of runs[method]!) {
        const file = envFile(name, tag, ports);
        logger.step(`${method}: ${run}`);
        writeFileSync(dockerLog, '');
        const handshakesBefore = handshakes(server);
        const before = await containerStarts(runner, name);
        const started = Date.now();
        const done = deploy(name, tag, file);
        const loops = loaded
          ? [requestLoop([`http://127.0.0.1:${ports.api}/health`], done, limit, { intervalMs: 5 }), requestLoop([`http://127.0.0.1:${ports.frontend}/`], done, limit, { intervalMs: 5 })]
          : [];
        const steps = await done;
        const wallSeconds = (Date.now() - started) / 1000;
        const counted = await Promise.all(loops);
        const after = await containerStarts(runner, name);
        figures.push({
          method,
          run,
          wallSeconds,
          dockerSeconds: dockerSeconds(dockerLog),
          handshakes: handshakes(server) - handshakesBefore,
          steps,
          restarted: Object.keys(before).filter((service) => after[service] !== before[service]).sort(),
          requests: loaded ? counted.reduce((sum, loop) => sum + loop.requests, 0) : undefined,
          failedRequests: loaded ? counted.reduce((sum, loop) => sum + loop.failed, 0) : undefined,
          failures: loaded ? Object.assign({}, ...counted.map((loop, index) => Object.fromEntries(Object.entries(loop.failures).map(([why, count]) => [`${index ? 'frontend' : 'api'} ${why}`, count])))) : undefined,
        });
      }
    }
  } finally {
    for (const project of projects) await removeProject(runner, project, { volumes: true });
    await runner.attempt({ argv: ['rm', '-rf', path.join(server.home, 'bench')] });
    server.stop();
    registry.stop();
    rmSync(work, { recursive: true, force: true });
  }

  if (json) {
    printJson({ figures });
    return EXIT.ok;
  }
  const rows = figures.map((figure) => [
    figure.method,
    figure.run,
    figure.wallSeconds.toFixed(1),
    figure.dockerSeconds.toFixed(1),
    (figure.wallSeconds - figure.dockerSeconds).toFixed(1),
    String(figure.handshakes),
    figure.restarted.length ? figure.restarted.join(',') : 'none',
    figure.requests === undefined ? '-' : `${figure.failedRequests}/${figure.requests}${figure.failedRequests ? ` (${Object.entries(figure.failures ?? {}).map(([why, count]) => `${why}: ${count}`).join(', ')})` : ''}`,
  ]);
  process.stdout.write(`${formatTable(['method', 'run', 'wall s', 'docker s', 'overhead s', 'ssh handshakes', 'replaced containers', 'failed requests'], rows)}\n`);
  for (const figure of figures.filter((item) => item.steps)) {
    process.stdout.write(`${figure.method}, ${figure.run}: ${figure.steps!.map((step) => `${step.step} ${(step.ms / 1000).toFixed(1)}`).join(', ')} s\n`);
  }
  process.stdout.write(
    'docker s: time during which a docker or docker-compose command ran on the server; overhead s: the rest. ssh-deploy\n' +
      'also backs up the database, runs migrations as a one-off container, smoke-tests through the proxy and\n' +
      'records an audit line; the manual steps do none of that. Replaced containers: their id or start time\n' +
      'changed. Requests: GET api /health and frontend / in two loops, each request 5 ms after the last answer.\n',
  );
  return EXIT.ok;
});
