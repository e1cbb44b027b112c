// The nodes `aidd cluster status` shows, read from `docker node inspect` output as Docker 20.10 prints it.
import { describe, expect, it } from 'vitest';
import { formatNodes, notReady, parseNodes } from '../../lib/cluster/status.ts';

const inspected = JSON.stringify([
  {
    ID: 'w2',
    Spec: { Labels: {}, Role: 'worker', Availability: 'active' },
    Description: { Hostname: 'node-2', Engine: { EngineVersion: '20.10.24+dfsg1' } },
    Status: { State: 'down', Addr: '10.0.0.2' },
  },
  {
    ID: 'm1',
    Spec: { Labels: { role: 'db', 'com.example.zone': 'a' }, Role: 'manager', Availability: 'drain' },
    Description: { Hostname: 'node-1', Engine: { EngineVersion: '20.10.24+dfsg1' } },
    Status: { State: 'ready', Addr: '0.0.0.0' },
    ManagerStatus: { Leader: true, Reachability: 'reachable', Addr: '10.0.0.1:2377' },
  },
  {
    ID: 'm3',
    Spec: { Labels: null, Role: 'manager', Availability: 'active' },
    Description: { Hostname: 'node-3', Engine: { EngineVersion: '20.10.5' } },
    Status: { State: 'ready', Addr: '10.0.0.3' },
    ManagerStatus: { Reachability: 'reachable', Addr: '10.0.0.3:2377' },
  },
]);

describe('parseNodes', () => {
  it('gives each node its role (leader, manager, worker), address, engine and labels, by hostname', () => {
    expect(parseNodes(inspected)).toEqual([
      { id: 'm1', hostname: 'node-1', role: 'leader', availability: 'drain', state: 'ready', address: '10.0.0.1', engineVersion: '20.10.24+dfsg1', labels: { role: 'db', 'com.example.zone': 'a' } },
      { id: 'w2', hostname: 'node-2', role: 'worker', availability: 'active', state: 'down', address: '10.0.0.2', engineVersion: '20.10.24+dfsg1', labels: {} },
      { id: 'm3', hostname: 'node-3', role: 'manager', availability: 'active', state: 'ready', address: '10.0.0.3', engineVersion: '20.10.5', labels: {} },
    ]);
  });

  it('finds the nodes that are not Ready', () => {
    expect(notReady(parseNodes(inspected)).map((node) => node.hostname)).toEqual(['node-2']);
  });

  it('lays the nodes out as a table, labels sorted, - for none', () => {
    expect(formatNodes(parseNodes(inspected)).split('\n')).toEqual([
      'HOSTNAME  ROLE     AVAILABILITY  STATE  ADDRESS   ENGINE          LABELS',
      'node-1    leader   drain         ready  10.0.0.1  20.10.24+dfsg1  com.example.zone=a,role=db',
      'node-2    worker   active        down   10.0.0.2  20.10.24+dfsg1  -',
      'node-3    manager  active        ready  10.0.0.3  20.10.5         -',
    ]);
  });
});
