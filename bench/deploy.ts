// Benchmarks scripts/ssh-deploy.ts against a naive baseline that runs the D2 manual steps as separate
// ssh/scp commands (mkdir, scp compose, scp .env, docker login, pull, up, health loop). Both deploy the
// same images to the same loopback sshd as the same user: a first deploy, then a redeploy of a new build
// while a bounded request loop hits the api. Printed per run: wall time, time inside docker commands
// (timed on the server by docker/docker-compose shims put first on the session PATH), the rest as
// overhead, SSH handshakes from the sshd log, and failed api requests during the redeploy.
import { chmodSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { EXIT, runScript, ToolError, type ScriptSpec } from '../lib/core/cli.ts';
import { Runner, type Command } from '../lib/core/exec.ts';
import { createLogger, formatTable, printJson } from '../lib/core/log.ts';
import { freePort } from '../lib/core/net.ts';
import { ensureDockerEngine, startRegistry, startSshServer, type SshServer } from '../lib/sandbox/sandbox.ts';
import { DEFAULT_COMPOSE_FILE, DEFAULT_REGISTRY_COMPOSE_FILE, SANDBOX_DIR, scriptArgv } from '../lib/app/target.ts';
import { tempDir, uniqueName } from '../test/e2e/harness.ts';
import { resolveBaseImages } from '../lib/build/base-images.ts';
import { loadComposeApp } from '../lib/app/compose.ts';
import { builtServices } from '../lib/app/images.ts';

const spec: ScriptSpec = {
  name: 'bench-deploy',
  summary:
    'Time ssh-deploy against the D2 manual steps run as separate ssh/scp commands, on a loopback sshd:\n' +
    'wall time, docker time, overhead, SSH handshakes, and failed api requests during a redeploy.',
  options: {
    requests: { type: 'string', value: 'N', help: 'Upper bound of api requests per redeploy (default 3000).' },
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
  requests?: number;
  failedRequests?: number;
}


/** docker and docker-compose shims that add each call's duration (ns) to a log, then behave as the real ones. */
function installShims(dir: string, log: string): void {
  for (const tool of ['docker', 'docker-compose']) {
    const file = path.join(dir, tool);
    writeFileSync(
      file,
      `#!/bin/sh\nPATH=$(echo "$PATH" | sed "s#${dir}:##")\nstart=$(date +%s%N)\n${tool} "$@"\nrc=$?\necho $(( $(date +%s%N) - start )) >> ${log}\nexit $rc\n`,
    );
    chmodSync(file, 0o755);
  }
  writeFileSync(log, '');
  chmodSync(log, 0o666);
}

function dockerSeconds(log: string): number {
  return readFileSync(log, 'utf8').split('\n').filter(Boolean).reduce((sum, ns) => sum + Number(ns), 0) / 1e9;
}

function handshakes(server: SshServer): number {
  return (readFileSync(server.logFile, 'utf8').match(/Accepted publickey/g) ?? []).length;
}

/** Hits the api until `done` settles, at most `limit` requests, 20 ms apart; counts failures. */
async function requestLoop(url: string, done: Promise<unknown>, limit: number): Promise<{ requests: number; failed: number }> {
  let settled = false;
  void done.finally(() => (settled = true));
  let requests = 0;
  let failed = 0;
  while (!settled && requests < limit) {
    requests += 1;
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(2000) });
      await response.arrayBuffer();
      if (response.status !== 200) failed += 1;
    } catch {
      failed += 1;
    }
    await sleep(20);
  }
  return { requests, failed };
}

await runScript(spec, async (values) => {
  const json = values.json === true;
  const logger = createLogger({ prefix: spec.name, quiet: json });
  const runner = new Runner({ logger });
  const limit = Number(values.requests ?? 3000);
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
  const tokenEnv = { REGISTRY_USER: registry.user, REGISTRY_TOKEN: registry.password.reveal(), DOCKER_CONFIG: dockerConfig, CI: 'true' };
  const figures: Figures[] = [];
  const projects: string[] = [];

  try {
    logger.step('Building and pushing the reference images (two tags: bench-v1, bench-v2)');
    const built = await runner.attempt({ argv: scriptArgv('build-push', ['--registry', registry.address, '--owner', owner, '--json']), env: tokenEnv, timeoutMs: 1_800_000 });
    if (built.exitCode !== 0) throw new ToolError(`build-push failed: ${built.stderr.trim().split('\n').at(-1)}`);
    for (const image of (JSON.parse(built.stdout) as { images: { repository: string; ref: string }[] }).images) {
      for (const [tag, label] of [['bench-v1', 'v1'], ['bench-v2', 'v2']]) {
        await runner.run({ argv: ['docker', 'build', '--quiet', '--tag', `${image.repository}:${tag}`, '--file', '-', work], input: `FROM ${image.ref}\nLABEL bench=${label}\n`, env: { DOCKER_CONFIG: dockerConfig }, timeoutMs: 300_000 });
        await runner.run({ argv: ['docker', 'push', '--quiet', `${image.repository}:${tag}`], env: { DOCKER_CONFIG: dockerConfig }, timeoutMs: 300_000 });
      }
    }
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

    const methods: Record<string, (name: string, tag: string, env: string) => Promise<void>> = {
      'ssh-deploy': async (name, tag, env) => {
        const result = await runner.attempt({ argv: scriptArgv('ssh-deploy', [...sshFlags(name), '--registry', registry.address, '--owner', owner, '--tag', tag, '--server-env', env]), env: tokenEnv, timeoutMs: 1_800_000 });
        if (result.exitCode !== 0) throw new ToolError(`ssh-deploy failed: ${result.stderr.trim().split('\n').at(-1)}`);
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
      },
    };

    for (const [method, deploy] of Object.entries(methods)) {
      const name = `${owner}-${method === 'ssh-deploy' ? 'toolkit' : 'manual'}`;
      projects.push(name);
      const ports = { api: await freePort(), frontend: await freePort() };
      for (const [run, tag] of [['first deploy', 'bench-v1'], ['redeploy, new build', 'bench-v2']] as const) {
        const file = envFile(name, tag, ports);
        logger.step(`${method}: ${run}`);
        writeFileSync(dockerLog, '');
        const handshakesBefore = handshakes(server);
        const started = Date.now();
        const done = deploy(name, tag, file);
        const loop = run === 'first deploy' ? undefined : requestLoop(`http://127.0.0.1:${ports.api}/health`, done, limit);
        await done;
        const wallSeconds = (Date.now() - started) / 1000;
        const counted = loop ? await loop : undefined;
        figures.push({ method, run, wallSeconds, dockerSeconds: dockerSeconds(dockerLog), handshakes: handshakes(server) - handshakesBefore, requests: counted?.requests, failedRequests: counted?.failed });
      }
    }
  } finally {
    for (const project of projects) {
      const label = `label=com.docker.compose.project=${project}`;
      for (const [kind, list] of [['container', ['ps', '--all']], ['volume', ['volume', 'ls']], ['network', ['network', 'ls']]] as const) {
        const ids = (await runner.attempt({ argv: ['docker', ...list, '--quiet', '--filter', label] })).stdout.split('\n').filter(Boolean);
        if (ids.length) await runner.attempt({ argv: ['docker', kind, 'rm', '--force', ...ids].filter((arg) => !(kind === 'network' && arg === '--force')), timeoutMs: 120_000 });
      }
    }
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
    figure.requests === undefined ? '-' : `${figure.failedRequests}/${figure.requests}`,
  ]);
  process.stdout.write(`${formatTable(['method', 'run', 'wall s', 'docker s', 'overhead s', 'ssh handshakes', 'failed api requests'], rows)}\n`);
  process.stdout.write(
    'docker s: time inside docker and docker-compose commands on the server. ssh-deploy also backs up the\n' +
      'database, runs migrations as a one-off container, smoke-tests through forwarded ports and records an\n' +
      'audit line; the manual steps do none of that. Requests: GET /health every 20 ms during the redeploy.\n',
  );
  return EXIT.ok;
});
