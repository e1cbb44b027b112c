// Turn fresh servers into a Docker Swarm over SSH: `init` on the manager, `join` for each worker,
// `status` for the nodes. Each step reads the engine's state first, so running it again changes nothing.
import { EXIT, runScript, type ScriptSpec } from '../lib/core/cli.ts';
import { Runner } from '../lib/core/exec.ts';
import { createLogger, printJson } from '../lib/core/log.ts';
import { parseClusterRequest } from '../lib/cluster/inputs.ts';
import { clusterStatus, initManager, joinWorker, type LabelOutcome } from '../lib/cluster/operations.ts';
import type { ClusterServer } from '../lib/cluster/remote.ts';
import { closeSession } from '../lib/deploy/engine.ts';
import { formatNodes, notReady } from '../lib/cluster/status.ts';
import { resolveSshTarget, SSH_FLAGS } from '../lib/deploy/ssh.ts';

const spec: ScriptSpec = {
  name: 'cluster',
  summary:
    'Turn servers with Docker into a Docker Swarm over SSH (strict host keys, as ssh-deploy).\n' +
    '  init    on --host: `docker swarm init` unless it already manages a swarm; a worker is refused (exit 3).\n' +
    '  join    --host joins the swarm of --manager-host as a worker. The join token goes from the manager to\n' +
    '          the worker in memory and over SSH only, and reaches the engine through its API socket (curl on\n' +
    '          the worker), never on a command line. A worker of this swarm is left as it is; one of another\n' +
    '          swarm is refused (exit 3).\n' +
    '  status  the nodes of the swarm --host manages; exit 1 when a node is not Ready.\n' +
    '--label KEY=VALUE adds node labels (init: the manager; join: the worker), leaving present ones as they are.',
  positionals: 'init|join|status',
  options: {
    host: { ...SSH_FLAGS.host, help: 'Server to set up: the manager (init, status) or the new worker (join).' },
    user: SSH_FLAGS.user,
    port: SSH_FLAGS.port,
    key: SSH_FLAGS.key,
    'known-hosts': SSH_FLAGS['known-hosts'],
    'advertise-addr': { type: 'string', value: 'IP', help: 'init: the address the other servers reach the manager on (default: docker chooses).' },
    label: { type: 'string', multiple: true, value: 'KEY=VALUE', help: 'init, join: a node label; repeatable.' },
    'manager-host': { type: 'string', value: 'HOST', help: 'join: the manager, where init ran.' },
    'manager-port': { type: 'string', value: 'PORT', help: "join: the manager's SSH port (default: --port)." },
    'manager-user': { type: 'string', value: 'USER', help: 'join: the SSH user on the manager (default: --user).' },
    json: { type: 'boolean', help: 'status: print the nodes as one JSON object on stdout.' },
    'dry-run': { type: 'boolean', short: 'n', help: 'init, join: print the commands and scripts (secrets redacted) and run nothing.' },
  },
  examples: [
    'npx tsx scripts/cluster.ts init --host 203.0.113.10 --user deploy --advertise-addr 10.0.0.10 --label role=db',
    'npx tsx scripts/cluster.ts join --host 203.0.113.11 --user deploy --manager-host 203.0.113.10 --label zone=b',
    'npx tsx scripts/cluster.ts status --host 203.0.113.10 --user deploy --json',
  ],
};

function labelSummary(labels: LabelOutcome): string {
  const parts = [...labels.set.map((label) => `${label} set`), ...labels.kept.map((label) => `${label} already set`)];
  return parts.length > 0 ? `; labels: ${parts.join(', ')}` : '';
}

await runScript(spec, async (values) => {
  const request = parseClusterRequest(values);
  const logger = createLogger({ prefix: spec.name, quiet: request.json });
  const runner = new Runner({ logger, dryRun: request.dryRun });
  const servers: ClusterServer[] = [];
  const cleanups: (() => void)[] = [];
  const open = (flagValues: typeof values): ClusterServer => {
    const { target, cleanup } = resolveSshTarget(flagValues);
    cleanups.push(cleanup);
    const server = { runner, ssh: target };
    servers.push(server);
    return server;
  };
  const closeAll = async () => {
    await Promise.all(servers.filter((server) => server.connected).map((server) => closeSession(server).catch(() => undefined)));
    for (const cleanup of cleanups.splice(0)) cleanup();
  };
  // A signal closes the connections and removes the private SSH directories before the exit.
  const stop = (signal: NodeJS.Signals) => void closeAll().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    const target = open(values);
    if (request.action === 'init') {
      const outcome = await initManager(target, logger, { ...(request.advertiseAddr ? { advertiseAddr: request.advertiseAddr } : {}), labels: request.labels });
      if (!request.dryRun) {
        const what = outcome.swarm === 'created' ? 'swarm created; this server is its manager' : 'already the manager of a swarm: no change';
        process.stdout.write(`${target.ssh.host}: ${what}${labelSummary(outcome.labels)}\n`);
      }
      return EXIT.ok;
    }
    if (request.action === 'join') {
      const manager = open({ ...values, host: request.manager!.host, port: request.manager!.port, user: request.manager!.user });
      const outcome = await joinWorker(target, manager, logger, request.labels);
      if (!request.dryRun) {
        const what = outcome.joined === 'joined' ? `joined the swarm of ${manager.ssh.host} as a worker` : `already in the swarm of ${manager.ssh.host}: no change`;
        process.stdout.write(`${target.ssh.host}: ${what} (node ${outcome.nodeId})${labelSummary(outcome.labels)}\n`);
      }
      return EXIT.ok;
    }
    const nodes = await clusterStatus(target);
    const down = notReady(nodes);
    if (request.json) printJson({ ok: down.length === 0, nodes });
    else process.stdout.write(`${formatNodes(nodes)}\n`);
    if (down.length > 0) {
      process.stderr.write(`cluster: error: not Ready: ${down.map((node) => `${node.hostname} (${node.state})`).join(', ')}\n`);
      return EXIT.failed;
    }
    return EXIT.ok;
  } finally {
    await closeAll();
  }
});
