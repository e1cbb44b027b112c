// The subcommands of `aidd`, each one of the toolkit's scripts with a mode flag: `aidd status` is
// `ssh-deploy --status`. Only the words a subcommand takes (a release id, services, a command) are
// turned into flags; everything else goes to the script as it is.
import { UsageError } from './cli.ts';

export interface Subcommand {
  script: 'ssh-deploy' | 'build-push' | 'smoke-test' | 'setup-env' | 'rehearse' | 'cluster';
  usage: string;
  /** The same as a script command line, for its --help: `--status [options]`. */
  scriptUsage?: string;
  summary: string;
  /** The script's argv for the words after the subcommand. */
  argv: (rest: string[]) => string[];
}

/** The first word when it is not a flag: `aidd rollback ID`, `aidd exec SERVICE`. */
function leading(rest: string[]): string | undefined {
  return rest[0] !== undefined && !rest[0].startsWith('-') ? rest[0] : undefined;
}

export const SUBCOMMANDS: Record<string, Subcommand> = {
  deploy: { script: 'ssh-deploy', usage: '[options]', summary: 'deploy the app to the server', argv: (rest) => rest },
  rollback: {
    script: 'ssh-deploy',
    usage: '[ID] [options]',
    scriptUsage: '--rollback [--to ID] [options]',
    summary: 'go back to the release live before the current one, or to release ID',
    argv: (rest) => (leading(rest) ? ['--rollback', '--to', rest[0]!, ...rest.slice(1)] : ['--rollback', ...rest]),
  },
  status: { script: 'ssh-deploy', usage: '[options]', scriptUsage: '--status [options]', summary: "the live release: each service's image, state and health; the proxy; the lock", argv: (rest) => ['--status', ...rest] },
  history: { script: 'ssh-deploy', usage: '[options]', scriptUsage: '--history [options]', summary: 'the audit log: who deployed what, when, and how it ended', argv: (rest) => ['--history', ...rest] },
  logs: {
    script: 'ssh-deploy',
    usage: '[-f] [--since 10m] [--tail N] [options] [SERVICE...]',
    scriptUsage: '--logs [-f] [--since 10m] [--tail N] [options] [SERVICE...]',
    summary: "the live release's logs, by service",
    argv: (rest) => ['--logs', ...rest],
  },
  exec: {
    script: 'ssh-deploy',
    usage: 'SERVICE [options] -- COMMAND...',
    scriptUsage: '--exec SERVICE [options] -- COMMAND...',
    summary: "run a command in a service's running container",
    argv: (rest) => {
      const service = leading(rest);
      // --help and --version need no service: ssh-deploy answers them before anything else.
      if (!service && rest.some((word) => ['-h', '--help', '--version'].includes(word))) return rest;
      if (!service) throw new UsageError('aidd exec needs a service first: aidd exec SERVICE [options] -- COMMAND...');
      return ['--exec', service, ...rest.slice(1)];
    },
  },
  unlock: { script: 'ssh-deploy', usage: '[options]', scriptUsage: '--break-lock [options]', summary: 'remove a stale deploy lock (audited)', argv: (rest) => ['--break-lock', ...rest] },
  smoke: { script: 'smoke-test', usage: '[options]', summary: 'prove a running stack healthy: locally, on the server, or by URL', argv: (rest) => rest },
  build: { script: 'build-push', usage: '[options]', summary: "build the app's images and push them to the registry", argv: (rest) => rest },
  env: { script: 'setup-env', usage: '[options]', summary: 'create, complete and check a .env against the app\'s variables', argv: (rest) => rest },
  rehearse: { script: 'rehearse', usage: '[options]', summary: 'the whole road on this machine: local stack, registry, deploy to a private sshd', argv: (rest) => rest },
  cluster: {
    script: 'cluster',
    usage: 'init|join|status [options]',
    scriptUsage: 'init|join|status [options]',
    summary: 'turn servers into a Docker Swarm over SSH: init the manager, join workers, list the nodes',
    argv: (rest) => rest,
  },
};

/**
 * The top of `aidd NAME --help`, above the script's own help: the subcommand's usage, the script command
 * line it stands for, and what it does.
 */
export function subcommandUsage(name: string): string {
  const subcommand = SUBCOMMANDS[name]!;
  const summary = `${subcommand.summary[0]!.toUpperCase()}${subcommand.summary.slice(1)}.`;
  return `aidd ${name} ${subcommand.usage}\n   or: npx tsx scripts/${subcommand.script}.ts ${subcommand.scriptUsage ?? '[options]'}\n\n${summary}`;
}

/** Which subcommand runs a script with its own flags unchanged (what `npm run NAME` runs). */
export function subcommandOf(script: string): string {
  const found = Object.entries(SUBCOMMANDS).find(([, subcommand]) => subcommand.script === script && subcommand.argv([]).length === 0);
  if (!found) throw new Error(`no aidd subcommand runs scripts/${script}.ts`);
  return found[0];
}

export function aiddHelp(): string {
  const rows = Object.entries(SUBCOMMANDS).map(([name, subcommand]) => `  ${`${name} ${subcommand.usage}`.padEnd(58)} ${subcommand.summary}`);
  return (
    `Usage: aidd COMMAND [options]\n\nEveryday commands over the toolkit's scripts; \`aidd COMMAND --help\` lists a command's options.\n\nCommands:\n${rows.join('\n')}\n` +
    `\nOptions:\n  --version${' '.repeat(50)}Show the toolkit version.\n  -h, --help${' '.repeat(49)}Show this help.\n` +
    `\nThe server comes from --host/--user (or SSH_HOST/SSH_USER) as for ssh-deploy; the mode flags (--rollback,\n--status, ...) of scripts/ssh-deploy.ts work as before.\n`
  );
}
