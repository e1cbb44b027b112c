// Prove a running stack is healthy: every service's container health plus the target's HTTP checks.
import { EXIT, parseSeconds, runScript, stringValue, UsageError, type ScriptSpec } from '../lib/core/cli.ts';
import { defaultProjectName, loadComposeApp } from '../lib/app/compose.ts';
import { Runner } from '../lib/core/exec.ts';
import { localAccess } from '../lib/app/local-stack.ts';
import { createLogger, printJson } from '../lib/core/log.ts';
import { formatOutcomes, parseServiceUrls, runSmoke, type StackAccess } from '../lib/app/smoke.ts';
import { DEFAULT_COMPOSE_FILE } from '../lib/app/target.ts';
import { closeSession, openSession, remoteAccess, type Session } from '../lib/deploy/engine.ts';
import { resolveSshTarget, SSH_FLAGS } from '../lib/deploy/ssh.ts';

const spec: ScriptSpec = {
  name: 'smoke-test',
  summary:
    'Prove a running stack is healthy: each service container is running and healthy, and the HTTP checks\n' +
    'listed under smoke: in aidd.yml next to the compose file answer as expected. Failed checks are retried with backoff\n' +
    'until the deadline. Runs against a local compose project, on a server over SSH with --host (ports are\n' +
    'forwarded through the SSH connection), or against public URLs with --url.',
  options: {
    ...SSH_FLAGS,
    compose: { type: 'string', multiple: true, value: 'PATH', env: 'AIDD_COMPOSE_FILE', help: 'Compose file of the target app (default: built-in AIDD Bot stack); repeat to merge several in order.' },
    project: { type: 'string', value: 'NAME', env: 'COMPOSE_PROJECT_NAME', help: 'Compose project name (default: the compose directory name).' },
    url: { type: 'string', multiple: true, value: 'SERVICE=URL', help: 'Check SERVICE at a base URL instead of a local container; repeatable.' },
    timeout: { type: 'string', value: 'SECONDS', env: 'AIDD_SMOKE_TIMEOUT', help: 'Deadline for all checks (default 60).' },
    json: { type: 'boolean', help: 'Print the results as JSON on stdout.' },
  },
  examples: [
    'npx tsx scripts/smoke-test.ts',
    'npx tsx scripts/smoke-test.ts --project aidd-bot --timeout 120 --json',
    'npx tsx scripts/smoke-test.ts --host 203.0.113.10 --user deploy',
    'npx tsx scripts/smoke-test.ts --url api=https://api.example.com --url frontend=https://example.com',
  ],
};

await runScript(spec, async (values) => {
  const app = await loadComposeApp((values.compose as string[] | undefined) ?? DEFAULT_COMPOSE_FILE);
  const json = values.json === true;
  const logger = createLogger({ prefix: spec.name, quiet: json });
  const runner = new Runner({ logger });
  const deadlineMs = parseSeconds(stringValue(values, 'timeout'), '--timeout', 60) * 1000;
  const urls = parseServiceUrls((values.url as string[] | undefined) ?? []);

  let access: StackAccess;
  let services: string[];
  let http = app.config.smoke;
  let session: Session | undefined;
  let cleanup = () => {};
  const project = stringValue(values, 'project') ?? defaultProjectName(app.dir);
  if (urls.size > 0) {
    for (const service of urls.keys()) {
      if (!http.some((check) => check.service === service)) throw new UsageError(`--url ${service}=...: ${app.file} has no smoke check for service ${service}`);
    }
    http = http.filter((check) => urls.has(check.service));
    services = [];
    access = {
      baseUrl: async (service) => urls.get(service)!,
      containers: async () => [],
    };
  } else if (stringValue(values, 'host')) {
    const ssh = resolveSshTarget(values);
    cleanup = ssh.cleanup;
    const remote: Session = { runner, logger, ssh: ssh.target, layout: { deployPath: ssh.deployPath, project } };
    session = remote;
    // A signal stops the checks at once, but closes the connection and removes the private SSH
    // directory first (process.exit runs 'exit' listeners, not finally blocks).
    process.on('exit', cleanup);
    const stop = (signal: NodeJS.Signals) => void closeSession(remote).finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    await openSession(session);
    services = app.services.map((service) => service.name);
    access = remoteAccess(session);
    logger.step(`Smoke-testing ${project} on ${ssh.target.host} (${services.length} services, ${http.length} HTTP checks)`);
  } else {
    services = app.services.map((service) => service.name);
    access = localAccess(runner, project);
    logger.step(`Smoke-testing compose project ${project} (${services.length} services, ${http.length} HTTP checks)`);
  }

  let outcomes;
  try {
    outcomes = await runSmoke(access, { services, http, deadlineMs });
  } finally {
    if (session) await closeSession(session);
    cleanup();
  }
  const failed = outcomes.filter((outcome) => !outcome.ok);
  if (json) printJson({ ok: failed.length === 0, checks: outcomes });
  else process.stdout.write(`${formatOutcomes(outcomes)}\n`);
  if (failed.length > 0) {
    process.stderr.write(`smoke-test: error: failed: ${failed.map((outcome) => outcome.name).join(', ')}\n`);
    return EXIT.failed;
  }
  return EXIT.ok;
});
