# Shared by the setup-env tests and secrets-leak.bats: the secret values the tests use, and helpers
# that also collect every output and every env file of a run in AIDD_LEAK_DIR when it is set, so that
# secrets-leak.bats can search them for secret values.
load common

export KNOWN_PASSWORD='Known-Pg-Password-0001 with #, = and spaces'
export KNOWN_TOKEN='987654321:KnownTokenKnownTokenKnownToken_-0001'
export KNOWN_QUOTED_PASSWORD=$'Known-Quoted-0002 \'single\' "double" = # $HOME'
export KNOWN_MULTILINE_PASSWORD=$'Known-Multiline-0003-first\nKnown-Multiline-0003-second \'q\''

# Runs setup-env with stdin closed, as CI does; its stdout and stderr are passed on (stdout first) and
# logged. The timeout turns a prompt that waits for an answer into a failure instead of a hung suite.
setup_env() {
  local out="${BATS_TEST_TMPDIR}/setup-env.out" err="${BATS_TEST_TMPDIR}/setup-env.err" status=0
  timeout 60 "${TSX}" "${ROOT}/scripts/setup-env.ts" "$@" </dev/null >"${out}" 2>"${err}" || status=$?
  leak_log "${out}" "${err}"
  cat "${out}"
  cat "${err}" >&2
  return "${status}"
}

leak_log() {
  if [[ -n "${AIDD_LEAK_DIR:-}" ]]; then cat "$@" >>"${AIDD_LEAK_DIR}/output.log"; fi
}

# Keeps a copy of every env file and backup under a directory, so generated secrets are searched for too.
leak_keep_env_files() {
  [[ -n "${AIDD_LEAK_DIR:-}" ]] || return 0
  mkdir -p "${AIDD_LEAK_DIR}/files"
  local file
  while IFS= read -r -d '' file; do
    cp "${file}" "$(mktemp "${AIDD_LEAK_DIR}/files/env.XXXXXX")"
  done < <(find "$1" -type f \( -name '.env*' -o -name '*.env' \) -print0)
}

# Succeeds when dotenv reads variable NAME of FILE as exactly the value of environment variable EXPECTED.
# Compares inside node, so the value is never printed.
dotenv_equals() {
  node -e '
    const [dotenv, file, name, expected] = process.argv.slice(1);
    const value = require(dotenv).parse(require("fs").readFileSync(file))[name];
    process.exit(value === process.env[expected] ? 0 : 1);
  ' "${ROOT}/node_modules/dotenv" "$1" "$2" "$3"
}

# Prints the value of a non-secret variable of FILE as dotenv reads it.
dotenv_value() {
  node -e '
    const [dotenv, file, name] = process.argv.slice(1);
    process.stdout.write(require(dotenv).parse(require("fs").readFileSync(file))[name] ?? "(unset)");
  ' "${ROOT}/node_modules/dotenv" "$1" "$2"
}

file_mode() {
  stat -c '%a' "$1"
}
