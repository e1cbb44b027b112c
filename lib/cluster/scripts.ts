// Bash scripts `aidd cluster` runs on the servers (sent on stdin to `bash -s`), built with the `sh`
// tag so every value is one quoted word. Each prints `key=value` lines for the laptop to read.
import { sh, type ShellText } from '../deploy/remote-scripts.ts';

/** Exit codes of these scripts for conditions the laptop explains in one line (the script's stderr). */
export const CLUSTER_EXIT = {
  /** The engine is in a swarm this run may not touch: nothing was changed. */
  refused: 60,
  /** The server lacks what the step needs (docker access, curl, a swarm manager): nothing was changed. */
  missing: 61,
} as const;

/**
 * Strict mode, a reachable engine, and its swarm state in $state (inactive, pending, active, error,
 * locked), $control (true on a manager) and $node_id.
 */
const prelude = sh`set -euo pipefail
umask 077
if ! command -v docker >/dev/null; then
  echo "docker is not installed" >&2
  exit ${CLUSTER_EXIT.missing}
fi
if ! info=$(docker info --format '{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}} {{.Swarm.NodeID}}' 2>&1); then
  echo "cannot reach the Docker engine as $(id -un) (is the user in the docker group?): $info" >&2
  exit ${CLUSTER_EXIT.missing}
fi
read -r state control node_id <<<"$info"
`;

/** Adds the labels a node lacks, by node id (`docker node update` takes no `self`); prints label-set= or label-kept= for each. */
const labelFunction = sh`label_node() {
  local node=$1 current label
  shift
  current=$(docker node inspect "$node" --format '{{range $k, $v := .Spec.Labels}}{{$k}}={{$v}}{{println}}{{end}}')
  for label in "$@"; do
    case $'\\n'"$current"$'\\n' in
      *$'\\n'"$label"$'\\n'*) echo "label-kept=$label" ;;
      *) docker node update --label-add "$label" "$node" >/dev/null && echo "label-set=$label" ;;
    esac
  done
}
`;

const requireManager = sh`if [ "$state" != active ] || [ "$control" != true ]; then
  echo "the engine is not a swarm manager (swarm state: $state); run aidd cluster init there first, or pass a manager" >&2
  exit ${CLUSTER_EXIT.missing}
fi
`;

/**
 * On the manager-to-be: `swarm init` unless the engine already manages a swarm (then nothing changes);
 * a worker of any swarm is refused. Then the labels on its own node.
 */
export function initScript(options: { advertiseAddr?: string; labels: string[] }): ShellText {
  const advertise = options.advertiseAddr ? sh`--advertise-addr ${options.advertiseAddr}` : sh``;
  return sh`${prelude}${labelFunction}case "$state $control" in
  "inactive false")
    docker swarm init ${advertise} >/dev/null
    node_id=$(docker info --format '{{.Swarm.NodeID}}')
    echo swarm=created
    ;;
  "active true") echo swarm=exists ;;
  "active false")
    echo "the engine is a worker of a swarm; leave it first (docker swarm leave) or run init on a manager" >&2
    exit ${CLUSTER_EXIT.refused}
    ;;
  *)
    echo "the engine's swarm state is $state; fix it (docker info) before init" >&2
    exit ${CLUSTER_EXIT.refused}
    ;;
esac
label_node "$node_id" ${options.labels}
`;
}

/**
 * On the manager: its swarm's id, the managers' addresses and the worker join token. The token
 * leaves only on this script's stdout, over SSH, into the laptop's memory.
 */
export function joinFactsScript(): ShellText {
  return sh`${prelude}${requireManager}echo "cluster-id=$(docker info --format '{{.Swarm.Cluster.ID}}')"
docker info --format '{{range .Swarm.RemoteManagers}}manager-addr={{.Addr}}{{println}}{{end}}'
echo "token=$(docker swarm join-token --quiet worker)"
`;
}

/**
 * The engine's socket from DOCKER_HOST (unix://PATH) or docker's default, in $socket; a TCP DOCKER_HOST
 * is refused, as curl would send the token over it.
 */
const engineSocket = sh`case "\${DOCKER_HOST:-}" in
  "") socket=/var/run/docker.sock ;;
  unix://*) socket=\${DOCKER_HOST#unix://} ;;
  *)
    echo "DOCKER_HOST is not a unix socket; join talks to the engine over its socket" >&2
    exit ${CLUSTER_EXIT.missing}
    ;;
esac
`;

/** On the worker, before any change: its swarm state and id, and that curl and the engine socket are there. */
export function workerStateScript(): ShellText {
  return sh`${prelude}${engineSocket}if ! command -v curl >/dev/null; then
  echo "curl is not installed; install it (apt-get install curl) and run join again" >&2
  exit ${CLUSTER_EXIT.missing}
fi
echo "state=$state"
echo "control=$control"
echo "node-id=$node_id"
`;
}

/**
 * On the worker: joins the swarm through the Engine API (POST /swarm/join). The 20.10 CLI takes the
 * token only in its argv, where any local user sees it with ps; here the JSON body holding it lives in
 * a shell variable and reaches curl on stdin (printf is a bash builtin: no process, no argv).
 */
export function joinScript(body: string): ShellText {
  return sh`${prelude}${engineSocket}if [ "$state" != inactive ]; then
  echo "the engine joined a swarm meanwhile (state: $state); run join again" >&2
  exit ${CLUSTER_EXIT.refused}
fi
body=${body}
if ! response=$(printf '%s' "$body" | curl --silent --show-error --max-time 90 --unix-socket "$socket" -H 'Content-Type: application/json' --data-binary @- --write-out '\\n%{http_code}' http://localhost/swarm/join 2>&1); then
  echo "cannot send the join request to the engine at $socket: $response" >&2
  exit 1
fi
code=\${response##*$'\\n'}
if [ "$code" != 200 ]; then
  echo "the engine did not join (HTTP $code): \${response%$'\\n'*}" >&2
  exit 1
fi
echo "node-id=$(docker info --format '{{.Swarm.NodeID}}')"
`;
}

/** On the manager: whether node `nodeId` belongs to its swarm (member=yes|no), and its role. */
export function memberScript(nodeId: string): ShellText {
  return sh`${prelude}${requireManager}if role=$(docker node inspect ${nodeId} --format '{{.Spec.Role}}' 2>/dev/null); then
  echo member=yes
  echo "role=$role"
else
  echo member=no
fi
`;
}

/** On the manager: labels on node `nodeId`. */
export function labelScript(nodeId: string, labels: string[]): ShellText {
  return sh`${prelude}${requireManager}${labelFunction}label_node ${nodeId} ${labels}
`;
}

/** On the manager: `docker node inspect` of every node, one JSON array. */
export function statusScript(): ShellText {
  return sh`${prelude}${requireManager}mapfile -t ids < <(docker node ls --quiet)
docker node inspect "\${ids[@]}"
`;
}

/** `key=value` lines of a script's output, each key with its values in order. */
export function parseFacts(stdout: string): Map<string, string[]> {
  const facts = new Map<string, string[]>();
  for (const line of stdout.split('\n')) {
    const at = line.indexOf('=');
    if (at <= 0) continue;
    const key = line.slice(0, at);
    facts.set(key, [...(facts.get(key) ?? []), line.slice(at + 1)]);
  }
  return facts;
}
