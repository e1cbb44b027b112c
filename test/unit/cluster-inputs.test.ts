// The flags of `aidd cluster`: every value is checked before any connection, and a bad one is a usage
// error (exit 2) naming its flag.
import { describe, expect, it } from 'vitest';
import { parseClusterRequest } from '../../lib/cluster/inputs.ts';
import type { Values } from '../../lib/core/cli.ts';
import { thrown } from './thrown.ts';

const base: Values = { _: ['init'], host: '203.0.113.10', user: 'deploy' };

function usageError(values: Values): string {
  const error = thrown(() => parseClusterRequest(values));
  expect(error.exitCode).toBe(2);
  return error.message;
}

describe('parseClusterRequest', () => {
  it('reads init with its address and labels', () => {
    expect(parseClusterRequest({ ...base, 'advertise-addr': '10.77.0.1', label: ['role=db', 'com.example.zone=eu-1'] })).toEqual({
      action: 'init',
      advertiseAddr: '10.77.0.1',
      labels: ['role=db', 'com.example.zone=eu-1'],
      json: false,
      dryRun: false,
    });
  });

  it('gives join the manager, defaulting its port and user to the worker connection', () => {
    expect(parseClusterRequest({ ...base, _: ['join'], port: '2222', 'manager-host': 'manager.example.com' }).manager).toEqual({ host: 'manager.example.com', port: '2222', user: 'deploy' });
    expect(parseClusterRequest({ ...base, _: ['join'], 'manager-host': '10.0.0.1', 'manager-port': '22', 'manager-user': 'admin' }).manager).toEqual({ host: '10.0.0.1', port: '22', user: 'admin' });
    expect(parseClusterRequest({ ...base, _: ['join'], 'manager-host': '10.0.0.1' }).manager!.port).toBe('22');
  });

  it('names a missing or unknown action', () => {
    expect(usageError({ ...base, _: [] })).toBe('no action given; the actions are init, join, status (see --help)');
    expect(usageError({ ...base, _: ['leave'] })).toBe('unknown action "leave"; the actions are init, join, status (see --help)');
    expect(usageError({ ...base, _: ['init', 'extra'] })).toBe('unexpected "extra": init takes flags only');
  });

  it('names each malformed value by its flag', () => {
    expect(usageError({ ...base, host: '-oProxyCommand=touch /tmp/x' })).toMatch(/^--host "-oProxyCommand=touch \/tmp\/x" is not a host name or IP address$/);
    expect(usageError({ ...base, host: 'a;b' })).toMatch(/^--host "a;b" is not/);
    expect(usageError({ ...base, user: '-l' })).toMatch(/^--user "-l" is not a user name/);
    expect(usageError({ ...base, user: 'me$(id)' })).toMatch(/^--user /);
    expect(usageError({ ...base, port: '70000' })).toBe('--port "70000" is not a TCP port (1-65535)');
    expect(usageError({ ...base, 'advertise-addr': 'eth0; reboot' })).toMatch(/^--advertise-addr "eth0; reboot" is not an IP address/);
    expect(usageError({ ...base, 'advertise-addr': '10.0.0.256' })).toMatch(/^--advertise-addr /);
    expect(usageError({ ...base, _: ['join'], 'manager-host': 'm$(x)' })).toMatch(/^--manager-host "m\$\(x\)" is not/);
    expect(usageError({ ...base, _: ['join'], 'manager-host': 'm', 'manager-port': '0' })).toMatch(/^--manager-port "0" is not a TCP port/);
    expect(usageError({ ...base, _: ['join'], 'manager-host': 'm', 'manager-user': 'a b' })).toMatch(/^--manager-user "a b" is not a user name/);
  });

  it('takes labels as KEY=VALUE only, each key once', () => {
    for (const label of ['role', '=db', 'role=d b', 'role=$(id)', 'ro le=db', '-x=1', 'role=db\nx=y', 'a=b=c']) {
      expect(usageError({ ...base, label: [label] })).toMatch(/^--label ".*" is not KEY=VALUE/s);
    }
    expect(usageError({ ...base, label: ['role=db', 'role=web'] })).toBe('--label role is given twice; give each key once');
    expect(parseClusterRequest({ ...base, label: ['empty='] }).labels).toEqual(['empty=']);
  });

  it('asks for the server, the user and, for join, the manager', () => {
    expect(usageError({ _: ['init'], user: 'u' })).toBe('no server given; pass --host HOST (the manager) or set SSH_HOST');
    expect(usageError({ _: ['join'], user: 'u' })).toBe('no server given; pass --host HOST (the new worker) or set SSH_HOST');
    expect(usageError({ _: ['status'], host: 'h' })).toBe('no SSH user given; pass --user USER or set SSH_USER');
    expect(usageError({ ...base, _: ['join'] })).toMatch(/^join needs the manager: pass --manager-host HOST/);
  });

  it('refuses flags that do not go with the action instead of ignoring them', () => {
    expect(usageError({ ...base, json: true })).toBe('--json does not go with init');
    expect(usageError({ ...base, _: ['status'], label: ['a=b'] })).toBe('--label does not go with status');
    expect(usageError({ ...base, _: ['status'], 'dry-run': true })).toBe('--dry-run does not go with status');
    expect(usageError({ ...base, _: ['join'], 'manager-host': 'm', 'advertise-addr': '10.0.0.1' })).toBe('--advertise-addr does not go with join');
    expect(usageError({ ...base, 'manager-host': 'm' })).toBe('--manager-host does not go with init');
    expect(parseClusterRequest({ ...base, _: ['status'], json: true, label: [] }).json).toBe(true);
  });
});
