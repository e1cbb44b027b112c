// The toolkit's main job on the built-in default: the whole road from laptop to server, on this machine.
// D0 brings the AIDD Bot stack up locally; D1 builds and publishes its images to a private registry on
// 127.0.0.1; D2 deploys them over SSH to a private sshd on 127.0.0.1, as a real deploy user. Every stage
// runs the same scripts a user runs, so a green rehearsal means the toolkit works here end to end.
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { resolveBaseImages } from '../lib/build/base-images.ts';
import { resolveProxyImage } from '../lib/build/proxy-image.ts';
import { readEnvFile } from '../lib/env/env-file.ts';
import { EXIT, parseSeconds, runScript, stringValue, ToolError, type ScriptSpec } from '../lib/core/cli.ts';
import { composeCommand, loadComposeApp, type ComposeTarget } from '../lib/app/compose.ts';
import { Runner, type Command } from '../lib/core/exec.ts';
import { localAccess } from '../lib/app/local-stack.ts';
import { createLogger, formatTable, printJson, type Logger } from '../lib/core/log.ts';
import { liveOutputWanted, terminalBoard } from '../lib/core/live-output.ts';
import { freePort } from '../lib/core/net.ts';
import { ensureDockerEngine, startRegistry, startSshServer } from '../lib/sandbox/sandbox.ts';
import { formatOutcomes, runSmoke } from '../lib/app/smoke.ts';
import { DEFAULT_COMPOSE_FILE, DEFAULT_REGISTRY_COMPOSE_FILE, detectComposeCli, REPO_ROOT, SANDBOX_DIR, scriptArgv } from '../lib/app/target.ts';

const spec: ScriptSpec = {
  name: 'rehearse',
  summary:
    'Rehearse the whole road on this machine with the built-in AIDD Bot stack:\n' +
    '  D0  create the local .env (setup-env), build and start the stack with compose, smoke-test it;\n' +
    '  D1  build and push the images (build-push) to a private registry with htpasswd on 127.0.0.1;\n' +
    '  D2  deploy them (ssh-deploy) over SSH to a private sshd on 127.0.0.1 as a dedicated deploy user.\n' +
    'Falls back to offline base images when Docker Hub cannot be reached. D1 and D2 need root (they\n' +
    'start the sandbox registry and sshd and create the deploy user); --local runs D0 only.',
  options: {
    local: { type: 'boolean', help: 'Only D0: the local stack.' },
    timeout: { type: 'string', value: 'SECONDS', help: 'Deadline for the local stack to become healthy (default 180).' },
    'dry-run': { type: 'boolean', help: 'Print the commands of D0 that would change anything, run none of them.' },
    verbose: { type: 'boolean', short: 'v', help: 'Print every command before it runs.' },
    json: { type: 'boolean', help: 'Print the result as JSON on stdout.' },
  },
  examples: ['npm start', 'npx tsx scripts/rehearse.ts --local', 'npx tsx scripts/rehearse.ts --dry-run --local'],
};

const LOCAL_PROJECT = 'aidd-rehearsal';
const SERVER_PROJECT = 'aidd-rehearsal-server';
const OWNER = 'rehearsal';
const WORK = path.join(REPO_ROOT, '.cache', 'rehearsal');

interface Stage {
  stage: string;
  what: string;
  seconds: number;
  result: string;
}

/** One toolkit script as a user runs it, its progress streamed. */
function toolCommand(script: string, args: string[], env: Record<string, string> = {}): Command {
  return { argv: scriptArgv(script, args), env: { CI: 'true', ...env }, timeoutMs: 1_800_000, stream: true, title: script };
}

async function stage<T>(stages: Stage[], logger: Logger, name: string, what: string, work: () => Promise<T>, result: (value: T) => string): Promise<T> {
  logger.step(`${name}: ${what}`);
  const started = Date.now();
  const value = await work();
  stages.push({ stage: name, what, seconds: (Date.now() - started) / 1000, result: result(value) });
  return value;
}

await runScript(spec, async (values) => {
  const json = values.json === true;
  const live = !json && liveOutputWanted() ? terminalBoard() : undefined;
  const logger = createLogger({ prefix: spec.name, quiet: json, live });
  const runner = new Runner({ logger, dryRun: values['dry-run'] === true, verbose: values.verbose === true, live });
  const app = await loadComposeApp(DEFAULT_COMPOSE_FILE, { runner });
  const deadlineMs = parseSeconds(stringValue(values, 'timeout'), '--timeout', 180) * 1000;
  const localOnly = values.local === true || runner.dryRun;
  if (!localOnly && process.getuid?.() !== 0) {
    throw new ToolError('D1 and D2 start a registry and an sshd and create a deploy user, which needs root; run as root, or pass --local for D0 only');
  }
  const stages: Stage[] = [];

  logger.step('Checking the Docker engine');
  await ensureDockerEngine(runner, SANDBOX_DIR);
  const baseImages = await resolveBaseImages(app, runner, logger);

  // D0: what a developer does on a laptop.
  const envFile = path.join(app.dir, '.env');
  await stage(stages, logger, 'D0', 'local .env, compose up, smoke test', async () => {
    await runner.run(toolCommand('setup-env', ['--target', 'local', '--file', envFile, '--generate']));
    const target: ComposeTarget = { cli: await detectComposeCli(runner), files: app.files, projectName: LOCAL_PROJECT, projectDir: app.dir, envFile };
    await runner.run({ ...composeCommand(target, ['up', '--detach', '--build'], { env: baseImages, stream: true, timeoutMs: 1_800_000 }), title: `compose up --build (project ${LOCAL_PROJECT})` });
    if (runner.dryRun) return [];
    const outcomes = await runSmoke(localAccess(runner, LOCAL_PROJECT), { services: app.services.map((service) => service.name), http: app.config.smoke, deadlineMs });
    if (!json) process.stdout.write(`${formatOutcomes(outcomes)}\n`);
    if (outcomes.some((outcome) => !outcome.ok)) throw new ToolError(`D0: the local stack is not healthy: ${outcomes.filter((outcome) => !outcome.ok).map((outcome) => outcome.name).join(', ')}`);
    return outcomes;
  }, () => `project ${LOCAL_PROJECT} healthy`);
  if (localOnly) return report(stages, json);

  // D1: what the build workflow does on every push.
  mkdirSync(WORK, { recursive: true, mode: 0o700 });
  const registry = await startRegistry(runner, path.join(SANDBOX_DIR, 'registry'));
  const registryEnv = { REGISTRY_USER: registry.user, REGISTRY_TOKEN: registry.password.reveal(), DOCKER_CONFIG: path.join(WORK, 'docker-config') };
  const imagesFile = path.join(WORK, 'images.json');
  await stage(stages, logger, 'D1', `build and push to ${registry.address}/${OWNER}`, async () => {
    const built = await runner.run({ ...toolCommand('build-push', ['--registry', registry.address, '--owner', OWNER, '--json'], registryEnv), stream: false });
    writeFileSync(imagesFile, built.stdout);
    return JSON.parse(built.stdout) as { images: { service: string }[] };
  }, (built) => `${built.images.length} images published`);

  // D2: what a deploy to a fresh server does.
  const server = await startSshServer(runner, path.join(SANDBOX_DIR, 'sshd'));
  // The server is this machine's engine: the proxy image comes from here (built from Debian's caddy where Docker Hub is out of reach).
  const proxyImage = await resolveProxyImage(runner, logger);
  const serverEnv = path.join(WORK, '.env.production');
  // A second rehearsal keeps the server's ports, so it deploys nothing new and changes nothing.
  const previous = readEnvFile(serverEnv)?.values;
  const apiPort = previous?.API_PORT ?? String(await freePort());
  const frontendPort = previous?.FRONTEND_PORT ?? String(await freePort());
  await stage(stages, logger, 'D2', `deploy over SSH to ${server.user}@${server.host}:${server.port}`, async () => {
    // Of the offline stand-ins, the server needs those its compose file names (POSTGRES_IMAGE); the others are for builds.
    const serverVariables = new Set((await loadComposeApp(DEFAULT_REGISTRY_COMPOSE_FILE, { runner })).variables.map((variable) => variable.name));
    const standIns = Object.entries(baseImages).filter(([name]) => serverVariables.has(name));
    const settings = { BOT_MODE: 'offline', IMAGE_OWNER: OWNER, REGISTRY: registry.address, API_PORT: apiPort, FRONTEND_PORT: frontendPort, ...Object.fromEntries(standIns) };
    const setArgs = Object.entries(settings).flatMap(([name, value]) => ['--set', `${name}=${value}`]);
    await runner.run(toolCommand('setup-env', ['--target', 'production', '--file', serverEnv, '--generate', ...setArgs]));
    const sshArgs = ['--host', server.host, '--port', String(server.port), '--user', server.user, '--key', server.keyFile, '--known-hosts', server.knownHostsFile, '--path', '~/apps/rehearsal', '--project', SERVER_PROJECT];
    await runner.run(toolCommand('ssh-deploy', [...sshArgs, '--registry', registry.address, '--images-from', imagesFile, '--server-env', serverEnv, '--proxy-image', proxyImage, '--reason', 'rehearsal'], registryEnv));
  }, () => `project ${SERVER_PROJECT} on the server: api http://127.0.0.1:${apiPort}/health, frontend http://127.0.0.1:${frontendPort}/`);
  return report(stages, json);
});

function report(stages: Stage[], json: boolean): number {
  if (json) printJson({ ok: true, stages });
  else process.stdout.write(`${formatTable(['stage', 'what', 'seconds', 'result'], stages.map((item) => [item.stage, item.what, item.seconds.toFixed(1), item.result]))}\n`);
  return EXIT.ok;
}
