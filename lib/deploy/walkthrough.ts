// The guided D2 walkthrough: on a terminal, ssh-deploy asks for what its flags left out, helps verify
// the server's host key, offers to create .env.production, and shows a summary before deploying.
// Every question has a flag or an environment variable, so CI never sees a prompt.
import * as prompts from '@clack/prompts';
import { appendFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { stringValue, type Values } from '../core/cli.ts';
import type { Runner } from '../core/exec.ts';
import { answered, cancelled } from '../core/prompts.ts';
import { Secret } from '../core/secrets.ts';
import { fingerprintCommand, keyscanCommand, knownHostLookupCommand } from './ssh.ts';
import { scriptArgv } from '../app/target.ts';

export interface WalkthroughResult {
  values: Values;
  /** Typed at the prompt when REGISTRY_TOKEN was not set. */
  token?: Secret;
  registryUser?: string;
  /**
   * For a deploy: shows the summary and what the deploy would change (`diff`, formatted), and asks
   * before anything changes; a no cancels the run.
   */
  confirm?: (diff: string) => Promise<void>;
}

/** What the walkthrough asks for: only the server, or also the images and .env (for a diff), and a final yes (a deploy). */
export type WalkthroughPurpose = 'server' | 'diff' | 'deploy';

const home = os.homedir();
const notEmpty = (label: string) => (value: string | undefined) => (value?.trim() ? undefined : `${label} is needed`);

async function text(message: string, options: { placeholder?: string; defaultValue?: string; validate?: (value: string | undefined) => string | undefined } = {}): Promise<string> {
  return answered(await prompts.text({ message, ...options }), 'nothing was deployed').trim() || options.defaultValue || '';
}

/** Offers to fetch the host key and add it, only after the person confirms its fingerprint. */
async function verifyHostKey(runner: Runner, file: string, host: string, port: number): Promise<void> {
  if (existsSync(file) && (await runner.attempt(knownHostLookupCommand(file, host, port))).exitCode === 0) return;
  prompts.log.warn(`The host key of ${host}:${port} is not in ${file}; ssh-deploy never trusts an unknown key by itself.`);
  const scan = answered(await prompts.confirm({ message: 'Fetch the key with ssh-keyscan and show its fingerprint?' }), 'nothing was deployed');
  if (!scan) cancelled(`add the key to ${file} (ssh-keyscan, verified out of band), then run again`);
  const keys = (await runner.attempt(keyscanCommand(host, port))).stdout.split('\n').filter((line) => line && !line.startsWith('#'));
  if (keys.length === 0) cancelled(`${host}:${port} sent no host key; check the address and port`);
  const fingerprints = (await runner.run(fingerprintCommand(`${keys.join('\n')}\n`))).stdout.trim();
  prompts.note(fingerprints, `Host keys of ${host}:${port}`);
  prompts.log.info("Compare with the fingerprint your provider shows, or `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` run on the server's console.");
  const matches = answered(await prompts.confirm({ message: 'Does it match exactly?', initialValue: false }), 'nothing was deployed');
  if (!matches) cancelled('the host key was not trusted');
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const current = existsSync(file) ? readFileSync(file, 'utf8') : '';
  appendFileSync(file, `${current && !current.endsWith('\n') ? '\n' : ''}${keys.join('\n')}\n`, { mode: 0o600 });
  prompts.log.success(`Added the key to ${file}.`);
}

/** Fills in what the flags left out. --status, --history, --rollback, --logs and the like need only the server. */
export async function deployWalkthrough(values: Values, runner: Runner, purpose: WalkthroughPurpose, appName: string): Promise<WalkthroughResult> {
  const answers: Values = { ...values };
  prompts.intro(`ssh-deploy: deploy ${appName} to your server`);
  answers.host ??= await text('Server address (SSH host)', { placeholder: '203.0.113.10', validate: notEmpty('the server address') });
  answers.user ??= await text('SSH user (in the docker group)', { placeholder: 'deploy', defaultValue: 'deploy' });
  answers.port ??= await text('SSH port', { placeholder: '22', defaultValue: '22', validate: (value) => (!value || /^\d+$/.test(value) ? undefined : 'a port is a number') });
  if (!stringValue(answers, 'key') && !process.env.SSH_KEY) {
    const fallback = path.join(home, '.ssh', 'id_ed25519');
    answers.key = await text('Private key file', {
      placeholder: fallback,
      defaultValue: fallback,
      validate: (value) => (existsSync(value?.trim() || fallback) ? undefined : 'no such file'),
    });
  }
  if (!stringValue(answers, 'known-hosts') && !process.env.SSH_KNOWN_HOSTS) answers['known-hosts'] = path.join(home, '.ssh', 'known_hosts');
  if (stringValue(answers, 'known-hosts')) await verifyHostKey(runner, stringValue(answers, 'known-hosts')!, stringValue(answers, 'host')!, Number(answers.port));
  if (purpose === 'server') return { values: answers };

  if (!stringValue(answers, 'images-from')) {
    answers.owner ??= await text('Image owner (your GitHub user or organization, lowercase)', {
      validate: (value) => (/^[a-z0-9][a-z0-9._-]*$/.test(value?.trim() ?? '') ? undefined : 'lowercase letters, digits, . _ - only'),
    });
    answers.tag ??= await text('Image tag', { placeholder: 'latest', defaultValue: 'latest' });
  }
  if (!stringValue(answers, 'server-env')) {
    const upload = answered(await prompts.confirm({ message: 'Upload a .env for the server? (needed on the first deploy; no keeps the one on the server)' }), 'nothing was deployed');
    if (upload) {
      answers['server-env'] = await text('.env file for the server', { placeholder: '.env.production', defaultValue: '.env.production' });
      const file = stringValue(answers, 'server-env')!;
      if (!existsSync(file)) {
        const create = answered(await prompts.confirm({ message: `${file} does not exist. Create it now with setup-env?` }), 'nothing was deployed');
        if (!create) cancelled(`create ${file} with: npx tsx scripts/setup-env.ts --target production --file ${file}`);
        const setup = await runner.attempt({
          argv: scriptArgv('setup-env', ['--target', 'production', '--file', file]),
          interactive: true,
        });
        if (setup.exitCode !== 0) cancelled(`${file} was not created`);
      }
    }
  }
  const result: WalkthroughResult = { values: answers };
  if (!process.env.REGISTRY_TOKEN && !process.env.GHCR_TOKEN) {
    const token = answered(await prompts.password({ message: 'Registry token with read:packages (empty if the images are public)' }), 'nothing was deployed');
    if (token) {
      result.token = new Secret(token);
      result.registryUser = process.env.REGISTRY_USER ?? (await text('Registry user (the token owner)', { validate: notEmpty('the registry user') }));
    }
  }
  const summary = [
    `server      ${String(answers.user)}@${String(answers.host)}:${String(answers.port)}`,
    `images      ${stringValue(answers, 'images-from') ?? `${stringValue(answers, 'registry') ?? 'ghcr.io'}/${String(answers.owner)}/*:${String(answers.tag)}`}`,
    `.env        ${stringValue(answers, 'server-env') ?? 'keep the one on the server'}`,
    `registry    ${result.token || process.env.REGISTRY_TOKEN || process.env.GHCR_TOKEN ? 'token given (hidden)' : 'no token: public images'}`,
  ];
  if (purpose === 'deploy') {
    result.confirm = async (diff) => {
      prompts.note(summary.join('\n'), 'Deploy');
      prompts.note(diff.trimEnd(), 'What this deploy changes on the server');
      const go = answered(await prompts.confirm({ message: 'Deploy now?' }), 'nothing was deployed');
      if (!go) cancelled('nothing was deployed');
    };
  }
  return result;
}
