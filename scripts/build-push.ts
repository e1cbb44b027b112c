// Build the compose app's service images once, tag them by commit, cache their layers, and publish them.
import { appendFileSync } from 'node:fs';
import { resolveBaseImages } from '../lib/build/base-images.ts';
import {
  buildImage,
  cacheMode,
  describeBuilder,
  describeCache,
  detectBuilder,
  githubOutputLines,
  hasGithubActionsCache,
  imageResult,
  imageTags,
  interpolationVars,
  loginError,
  mapWithLimit,
  planImage,
  publishImage,
  registryToken,
  resolveVersionTag,
  selectServices,
  sourceUrl,
  summaryMarkdown,
  summaryTable,
  TOKEN_VARIABLES,
  type ImageResult,
  type Publication,
} from '../lib/build/build.ts';
import { EXIT, runScript, stringValue, ToolError, UsageError, type ScriptSpec } from '../lib/core/cli.ts';
import { loadComposeApp } from '../lib/app/compose.ts';
import { checkPushable, imageName } from '../lib/app/images.ts';
import { gitRemoteCommand, readRevision } from '../lib/app/revision.ts';
import { dockerInfoCommand, loginCommand } from '../lib/build/docker.ts';
import { Runner } from '../lib/core/exec.ts';
import { createLogger, printJson } from '../lib/core/log.ts';
import { appendStepSummary, inGithubActions } from '../lib/core/github-actions.ts';
import { liveOutputWanted, terminalBoard } from '../lib/core/live-output.ts';
import { RegistryClient } from '../lib/build/registry-api.ts';
import { Secret } from '../lib/core/secrets.ts';
import { DEFAULT_COMPOSE_FILE } from '../lib/app/target.ts';

const spec: ScriptSpec = {
  name: 'build-push',
  summary:
    'Build the images of every service with a build: section in the compose file, tag them\n' +
    'REGISTRY/OWNER/<aidd.yml image-name>, or the image: of the compose file when it names its registry, with\n' +
    ':<commit sha> and :latest (plus :<semver> for a version tag; a tree with\n' +
    'uncommitted changes gives only :<sha>-dirty), label them (OCI source, revision, created, title), reuse\n' +
    'cached layers, and push them, skipping images the registry already holds. The password is read only\n' +
    `from ${TOKEN_VARIABLES.join(', ')} (first set wins) and given to docker login on stdin.`,
  options: {
    compose: { type: 'string', multiple: true, value: 'PATH', env: 'AIDD_COMPOSE_FILE', help: 'Compose file of the target app (default: built-in AIDD Bot stack); repeat to merge several in order.' },
    service: { type: 'string', multiple: true, value: 'NAME', help: 'Build only this service; repeatable (default: every service with a build: section).' },
    registry: { type: 'string', value: 'HOST', env: 'REGISTRY', help: 'Registry host (default ghcr.io).' },
    owner: { type: 'string', value: 'NAME', env: 'IMAGE_OWNER', help: 'Image owner, lowercased (default: GITHUB_REPOSITORY_OWNER).' },
    username: { type: 'string', value: 'NAME', env: 'REGISTRY_USER', help: 'Registry user for docker login (default: GITHUB_ACTOR).' },
    'no-push': { type: 'boolean', help: 'Build and tag only; nothing is pushed (the build may still read its cache from the registry).' },
    parallel: { type: 'string', value: 'N', env: 'AIDD_BUILD_PARALLEL', help: 'Builds running at once (default 2).' },
    'version-tag': { type: 'string', value: 'SEMVER', help: 'Also tag :SEMVER (default: from GITHUB_REF refs/tags/vX.Y.Z).' },
    'no-latest': { type: 'boolean', env: 'AIDD_NO_LATEST', help: 'Leave :latest where it is (build.yml passes it everywhere but the default branch).' },
    output: { type: 'string', value: 'FILE', help: 'Append <service>_image, <service>_digest and revision lines here (default: $GITHUB_OUTPUT).' },
    'dry-run': { type: 'boolean', help: 'Print the commands that would change anything, run none of them.' },
    verbose: { type: 'boolean', short: 'v', help: 'Print every command and stream build output.' },
    json: { type: 'boolean', help: 'Print the result as JSON on stdout.' },
  },
  examples: [
    'REGISTRY_TOKEN=... npx tsx scripts/build-push.ts --owner my-org --username me',
    'npx tsx scripts/build-push.ts --owner my-org --service api --no-push',
    'npx tsx scripts/build-push.ts --owner my-org --dry-run',
  ],
};

function parseParallel(value: string | undefined): number {
  if (value === undefined) return 2;
  const count = Number(value);
  if (!Number.isInteger(count) || count < 1) throw new UsageError(`--parallel ${value} is not a positive whole number; e.g. --parallel 2`);
  return count;
}

await runScript(spec, async (values) => {
  const json = values.json === true;
  const verbose = values.verbose === true;
  // On a terminal each build's output folds into live lines; --verbose prints all of it.
  const live = !json && !verbose && liveOutputWanted() ? terminalBoard() : undefined;
  const logger = createLogger({ prefix: spec.name, quiet: json, live });
  const runner = new Runner({ logger, dryRun: values['dry-run'] === true, verbose, live });
  const push = values['no-push'] !== true;

  // Every answer is checked before anything runs: bad input changes nothing.
  const app = await loadComposeApp((values.compose as string[] | undefined) ?? DEFAULT_COMPOSE_FILE, { runner });
  const services = selectServices(app, (values.service as string[] | undefined) ?? []);
  const registry = stringValue(values, 'registry') ?? 'ghcr.io';
  const owner = (stringValue(values, 'owner') ?? process.env.GITHUB_REPOSITORY_OWNER)?.toLowerCase();
  if (!owner) throw new UsageError('no image owner: pass --owner NAME or set IMAGE_OWNER (e.g. your GitHub user or organization)');
  const publishing = { registry, owner };
  if (push) for (const service of services) checkPushable(app, service, imageName(app, service, publishing), publishing);
  const parallel = parseParallel(stringValue(values, 'parallel'));
  const version = resolveVersionTag(stringValue(values, 'version-tag'), process.env.GITHUB_REF);
  const outputFile = stringValue(values, 'output') ?? (process.env.GITHUB_OUTPUT || undefined);
  const token = registryToken(process.env);
  const username = stringValue(values, 'username') ?? process.env.GITHUB_ACTOR;
  if (push && !token) throw new UsageError(`pushing to ${registry} needs a password: set REGISTRY_TOKEN (or GHCR_TOKEN / GITHUB_TOKEN), or pass --no-push`);
  if (token && !username) throw new UsageError(`no registry user for ${registry}: pass --username NAME or set REGISTRY_USER`);
  const credentials = token && username ? { username, password: new Secret(token.value) } : undefined;

  const revision = await readRevision(runner, app.dir);
  logger.step('Checking the Docker engine and the builder');
  if ((await runner.attempt(dockerInfoCommand())).exitCode !== 0) {
    throw new ToolError('no Docker engine answers `docker info`; start Docker (on a fresh Debian machine: sudo bash .ci/provision)');
  }
  const tags = imageTags(revision, version, values['no-latest'] !== true);
  if (revision.dirty) logger.warn(`uncommitted changes: tagging :${tags[0]} only, never :latest`);
  const builder = await detectBuilder(runner);
  const cache = cacheMode(builder, hasGithubActionsCache(process.env));
  logger.info(`commit ${revision.sha}${revision.dirty ? ' (dirty)' : ''}; ${describeBuilder(builder)}; ${describeCache(cache)}`);

  // Log in first: a wrong password must fail before anything is built or pushed.
  if (credentials) {
    logger.step(`Logging in to ${registry} as ${credentials.username}`);
    const login = await runner.attempt(loginCommand(registry, credentials.username, credentials.password));
    if (login.exitCode !== 0) throw loginError(registry, credentials.username, token!.variable, login);
  }

  const baseImages = await resolveBaseImages(app, runner, logger, services);
  const remote = (await runner.attempt(gitRemoteCommand(app.dir))).stdout;
  const planOptions = {
    registry,
    owner,
    revision,
    tags,
    source: sourceUrl(process.env, remote),
    now: new Date().toISOString(),
    vars: interpolationVars(app, baseImages),
    baseImages,
  };
  const plans = services.map((service) => planImage(app, service, planOptions));

  logger.step(`Building ${plans.map((plan) => plan.service).join(', ')} (${Math.min(parallel, plans.length)} at a time)`);
  const builds = await mapWithLimit(plans, parallel, async (plan) => {
    // Build output shows with --verbose, folded on a terminal, and in collapsed groups on GitHub Actions.
    const built = await buildImage(runner, builder, plan, { cache, push, stream: verbose || live !== undefined || inGithubActions() });
    logger.info(`${plan.service}: built in ${built.seconds.toFixed(1)}s, ${built.cache.cached}/${built.cache.steps} steps cached`);
    return built;
  });
  const built = builds.flatMap((outcome) => (outcome.status === 'fulfilled' ? [outcome.value] : []));
  const buildFailures = plans.filter((_, index) => builds[index]!.status === 'rejected');

  // Publish only a complete set: the deploy pins all images of one commit together.
  const publications = new Map<string, Publication>();
  const pushFailures: string[] = [];
  let firstError = builds.find((outcome) => outcome.status === 'rejected')?.reason as Error | undefined;
  if (push && buildFailures.length === 0) {
    logger.step(`Pushing to ${registry}`);
    const client = new RegistryClient(registry, credentials);
    const pushes = await mapWithLimit(built, parallel, (item) => publishImage(runner, client, item, logger));
    pushes.forEach((outcome, index) => {
      const service = built[index]!.plan.service;
      if (outcome.status === 'fulfilled') publications.set(service, outcome.value);
      else {
        pushFailures.push(service);
        firstError ??= outcome.reason as Error;
      }
    });
  }

  const images: ImageResult[] = built.map((item) => imageResult(item, publications.get(item.plan.service)));
  const ok = buildFailures.length === 0 && pushFailures.length === 0;
  if (outputFile && ok && !runner.dryRun) appendFileSync(outputFile, githubOutputLines(images, revision).join('\n') + '\n');
  if (!runner.dryRun && images.length > 0) appendStepSummary(summaryMarkdown(images, built, revision.sha, ok));
  if (json) printJson({ ok, registry, owner, revision: revision.sha, dirty: revision.dirty, images });
  else if (images.length > 0) process.stdout.write(`${summaryTable(images, built)}\n`);

  if (!ok) {
    const what = buildFailures.length > 0 ? `build of ${buildFailures.map((plan) => plan.service).join(', ')}` : `push of ${pushFailures.join(', ')}`;
    const pushedNothing = buildFailures.length > 0 && push ? ' (nothing was pushed)' : '';
    throw new ToolError(`${what} failed${pushedNothing}: ${firstError?.message ?? 'unknown error'}`);
  }
  if (outputFile && !runner.dryRun) logger.info(`image references appended to ${outputFile}`);
  return EXIT.ok;
});
