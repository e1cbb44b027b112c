// Finding 1 of issue 9, second half: every value bound for the server is checked before anything
// connects, and a bad one is exit 2 naming its flag.
import { describe, expect, it } from 'vitest';
import { EXIT, ToolError, type Values } from '../../lib/core/cli.ts';
import { checkDeployInputs, type DeployInputs } from '../../lib/deploy/inputs.ts';

const services = ['api', 'bot', 'frontend'];
const refs = { api: '127.0.0.1:5000/me/aidd-api@sha256:' + 'a'.repeat(64), bot: 'ghcr.io/me/aidd-bot:1.2.0', frontend: 'ghcr.io/me/aidd-frontend:latest' };
const good: DeployInputs = {
  values: { host: 'deploy.example.com', user: 'deploy', path: '~/apps/aidd', registry: 'ghcr.io', owner: 'Me', tag: 'v1.2', to: '20261127T145001Z-abc' },
  project: 'aidd-bot',
  config: { backup: { service: 'postgres', command: 'pg_dump', extension: 'dump' }, migrate: { service: 'api', command: ['migrate'], needs: ['postgres'] } },
  services,
  request: { refs, revision: '0123456789abcdef' },
};

function refusal(inputs: DeployInputs): ToolError {
  try {
    checkDeployInputs(inputs);
  } catch (error) {
    return error as ToolError;
  }
  throw new Error('accepted');
}

const withValues = (values: Values): DeployInputs => ({ ...good, values: { ...good.values, ...values } });

describe('deploy inputs are checked before anything connects', () => {
  it('refuses a deploy path that climbs out with ..', () => {
    expect(refusal(withValues({ path: '/opt/aidd/../../etc' })).message).toMatch(/^--path "\/opt\/aidd\/\.\.\/\.\.\/etc" is not an absolute path/);
    expect(() => checkDeployInputs(withValues({ path: '/opt/aidd..v2/x' }))).not.toThrow();
  });

  it('accepts ordinary values', () => {
    expect(() => checkDeployInputs(good)).not.toThrow();
    expect(() => checkDeployInputs({ ...good, values: { host: '192.0.2.1', user: 'aidd-deploy', path: '/opt/aidd' }, request: undefined })).not.toThrow();
  });

  const hostile = ['x$(touch /tmp/PWN)', 'x`id`', 'a;b', "it's", 'a"b', 'a\nb', 'a b', '-oProxyCommand=sh'];
  const flags: [string, (value: string) => DeployInputs][] = [
    ['--host', (value) => withValues({ host: value })],
    ['--user', (value) => withValues({ user: value })],
    ['--path', (value) => withValues({ path: `/opt/${value}` })],
    ['--project', (value) => ({ ...good, project: value })],
    ['--to', (value) => withValues({ to: value })],
    ['--registry', (value) => withValues({ registry: value })],
    ['--owner', (value) => withValues({ owner: value })],
    ['--tag', (value) => withValues({ tag: value })],
    ['--revision', (value) => ({ ...withValues({ revision: value }), request: { refs, revision: value } })],
    ['the image of api', (value) => ({ ...good, request: { refs: { ...refs, api: `ghcr.io/me/${value}` }, revision: 'abc' } })],
    ['aidd.yml backup.service', (value) => ({ ...good, config: { ...good.config, backup: { ...good.config.backup!, service: value } } })],
    ['aidd.yml migrate.service', (value) => ({ ...good, config: { ...good.config, migrate: { ...good.config.migrate!, service: value } } })],
  ];
  const cases = flags.flatMap(([flag, inputs]) => hostile.map((value) => [flag, value, inputs] as const));

  it.each(cases)('%s %j is exit 2 naming it', (flag, value, inputs) => {
    const error = refusal(inputs(value));
    expect(error.exitCode).toBe(EXIT.usage);
    expect(error.message.startsWith(`${flag}`)).toBe(true);
    // One line, the value shown quoted so its end is visible.
    expect(error.message).not.toContain('\n');
    expect(error.message.toLowerCase()).toContain(JSON.stringify(value).slice(1, -1).toLowerCase());
  });

  it('names the images file when a revision or an image in it is bad', () => {
    const values = { ...good.values, 'images-from': 'build.json' };
    expect(refusal({ ...good, values, request: { refs, revision: '$(reboot)' } }).message).toMatch(/^the revision in --images-from build\.json "\$\(reboot\)" is not a revision/);
    expect(refusal({ ...good, values, request: { refs: { ...refs, bot: 'x;y' }, revision: 'abc' } }).message).toMatch(/^--images-from build\.json: the image of bot "x;y" is not an image reference/);
  });

  it('refuses an images file that leaves services out, unless they are named with --unpinned', () => {
    const values = { ...good.values, 'images-from': 'build.json' };
    const partial = { refs: { api: refs.api }, revision: 'abc' };
    const error = refusal({ ...good, values, request: partial });
    expect(error.exitCode).toBe(EXIT.usage);
    expect(error.message).toBe('--images-from build.json has no image for bot, frontend; build them too, or pass --unpinned bot --unpinned frontend to run the image their compose line names, unpinned');
    expect(() => checkDeployInputs({ ...good, values: { ...values, unpinned: ['bot', 'frontend'] }, request: partial })).not.toThrow();
    expect(refusal({ ...good, values: { ...values, unpinned: ['postgres'] }, request: partial }).message).toMatch(/^--unpinned postgres: not an app service/);
  });
});
