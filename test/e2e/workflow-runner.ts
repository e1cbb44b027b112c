// Runs the `run:` steps of a GitHub Actions workflow on this machine, in order, as a GitHub-hosted runner
// would: jobs chosen by their `if:`, the matrix expanded, every `${{ }}` evaluated by GitHub's own
// expression library (@actions/expressions), each step a script file run in the job's workspace as the
// runner runs it (`bash -e FILE` without a shell: key; `bash --noprofile --norc -eo pipefail FILE` with
// `shell: bash`) with the runner's GITHUB_* variables, and GITHUB_OUTPUT / GITHUB_ENV / GITHUB_PATH /
// GITHUB_STEP_SUMMARY read back after it. An expression naming a context, property or function this runner does not provide
// fails the run instead of evaluating to an empty string.
//
// Not emulated:
// - `uses:` actions. actions/checkout becomes a clone of the given repository at the event's commit, with
//   origin set as checkout sets it; actions/setup-node, docker/setup-buildx-action and
//   crazy-max/ghaction-github-runtime do nothing (this machine has Node.js 22 and docker; so there is no
//   buildx builder and no Actions cache). Any other action fails the run.
// - `npm ci`: the workspace's node_modules is a link to the toolkit's own (reinstalling would pull it from
//   under the running tests); the step is recorded as not emulated.
// - services:, container:, concurrency:, environment: (its protection rules, secrets and variables: the
//   caller passes secrets and vars directly), permissions: and token scopes, runs-on (every job runs here,
//   as root), needs:, defaults:, matrix include/exclude, continue-on-error, working-directory and shells
//   other than bash and sh (these fail the run), cancellation, re-runs, masking of secrets in logs, and
//   job outputs dropped for holding a secret.
// - Matrix legs run one after another, not in parallel; each step is bounded by `maxStepMs` as well as
//   by the job's timeout-minutes.
import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, symlinkSync, appendFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Evaluator, Lexer, Parser, data, type Expr } from '@actions/expressions';
import { TokenType } from '@actions/expressions/lexer';
import { truthy } from '@actions/expressions/result';
import { parse as parseYaml } from 'yaml';

export interface WorkflowEvent {
  name: 'push' | 'pull_request' | 'workflow_dispatch';
  /** refs/heads/main, refs/tags/v1.2.3, refs/pull/7/merge */
  ref: string;
  /** The commit the run checks out; it must be in the repository. */
  sha: string;
  /** workflow_dispatch inputs; the workflow's defaults fill the rest. */
  inputs?: Record<string, string>;
}

/** The repository as GitHub knows it, backed by a local git repository holding the events' commits. */
export interface Repository {
  dir: string;
  /** OWNER/NAME, as GitHub spells it (the owner may have capitals). */
  fullName: string;
  defaultBranch: string;
}

export interface WorkflowRequest {
  workflow: string;
  event: WorkflowEvent;
  repository: Repository;
  actor: string;
  secrets: Record<string, string>;
  vars: Record<string, string>;
  /** Variables the runner machine itself has beyond PATH, HOME and LANG (a self-hosted runner's .env). */
  machineEnv?: Record<string, string>;
  /** The node_modules the workspace links to instead of running `npm ci`. */
  nodeModules: string;
  /** Where each job gets its machine: a directory with its home, temp directory and workspace. */
  machines: string;
  maxStepMs?: number;
}

export type StepStatus = 'ran' | 'skipped' | 'not emulated';
export type Outcome = 'success' | 'failure' | 'skipped';

export interface StepRecord {
  index: number;
  /** The step's name as displayed (evaluated), or its command. */
  name: string;
  id?: string;
  run?: string;
  uses?: string;
  status: StepStatus;
  outcome: Outcome;
  exitCode?: number;
  stdout: string;
  stderr: string;
  /** The step's own env: block, evaluated. */
  env: Record<string, string>;
  outputs: Record<string, string>;
  summary: string;
}

export interface JobRecord {
  id: string;
  name: string;
  matrix: Record<string, string>;
  result: 'success' | 'failure' | 'skipped' | 'cancelled';
  steps: StepRecord[];
  /** This leg's `outputs:`, evaluated after its steps. */
  outputs: Record<string, string>;
  /** The job summary: every step's GITHUB_STEP_SUMMARY, in order. */
  summary: string;
  workspace?: string;
}

export interface WorkflowRun {
  jobs: JobRecord[];
  /** Each job's outputs as later jobs see them: the legs' non-empty values combined, later legs winning. */
  outputs: Record<string, Record<string, string>>;
}

interface StepSpec {
  name?: string;
  id?: string;
  if?: string | boolean;
  run?: string;
  uses?: string;
  with?: Record<string, unknown>;
  env?: Record<string, unknown>;
  shell?: string;
}

interface JobSpec {
  name?: string;
  if?: string | boolean;
  env?: Record<string, unknown>;
  strategy?: { 'fail-fast'?: boolean; matrix?: Record<string, unknown> };
  outputs?: Record<string, string>;
  'timeout-minutes'?: number;
  steps: StepSpec[];
}

interface WorkflowSpec {
  name?: string;
  on: Record<string, { inputs?: Record<string, { default?: unknown; type?: string; options?: unknown[] }> } | null>;
  env?: Record<string, unknown>;
  jobs: Record<string, JobSpec>;
}

/** Keys this runner acts on or may ignore (see the list at the top); any other key fails the run. */
const JOB_KEYS = new Set(['name', 'if', 'env', 'strategy', 'outputs', 'timeout-minutes', 'steps', 'runs-on', 'permissions', 'environment']);
const STEP_KEYS = new Set(['name', 'id', 'if', 'run', 'uses', 'with', 'env', 'shell']);
const WORKFLOW_KEYS = new Set(['name', 'on', 'env', 'jobs', 'permissions', 'concurrency']);
const NO_OP_ACTIONS = new Set(['actions/setup-node', 'docker/setup-buildx-action', 'crazy-max/ghaction-github-runtime']);
const CONTEXTS = ['github', 'inputs', 'secrets', 'vars', 'matrix', 'steps', 'env', 'runner', 'job', 'strategy'];
const STATUS_FUNCTIONS = ['success', 'failure', 'always', 'cancelled'];

export function loadWorkflow(file: string): WorkflowSpec {
  const workflow = parseYaml(readFileSync(file, 'utf8')) as Omit<WorkflowSpec, 'on'> & { on: WorkflowSpec['on'] | string | string[] };
  refuseUnknownKeys(file, workflow as unknown as Record<string, unknown>, WORKFLOW_KEYS);
  // `on: push` and `on: [push, pull_request]` are short for a map of events without settings.
  const on = typeof workflow.on === 'string' || Array.isArray(workflow.on) ? Object.fromEntries([workflow.on].flat().map((event) => [event, null])) : workflow.on;
  return { ...workflow, on };
}

function refuseUnknownKeys(where: string, object: Record<string, unknown>, known: Set<string>): void {
  const unknown = Object.keys(object).filter((key) => !known.has(key));
  if (unknown.length > 0) throw new Error(`${where}: ${unknown.join(', ')} not emulated by the workflow runner`);
}

/** Every `run:` step of a workflow as JOB#INDEX: what a test must have seen run or skipped. */
export function runStepKeys(file: string): string[] {
  return Object.entries(loadWorkflow(file).jobs).flatMap(([jobId, job]) => job.steps.flatMap((step, index) => (step.run !== undefined ? [`${jobId}#${index}`] : [])));
}

/** A dictionary that refuses a key it does not hold: a context this runner fills only partly. */
class KnownKeys extends data.Dictionary {
  readonly label: string;

  constructor(label: string, pairs: Pair[]) {
    super(...pairs);
    this.label = label;
  }

  override get(key: string): data.ExpressionData | undefined {
    const value = super.get(key);
    if (value === undefined) throw new Error(`${this.label}.${key} is not provided by the workflow runner`);
    return value;
  }
}

type Pair = { key: string; value: data.ExpressionData };
type Plain = string | number | boolean | null | undefined | Plain[] | { [key: string]: Plain };

function toData(value: Plain): data.ExpressionData {
  if (value === null || value === undefined) return new data.Null();
  if (typeof value === 'string') return new data.StringData(value);
  if (typeof value === 'number') return new data.NumberData(value);
  if (typeof value === 'boolean') return new data.BooleanData(value);
  if (Array.isArray(value)) return new data.Array(...value.map(toData));
  return new data.Dictionary(...Object.entries(value).map(([key, item]) => ({ key, value: toData(item) })));
}

function strict(label: string, value: Record<string, Plain | data.ExpressionData>): KnownKeys {
  return new KnownKeys(label, Object.entries(value).map(([key, item]) => ({ key, value: isData(item) ? item : toData(item) })));
}

function isData(value: unknown): value is data.ExpressionData {
  return typeof value === 'object' && value !== null && 'kind' in value && 'coerceString' in value;
}

interface Status {
  failed: boolean;
}

function statusFunctions(status: Status): Map<string, { name: string; minArgs: number; maxArgs: number; call: () => data.ExpressionData }> {
  const results: Record<string, () => boolean> = { success: () => !status.failed, failure: () => status.failed, always: () => true, cancelled: () => false };
  return new Map(STATUS_FUNCTIONS.map((name) => [name, { name, minArgs: 0, maxArgs: 0, call: () => new data.BooleanData(results[name]!()) }]));
}

function parseExpression(source: string, where: string): { expr: Expr; callsStatus: boolean } {
  const tokens = new Lexer(source).lex().tokens;
  const callsStatus = tokens.some((token, index) => token.type === TokenType.IDENTIFIER && STATUS_FUNCTIONS.includes(token.lexeme.toLowerCase()) && tokens[index + 1]?.type === TokenType.LEFT_PAREN);
  try {
    return { expr: new Parser(tokens, CONTEXTS, STATUS_FUNCTIONS.map((name) => ({ name, minArgs: 0, maxArgs: 0 }))).parse(), callsStatus };
  } catch (error) {
    throw new Error(`${where}: cannot evaluate \${{ ${source} }}: ${(error as Error).message}`);
  }
}

class Scope {
  readonly contexts: data.Dictionary;
  readonly status: Status;

  constructor(contexts: Record<string, data.ExpressionData>, status: Status) {
    this.contexts = new data.Dictionary(...Object.entries(contexts).map(([key, value]) => ({ key, value })));
    this.status = status;
  }

  evaluate(source: string, where: string): data.ExpressionData {
    const { expr } = parseExpression(source, where);
    try {
      return new Evaluator(expr, this.contexts, statusFunctions(this.status)).evaluate();
    } catch (error) {
      throw new Error(`${where}: cannot evaluate \${{ ${source} }}: ${(error as Error).message}`);
    }
  }

  /** A string with `${{ }}` in it, each replaced by its value as a string (null as ''). */
  interpolate(text: string, where: string): string {
    let result = '';
    let rest = text;
    for (let start = rest.indexOf('${{'); start >= 0; start = rest.indexOf('${{')) {
      const end = expressionEnd(rest, start + 3);
      if (end < 0) throw new Error(`${where}: unterminated \${{ in ${JSON.stringify(text)}`);
      result += rest.slice(0, start) + this.evaluate(rest.slice(start + 3, end).trim(), where).coerceString();
      rest = rest.slice(end + 2);
    }
    return result + rest;
  }

  /** An `if:`: without a status function in it, GitHub reads it as `success() && (...)`. */
  condition(value: string | boolean | undefined, where: string): boolean {
    if (value === undefined) return !this.status.failed;
    if (typeof value === 'boolean') return value && !this.status.failed;
    const trimmed = value.trim();
    const whole = /^\$\{\{([\s\S]*)\}\}$/.exec(trimmed);
    if (trimmed.includes('${{') && (!whole || whole[1]!.includes('${{'))) throw new Error(`${where}: an if: mixing text and \${{ }} is not emulated`);
    const source = whole ? whole[1]!.trim() : trimmed;
    const { callsStatus } = parseExpression(source, where);
    return truthy(this.evaluate(callsStatus ? source : `success() && (${source})`, where));
  }

  strings(values: Record<string, unknown> | undefined, where: string): Record<string, string> {
    return Object.fromEntries(Object.entries(values ?? {}).map(([name, value]) => [name, this.interpolate(String(value), `${where}.${name}`)]));
  }
}

/** Where the `}}` closing an expression is, skipping single-quoted strings ('' is a quote inside one). */
function expressionEnd(text: string, from: number): number {
  let quoted = false;
  for (let index = from; index < text.length; index += 1) {
    if (text[index] === "'") quoted = !quoted;
    else if (!quoted && text.startsWith('}}', index)) return index;
  }
  return -1;
}

/**
 * The runner's file commands: `NAME=value` lines and `NAME<<DELIMITER` blocks ending at a line that is
 * exactly the delimiter, as the runner reads GITHUB_OUTPUT and GITHUB_ENV.
 */
function parseFileCommands(text: string, file: string): Record<string, string> {
  const values: Record<string, string> = {};
  const lines = text.split(/\r?\n/);
  for (let index = 0; index < lines.length; index += 1) {
    const line = lines[index]!;
    if (line === '') continue;
    const equals = line.indexOf('=');
    const heredoc = line.indexOf('<<');
    if (equals > 0 && (heredoc < 0 || equals < heredoc)) {
      values[line.slice(0, equals)] = line.slice(equals + 1);
      continue;
    }
    if (heredoc <= 0) throw new Error(`${file}: line ${index + 1} is neither NAME=value nor NAME<<DELIMITER: ${JSON.stringify(line)}`);
    const delimiter = line.slice(heredoc + 2);
    const body: string[] = [];
    let closed = false;
    for (index += 1; index < lines.length; index += 1) {
      if (lines[index] === delimiter) {
        closed = true;
        break;
      }
      body.push(lines[index]!);
    }
    if (!closed) throw new Error(`${file}: no line ${JSON.stringify(delimiter)} closes ${line.slice(0, heredoc)}`);
    values[line.slice(0, heredoc)] = body.join('\n');
  }
  return values;
}

function matrixLegs(job: JobSpec, where: string): Record<string, string>[] {
  const matrix = job.strategy?.matrix;
  if (!matrix) return [{}];
  let legs: Record<string, string>[] = [{}];
  for (const [name, values] of Object.entries(matrix)) {
    if (!Array.isArray(values)) throw new Error(`${where}.strategy.matrix.${name}: only lists are emulated (no include/exclude or expressions)`);
    legs = legs.flatMap((leg) => values.map((value) => ({ ...leg, [name]: String(value) })));
  }
  return legs;
}

function eventPayload(request: WorkflowRequest, inputs: Record<string, string>): Record<string, Plain> {
  const { event, repository } = request;
  const [owner, name] = repository.fullName.split('/');
  const repositoryPayload = { name: name!, full_name: repository.fullName, default_branch: repository.defaultBranch, owner: { login: owner! } };
  const common = { repository: repositoryPayload, sender: { login: request.actor } };
  if (event.name === 'workflow_dispatch') return { ...common, ref: event.ref, inputs };
  if (event.name === 'push') return { ...common, ref: event.ref, after: event.sha };
  const number = Number(/^refs\/pull\/(\d+)\//.exec(event.ref)?.[1] ?? 1);
  return { ...common, number, pull_request: { number, head: { ref: 'feature', sha: event.sha }, base: { ref: repository.defaultBranch } } };
}

function dispatchInputs(workflow: WorkflowSpec, event: WorkflowEvent, where: string): Record<string, string | null> {
  const declared = workflow.on.workflow_dispatch?.inputs ?? {};
  const inputs: Record<string, string | null> = {};
  for (const [name, spec] of Object.entries(declared)) {
    if (event.name !== 'workflow_dispatch') {
      inputs[name] = null;
      continue;
    }
    const value = event.inputs?.[name] ?? (spec.default === undefined ? '' : String(spec.default));
    if (spec.type === 'choice' && !spec.options?.map(String).includes(value)) throw new Error(`${where}: input ${name}=${value} is not one of its options`);
    inputs[name] = value;
  }
  const undeclared = Object.keys(event.inputs ?? {}).filter((name) => !(name in declared));
  if (undeclared.length > 0) throw new Error(`${where}: the workflow declares no input ${undeclared.join(', ')}`);
  return inputs;
}

function refKind(ref: string): { name: string; type: 'branch' | 'tag' } {
  if (ref.startsWith('refs/tags/')) return { name: ref.slice('refs/tags/'.length), type: 'tag' };
  return { name: ref.replace(/^refs\/(heads|pull)\//, ''), type: 'branch' };
}

function run(argv: string[], options: { cwd: string; env: Record<string, string>; timeoutMs: number }): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { cwd: options.cwd, env: options.env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let stdout = '';
    let stderr = '';
    const echo = process.env.AIDD_TEST_VERBOSE ? (chunk: Buffer) => process.stderr.write(chunk) : () => undefined;
    child.stdout.on('data', (chunk: Buffer) => ((stdout += chunk.toString()), echo(chunk)));
    child.stderr.on('data', (chunk: Buffer) => ((stderr += chunk.toString()), echo(chunk)));
    const timer = setTimeout(() => {
      stderr += `\n[workflow runner: step killed after ${options.timeoutMs / 1000}s]\n`;
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }, options.timeoutMs);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ exitCode: code ?? (signal ? 128 + os.constants.signals[signal] : 1), stdout, stderr });
    });
  });
}

async function git(args: string[], cwd: string): Promise<string> {
  const result = await run(['git', '-c', 'user.name=aidd-test', '-c', 'user.email=aidd-test@example.com', '-c', 'advice.detachedHead=false', ...args], {
    cwd,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: os.tmpdir() },
    timeoutMs: 60_000,
  });
  if (result.exitCode !== 0) throw new Error(`git ${args.join(' ')} failed: ${result.stderr.trim()}`);
  return result.stdout.trim();
}

/**
 * A git repository holding this checkout as one commit on the default branch: the files git tracks or
 * would track (tracked, and untracked ones not ignored) as they are on disk now.
 */
export async function repositoryFromCheckout(root: string, dir: string, fullName: string, defaultBranch = 'main'): Promise<Repository & { sha: string }> {
  mkdirSync(dir, { recursive: true });
  const files = (await git(['ls-files', '-z', '--cached', '--others', '--exclude-standard'], root)).split('\0').filter((file) => file && existsSync(path.join(root, file)));
  for (const file of files) {
    mkdirSync(path.dirname(path.join(dir, file)), { recursive: true });
    cpSync(path.join(root, file), path.join(dir, file));
  }
  await git(['init', '--quiet', '--initial-branch', defaultBranch], dir);
  await git(['add', '--all'], dir);
  await git(['commit', '--quiet', '--message', 'the checkout under test'], dir);
  return { dir, fullName, defaultBranch, sha: await git(['rev-parse', 'HEAD'], dir) };
}

/** A new commit on `branch` (made from the default branch) holding what `change` does to the files. */
export async function commitOnBranch(repository: Repository, branch: string, message: string, change: (dir: string) => void): Promise<string> {
  await git(['checkout', '--quiet', '-B', branch], repository.dir);
  change(repository.dir);
  await git(['commit', '--quiet', '--all', '--message', message], repository.dir);
  const sha = await git(['rev-parse', 'HEAD'], repository.dir);
  await git(['checkout', '--quiet', repository.defaultBranch], repository.dir);
  return sha;
}

/** actions/checkout: the event's commit in a fresh workspace, origin pointing at GitHub, no credentials kept. */
async function checkout(request: WorkflowRequest, workspace: string): Promise<void> {
  await git(['clone', '--quiet', '--no-checkout', request.repository.dir, workspace], os.tmpdir());
  await git(['checkout', '--quiet', '--detach', request.event.sha], workspace);
  await git(['remote', 'set-url', 'origin', `https://github.com/${request.repository.fullName}`], workspace);
  // npm ci is not run: node_modules is a link, kept out of `git status` as the installed directory would be.
  symlinkSync(request.nodeModules, path.join(workspace, 'node_modules'));
  appendFileSync(path.join(workspace, '.git', 'info', 'exclude'), '/node_modules\n');
}

function shellArgv(shell: string | undefined, script: string, where: string): string[] {
  // As the runner: no shell: key is `bash -e {0}`; an explicit `shell: bash` adds pipefail and skips the rc files.
  if (shell === undefined) return ['bash', '-e', script];
  if (shell === 'bash') return ['bash', '--noprofile', '--norc', '-eo', 'pipefail', script];
  if (shell === 'sh') return ['sh', '-e', script];
  throw new Error(`${where}: shell ${shell} is not emulated`);
}

/** The certificate settings of this machine, which a runner image has for its own network. */
const TRUST_VARIABLES = ['NODE_EXTRA_CA_CERTS', 'SSL_CERT_FILE', 'SSL_CERT_DIR'];

/**
 * The runner machine's own environment: PATH without the test run's node_modules/.bin entries, the
 * machine's certificate settings, and this machine's npm cache as setup-node's `cache: npm` restores one.
 */
function machineEnvironment(home: string, extra: Record<string, string>): Record<string, string> {
  const pathEntries = (process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin').split(':').filter((entry) => entry && !entry.includes(`node_modules${path.sep}.bin`));
  const trust = Object.fromEntries(TRUST_VARIABLES.flatMap((name) => (process.env[name] ? [[name, process.env[name]!]] : [])));
  return { PATH: pathEntries.join(':'), HOME: home, LANG: 'C.UTF-8', ...trust, npm_config_cache: path.join(os.homedir(), '.npm'), ...extra };
}

export async function runWorkflow(request: WorkflowRequest): Promise<WorkflowRun> {
  const file = request.workflow;
  const workflow = loadWorkflow(file);
  const where = path.basename(file);
  if (!(request.event.name in workflow.on)) throw new Error(`${where} does not run on ${request.event.name}`);
  if (!request.secrets.GITHUB_TOKEN) throw new Error('secrets.GITHUB_TOKEN: every run has one; pass it');
  const inputs = dispatchInputs(workflow, request.event, where);
  const runId = String(Date.now());
  const [owner] = request.repository.fullName.split('/');
  const ref = refKind(request.event.ref);
  const payload = eventPayload(request, Object.fromEntries(Object.entries(inputs).map(([name, value]) => [name, value ?? ''])));
  const github: Record<string, Plain> = {
    event_name: request.event.name,
    event: payload,
    ref: request.event.ref,
    ref_name: ref.name,
    ref_type: ref.type,
    sha: request.event.sha,
    actor: request.actor,
    triggering_actor: request.actor,
    repository: request.repository.fullName,
    repository_owner: owner!,
    server_url: 'https://github.com',
    api_url: 'https://api.github.com',
    run_id: runId,
    run_number: '1',
    run_attempt: '1',
    workflow: workflow.name ?? where,
    head_ref: request.event.name === 'pull_request' ? 'feature' : '',
    base_ref: request.event.name === 'pull_request' ? request.repository.defaultBranch : '',
  };
  const secrets = toData(request.secrets);
  const vars = toData(request.vars);
  const inputsData = strict('inputs', inputs);
  const result: WorkflowRun = { jobs: [], outputs: {} };

  for (const [jobId, job] of Object.entries(workflow.jobs)) {
    const jobWhere = `${where}: jobs.${jobId}`;
    refuseUnknownKeys(jobWhere, job as unknown as Record<string, unknown>, JOB_KEYS);
    const workflowScope = new Scope({ github: strict('github', { ...github, job: jobId }), inputs: inputsData, vars, secrets }, { failed: false });
    if (!workflowScope.condition(job.if, `${jobWhere}.if`)) {
      result.jobs.push({ id: jobId, name: job.name ?? jobId, matrix: {}, result: 'skipped', steps: [], outputs: {}, summary: '' });
      continue;
    }
    const legs = matrixLegs(job, jobWhere);
    const failFast = job.strategy?.['fail-fast'] ?? true;
    const combined: Record<string, string> = {};
    let legFailed = false;
    for (const [legIndex, matrix] of legs.entries()) {
      if (legFailed && failFast) {
        result.jobs.push({ id: jobId, name: job.name ?? jobId, matrix, result: 'cancelled', steps: [], outputs: {}, summary: '' });
        continue;
      }
      const record = await runJob({ request, workflow, jobId, job, matrix, legIndex, legCount: legs.length, github, inputs: inputsData, secrets, vars, where: jobWhere });
      legFailed ||= record.result === 'failure';
      for (const [name, value] of Object.entries(record.outputs)) if (value !== '') combined[name] = value;
      result.jobs.push(record);
    }
    result.outputs[jobId] = combined;
  }
  return result;
}

interface JobContext {
  request: WorkflowRequest;
  workflow: WorkflowSpec;
  jobId: string;
  job: JobSpec;
  matrix: Record<string, string>;
  legIndex: number;
  legCount: number;
  github: Record<string, Plain>;
  inputs: data.ExpressionData;
  secrets: data.ExpressionData;
  vars: data.ExpressionData;
  where: string;
}

async function runJob(context: JobContext): Promise<JobRecord> {
  const { request, workflow, jobId, job, matrix, where } = context;
  // A fresh machine per job: its own home, temp directory and workspace.
  const machine = mkdtempSync(path.join(request.machines, `${jobId}-`));
  const [home, temp, workspace] = ['home', 'temp', 'workspace'].map((name) => path.join(machine, name)) as [string, string, string];
  for (const dir of [home, temp]) mkdirSync(dir);
  const eventPath = path.join(temp, 'event.json');
  writeFileSync(eventPath, JSON.stringify(context.github.event));
  const status: Status = { failed: false };
  const stepsData: Pair[] = [];
  let githubEnv: Record<string, string> = {};
  const extraPath: string[] = [];
  const github = strict('github', { ...context.github, job: jobId, workspace });
  const base = {
    github,
    inputs: context.inputs,
    secrets: context.secrets,
    vars: context.vars,
    matrix: strict('matrix', matrix),
    runner: strict('runner', { os: 'Linux', arch: 'X64', temp, name: 'aidd-test-runner', environment: 'github-hosted' }),
    strategy: strict('strategy', { 'fail-fast': job.strategy?.['fail-fast'] ?? true, 'job-index': context.legIndex, 'job-total': context.legCount }),
  };
  const scope = (env: Record<string, string>) =>
    new Scope({ ...base, env: toData(env), steps: strict('steps', Object.fromEntries(stepsData.map((pair) => [pair.key, pair.value]))), job: strict('job', { status: status.failed ? 'failure' : 'success' }) }, status);
  const workflowEnv = scope({}).strings(workflow.env, `${where}.env`);
  const jobEnv = { ...workflowEnv, ...scope(workflowEnv).strings(job.env, `${where}.env`) };
  const name = scope(jobEnv).interpolate(job.name ?? jobId, `${where}.name`);
  const deadline = Date.now() + (job['timeout-minutes'] ?? 360) * 60_000;
  const record: JobRecord = { id: jobId, name, matrix, result: 'success', steps: [], outputs: {}, summary: '', workspace };

  for (const [index, step] of job.steps.entries()) {
    const stepWhere = `${where}.steps[${index}]`;
    refuseUnknownKeys(stepWhere, step as unknown as Record<string, unknown>, STEP_KEYS);
    const envContext = { ...jobEnv, ...githubEnv };
    // An unnamed step shows its command (or action) as written.
    const stepName = step.name === undefined ? (step.run?.split('\n')[0] ?? step.uses!) : scope(envContext).interpolate(step.name, `${stepWhere}.name`);
    const entry: StepRecord = { index, name: stepName, id: step.id, run: step.run, uses: step.uses, status: 'skipped', outcome: 'skipped', stdout: '', stderr: '', env: {}, outputs: {}, summary: '' };
    record.steps.push(entry);
    if (scope(envContext).condition(step.if, `${stepWhere}.if`)) {
      entry.env = scope(envContext).strings(step.env, `${stepWhere}.env`);
      if (step.uses !== undefined) {
        await useAction(step, stepWhere, request, workspace);
        Object.assign(entry, { status: 'not emulated', outcome: 'success' });
      } else if (/^npm ci(\s|$)/.test(step.run!.trim()) && !step.run!.trim().includes('\n')) {
        Object.assign(entry, { status: 'not emulated', outcome: 'success' });
      } else {
        const files = Object.fromEntries(['output', 'env', 'path', 'step_summary'].map((kind) => [kind, path.join(temp, `${kind}_${index}`)]));
        for (const commandFile of Object.values(files)) writeFileSync(commandFile, '');
        const script = path.join(temp, `step_${index}.sh`);
        writeFileSync(script, scope(envContext).interpolate(step.run!, `${stepWhere}.run`));
        const machineEnv = machineEnvironment(home, request.machineEnv ?? {});
        const env: Record<string, string> = {
          ...machineEnv,
          PATH: [...extraPath, machineEnv.PATH].join(':'),
          CI: 'true',
          GITHUB_ACTIONS: 'true',
          GITHUB_ACTION: step.id ?? `__run_${index}`,
          GITHUB_ACTOR: request.actor,
          GITHUB_TRIGGERING_ACTOR: request.actor,
          GITHUB_API_URL: 'https://api.github.com',
          GITHUB_BASE_REF: String(context.github.base_ref),
          GITHUB_ENV: files.env!,
          GITHUB_EVENT_NAME: request.event.name,
          GITHUB_EVENT_PATH: eventPath,
          GITHUB_HEAD_REF: String(context.github.head_ref),
          GITHUB_JOB: jobId,
          GITHUB_OUTPUT: files.output!,
          GITHUB_PATH: files.path!,
          GITHUB_REF: request.event.ref,
          GITHUB_REF_NAME: String(context.github.ref_name),
          GITHUB_REF_TYPE: String(context.github.ref_type),
          GITHUB_REPOSITORY: request.repository.fullName,
          GITHUB_REPOSITORY_OWNER: String(context.github.repository_owner),
          GITHUB_RUN_ATTEMPT: '1',
          GITHUB_RUN_ID: String(context.github.run_id),
          GITHUB_RUN_NUMBER: '1',
          GITHUB_SERVER_URL: 'https://github.com',
          GITHUB_SHA: request.event.sha,
          GITHUB_STEP_SUMMARY: files.step_summary!,
          GITHUB_WORKFLOW: String(context.github.workflow),
          GITHUB_WORKSPACE: workspace,
          RUNNER_ARCH: 'X64',
          RUNNER_ENVIRONMENT: 'github-hosted',
          RUNNER_NAME: 'aidd-test-runner',
          RUNNER_OS: 'Linux',
          RUNNER_TEMP: temp,
          ...envContext,
          ...entry.env,
        };
        const timeoutMs = Math.max(1_000, Math.min(deadline - Date.now(), request.maxStepMs ?? 600_000));
        const ran = await run(shellArgv(step.shell, script, stepWhere), { cwd: existsSync(workspace) ? workspace : home, env, timeoutMs });
        entry.status = 'ran';
        entry.exitCode = ran.exitCode;
        entry.stdout = ran.stdout;
        entry.stderr = ran.stderr;
        entry.outcome = ran.exitCode === 0 ? 'success' : 'failure';
        entry.outputs = parseFileCommands(readFileSync(files.output!, 'utf8'), `${stepWhere} GITHUB_OUTPUT`);
        githubEnv = { ...githubEnv, ...parseFileCommands(readFileSync(files.env!, 'utf8'), `${stepWhere} GITHUB_ENV`) };
        extraPath.unshift(...readFileSync(files.path!, 'utf8').split('\n').filter(Boolean).reverse());
        entry.summary = readFileSync(files.step_summary!, 'utf8');
        record.summary += entry.summary;
        if (entry.outcome === 'failure') status.failed = true;
      }
    }
    if (step.id) stepsData.push({ key: step.id, value: strict(`steps.${step.id}`, { outputs: toData(entry.outputs), outcome: entry.outcome, conclusion: entry.outcome }) });
  }
  record.result = status.failed ? 'failure' : 'success';
  record.outputs = scope({ ...jobEnv, ...githubEnv }).strings(job.outputs, `${where}.outputs`);
  return record;
}

async function useAction(step: StepSpec, where: string, request: WorkflowRequest, workspace: string): Promise<void> {
  const action = step.uses!.split('@')[0]!;
  if (action === 'actions/checkout') {
    refuseUnknownKeys(`${where}.with`, step.with ?? {}, new Set(['persist-credentials']));
    await checkout(request, workspace);
    return;
  }
  if (!NO_OP_ACTIONS.has(action)) throw new Error(`${where}: action ${action} is not emulated by the workflow runner`);
}
