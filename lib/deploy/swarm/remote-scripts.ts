// The scripts a deploy to a swarm runs on its manager, built like lib/deploy/remote-scripts.ts (one
// function over the shared prelude, every value quoted by the `sh` tag).
import { heredoc, registryLogin, remoteScript, sh, throwawayDockerConfig, type PullRequest, type RemoteLayout } from '../remote-scripts.ts';

/** Exit codes of the convergence wait, for the deploy to explain in one line. */
export const SWARM_EXIT = {
  /** Swarm rolled an update back by itself (or paused it): the previous tasks serve. */
  rolledBack: 70,
  /** The services did not converge by the deadline. */
  notConverged: 71,
} as const;

/**
 * A release's variables as `NAME BASE64` lines: no value appears as written, so no quote, `$`, backslash
 * or newline in it can change the script, and the script reads each back exactly.
 */
export function encodedVariables(vars: Record<string, string>): string {
  return Object.entries(vars)
    .map(([name, value]) => {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new Error(`encodedVariables: ${JSON.stringify(name)} is not a variable name`);
      return `${name} ${Buffer.from(value, 'utf8').toString('base64')}\n`;
    })
    .join('');
}

/**
 * `docker stack deploy` of a release's stack file (its docker-compose.yml), then waiting until the stack
 * converged. The variables reach docker in the environment of that one command: it interpolates the
 * `${VAR}` references the stack file keeps, so no value is written into the file, and none reaches a
 * command line (export and printf are bash builtins). With a token it logs in first, so the nodes pull
 * with those credentials (--with-registry-auth hands them to the swarm, which keeps them with the services).
 *
 * The wait ends when every service runs all its replicas and no update started by this deploy is under
 * way; it prints `service NAME STATE RUNNING/DESIRED` for each. An update swarm rolled back (or paused)
 * ends it at once, as does the deadline, with one line on stderr. An update state from before this deploy
 * (a service it left as it was) counts as none.
 */
export function rollOutScript(layout: RemoteLayout, release: string, vars: Record<string, string>, login: Pick<PullRequest, 'registry' | 'username' | 'token'>, deadlineSeconds: number): string {
  const doc = heredoc(encodedVariables(vars));
  return remoteScript(
    layout,
    `roll-out ${release}`,
    sh`${throwawayDockerConfig}${registryLogin(login)}
cd "$deploy/releases/"${release}
while read -r name encoded; do
  [ -n "$name" ] || continue
  # The x keeps a value's trailing newlines, which $(...) would strip.
  value=$(printf '%s' "$encoded" | base64 -d; printf x)
  export "$name=\${value%x}"
done ${doc.start}
${doc.body}
# A second's slack: the manager stamps an update it starts with its own clock, which this reads.
since=$(( $(date +%s) - 1 ))
docker stack deploy --with-registry-auth --prune --compose-file docker-compose.yml "$project" >/dev/null
limit=${deadlineSeconds}
deadline=$((SECONDS + limit))
while :; do
  mapfile -t ids < <(docker stack services --quiet "$project")
  if [ "\${#ids[@]}" -eq 0 ]; then echo "the stack $project has no services" >&2; exit ${SWARM_EXIT.notConverged}; fi
  states=$(docker service inspect --format '{{.Spec.Name}} {{if .UpdateStatus}}{{.UpdateStatus.State}} {{.UpdateStatus.StartedAt.Unix}}{{else}}none 0{{end}}' "\${ids[@]}" |
    awk -v since="$since" '{ print $1, ($3 >= since ? $2 : "none") }')
  replicas=$(docker stack services --format '{{.Name}} {{.Replicas}}' "$project")
  report=$(join <(sort <<<"$states") <(sort <<<"$replicas") | awk '{ print "service", $1, $2, $3 }')
  rolled_back=$(awk '$3 ~ /^(rollback_completed|rollback_paused|paused)$/ { printf "%s%s (%s)", sep, $2, $3; sep = ", " }' <<<"$report")
  if [ -n "$rolled_back" ]; then
    printf '%s\n' "$report"
    echo "swarm rolled back the update of $rolled_back: its new tasks did not stay healthy" >&2
    exit ${SWARM_EXIT.rolledBack}
  fi
  # Done: no update under way, and every service runs as many tasks as it wants (2/2).
  pending=$(awk '{ split($4, r, "/") } $3 !~ /^(completed|none)$/ || r[1] != r[2] { printf "%s%s %s %s", sep, $2, $3, $4; sep = ", " }' <<<"$report")
  if [ -z "$pending" ]; then printf '%s\n' "$report"; exit 0; fi
  if [ "$SECONDS" -ge "$deadline" ]; then
    printf '%s\n' "$report"
    echo "not converged in $limit s: $pending" >&2
    exit ${SWARM_EXIT.notConverged}
  fi
  sleep 1
done
`,
  );
}

/** A release's .env as base64 on one line (empty without one): what its stack deploy gives docker. */
export function releaseEnvScript(layout: RemoteLayout, release: string): string {
  return remoteScript(
    layout,
    `release-env ${release}`,
    sh`env_file="$deploy/releases/"${release}/.env
if [ -f "$env_file" ]; then base64 -w0 < "$env_file"; fi
`,
  );
}

/**
 * The stack as `aidd status` shows it: `service NAME RUNNING/DESIRED IMAGE` per service and
 * `task SERVICE.SLOT NODE STATE` per task that should run (its state as docker words it: Running 5 minutes ago).
 */
export function stackStatusScript(layout: RemoteLayout): string {
  return remoteScript(
    layout,
    'stack-status',
    sh`docker stack services --format 'service {{.Name}} {{.Replicas}} {{.Image}}' "$project"
docker stack ps --filter desired-state=running --format 'task {{.Name}} {{.Node}} {{.CurrentState}}' "$project"
`,
  );
}

/**
 * Where a service's published ports answer: `port TARGET PUBLISHED MODE` per published port, and
 * `node ADDRESS` for each node running one of its tasks (a port published in host mode answers only there).
 */
export function serviceEndpointScript(layout: RemoteLayout, service: string): string {
  return remoteScript(
    layout,
    `endpoint ${service}`,
    sh`name="$project"_${service}
docker service inspect --format '{{range .Endpoint.Ports}}port {{.TargetPort}} {{.PublishedPort}} {{.PublishMode}}{{println}}{{end}}' "$name"
docker service ps --filter desired-state=running --format '{{.Node}} {{.CurrentState}}' "$name" | while read -r node state _; do
  [ "$state" != Running ] || echo "node $(docker node inspect --format '{{.Status.Addr}}' "$node")"
done
`,
  );
}

