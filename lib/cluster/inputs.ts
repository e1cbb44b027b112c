// The flags of `aidd cluster`, checked before any connection: one line naming the flag, exit 2,
// nothing changed. Every value later lands in a remote script (quoted there too) or an ssh argv.
import { isIP } from 'node:net';
import { stringValue, UsageError, type Values } from '../core/cli.ts';

export type ClusterAction = 'init' | 'join' | 'status';

export interface ClusterRequest {
  action: ClusterAction;
  /** init: passed to `docker swarm init --advertise-addr`; absent, docker chooses. */
  advertiseAddr?: string;
  /** KEY=VALUE, for the node this run sets up. */
  labels: string[];
  /** join: the manager, reached with these over SSH; the key and known_hosts are the worker's. */
  manager?: { host: string; port: string; user: string };
  json: boolean;
  dryRun: boolean;
}

const ACTIONS: readonly ClusterAction[] = ['init', 'join', 'status'];
/** A DNS name or an IP address; never starts with a dash, so ssh cannot take it for an option. */
const HOST = /^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[?[0-9A-Fa-f:.]+\]?)$/;
/** A POSIX login name, as useradd accepts it. */
const USER = /^[A-Za-z_][A-Za-z0-9_.-]{0,31}$/;
/** Docker's recommended label keys (letters, digits, dots, dashes, e.g. com.example.role) and plain values. */
const LABEL = /^([A-Za-z0-9](?:[A-Za-z0-9._-]{0,126}[A-Za-z0-9])?)=([A-Za-z0-9._:/@+-]{0,256})$/;

/** Which flags each action takes beyond the SSH ones; any other is an error, not silently ignored. */
const ACTION_FLAGS: Record<ClusterAction, string[]> = {
  init: ['advertise-addr', 'label', 'dry-run'],
  join: ['manager-host', 'manager-port', 'manager-user', 'label', 'dry-run'],
  status: ['json'],
};
const ACTION_ONLY_FLAGS = ['advertise-addr', 'label', 'manager-host', 'manager-port', 'manager-user', 'json', 'dry-run'];

export function checkHost(value: string, flag: string): string {
  if (!HOST.test(value)) throw new UsageError(`${flag} ${JSON.stringify(value)} is not a host name or IP address`);
  return value;
}

export function checkUser(value: string, flag: string): string {
  if (!USER.test(value)) throw new UsageError(`${flag} ${JSON.stringify(value)} is not a user name (letters, digits, _ . -, not starting with a digit or dash)`);
  return value;
}

export function checkPort(value: string, flag: string): string {
  const port = Number(value);
  if (!/^\d+$/.test(value) || port < 1 || port > 65535) throw new UsageError(`${flag} ${JSON.stringify(value)} is not a TCP port (1-65535)`);
  return value;
}

export function checkLabel(value: string): string {
  if (!LABEL.test(value)) {
    throw new UsageError(`--label ${JSON.stringify(value)} is not KEY=VALUE (key: letters, digits, . _ - such as com.example.role; value: letters, digits, . _ : / @ + -)`);
  }
  return value;
}

export function checkAdvertiseAddr(value: string): string {
  if (isIP(value) === 0) throw new UsageError(`--advertise-addr ${JSON.stringify(value)} is not an IP address; pass the address the other servers reach this one on`);
  return value;
}

/** The action word and every flag, checked; SSH key and known_hosts are checked by resolveSshTarget. */
export function parseClusterRequest(values: Values): ClusterRequest {
  const words = (values._ as string[] | undefined) ?? [];
  const action = words[0] as ClusterAction | undefined;
  if (action === undefined || !ACTIONS.includes(action)) {
    throw new UsageError(`${action === undefined ? 'no action given' : `unknown action ${JSON.stringify(action)}`}; the actions are init, join, status (see --help)`);
  }
  if (words.length > 1) throw new UsageError(`unexpected ${JSON.stringify(words[1])}: ${action} takes flags only`);
  for (const flag of ACTION_ONLY_FLAGS) {
    const value = values[flag];
    const given = value !== undefined && value !== false && !(Array.isArray(value) && value.length === 0);
    if (given && !ACTION_FLAGS[action].includes(flag)) throw new UsageError(`--${flag} does not go with ${action}`);
  }
  const host = stringValue(values, 'host');
  const user = stringValue(values, 'user');
  if (!host) throw new UsageError(`no server given; pass --host HOST (the ${action === 'join' ? 'new worker' : 'manager'}) or set SSH_HOST`);
  checkHost(host, '--host');
  if (!user) throw new UsageError('no SSH user given; pass --user USER or set SSH_USER');
  checkUser(user, '--user');
  const port = stringValue(values, 'port');
  if (port !== undefined) checkPort(port, '--port');
  const advertiseAddr = stringValue(values, 'advertise-addr');
  if (advertiseAddr !== undefined) checkAdvertiseAddr(advertiseAddr);
  const labels = ((values.label as string[] | undefined) ?? []).map(checkLabel);
  const keys = labels.map((label) => label.split('=')[0]!);
  const repeated = keys.find((key, index) => keys.indexOf(key) !== index);
  if (repeated !== undefined) throw new UsageError(`--label ${repeated} is given twice; give each key once`);

  let manager: ClusterRequest['manager'];
  if (action === 'join') {
    const managerHost = stringValue(values, 'manager-host');
    if (!managerHost) throw new UsageError('join needs the manager: pass --manager-host HOST (a server where `aidd cluster init` ran)');
    manager = {
      host: checkHost(managerHost, '--manager-host'),
      port: checkPort(stringValue(values, 'manager-port') ?? port ?? '22', '--manager-port'),
      user: checkUser(stringValue(values, 'manager-user') ?? user, '--manager-user'),
    };
  }
  return {
    action,
    ...(advertiseAddr ? { advertiseAddr } : {}),
    labels,
    ...(manager ? { manager } : {}),
    json: values.json === true,
    dryRun: values['dry-run'] === true,
  };
}
