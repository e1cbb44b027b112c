// What an operator does with the live release besides deploying it: read its services' logs and run a
// command in one of them, over the same strict SSH connection. Both commands are fixed script text;
// every value (project, services, the command's words) travels as a positional argument, quoted.
import { UsageError } from '../core/cli.ts';
import type { Command } from '../core/exec.ts';
import { remoteCommand, type SshTarget } from './ssh.ts';

/** How the live release runs: compose on one server, or a swarm stack behind the manager. */
export type RunsOn = 'compose' | 'swarm';

export interface LogsRequest {
  target: RunsOn;
  project: string;
  services: string[];
  follow: boolean;
  /** Docker's --since: a duration (10m, 1h30m) or a date (2026-11-28, 2026-11-28T10:00:00Z). */
  since?: string;
  /** Lines from the end of each container's log, or "all". */
  tail: string;
}

/**
 * Each service's logs at once. On one server: its containers' logs, every line prefixed with its service
 * (as compose does; v1 has no --since); awk reads the prefix from its environment, as data: never part of
 * a program, and not unescaped as awk -v would. On a swarm: `docker service logs`, which gathers the
 * tasks' logs from every node and prefixes each line with its task and node.
 */
const LOGS_SCRIPT = `set -u
target=$1 project=$2 follow=$3 since=$4 tail=$5
shift 5
args=(--tail "$tail")
[ -z "$since" ] || args+=(--since "$since")
[ "$follow" != 1 ] || args+=(--follow)
pids=()
for service in "$@"; do
  if [ "$target" = swarm ]; then
    docker service logs "\${args[@]}" "\${project}_$service" 2>&1 &
    pids+=($!)
    continue
  fi
  for id in $(docker ps --all --quiet --filter "label=com.docker.compose.project=$project" --filter "label=com.docker.compose.service=$service" --filter label=com.docker.compose.oneoff=False); do
    docker logs "\${args[@]}" "$id" 2>&1 | prefix="$service | " awk '{ print ENVIRON["prefix"] $0; fflush() }' &
    pids+=($!)
  done
done
[ "\${#pids[@]}" -gt 0 ] || { echo "no container of $* runs on the server; see aidd status" >&2; exit 1; }
wait "\${pids[@]}"
`;

/**
 * Finds the running container of a service, then becomes `docker exec` in it: its exit code is the
 * command's. On a swarm, a task of the service running on the manager, where the toolkit connects.
 */
const EXEC_SCRIPT = `if [ "$1" = swarm ]; then
  id=$(docker ps --quiet --filter "label=com.docker.swarm.service.name=$2_$3" | head -n 1)
  where="on the swarm manager (exec runs there; docker service ps $2_$3 shows where its tasks run)"
else
  id=$(docker ps --quiet --filter "label=com.docker.compose.project=$2" --filter "label=com.docker.compose.service=$3" --filter label=com.docker.compose.oneoff=False | head -n 1)
  where="on the server; see aidd status"
fi
[ -n "$id" ] || { printf 'service %s has no running container %s\n' "$3" "$where" >&2; exit 125; }
tty=$4
shift 4
if [ "$tty" = tty ]; then exec docker exec --interactive --tty "$id" "$@"; else exec docker exec --interactive "$id" "$@"; fi
`;

const SINCE = /^(\d+(\.\d+)?(ms|s|m|h))+$|^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?$|^\d{10}(\.\d+)?$/;

/** A services list for logs: the app's own names only; none means all of them. */
export function checkServices(flag: string, asked: string[], services: string[]): string[] {
  for (const service of asked) {
    if (!services.includes(service)) throw new UsageError(`${flag}: ${JSON.stringify(service)} is not a service of the compose file; its services are ${services.join(', ')}`);
  }
  return asked.length > 0 ? asked : services;
}

export function checkLogsOptions(since: string | undefined, tail: string | undefined): { since?: string; tail: string } {
  if (since !== undefined && !SINCE.test(since)) {
    throw new UsageError(`--since ${JSON.stringify(since)} is not a duration like 10m or 1h30m, or a date like 2026-11-28T10:00:00Z`);
  }
  if (tail !== undefined && tail !== 'all' && !/^\d{1,7}$/.test(tail)) throw new UsageError(`--tail ${JSON.stringify(tail)} is not a number of lines or "all"`);
  return { ...(since === undefined ? {} : { since }), tail: tail ?? (since === undefined ? '100' : 'all') };
}

/** Streams the logs to this terminal; with `follow`, until interrupted. */
export function logsCommand(target: SshTarget, request: LogsRequest): Command {
  return {
    ...remoteCommand(target, {
      argv: ['bash', '-c', LOGS_SCRIPT, 'aidd-logs', request.target, request.project, request.follow ? '1' : '0', request.since ?? '', request.tail, ...request.services],
    }),
    readOnly: true,
    interactive: true,
  };
}

/** Runs `argv` in the service's running container with this terminal's stdin (and a TTY when there is one). */
export function execCommand(target: SshTarget, runsOn: RunsOn, project: string, service: string, argv: string[], tty: boolean): Command {
  if (argv.length === 0) throw new UsageError(`--exec ${service}: no command given; put it after --, e.g. aidd exec ${service} -- sh`);
  return {
    ...remoteCommand(target, { argv: ['sh', '-c', EXEC_SCRIPT, 'aidd-exec', runsOn, project, service, tty ? 'tty' : 'notty', ...argv] }, { tty }),
    interactive: true,
  };
}
