// The scripts a deploy to a swarm runs on its manager, built like lib/deploy/remote-scripts.ts (one
// function over the shared prelude, every value quoted by the `sh` tag).
import { heredoc, registryLogin, remoteScript, REMOTE_EXIT, sh, throwawayDockerConfig, type PullRequest, type RemoteLayout } from '../remote-scripts.ts';

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

/** Registry credentials for the nodes' pulls, handed to the swarm with --with-registry-auth. */
export type SwarmLogin = Pick<PullRequest, 'registry' | 'username' | 'token'>;

/**
 * In the release's directory, with `vars` exported and, with a token, logged in (a throwaway
 * DOCKER_CONFIG): what a stack deploy needs. docker interpolates the `${VAR}` references the stack file
 * keeps from its environment, so no value is written into the file, and none reaches a command line
 * (export and printf are bash builtins).
 */
function releaseContext(release: string, vars: Record<string, string>, login: SwarmLogin) {
  return sh`${throwawayDockerConfig}${registryLogin(login)}
cd "$deploy/releases/"${release}
${exportVariables(vars)}`;
}

/** Exports each variable, read from `NAME BASE64` lines on stdin: bash builtins only, no value on a command line. */
function exportVariables(vars: Record<string, string>) {
  const doc = heredoc(encodedVariables(vars));
  return sh`while read -r name encoded; do
  [ -n "$name" ] || continue
  # The x keeps a value's trailing newlines, which $(...) would strip.
  value=$(printf '%s' "$encoded" | base64 -d; printf x)
  export "$name=\${value%x}"
done ${doc.start}
${doc.body}
`;
}

/**
 * `docker stack deploy` of FILE in the release's directory, then waiting until the stack converged: every
 * service runs all its replicas and no update this deploy started is under way; prints `service NAME
 * STATE RUNNING/DESIRED` for each. An update swarm rolled back (or paused) ends it at once, as does the
 * deadline, with one line on stderr. An update state from before this deploy (a service it left as it
 * was) counts as none. --prune only for a whole release: it removes the services its file lacks.
 */
function deployAndConverge(file: string, prune: boolean, deadlineSeconds: number) {
  return sh`# A second's slack: the manager stamps an update it starts with its own clock, which this reads.
since=$(( $(date +%s) - 1 ))
docker stack deploy --with-registry-auth ${prune ? ['--prune'] : []} --compose-file ${file} "$project" >/dev/null
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
  if [ -z "$pending" ]; then printf '%s\n' "$report"; break; fi
  if [ "$SECONDS" -ge "$deadline" ]; then
    printf '%s\n' "$report"
    echo "not converged in $limit s: $pending" >&2
    exit ${SWARM_EXIT.notConverged}
  fi
  sleep 1
done
`;
}

/**
 * Rolls a release out: `docker stack deploy` of its stack file (docker-compose.yml) with its variables,
 * pruning services it no longer has, then waits until the stack converged (deployAndConverge).
 */
export function rollOutScript(layout: RemoteLayout, release: string, vars: Record<string, string>, login: SwarmLogin, deadlineSeconds: number, secrets: SwarmSecrets = {}): string {
  return remoteScript(
    layout,
    `roll-out ${release}`,
    sh`${releaseContext(release, vars, login)}${createSecrets(secrets)}${deployAndConverge('docker-compose.yml', true, deadlineSeconds)}# The Swarm secrets no kept release names any more (one in use is never removed: docker refuses).
docker secret ls --filter label=${SECRET_LABEL} --format '{{.Name}}' | while read -r name; do
  [ -n "$name" ] || continue
  cat "$deploy"/releases/*/docker-compose.yml 2>/dev/null | grep -qF "$name" || docker secret rm "$name" >/dev/null 2>&1 || true
done
`,
  );
}

/** Swarm secret name -> the variable (exported by releaseContext) holding its value. */
export type SwarmSecrets = Record<string, string>;

/** Marks the Swarm secrets the deploy made, the only ones it ever removes. */
const SECRET_LABEL = 'com.aidd-devops.secret';

/** Makes each Swarm secret not there yet from its variable's value: on stdin (printf is a builtin), never on a command line. */
function createSecrets(secrets: SwarmSecrets) {
  if (Object.keys(secrets).length === 0) return sh``;
  const pairs = Object.entries(secrets).flat();
  return sh`set -- ${pairs}
while [ "$#" -gt 0 ]; do
  docker secret inspect "$1" >/dev/null 2>&1 || printf '%s' "\${!2}" | docker secret create --label ${SECRET_LABEL} --label "com.docker.stack.namespace=$project" "$1" - >/dev/null
  shift 2
done
`;
}

/** How a release's migration runs on the manager: a one-off container of the migrate service's image. */
export interface SwarmMigration {
  /** The image, pinned by digest. */
  image: string;
  command: string[];
  /** The service's environment, its values interpolated: passed by name, the values exported from stdin. */
  environment: Record<string, string>;
  /** The stack network it joins, to reach the services it needs; none when it needs none. */
  network?: string;
  /** Services it needs running first, and a stack file of only them, deployed where one of them is missing (a first deploy). */
  needs: string[];
  needsStack: string;
}

/**
 * Runs a release's migration on the manager before the switch, while the live release serves: the
 * services it needs are started first where they do not run yet (a stack file of only them, no
 * --prune, so nothing else changes), then a one-off container joins the stack's network.
 */
export function swarmMigrateScript(layout: RemoteLayout, release: string, migration: SwarmMigration, vars: Record<string, string>, login: SwarmLogin, deadlineSeconds: number, secrets: SwarmSecrets = {}): string {
  const start = migration.needs.length
    ? (() => {
        const needs = heredoc(migration.needsStack);
        return sh`missing=0
for service in ${migration.needs}; do docker service inspect "$project"_"$service" >/dev/null 2>&1 || missing=1; done
if [ "$missing" = 1 ]; then
  cat > needs.yml ${needs.start}
${needs.body}
${createSecrets(secrets)}${deployAndConverge('needs.yml', false, deadlineSeconds)}fi
`;
      })()
    : sh``;
  const environment = Object.keys(migration.environment).flatMap((name) => ['--env', name]);
  return remoteScript(
    layout,
    `migrate ${release}`,
    // The container's environment is exported in a subshell of its own: the release's variables, which
    // the stack files are interpolated with, stay as they are.
    sh`${releaseContext(release, vars, login)}${start}if ! (
${exportVariables(migration.environment)}docker run --rm ${migration.network ? ['--network', `${layout.project}_${migration.network}`] : []} ${environment} ${migration.image} ${migration.command}
) 2>&1 | tail -n 20 >&2; then
  echo "migration failed" >&2; exit ${REMOTE_EXIT.migrateFailed}
fi
echo migrated
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
 * The stack as `aidd status` shows it: `service|NAME|RUNNING/DESIRED|IMAGE` per service and
 * `task|SERVICE.SLOT|NODE|STATE` per task that should run (its state as docker words it: Running 5 minutes ago).
 */
export function stackStatusScript(layout: RemoteLayout): string {
  return remoteScript(
    layout,
    'stack-status',
    // | between fields: a field may hold spaces (1/1 (max 1 per node), Running 5 minutes ago) or be empty (the node of a pending task).
    sh`docker stack services --format 'service|{{.Name}}|{{.Replicas}}|{{.Image}}' "$project"
docker stack ps --filter desired-state=running --format 'task|{{.Name}}|{{.Node}}|{{.CurrentState}}' "$project"
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

