// What `aidd cluster init|join|status` do, step by step, over one SSH connection per server. Each step
// first reads the engine's swarm state, so running it again changes nothing.
import { EXIT, ToolError } from '../core/cli.ts';
import type { Logger } from '../core/log.ts';
import { REDACTED, Secret } from '../core/secrets.ts';
import { openSession } from '../deploy/engine.ts';
import { runScriptOn, type ClusterServer } from './remote.ts';
import { initScript, joinFactsScript, joinScript, labelScript, memberScript, parseFacts, statusScript, workerStateScript } from './scripts.ts';
import { parseNodes, type ClusterNode } from './status.ts';

export interface LabelOutcome {
  set: string[];
  kept: string[];
}

function labelOutcome(facts: Map<string, string[]>): LabelOutcome {
  return { set: facts.get('label-set') ?? [], kept: facts.get('label-kept') ?? [] };
}

export interface InitOutcome {
  swarm: 'created' | 'exists';
  labels: LabelOutcome;
}

/** `swarm init` on the manager unless it already manages a swarm; then its labels. */
export async function initManager(manager: ClusterServer, logger: Logger, options: { advertiseAddr?: string; labels: string[] }): Promise<InitOutcome> {
  logger.step(`Connecting to ${manager.ssh.user}@${manager.ssh.host}:${manager.ssh.port}`);
  await openSession(manager);
  logger.step(`Forming a swarm on ${manager.ssh.host}${options.advertiseAddr ? ` (advertising ${options.advertiseAddr})` : ''}`);
  const facts = parseFacts(await runScriptOn(manager, initScript(options)));
  return { swarm: facts.get('swarm')?.[0] === 'exists' ? 'exists' : 'created', labels: labelOutcome(facts) };
}

export interface JoinOutcome {
  joined: 'joined' | 'already';
  nodeId: string;
  labels: LabelOutcome;
}

/** The manager's join facts; the token becomes a Secret before anything else sees it. */
async function joinFacts(manager: ClusterServer): Promise<{ token: Secret; managerAddrs: string[] }> {
  const stdout = await runScriptOn(manager, joinFactsScript());
  if (manager.runner.dryRun) return { token: new Secret(REDACTED), managerAddrs: [`${manager.ssh.host}:2377`] };
  const facts = parseFacts(stdout);
  const token = facts.get('token')?.[0];
  const managerAddrs = facts.get('manager-addr') ?? [];
  if (!token || managerAddrs.length === 0) throw new ToolError(`${manager.ssh.host} gave no worker join token or manager address; check \`docker info\` there`);
  return { token: new Secret(token), managerAddrs };
}

/**
 * Joins the worker to the manager's swarm as a worker, then labels its node from the manager. A worker
 * already in this swarm is left as it is; one in another swarm (or not settled in one) is refused.
 */
export async function joinWorker(worker: ClusterServer, manager: ClusterServer, logger: Logger, labels: string[]): Promise<JoinOutcome> {
  for (const server of [worker, manager]) {
    logger.step(`Connecting to ${server.ssh.user}@${server.ssh.host}:${server.ssh.port}`);
    await openSession(server);
  }
  const dryRun = worker.runner.dryRun;
  const state = parseFacts(await runScriptOn(worker, workerStateScript()));
  const swarmState = dryRun ? 'inactive' : state.get('state')?.[0];
  let nodeId = state.get('node-id')?.[0] ?? '';
  let joined: JoinOutcome['joined'];
  if (swarmState === 'active') {
    const member = parseFacts(await runScriptOn(manager, memberScript(nodeId)));
    if (member.get('member')?.[0] !== 'yes') {
      throw new ToolError(`${worker.ssh.host} is already in another swarm (node ${nodeId}); leave it there first (docker swarm leave) and run join again`, EXIT.refused);
    }
    logger.step(`${worker.ssh.host} is already a ${member.get('role')?.[0] ?? 'member'} of this swarm: no change`);
    joined = 'already';
  } else if (swarmState === 'inactive') {
    logger.step(`Reading the worker join token from ${manager.ssh.host} (kept in memory, never shown)`);
    const { token, managerAddrs } = await joinFacts(manager);
    const body = JSON.stringify({ ListenAddr: '0.0.0.0:2377', RemoteAddrs: managerAddrs, JoinToken: token.reveal() });
    logger.step(`Joining ${worker.ssh.host} to the swarm of ${managerAddrs.join(', ')}`);
    nodeId = parseFacts(await runScriptOn(worker, joinScript(body))).get('node-id')?.[0] ?? (dryRun ? 'NODE_ID' : '');
    if (!nodeId) throw new ToolError(`${worker.ssh.host} joined but reports no swarm node id; check \`docker info\` there`);
    joined = 'joined';
  } else {
    throw new ToolError(`${worker.ssh.host}: the engine's swarm state is ${swarmState ?? 'unknown'}; fix it (docker info) before join`, EXIT.refused);
  }
  let labelled: LabelOutcome = { set: [], kept: [] };
  if (labels.length > 0) {
    logger.step(`Labelling node ${nodeId} from ${manager.ssh.host}`);
    labelled = labelOutcome(parseFacts(await runScriptOn(manager, labelScript(nodeId, labels))));
  }
  return { joined, nodeId, labels: labelled };
}

/** Every node of the manager's swarm. */
export async function clusterStatus(manager: ClusterServer): Promise<ClusterNode[]> {
  await openSession(manager);
  return parseNodes(await runScriptOn(manager, statusScript(), 60_000));
}
