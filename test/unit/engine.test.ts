// The deploy engine's branches without Docker or SSH: a scripted runner plays the server, answering
// each remote script the way the real one would from a small model of the deploy path (releases,
// their records, which went live, current, the lock, the audit log, what is running and healthy).
import { describe, expect, it, vi } from 'vitest';
import type { ComposeApp } from '../../lib/app/compose.ts';
import { EXIT, ToolError } from '../../lib/core/cli.ts';
import { Runner, type Command, type Result } from '../../lib/core/exec.ts';
import { createLogger } from '../../lib/core/log.ts';
import {
  abandon,
  builtRevision,
  diffRelease,
  deploy,
  InterruptedError,
  newReport,
  restoreBackup,
  rollback,
  rollbackTarget,
  StepOutcomeUnknownError,
  type DeployRequest,
  type ServerState,
  type Session,
} from '../../lib/deploy/engine.ts';
import { slotPort } from '../../lib/deploy/proxy.ts';
import { sha256 } from '../../lib/deploy/release-plan.ts';
import { REMOTE_EXIT } from '../../lib/deploy/remote-scripts.ts';

interface Release {
  previous: string | null;
  live: boolean;
  /** What the upload wrote: the whole release.json, the compose file and the .env. */
  record?: Record<string, unknown>;
  compose?: string;
  env?: string;
}

type Step = 'preflight' | 'pull' | 'lock' | 'unlock' | 'upload' | 'backup' | 'restore' | 'migrate' | 'up' | 'finish' | 'discard' | 'audit' | 'current-files';

/** Which remote script a command carries, from text every version of it has. */
function stepOf(script: string): Step {
  const markers: [Step, string][] = [
    // The switch may pull the proxy's image, so it is told apart before the pull.
    ['up', '# aidd-devops: switch\n'],
    ['preflight', 'disk_free_kb='],
    ['current-files', '# aidd-devops: current-files\n'],
    ['pull', 'docker pull'],
    ['unlock', 'echo unlocked'],
    ['lock', 'mkdir "$deploy/lock"'],
    ['upload', 'echo uploaded'],
    ['restore', 'config --services'],
    ['backup', 'container to back up'],
    ['migrate', 'echo migrated'],
    ['up', 'echo started'],
    ['finish', 'current.new'],
    ['discard', 'rm -rf "$deploy/releases/'],
  ];
  return markers.find(([, marker]) => script.includes(marker))?.[0] ?? 'audit';
}

/** The release id a script works on: `id=ID`, or the releases/ID path older scripts used. */
function idOf(script: string): string {
  return (/^id=(\S+)$/m.exec(script) ?? /releases\/["']?([\w.-]+)/.exec(script))![1]!;
}

/** The JSON lines a script appends to the audit log. */
function auditLinesOf(script: string): Record<string, unknown>[] {
  return [...script.matchAll(/^\s*audit '(.*)'$/gm)].map((match) => JSON.parse(match[1]!.replace(/'\\''/g, "'")) as Record<string, unknown>);
}

class FakeServer extends Runner {
  current: string | undefined;
  releases = new Map<string, Release>();
  locked = false;
  running: string | undefined;
  audit: Record<string, unknown>[] = [];
  backups: string[] = [];
  steps: Step[] = [];
  scripts: Partial<Record<Step, string>> = {};
  /** Releases whose containers never become healthy. */
  unhealthy = new Set<string>();
  /** Remote steps that fail, with their exit code and last line. */
  failing = new Map<Step, [number, string]>();
  /** Runs as a step starts: another deploy finishing meanwhile, a signal arriving. */
  during = new Map<Step, () => void>();
  /** Steps started apart from the connection (RELEASE/STEP) and how they ended. */
  detached = new Map<string, Result>();
  /** Answers a wait for a step instead of the server: a dropped connection. */
  waitFails?: (key: string) => Result | undefined;
  /** Every ssh command, in order. */
  commands: Command[] = [];
  /** The state of the reverse proxy's container, as the preflight reports it. */
  proxy = 'running';
  /** What the pull prints besides nothing: `digest` and `content` lines. */
  pullOutput = '';

  constructor(releases: [string, Release][], current?: string) {
    super({ logger: createLogger({ prefix: 'test', quiet: true }) });
    for (const [id, release] of releases) this.releases.set(id, release);
    this.current = current;
    this.running = current;
  }

  stateLines(): string {
    const { compose, env } = (this.current && this.releases.get(this.current)) || {};
    const lines = this.current ? [`current=${this.current}`, `current_compose_sha=${compose === undefined ? 'old' : sha256(compose)}`, `current_env_sha=${env === undefined ? 'old' : sha256(env)}`] : [];
    // The one-line list older scripts printed, so this server also answers the engine before issue 9.
    lines.push(`releases=${[...this.releases.keys()].join(' ')}`);
    for (const [id, release] of this.releases) {
      lines.push(`release=${id}`, `record=${JSON.stringify(release.record ?? { id, previous: release.previous })}`);
      if (release.live) lines.push(`live=${id}`);
    }
    for (const file of this.backups) lines.push(`backup=${file}`);
    return `${lines.join('\n')}\n`;
  }

  override async attempt(command: Command): Promise<Result> {
    const ok = (stdout = ''): Result => ({ exitCode: 0, stdout, stderr: '', skipped: false, durationMs: 0 });
    this.commands.push(command);
    const remote = command.argv.at(-1) ?? '';
    if (typeof command.input !== 'string') {
      // Container status for the checks: one container per service of the release that runs.
      if (remote.includes('docker ps')) return ok(this.running ? 'c1\n' : '');
      if (remote.includes('docker inspect')) return ok(`{"service":"api","state":"running","health":"${this.unhealthy.has(this.running ?? '') ? 'unhealthy' : 'healthy'}"}\n`);
      return ok();
    }
    const script = command.input;
    // A step started apart from the connection runs at once here; a later wait reports how it ended.
    const startedStep = /^step=(\S+)$/m.exec(script)?.[1];
    if (startedStep && script.includes('setsid bash -c')) {
      const inner = /cat > "\$base\.sh" <<'(AIDD_\w+)'\n([\s\S]*?)\n\1/.exec(script)![2]!;
      this.detached.set(`${idOf(script)}/${startedStep}`, await this.attempt({ ...command, input: inner }));
      return ok(`started ${idOf(script)}/${startedStep}\n`);
    }
    if (startedStep && script.startsWith('# aidd-devops: wait')) {
      const key = `${idOf(script)}/${startedStep}`;
      const dropped = this.waitFails?.(key);
      if (dropped) return dropped;
      const ended = this.detached.get(key)!;
      return { ...ended, exitCode: 0, stdout: `${ended.stdout}step-status=${ended.exitCode}\n` };
    }
    const step = stepOf(script);
    this.steps.push(step);
    this.scripts[step] = script;
    this.during.get(step)?.();
    const failure = this.failing.get(step);
    if (failure) return { exitCode: failure[0], stdout: '', stderr: `${failure[1]}\n`, skipped: false, durationMs: 0 };
    this.audit.push(...auditLinesOf(script));
    switch (step) {
      case 'preflight':
        return ok(`docker=20.10\ncompose=docker-compose 1.29\ndisk_free_kb=9999999\nproxy=${this.proxy}\n${this.stateLines()}`);
      case 'lock':
        if (this.locked) return ok('held {"who":"someone"}\n');
        this.locked = true;
        return ok(`locked\n${this.stateLines()}`);
      case 'unlock':
        this.locked = false;
        return ok('unlocked\n');
      case 'upload': {
        const record = JSON.parse(/<<'(AIDD_\w+)'\n(\{\n {2}"id"[\s\S]*?)\n\1/.exec(script)![2]!) as { previous: string | null };
        // A file's heredoc body, which ends before the newline that ends the file.
        const written = (file: string) => {
          const body = new RegExp(`"\\$rel/${file}" <<'(AIDD_\\w+)'\\n([\\s\\S]*?)\\n\\1`).exec(script)?.[2];
          return body === undefined ? undefined : `${body}\n`;
        };
        // Without a .env of its own, the release gets a copy of the current one.
        const env = written('\\.env') ?? (this.current ? this.releases.get(this.current)?.env : undefined);
        this.releases.set(idOf(script), { previous: record.previous, live: false, record, compose: written('docker-compose\\.yml'), env });
        return ok('uploaded\n');
      }
      case 'pull':
        return ok(this.pullOutput);
      case 'backup':
        this.backups.push(`${/backups\/"'?([\w.-]+)\.dump/.exec(script)![1]}.dump`);
        return ok('saved\n');
      case 'up':
        this.running = idOf(script);
        return ok('started\n');
      case 'finish': {
        const id = idOf(script);
        this.current = id;
        this.releases.get(id)!.live = true;
        return ok();
      }
      case 'discard':
        this.releases.delete(idOf(script));
        return ok();
      case 'current-files': {
        const current = this.current ? this.releases.get(this.current) : undefined;
        const line = (name: string, text: string | undefined) => (text === undefined ? '' : `${name}=${Buffer.from(text).toString('base64')}\n`);
        return ok(`${line('compose', current?.compose)}${line('env', current?.env)}`);
      }
      default:
        return ok();
    }
  }

  /** A deploy by someone else: a new release, live and current. */
  otherDeploy(id: string): void {
    this.releases.set(id, { previous: this.current ?? null, live: true });
    this.current = id;
    this.running = id;
  }
}

const app = {
  file: 'docker-compose.yml',
  files: ['docker-compose.yml'],
  dir: '/app',
  raw: { services: { api: { image: 'reg/me/aidd-api:latest' }, postgres: { image: 'postgres:16' } } },
  variables: [],
  services: [{ name: 'api', ports: [], dependsOn: [], envFiles: [] }],
  config: {
    imageName: 'aidd-{service}',
    smoke: [],
    migrate: { service: 'api', command: ['migrate'], needs: ['postgres'] },
    backup: { service: 'postgres', command: 'pg_dump', extension: 'dump' },
    proxy: { enabled: true, http: [], sites: [] },
  },
} as unknown as ComposeApp;

const request: DeployRequest = { app, proxyImage: 'caddy:2', refs: { api: 'reg/me/aidd-api:v2' }, registry: 'reg', envRequired: true, revision: 'abc123', reason: 'test', keep: 5, healthTimeoutMs: 300 };

function session(server: FakeServer): Session {
  return {
    runner: server,
    logger: createLogger({ prefix: 'test', quiet: true }),
    ssh: { host: 'server', port: 22, user: 'deploy', keyFile: '/k', knownHostsFile: '/kh', controlPath: '/c' },
    layout: { deployPath: '/opt/aidd', project: 'aidd' },
  };
}

async function failure(run: Promise<unknown>): Promise<ToolError> {
  try {
    await run;
  } catch (error) {
    return error as ToolError;
  }
  throw new Error('the run did not fail');
}

const twoLive: [string, Release][] = [
  ['r1', { previous: null, live: true }],
  ['r2', { previous: 'r1', live: true }],
];

describe('deploy engine, against a scripted server', () => {
  it('deploys: upload, backup of the live release, migrate, switch, finish; the record points at the release it replaced', async () => {
    const server = new FakeServer(twoLive, 'r2');
    const report = await deploy(session(server), request);
    expect(report).toMatchObject({ ok: true, result: 'deployed', previous: 'r2', backup: `${report.release}.dump` });
    // The pull changes nothing another run relies on, so it goes beside the preflight, before the lock.
    expect(server.steps.slice(0, 2).sort()).toEqual(['preflight', 'pull']);
    expect(server.steps.slice(2)).toEqual(['lock', 'upload', 'backup', 'migrate', 'up', 'finish', 'unlock']);
    // Backup, migrate and switch ran apart from the connection, each waited for until the server said it was over.
    expect([...server.detached.keys()]).toEqual(['backup', 'migrate', 'up'].map((step) => `${report.release}/${step}`));
    expect(server.current).toBe(report.release);
    expect(server.releases.get(report.release!)).toMatchObject({ previous: 'r2', live: true });
    // Pruning keeps the release a rollback from the new one goes to.
    expect(server.scripts.finish).toMatch(/^protected=\(\S+ r2\)$/m);
  });

  it('pulls the digests the registry pinned the tags to; a registry that cannot pin leaves the tags to the server', async () => {
    const pinnedServer = new FakeServer(twoLive, 'r2');
    const pinned = await deploy(session(pinnedServer), { ...request, pinTags: async () => ({ api: 'reg/me/aidd-api@sha256:aa' }) });
    expect(pinned.ok).toBe(true);
    expect(pinnedServer.scripts.pull).toMatch(/^refs=\(reg\/me\/aidd-api@sha256:aa\)$/m);
    const unpinnedServer = new FakeServer(twoLive, 'r2');
    const unpinned = await deploy(session(unpinnedServer), { ...request, pinTags: async () => Promise.reject(new Error('registry unreachable')) });
    expect(unpinned.ok).toBe(true);
    expect(unpinnedServer.scripts.pull).toMatch(/^refs=\(reg\/me\/aidd-api:v2\)$/m);
  });

  it('records the revision given, else the commit the images were built from (their label), else the app repository\'s', async () => {
    const pulled = (label: string) => `digest reg/me/aidd-api:v2 reg/me/aidd-api@sha256:aa\nrevision reg/me/aidd-api:v2 ${label}\ncontent reg/me/aidd-api:v2 content-1\n`;
    const cases: [Partial<DeployRequest>, string, string][] = [
      [{ revision: 'abc123', appRevision: 'beef1234' }, 'feedc0de', 'abc123'],
      [{ revision: undefined, appRevision: 'beef1234' }, 'feedc0de', 'feedc0de'],
      // No label, or one that is no plain revision (an image author's text): the app repository's commit.
      [{ revision: undefined, appRevision: 'beef1234' }, '', 'beef1234'],
      [{ revision: undefined, appRevision: 'beef1234' }, '$(reboot)', 'beef1234'],
      [{ revision: undefined, appRevision: undefined }, '', 'unknown'],
    ];
    for (const [fields, label, recorded] of cases) {
      const server = new FakeServer(twoLive, 'r2');
      server.pullOutput = pulled(label);
      const report = await deploy(session(server), { ...request, ...fields });
      expect(report.release, JSON.stringify(fields)).toMatch(new RegExp(`-${recorded.replace(/[$()]/g, '\\$&')}$`));
    }
  });

  it('--diff decides as a deploy would and changes nothing: images, the compose file, .env names without values', async () => {
    const server = new FakeServer(twoLive, 'r2');
    server.pullOutput = 'digest reg/me/aidd-api:v2 reg/me/aidd-api@sha256:aa\ncontent reg/me/aidd-api:v2 content-1\n';
    const first = await deploy(session(server), { ...request, env: 'API_KEY=old-value-1\nKEEP=1\nGONE=1\n' });
    expect(first.ok).toBe(true);
    server.steps = [];
    server.pullOutput = 'digest reg/me/aidd-api:v3 reg/me/aidd-api@sha256:bb\ncontent reg/me/aidd-api:v3 content-2\n';
    const diff = await diffRelease(session(server), { ...request, refs: { api: 'reg/me/aidd-api:v3' }, env: 'API_KEY=new-value-2\nKEEP=1\nADDED=1\n' });
    expect(diff).toMatchObject({
      current: first.release,
      images: [{ service: 'api', from: 'reg/me/aidd-api@sha256:aa', to: 'reg/me/aidd-api@sha256:bb', kept: false }],
      env: { added: ['ADDED'], removed: ['GONE'], changed: ['API_KEY'] },
    });
    expect(diff.compose).toMatch(/^-\s+image: reg\/me\/aidd-api@sha256:aa$/m);
    expect(diff.compose).toMatch(/^\+\s+image: reg\/me\/aidd-api@sha256:bb$/m);
    expect(JSON.stringify(diff)).not.toMatch(/old-value-1|new-value-2/);
    // Read-only: no lock, no upload, no switch.
    expect(server.steps.sort()).toEqual(['current-files', 'preflight', 'pull']);
  });

  it('decides from the state read under the lock: another deploy that finished meanwhile is backed up, recorded and restored', async () => {
    const server = new FakeServer(twoLive, 'r2');
    server.during.set('lock', () => server.otherDeploy('r3'));
    server.during.set('up', () => {
      const id = idOf(server.scripts.up!);
      if (id !== 'r3') server.unhealthy.add(id);
    });
    const report = await deploy(session(server), request);
    expect(report).toMatchObject({ result: 'rolled-back', previous: 'r3' });
    expect(server.scripts.backup).toMatch(/^current=r3$/m);
    expect(server.audit.at(-1)).toMatchObject({ result: 'rolled-back', restored: 'r3', previous: 'r3' });
    expect(server.running).toBe('r3');
    expect(server.current).toBe('r3');
  });

  it('a failure before the switch discards the new release; the report keeps the failed step and the backup', async () => {
    const server = new FakeServer(twoLive, 'r2');
    server.failing.set('migrate', [REMOTE_EXIT.migrateFailed, 'migration failed']);
    const report = newReport('deploy');
    const error = await failure(deploy(session(server), request, report));
    expect(error.message).toMatch(/migration failed/);
    expect(report).toMatchObject({ ok: false, failedStep: 'migrate', backup: `${report.release}.dump` });
    expect(server.steps.slice(-2)).toEqual(['discard', 'unlock']);
    expect(server.releases.has(report.release!)).toBe(false);
    expect(server.audit.at(-1)).toMatchObject({ result: 'failed', step: 'migrate' });
    expect(server.current).toBe('r2');
    expect(server.locked).toBe(false);
  });

  it('an unhealthy release rolls back to the one live before it, and is removed', async () => {
    const server = new FakeServer(twoLive, 'r2');
    server.during.set('up', () => {
      const id = idOf(server.scripts.up!);
      if (id !== 'r2') server.unhealthy.add(id);
    });
    const report = await deploy(session(server), request);
    // The backup taken before its migration holds the data the restored release knew.
    expect(report).toMatchObject({ ok: false, result: 'rolled-back', failedStep: 'verify', backup: `${report.release}.dump` });
    expect(server.audit.at(-1)).toMatchObject({ result: 'rolled-back', backup: `${report.release}.dump` });
    expect(server.running).toBe('r2');
    expect(server.releases.has(report.release!)).toBe(false);
  });

  it('refuses to migrate without a backup when the database cannot be dumped, and migrates with --no-backup (audited)', async () => {
    const server = new FakeServer(twoLive, 'r2');
    server.failing.set('backup', [REMOTE_EXIT.backupFailed, 'no running postgres container to back up']);
    const error = await failure(deploy(session(server), request));
    expect(error.message).toMatch(/no running postgres container to back up; nothing was migrated\. Pass --no-backup/);
    expect(server.steps).not.toContain('migrate');
    expect(server.current).toBe('r2');

    const again = new FakeServer(twoLive, 'r2');
    const report = await deploy(session(again), { ...request, noBackup: true });
    expect(report.ok).toBe(true);
    expect(again.steps).not.toContain('backup');
    expect(again.audit.at(-1)).toMatchObject({ result: 'deployed', backup: 'skipped: --no-backup' });
  });

  it('refuses a migration when aidd.yml has no backup, unless --no-backup', async () => {
    const noBackup = { ...app, config: { ...app.config, backup: undefined } } as ComposeApp;
    const server = new FakeServer(twoLive, 'r2');
    const error = await failure(deploy(session(server), { ...request, app: noBackup }));
    expect(error.exitCode).toBe(EXIT.usage);
    expect(server.steps).not.toContain('upload');
    expect((await deploy(session(new FakeServer(twoLive, 'r2')), { ...request, app: noBackup, noBackup: true })).ok).toBe(true);
  });

  it.each(['upload', 'backup', 'migrate'] as const)('a signal during %s stops before the switch and removes the release', async (step) => {
    const server = new FakeServer(twoLive, 'r2');
    const run = session(server);
    server.during.set(step, () => (run.interrupted = 'SIGINT'));
    const report = newReport('deploy');
    const error = await failure(deploy(run, request, report));
    expect(error).toBeInstanceOf(InterruptedError);
    expect(error.exitCode).toBe(130);
    expect(server.steps).not.toContain('up');
    expect(server.releases.has(report.release!)).toBe(false);
    expect(server.audit.at(-1)).toMatchObject({ action: 'interrupted' });
    expect(server.locked).toBe(false);
  });

  it('a signal during the switch leaves current alone and the release never counts as live', async () => {
    const server = new FakeServer(twoLive, 'r2');
    const run = session(server);
    server.during.set('up', () => (run.interrupted = 'SIGTERM'));
    const report = newReport('deploy');
    const error = await failure(deploy(run, request, report));
    expect(error.exitCode).toBe(143);
    expect(server.current).toBe('r2');
    expect(server.releases.get(report.release!)).toMatchObject({ previous: 'r2', live: false });
    expect(server.audit.at(-1)).toMatchObject({ action: 'interrupted', step: 'switch' });
    expect(server.locked).toBe(false);
  });

  it('refuses while another run holds the lock, before taking it or changing anything', async () => {
    const server = new FakeServer(twoLive, 'r2');
    server.locked = true;
    const preflight = server.attempt.bind(server);
    server.attempt = async (command) => {
      const result = await preflight(command);
      return stepOf(String(command.input ?? '')) === 'preflight' ? { ...result, stdout: `${result.stdout}lock={"who":"ana"}\n` } : result;
    };
    const error = await failure(deploy(session(server), request));
    expect(error.exitCode).toBe(EXIT.refused);
    // Only the pull went on beside the preflight: it changes nothing another run relies on.
    expect(server.steps.sort()).toEqual(['preflight', 'pull']);
  });

  it('a dropped connection while a step runs is reopened and asked again; the step itself is never cut', async () => {
    const server = new FakeServer(twoLive, 'r2');
    let drops = 2;
    server.waitFails = (key) => (key.endsWith('/migrate') && drops-- > 0 ? { exitCode: 255, stdout: '', stderr: 'Connection reset\n', skipped: false, durationMs: 0 } : undefined);
    const report = await deploy(session(server), request);
    expect(report.ok).toBe(true);
    expect(server.steps.filter((step) => step === 'migrate')).toHaveLength(1);
    // The run's connection, then one new connection after each drop.
    expect(server.commands.filter((command) => command.argv.includes('-N'))).toHaveLength(3);
  });

  it('when the server cannot be asked past the deadline, the lock and the release stay: the step may still run', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      const server = new FakeServer(twoLive, 'r2');
      server.waitFails = (key) => {
        if (!key.endsWith('/migrate')) return undefined;
        vi.setSystemTime(Date.now() + 3_600_000);
        return { exitCode: 255, stdout: '', stderr: 'Connection timed out\n', skipped: false, durationMs: 0 };
      };
      const run = session(server);
      const report = newReport('deploy');
      const error = await failure(deploy(run, request, report));
      expect(error).toBeInstanceOf(StepOutcomeUnknownError);
      expect(error.message).toMatch(/server runs \S+\/migrate, which goes on without this run; the deploy lock stays/);
      expect(report.failedStep).toBe('migrate');
      expect(server.locked).toBe(true);
      expect(server.steps).not.toContain('discard');
      expect(server.releases.has(report.release!)).toBe(true);
      // A second signal then leaves the lock too.
      await abandon(run);
      expect(server.locked).toBe(true);
    } finally {
      vi.useRealTimers();
    }
  });

  it('a second signal between steps frees the lock', async () => {
    const server = new FakeServer(twoLive, 'r2');
    const run = session(server);
    server.during.set('upload', () => void abandon(run));
    await deploy(run, request).catch(() => undefined);
    expect(server.steps).toContain('unlock');
  });
});

describe('with the reverse proxy', () => {
  // The api publishes its HTTP port, which aidd.yml names: the proxy serves it, the container takes a slot port.
  const routedApp = {
    ...app,
    raw: { services: { api: { image: 'reg/me/aidd-api:latest', ports: ['127.0.0.1:8000:8000'] }, postgres: { image: 'postgres:16' } } },
    config: { ...app.config, migrate: undefined, backup: undefined, proxy: { enabled: true, http: [{ service: 'api', port: 8000, health: '/health' }], sites: [] } },
  } as unknown as ComposeApp;
  // The .env is uploaded each time, as CI does (--server-env): the same one, so no container needs replacing for it.
  const routedRequest: DeployRequest = { ...request, app: routedApp, env: 'API_KEY=k\n' };
  const pulled = (tag: string, digest: string, content: string) => `digest reg/me/aidd-api:${tag} reg/me/aidd-api@sha256:${digest}\ncontent reg/me/aidd-api:${tag} ${content}\n`;

  it('uploads the routes with the release and switches the api on its slot port', async () => {
    const server = new FakeServer(twoLive, 'r2');
    const report = await deploy(session(server), routedRequest);
    expect(report).toMatchObject({ ok: true, result: 'deployed' });
    expect(server.scripts.upload).toContain('"$rel/proxy.caddy"');
    expect(server.scripts.up).toMatch(new RegExp(`^routed=\\(api:8000:${slotPort('aidd', 'api', 8000, 0)}\\)$`, 'm'));
    expect(server.releases.get(report.release!)!.record).toMatchObject({ slots: { api: 0 }, listen: { 'api:8000': 8000 } });
  });

  it('a second deploy of the same images changes nothing: no upload, no switch, only a health check of the live release', async () => {
    const server = new FakeServer(twoLive, 'r2');
    const first = await deploy(session(server), routedRequest);
    server.steps = [];
    const again = await deploy(session(server), routedRequest);
    expect(again).toMatchObject({ ok: true, result: 'unchanged', release: first.release });
    expect(server.steps.slice(0, 2).sort()).toEqual(['preflight', 'pull']);
    // The audit line rides with the unlock: one round trip after the health check.
    expect(server.steps.slice(2)).toEqual(['lock', 'unlock']);
    expect(server.scripts.unlock).toContain('"result":"unchanged"');
  });

  it('the same images with the proxy stopped make a new release, whose switch starts the proxy again', async () => {
    const server = new FakeServer(twoLive, 'r2');
    const first = await deploy(session(server), routedRequest);
    server.proxy = 'exited';
    const again = await deploy(session(server), routedRequest);
    expect(again).toMatchObject({ ok: true, result: 'deployed' });
    expect(again.release).not.toBe(first.release);
    // The api keeps its slot, so its running container is kept: only the proxy comes back.
    expect(server.scripts.up).toMatch(new RegExp(`^routed=\\(api:8000:${slotPort('aidd', 'api', 8000, 0)}\\)$`, 'm'));
  });

  it('an image whose content did not change keeps the live image and container; one whose content changed is switched to the other slot', async () => {
    const server = new FakeServer(twoLive, 'r2');
    server.pullOutput = pulled('v2', 'aa', 'content-1');
    const first = await deploy(session(server), routedRequest);
    expect(first.images).toEqual({ api: 'reg/me/aidd-api@sha256:aa' });

    // A new build of the same sources: another digest (its revision label), the same content.
    server.pullOutput = pulled('v3', 'bb', 'content-1');
    const rebuilt = await deploy(session(server), { ...routedRequest, refs: { api: 'reg/me/aidd-api:v3' } });
    expect(rebuilt).toMatchObject({ result: 'unchanged', kept: ['api'], images: { api: 'reg/me/aidd-api@sha256:aa' }, release: first.release });

    server.pullOutput = pulled('v4', 'cc', 'content-2');
    const changed = await deploy(session(server), { ...routedRequest, refs: { api: 'reg/me/aidd-api:v4' } });
    expect(changed).toMatchObject({ result: 'deployed', kept: [], images: { api: 'reg/me/aidd-api@sha256:cc' } });
    expect(server.scripts.up).toMatch(new RegExp(`^routed=\\(api:8000:${slotPort('aidd', 'api', 8000, 1)}\\)$`, 'm'));
  });
});

describe('across a migration', () => {
  it('--rollback names the backup taken before the release it leaves was deployed', async () => {
    const server = new FakeServer(twoLive, 'r2');
    const deployed = await deploy(session(server), request);
    const report = await rollback(session(server), { app, proxyImage: 'caddy:2', reason: 'test', healthTimeoutMs: 300 });
    expect(report).toMatchObject({ ok: true, release: 'r2', previous: deployed.release, backup: `${deployed.release}.dump` });
    expect(server.audit.at(-1)).toMatchObject({ action: 'rollback', result: 'ok', backup: `${deployed.release}.dump` });
  });

  const restorable = { ...app, config: { ...app.config, backup: { ...app.config.backup!, restore: 'pg_restore' } } } as ComposeApp;

  it('--restore-backup restores a named backup into the live release, locked, checked and audited', async () => {
    const server = new FakeServer(twoLive, 'r2');
    server.backups.push('r2.dump');
    const report = await restoreBackup(session(server), { app: restorable, backup: 'r2.dump', reason: 'test', healthTimeoutMs: 300 });
    expect(report).toMatchObject({ ok: true, action: 'restore-backup', result: 'restored', release: 'r2', backup: 'r2.dump' });
    expect(server.steps).toEqual(['preflight', 'lock', 'restore', 'audit', 'unlock']);
    expect(server.scripts.restore).toMatch(/^file="\$deploy\/backups\/"r2\.dump$/m);
    expect(server.audit.at(-1)).toMatchObject({ action: 'restore-backup', release: 'r2', backup: 'r2.dump', result: 'ok' });
  });

  it('--restore-backup refuses a backup the server does not keep, and an app without a restore command', async () => {
    const server = new FakeServer(twoLive, 'r2');
    const missing = await failure(restoreBackup(session(server), { app: restorable, backup: 'r9.dump', reason: 'test', healthTimeoutMs: 300 }));
    expect(missing.exitCode).toBe(EXIT.usage);
    expect(missing.message).toBe('there is no backup r9.dump on the server; it keeps: none');
    expect(server.steps).not.toContain('restore');
    expect(server.locked).toBe(false);
    const untold = await failure(restoreBackup(session(server), { app, backup: 'r2.dump', reason: 'test', healthTimeoutMs: 300 }));
    expect(untold.exitCode).toBe(EXIT.usage);
    expect(untold.message).toMatch(/^aidd\.yml backup: has no restore: command/);
  });
});

describe('rollback target', () => {
  it('follows the chain of releases that went live, skipping one interrupted at the switch', async () => {
    // r3 was switched to but interrupted before it was verified: it never went live.
    const server = new FakeServer(
      [
        ['r1', { previous: null, live: true }],
        ['r2', { previous: 'r1', live: true }],
        ['r3', { previous: 'r2', live: false }],
        ['r4', { previous: 'r2', live: true }],
      ],
      'r4',
    );
    const report = await rollback(session(server), { app, proxyImage: 'caddy:2', reason: 'test', healthTimeoutMs: 300 });
    expect(report).toMatchObject({ ok: true, release: 'r2', previous: 'r4' });
    expect(server.current).toBe('r2');
    // A second rollback keeps going back along the chain.
    expect((await rollback(session(server), { app, proxyImage: 'caddy:2', reason: 'test', healthTimeoutMs: 300 })).release).toBe('r1');
  });

  it('is the first release on the chain still kept and live', () => {
    const state: ServerState = {
      current: 'r5',
      releases: ['r1', 'r3', 'r4', 'r5'],
      records: { r5: { previous: 'r4' }, r4: { previous: 'r2' }, r3: { previous: 'r1' } },
      live: ['r1', 'r5'],
      backups: [],
      vars: {},
    };
    // r4 never went live, r2 was pruned; r3 is not on the chain at all.
    expect(rollbackTarget(state)).toBeUndefined();
    expect(rollbackTarget({ ...state, live: ['r1', 'r3', 'r4', 'r5'] })).toBe('r4');
    expect(rollbackTarget({ ...state, records: { ...state.records, r4: { previous: 'r4' } }, live: [] })).toBeUndefined();
  });

  it('says when there is nothing to roll back to', async () => {
    const server = new FakeServer([['r1', { previous: null, live: true }]], 'r1');
    const error = await failure(rollback(session(server), { app, proxyImage: 'caddy:2', reason: 'test', healthTimeoutMs: 300 }));
    expect(error.message).toBe('no release that went live before r1 is kept on the server; see --history');
    expect(server.locked).toBe(false);
  });

  it('after a rollback, names the other kept releases a second one can go to with --to', async () => {
    const server = new FakeServer([['r1', { previous: null, live: true }], ['r2', { previous: 'r1', live: true }]], 'r1');
    const error = await failure(rollback(session(server), { app, proxyImage: 'caddy:2', reason: 'test', healthTimeoutMs: 300 }));
    expect(error.message).toBe('no release that went live before r1 is kept on the server; to go to another kept release, pass --to ID (r2); see --history');
  });
});

describe('builtRevision', () => {
  it('is the commit every image names, and nothing when they differ, one names none, or a label is not a plain revision', () => {
    expect(builtRevision({ api: 'a1b2c3', bot: 'a1b2c3' }, ['api', 'bot'])).toBe('a1b2c3');
    expect(builtRevision({ api: 'a1b2c3', bot: 'd4e5f6' }, ['api', 'bot'])).toBeUndefined();
    expect(builtRevision({ api: 'a1b2c3' }, ['api', 'bot'])).toBeUndefined();
    expect(builtRevision({ api: 'x y' }, ['api'])).toBeUndefined();
    expect(builtRevision({}, [])).toBeUndefined();
  });
});
