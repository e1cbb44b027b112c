// The scripts a deploy to a swarm runs on its manager, built like lib/deploy/remote-scripts.ts (one
// function over the shared prelude, every value quoted by the `sh` tag).
//
// Work in progress on the swarm-target branch: nothing calls them yet.
import { heredoc, remoteScript, sh, type RemoteLayout } from '../remote-scripts.ts';

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
 * `docker stack deploy` of a release's stack file, its variables in the environment of that one
 * command: docker interpolates the `${VAR}` references the stack file keeps, so no value is written
 * into the file, and none reaches a command line (export and printf are bash builtins).
 */
export function stackDeployScript(layout: RemoteLayout, release: string, vars: Record<string, string>): string {
  const doc = heredoc(encodedVariables(vars));
  return remoteScript(
    layout,
    `stack-deploy ${release}`,
    sh`cd "$deploy/releases/"${release}
while read -r name encoded; do
  # The x keeps a value's trailing newlines, which $(...) would strip.
  value=$(printf '%s' "$encoded" | base64 -d; printf x)
  export "$name=\${value%x}"
done ${doc.start}
${doc.body}
docker stack deploy --with-registry-auth --prune --compose-file stack.yml "$project"
`,
  );
}

/**
 * Waits until every service of the stack has finished its update and runs all its replicas; prints
 * `service NAME STATE RUNNING/DESIRED` for each. An update swarm rolled back (or paused) ends it at once
 * with those services named; the deadline ends it otherwise.
 */
export function convergeScript(layout: RemoteLayout, deadlineSeconds: number): string {
  return remoteScript(
    layout,
    'converge',
    sh`deadline=$((SECONDS + ${deadlineSeconds}))
while :; do
  mapfile -t ids < <(docker stack services --quiet "$project")
  if [ "\${#ids[@]}" -eq 0 ]; then echo "the stack $project has no services" >&2; exit ${SWARM_EXIT.notConverged}; fi
  states=$(docker service inspect --format '{{.Spec.Name}} {{if .UpdateStatus}}{{.UpdateStatus.State}}{{else}}none{{end}}' "\${ids[@]}")
  replicas=$(docker stack services --format '{{.Name}} {{.Replicas}}' "$project")
  report=$(join <(sort <<<"$states") <(sort <<<"$replicas") | awk '{ print "service", $1, $2, $3 }')
  if grep -Eq '^service [^ ]+ (rollback_completed|rollback_paused|paused) ' <<<"$report"; then
    printf '%s\\n' "$report"
    exit ${SWARM_EXIT.rolledBack}
  fi
  # Done: no update under way, and every service runs as many tasks as it wants (2/2).
  if ! awk '$3 !~ /^(completed|none)$/ { exit 1 } { split($4, r, "/"); if (r[1] != r[2]) exit 1 }' <<<"$report" >/dev/null; then
    if [ "$SECONDS" -ge "$deadline" ]; then printf '%s\\n' "$report"; exit ${SWARM_EXIT.notConverged}; fi
    sleep 1
    continue
  fi
  printf '%s\\n' "$report"
  exit 0
done
`,
  );
}
