// docs/guides/manual-deploy.md, run as its reader runs it: the laptop blocks as a fresh local user in one
// bash session (exports carry over, as in a terminal), the server blocks as root on this machine, whose
// sshd (on a free loopback port, with the machine's own host key) and Docker engine are the server. The
// guide's own commands create the deploy user, its key login and the deploy directory; then the app is
// deployed by hand, moved to the toolkit, deployed again, and operated with the day-2 commands. A
// command that fails, a path the guide names that is not there, or a sh block without a
// <!-- guide-test: ... --> line fails the test: the guide and the code cannot drift apart unseen.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chownSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadComposeApp } from '../../lib/app/compose.ts';
import { DEFAULT_COMPOSE_FILE, detectComposeCli, REPO_ROOT, scriptArgv } from '../../lib/app/target.ts';
import { resolveBaseImages } from '../../lib/build/base-images.ts';
import { createLogger } from '../../lib/core/log.ts';
import { freePort } from '../../lib/core/net.ts';
import { startRegistry, startSshDaemon, type Registry } from '../../lib/sandbox/sandbox.ts';
import { adapt, asTheReaderTypesIt, EXAMPLE_VALUES, guideBlocks, inCommands, type GuideBlock, type ReaderValues } from './guide-commands.ts';
import { buildPushEnv, committedStackCopy, getJson, pushVariant, removeProject, requireDocker, SANDBOX_DIR, tempDir, testRunner, useProxyImage } from './harness.ts';

const GUIDE = path.join(REPO_ROOT, 'docs', 'guides', 'manual-deploy.md');
/** The machine's own host key: the one the guide's fingerprint loop on the server reads. */
const HOST_KEY = '/etc/ssh/ssh_host_ed25519_key';
const runner = testRunner();
/** How long each laptop block took, with AIDD_TEST_VERBOSE set. */
const log = createLogger({ prefix: 'guide', quiet: !process.env.AIDD_TEST_VERBOSE });
const suffix = randomBytes(3).toString('hex');
/** The deploy user, the deploy path, the image owner and the compose project: all new, all this run's. */
const name = `aidd-guide-${suffix}`;
const deployPath = `/opt/${name}`;
const laptopUser = `aidd-laptop-${suffix}`;
const scratch = tempDir('aidd-guide-e2e');
const dockerConfig = path.join(scratch, 'docker-config');
const { blocks, problems } = guideBlocks(readFileSync(GUIDE, 'utf8'));
const ran = new Set<GuideBlock>();
/** Everything the commands printed, by the command's first line: searched for secrets at the end. */
const transcript: [string, string][] = [];

let registry: Registry;
let values: ReaderValues;
let sshPort: number;
let stopSshd: (() => void) | undefined;
let laptopHome: string;
let terminal: Terminal | undefined;
let apiPort: number;
let frontendPort: number;
let postgresImage: string | undefined;
/** The committed copy of the reference app the images are built from. */
let stackCopy: string | undefined;

interface Output {
  stdout: string;
  stderr: string;
}

/**
 * One bash of the laptop user, fed one block at a time, like a terminal: `cd` and `export` carry over,
 * and a failing command ends it (errexit), as a reader stops at a command that fails. Each block reads
 * its own stdin (what the reader types, e.g. a token for `read -rs`) and writes its own output files.
 */
class Terminal {
  readonly dir: string;
  readonly uid: number;
  readonly gid: number;
  readonly child: ChildProcess;
  private marks = '';
  private exitCode: number | null | undefined;
  private count = 0;

  constructor(user: string, dir: string, uid: number, gid: number) {
    this.dir = dir;
    this.uid = uid;
    this.gid = gid;
    // A login as the user (its HOME, PATH and profile), then a bash reading commands from this pipe.
    this.child = spawn('runuser', ['-l', user, '-c', 'exec bash -e -o pipefail'], { stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    this.child.stdout!.on('data', (chunk: Buffer) => (this.marks += chunk.toString()));
    this.child.stderr!.on('data', (chunk: Buffer) => (this.marks += chunk.toString()));
    this.child.on('exit', (code) => (this.exitCode = code));
  }

  private file(name: string, content: string): string {
    const file = path.join(this.dir, name);
    writeFileSync(file, content, { mode: 0o600 });
    chownSync(file, this.uid, this.gid);
    return file;
  }

  async run(text: string, input = '', timeoutMs = 300_000): Promise<Output> {
    if (this.exitCode !== undefined) throw new Error('the laptop terminal has ended after an earlier failure');
    const id = String((this.count += 1)).padStart(2, '0');
    const script = this.file(`${id}.sh`, `${text}\n`);
    const stdin = this.file(`${id}.in`, input);
    const [out, err] = [path.join(this.dir, `${id}.out`), path.join(this.dir, `${id}.err`)];
    const done = `guide-test: block ${id} done`;
    this.child.stdin!.write(`{ . ${script}; } <${stdin} >${out} 2>${err}\necho '${done}'\n`);
    const started = Date.now();
    while (!this.marks.includes(done) && this.exitCode === undefined && Date.now() < started + timeoutMs) await sleep(100);
    log.info(`laptop block ${id}: ${((Date.now() - started) / 1000).toFixed(1)}s: ${text.split('\n')[0]}`);
    const output = { stdout: existsSync(out) ? readFileSync(out, 'utf8') : '', stderr: existsSync(err) ? readFileSync(err, 'utf8') : '' };
    transcript.push([text.split('\n')[0]!, output.stdout + output.stderr]);
    if (!this.marks.includes(done)) {
      const why = this.exitCode === undefined ? `did not finish within ${timeoutMs / 1000}s` : `failed (the shell exited with ${this.exitCode})`;
      this.close();
      throw new Error(`laptop block ${why}:\n${text}\n--- its stderr:\n${output.stderr}\n--- its stdout:\n${output.stdout}\n--- the terminal:\n${this.marks}`);
    }
    return output;
  }

  close(): void {
    if (this.exitCode !== undefined) return;
    this.child.stdin!.end();
    try {
      process.kill(-this.child.pid!, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
}

/** The one block that runs (not skipped) and holds `text`. */
function block(text: string): GuideBlock {
  const found = blocks.filter((candidate) => candidate.where !== 'skip' && candidate.text.includes(text));
  if (found.length !== 1) throw new Error(`the guide changed: ${found.length} blocks that run hold ${JSON.stringify(text)}, not one`);
  return found[0]!;
}

function reader(guideBlock: GuideBlock): string {
  return asTheReaderTypesIt(guideBlock.text, guideBlock.where, values);
}

async function onLaptop(guideBlock: GuideBlock, text = reader(guideBlock), input = ''): Promise<Output> {
  expect(guideBlock.where).toBe('laptop');
  ran.add(guideBlock);
  return terminal!.run(text, input);
}

/** A server block as the administrator: root, in a console of its own. */
async function onServer(guideBlock: GuideBlock, text = reader(guideBlock)): Promise<Output> {
  expect(guideBlock.where).toBe('server');
  ran.add(guideBlock);
  const result = await runner.attempt({ argv: ['bash', '-e', '-o', 'pipefail', '-c', text], cwd: scratch, timeoutMs: 120_000 });
  transcript.push([text.split('\n')[0]!, result.stdout + result.stderr]);
  expect(result.exitCode, `server block failed:\n${text}\n${result.stderr}`).toBe(0);
  return result;
}

async function run(argv: string[]): Promise<string> {
  return (await runner.run({ argv, timeoutMs: 120_000 })).stdout;
}

/** The user's entry in /etc/passwd: [name, password, uid, gid, gecos, home, shell]. */
async function passwd(user: string): Promise<string[]> {
  return (await run(['getent', 'passwd', user])).trim().split(':');
}

function mode(file: string): string {
  return (statSync(file).mode & 0o777).toString(8);
}

function owner(file: string): number {
  return statSync(file).uid;
}

function deployLog(): Record<string, unknown>[] {
  return readFileSync(path.join(deployPath, 'deploys.log'), 'utf8').trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
}

function currentRelease(): string {
  return readlinkSync(path.join(deployPath, 'current'));
}

function releases(): string[] {
  return readdirSync(path.join(deployPath, 'releases')).sort();
}

async function projectContainers(service?: string): Promise<string[]> {
  const filters = ['--filter', `label=com.docker.compose.project=${name}`, ...(service ? ['--filter', `label=com.docker.compose.service=${service}`] : [])];
  return (await run(['docker', 'ps', '--quiet', ...filters])).split('\n').filter(Boolean);
}

async function psql(query: string): Promise<string> {
  const [id] = await projectContainers('postgres');
  return (await run(['docker', 'exec', id!, 'psql', '-U', 'aidd', '-d', 'aidd', '-tAc', query])).trim();
}

/** Files under `dir` whose content holds `value`. */
function filesHolding(dir: string, value: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .map((file) => path.join(dir, file))
    .filter((file) => lstatSync(file).isFile() && readFileSync(file).includes(value));
}

/** The app as its users reach it on the server: the api's health and the frontend's page. */
async function expectAppAnswers(): Promise<void> {
  expect(await getJson(`http://127.0.0.1:${apiPort}/health`)).toMatchObject({ status: 200, body: { status: 'ok', database: 'ok' } });
  const page = await fetch(`http://127.0.0.1:${frontendPort}/`, { signal: AbortSignal.timeout(10_000) });
  expect(page.status).toBe(200);
  expect(await page.text()).toContain('AIDD Bot');
}

/**
 * Step 1 on the laptop, which cannot reach GitHub or npm here: this checkout as it is now (tracked and new
 * files, and node_modules), committed, as a clone of the reader's fork with `npm ci` done.
 */
async function cloneOfThisCheckout(dir: string, uid: number, gid: number): Promise<void> {
  const listed = (await runner.run({ argv: ['git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard'], cwd: REPO_ROOT })).stdout;
  const files = [...new Set(listed.split('\0').filter((file) => file && existsSync(path.join(REPO_ROOT, file))))];
  mkdirSync(dir, { recursive: true });
  const list = path.join(scratch, 'checkout-files');
  writeFileSync(list, [...files, 'node_modules'].join('\0'));
  await runner.run({ argv: ['bash', '-c', 'tar -C "$1" --null -T "$2" -cf - | tar -C "$3" -xf -', 'copy', REPO_ROOT, list, dir], timeoutMs: 120_000 });
  await runner.run({ argv: ['chown', '-R', `${uid}:${gid}`, dir], timeoutMs: 60_000 });
  const git = (args: string[]) => runner.run({ argv: ['runuser', '-u', laptopUser, '--', 'git', '-C', dir, '-c', 'user.name=aidd-guide', '-c', 'user.email=aidd-guide@example.com', ...args], timeoutMs: 60_000 });
  for (const args of [['init', '--quiet'], ['add', '--all'], ['commit', '--quiet', '--message', 'the checkout under test']]) await git(args);
}

describe('docs/guides/manual-deploy.md, run as its reader runs it', () => {
  beforeAll(async () => {
    expect(problems).toEqual([]);
    await requireDocker(runner);
    const proxyImage = await useProxyImage(runner);
    registry = await startRegistry(runner, path.join(SANDBOX_DIR, 'registry'));
    values = {
      host: '127.0.0.1',
      user: name,
      deployPath,
      owner: name,
      registryUser: registry.user,
      registry: registry.address,
      project: name,
      composeV1: (await detectComposeCli(runner))[0] === 'docker-compose',
    };
    [apiPort, frontendPort] = [await freePort(), await freePort()];

    // The fork's build workflow on main, done here: the images of a clean commit, tagged latest too, under the
    // owner's name in the registry.
    mkdirSync(dockerConfig);
    const stack = await committedStackCopy(runner, 'aidd-guide-stack');
    stackCopy = path.dirname(stack.dir);
    const build = scriptArgv('build-push', ['--compose', path.join(stack.dir, 'docker-compose.yml'), '--json']);
    const built = await runner.attempt({ argv: build, env: buildPushEnv(registry, name, dockerConfig), timeoutMs: 900_000 });
    expect(built.exitCode, built.stderr).toBe(0);
    // No Docker Hub here: PostgreSQL comes from the registry too, as the stand-in built from Debian's packages.
    const baseImages = await resolveBaseImages(await loadComposeApp(DEFAULT_COMPOSE_FILE), runner, createLogger({ prefix: 'e2e', quiet: true }));
    if (baseImages.POSTGRES_IMAGE) {
      postgresImage = `${registry.address}/${name}/postgres:16`;
      await run(['docker', 'tag', baseImages.POSTGRES_IMAGE, postgresImage]);
      await runner.run({ argv: ['docker', 'push', postgresImage], env: { DOCKER_CONFIG: dockerConfig }, timeoutMs: 300_000 });
    }

    // The server's sshd: the fresh deploy user may log in once the guide has created it.
    expect(existsSync(HOST_KEY), `${HOST_KEY} is missing: the OpenSSH server package makes it (ssh-keygen -A)`).toBe(true);
    const sshd = await startSshDaemon(runner, path.join(scratch, 'sshd'), { allowUsers: name, hostKey: HOST_KEY });
    [sshPort, stopSshd] = [sshd.port, sshd.stop];

    // The laptop: a fresh account. OpenSSH finds ~ in the passwd entry, so it has to be a real user.
    await run(['useradd', '--create-home', '--shell', '/bin/bash', laptopUser]);
    const [, , uid, gid, , home] = await passwd(laptopUser);
    laptopHome = home!;
    const [laptopUid, laptopGid] = [Number(uid), Number(gid)];
    await cloneOfThisCheckout(path.join(laptopHome, 'aidd-devops'), laptopUid, laptopGid);
    // npm asks the registry for a newer npm once a day; tests reach no network but loopback.
    writeFileSync(path.join(laptopHome, '.npmrc'), 'update-notifier=false\n');
    // Plain ssh and scp reach the server's port as the reader's ~/.ssh/config would send them there.
    mkdirSync(path.join(laptopHome, '.ssh'), { mode: 0o700 });
    writeFileSync(path.join(laptopHome, '.ssh', 'config'), `Host 127.0.0.1\n  Port ${sshPort}\n`, { mode: 0o600 });
    const sessionDir = path.join(laptopHome, '.guide-test');
    mkdirSync(sessionDir, { mode: 0o700 });
    await run(['chown', '-R', `${laptopUid}:${laptopGid}`, path.join(laptopHome, '.npmrc'), path.join(laptopHome, '.ssh'), sessionDir]);

    terminal = new Terminal(laptopUser, sessionDir, laptopUid, laptopGid);
    // What the guide tells a reader whose server differs from its examples: another SSH port (--port), another
    // deploy path (DEPLOY_PATH) and project (--project), another registry (REGISTRY), another proxy image.
    await terminal.run(
      [
        `export SSH_PORT=${sshPort} DEPLOY_PATH=${deployPath} COMPOSE_PROJECT_NAME=${name} REGISTRY=${registry.address} AIDD_PROXY_IMAGE=${proxyImage}`,
        'cd ~/aidd-devops',
      ].join('\n'),
    );
  });

  afterAll(async () => {
    terminal?.close();
    await removeProject(runner, name, { volumes: true });
    stopSshd?.();
    for (const user of [name, laptopUser]) await runner.attempt({ argv: ['userdel', '--remove', user], timeoutMs: 60_000 });
    rmSync(deployPath, { recursive: true, force: true });
    const images = (await runner.attempt({ argv: ['docker', 'image', 'ls', '--format', '{{.Repository}}:{{.Tag}}', `${registry?.address}/${name}/*`] })).stdout.split('\n').filter(Boolean);
    if (images.length > 0) await runner.attempt({ argv: ['docker', 'image', 'rm', '--force', ...images], timeoutMs: 120_000 });
    for (const dir of [scratch, stackCopy]) if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('every sh block says where it runs, and the reader replaces every example value', () => {
    expect(problems).toEqual([]);
    for (const guideBlock of blocks) {
      if (guideBlock.where === 'skip') continue;
      expect(inCommands(reader(guideBlock), (commands) => (EXAMPLE_VALUES.test(commands) ? '<example value left>' : '')), reader(guideBlock)).not.toContain('<example value left>');
    }
  });

  it('step 2: the laptop makes the deploy key', async () => {
    // No passphrase: a test cannot type one. The guide asks people for one, with ssh-add.
    const keygen = block('ssh-keygen -t ed25519');
    await onLaptop(keygen, adapt(reader(keygen), '-f ~/.ssh/aidd_deploy', "-N '' -f ~/.ssh/aidd_deploy"));
    await onLaptop(block('export SSH_KEY_FILE'));
    expect(mode(path.join(laptopHome, '.ssh', 'aidd_deploy'))).toBe('600');
    expect(readFileSync(path.join(laptopHome, '.ssh', 'aidd_deploy.pub'), 'utf8')).toMatch(/^ssh-ed25519 \S+ aidd-deploy\n$/);
  });

  it("step 3: the scanned host key has the fingerprint the server's console shows", async () => {
    const serverConsole = await onServer(block('for key in /etc/ssh/ssh_host_*_key.pub'));
    // The guide's advice for another SSH port.
    const scan = block('ssh-keyscan -t ed25519');
    const scanned = await onLaptop(scan, adapt(reader(scan), 'ssh-keyscan -t', `ssh-keyscan -p ${sshPort} -t`));
    const fingerprint = /SHA256:\S+/.exec(scanned.stdout)?.[0];
    expect(fingerprint, scanned.stdout).toBeDefined();
    expect(serverConsole.stdout).toContain(fingerprint);
    expect(readFileSync(path.join(laptopHome, '.ssh', 'known_hosts'), 'utf8')).toMatch(new RegExp(`^\\[127\\.0\\.0\\.1\\]:${sshPort} ssh-ed25519 `, 'm'));
    expect(existsSync(path.join(laptopHome, 'aidd-devops', 'server_known_hosts'))).toBe(false);
  });

  it("step 4: the guide's commands make the deploy user, its key login and the deploy directory", async () => {
    expect((await runner.attempt({ argv: ['id', '-u', name] })).exitCode).not.toBe(0);
    expect(existsSync(deployPath)).toBe(false);
    await onServer(block('useradd'));
    // The reader pastes the line `cat ~/.ssh/aidd_deploy.pub` printed on the laptop.
    const publicKey = readFileSync(path.join(laptopHome, '.ssh', 'aidd_deploy.pub'), 'utf8').trim();
    const paste = block("echo 'ssh-ed25519");
    await onServer(paste, adapt(reader(paste), "'ssh-ed25519 AAAA...the rest of the line... aidd-deploy'", `'${publicKey}'`));
    await onServer(block('install -d -o deploy'));

    const [, , uid, , , home, shell] = await passwd(name);
    expect([home, shell]).toEqual([`/home/${name}`, '/bin/bash']);
    expect((await run(['id', '-nG', name])).split(' ').map((group) => group.trim())).toContain('docker');
    expect((await run(['getent', 'shadow', name])).split(':')[1]).toBe('*');
    const sshDir = path.join(home!, '.ssh');
    expect([mode(sshDir), owner(sshDir)]).toEqual(['700', Number(uid)]);
    expect([mode(path.join(sshDir, 'authorized_keys')), owner(path.join(sshDir, 'authorized_keys'))]).toEqual(['600', Number(uid)]);
    expect(readFileSync(path.join(sshDir, 'authorized_keys'), 'utf8')).toBe(`${publicKey}\n`);
    expect(owner(deployPath)).toBe(Number(uid));

    const check = await onLaptop(block("'docker ps && docker compose version'"));
    expect(check.stdout).toContain('CONTAINER ID');
    expect(check.stdout).toMatch(/compose version/i);
  });

  it('step 5: the token from stdin, and the token file only its owner can read', async () => {
    const token = registry.password.reveal();
    // What the reader pastes, then Enter.
    await onLaptop(block('read -rs REGISTRY_TOKEN'), undefined, `${token}\n`);
    await onLaptop(block('~/.aidd-ghcr-token)'), undefined, `${token}\n`);
    const tokenFile = path.join(laptopHome, '.aidd-ghcr-token');
    expect(mode(tokenFile)).toBe('600');
    expect(readFileSync(tokenFile, 'utf8')).toBe(`${token}\n`);
  });

  it('step 6: .env.production without a terminal, then checked', async () => {
    // This machine's values: free ports, the registry, and PostgreSQL from it.
    const create = block('--set IMAGE_OWNER=your-github-user');
    const machine = [`--set API_PORT=${apiPort}`, `--set FRONTEND_PORT=${frontendPort}`, `--set REGISTRY=${registry.address}`, ...(postgresImage ? [`--set POSTGRES_IMAGE=${postgresImage}`] : [])];
    await onLaptop(create, adapt(reader(create), '--generate', `--generate ${machine.join(' ')}`));
    const check = await onLaptop(block('--target production --check'));
    expect(check.stdout).toContain('.env.production: ok for production');
    const envFile = path.join(laptopHome, 'aidd-devops', '.env.production');
    expect(mode(envFile)).toBe('600');
    const env = readFileSync(envFile, 'utf8');
    expect(env).toMatch(new RegExp(`^IMAGE_OWNER=${name}$`, 'm'));
    expect(env).toMatch(/^BOT_MODE=offline$/m);
    expect(/^POSTGRES_PASSWORD=(\S{16,})$/m.exec(env)).not.toBeNull();
  });

  it('section 8: the same by hand starts the stack; stopping it keeps the data for the toolkit', async () => {
    const byHand = await onLaptop(block('K=~/.ssh/aidd_deploy'));
    expect(byHand.stdout).toMatch(/frontend page/);
    expect(readFileSync(path.join(deployPath, 'docker-compose.yml'), 'utf8')).toBe(readFileSync(path.join(REPO_ROOT, 'examples', 'aidd-bot', 'docker-compose.registry.yml'), 'utf8'));
    expect(mode(path.join(deployPath, '.env'))).toBe('600');
    const dockerLogin = path.join('/home', name, '.docker', 'config.json');
    expect(Object.keys((JSON.parse(readFileSync(dockerLogin, 'utf8')) as { auths: object }).auths)).toContain(registry.address);
    // The hand-started api publishes the port itself.
    const [api] = await projectContainers('api');
    expect(await run(['docker', 'port', api!, '8000'])).toContain(`127.0.0.1:${apiPort}`);
    await expectAppAnswers();
    await psql("INSERT INTO tg_users (id, username) VALUES (4242, 'started-by-hand')");

    await onLaptop(block("docker compose -p aidd-bot down'"));
    expect(await projectContainers()).toEqual([]);
    expect(await run(['docker', 'volume', 'ls', '--quiet', '--filter', `name=${name}_pgdata`])).toContain(`${name}_pgdata`);
  });

  it('step 7: the toolkit deploys onto the same data, behind the proxy; the hand-made files go', async () => {
    const deploy = block('scripts/ssh-deploy.ts --host 203.0.113.10 --user deploy --key');
    await onLaptop(deploy);
    // The layout the guide shows.
    const [release] = releases();
    expect(releases()).toHaveLength(1);
    expect(currentRelease()).toBe(`releases/${release}`);
    expect(lstatSync(path.join(deployPath, 'current')).isSymbolicLink()).toBe(true);
    for (const file of ['docker-compose.yml', 'release.json', 'proxy.caddy']) expect(existsSync(path.join(deployPath, 'releases', release!, file)), file).toBe(true);
    expect(mode(path.join(deployPath, 'releases', release!, '.env'))).toBe('600');
    expect(deployLog()).toMatchObject([{ action: 'deploy', result: 'deployed', release }]);
    expect(existsSync(path.join(deployPath, 'lock'))).toBe(false);
    // Through the proxy: the api container publishes only a slot port now.
    const [api] = await projectContainers('api');
    expect(await run(['docker', 'port', api!, '8000'])).not.toContain(`:${apiPort}`);
    await expectAppAnswers();
    expect(await psql('SELECT username FROM tg_users WHERE id = 4242')).toBe('started-by-hand');

    await onLaptop(block("'rm /opt/aidd/.env"));
    expect(existsSync(path.join(deployPath, '.env')) || existsSync(path.join(deployPath, 'docker-compose.yml'))).toBe(false);
    const dockerLogin = path.join('/home', name, '.docker', 'config.json');
    expect(Object.keys((JSON.parse(readFileSync(dockerLogin, 'utf8')) as { auths?: object }).auths ?? {})).not.toContain(registry.address);
  });

  it('day 2: a second deploy, then status, history, logs, exec, both rollbacks, a restore and the smoke test', async () => {
    // A new build on main: new images under latest, deployed with the same command.
    for (const service of ['api', 'bot', 'frontend']) {
      const repository = `${registry.address}/${name}/aidd-${service}`;
      // An empty build context: the scratch folder may hold a checkout with its node_modules.
      await pushVariant(runner, dockerConfig, `FROM ${repository}:latest\nENV AIDD_BUILD=guide-v2\n`, `${repository}:latest`, mkdtempSync(path.join(scratch, 'variant-')));
    }
    const [first] = releases();
    await onLaptop(block('scripts/ssh-deploy.ts --host 203.0.113.10 --user deploy --key'));
    const second = releases().find((release) => release !== first)!;
    expect(currentRelease()).toBe(`releases/${second}`);
    const [backup] = readdirSync(path.join(deployPath, 'backups'));
    expect(backup).toMatch(/\.dump$/);
    // A row the backup taken before this deploy's migration does not hold: the restore below removes it.
    await psql("INSERT INTO tg_users (id, username) VALUES (4343, 'after-the-backup')");

    const everyday = block('npm exec aidd -- status');
    let text = reader(everyday);
    // -f follows the log until Ctrl-C: the test reads it once.
    text = adapt(text, ' -f --since 10m api', ' --since 10m api');
    // A shell in the container: the test types one query into it.
    text = adapt(text, '-- psql -U aidd ', `-- psql -U aidd <<<"SELECT 'guide-exec-' || 'ok';" `);
    const day2 = await onLaptop(everyday, text);
    for (const service of ['api', 'bot', 'frontend', 'postgres']) expect(day2.stdout).toContain(service);
    expect(day2.stdout).toMatch(/^api \| /m);
    expect(day2.stdout).toContain('guide-exec-ok');
    expect(currentRelease()).toBe(`releases/${first}`);
    await expectAppAnswers();

    const flags = block('scripts/ssh-deploy.ts --host 203.0.113.10 --user deploy --status');
    // The rollback above left the first release live, and none went live before it: the reader names the
    // release to go back to (the guide's --to ID), and a backup that --history or a deploy's report showed.
    text = adapt(reader(flags), ' --rollback ', ` --rollback --to ${second} `);
    const byFlags = await onLaptop(flags, adapt(text, '20261127T145000Z-abc.dump', backup!));
    expect(byFlags.stdout).toMatch(/^ +SERVICE +STATE +HEALTH/m);
    expect(byFlags.stdout).toMatch(new RegExp(`^\\S+ +rollback +ok +${first}`, 'm'));
    expect(byFlags.stdout).toMatch(/^ok +frontend page/m);
    expect(currentRelease()).toBe(`releases/${second}`);
    expect(deployLog().map((entry) => entry.action)).toEqual(['deploy', 'deploy', 'rollback', 'rollback', 'restore-backup']);
    expect(await psql('SELECT username FROM tg_users WHERE id IN (4242, 4343) ORDER BY id')).toBe('started-by-hand');
    await expectAppAnswers();

    const look = await onServer(block('docker ps --filter name=aidd-proxy'));
    expect(look.stdout).toContain(`http://:${apiPort}`);
    expect(look.stdout).toContain(`http://:${frontendPort}`);
  });

  it('every block that runs ran; no secret showed in any output, and no token stayed on the server', () => {
    expect(blocks.filter((guideBlock) => guideBlock.where !== 'skip' && !ran.has(guideBlock)).map((guideBlock) => `line ${guideBlock.line}`)).toEqual([]);
    const env = readFileSync(path.join(laptopHome, 'aidd-devops', '.env.production'), 'utf8');
    const secrets = { REGISTRY_TOKEN: registry.password.reveal(), POSTGRES_PASSWORD: /^POSTGRES_PASSWORD=(.+)$/m.exec(env)![1]! };
    const leaks = Object.entries(secrets).flatMap(([secret, value]) => transcript.filter(([, output]) => output.includes(value)).map(([command]) => `${secret} in the output of: ${command}`));
    expect(leaks).toEqual([]);
    // Step 5: "No registry credential stays on the server", once the by-hand login is undone.
    expect([...filesHolding(deployPath, secrets.REGISTRY_TOKEN), ...filesHolding(path.join('/home', name), secrets.REGISTRY_TOKEN)]).toEqual([]);
  });
});
