# Reading a program's screen on a real terminal: tmux gives it a pseudo-terminal on a private server
# (TMUX_SOCKET, set by the test), so the tests never touch a user's sessions. TMUX_TARGET names the
# pane (default 0); WAIT_SECONDS bounds wait_for (default 30).

# The whole screen, scroll-back included, lines joined where the terminal wrapped them; extra flags
# go to capture-pane (-e keeps the escape sequences).
screen() {
  tmux -S "${TMUX_SOCKET}" capture-pane -p -J -S - -t "${TMUX_TARGET:-0}" "$@"
}

# Waits up to WAIT_SECONDS until the screen shows TEXT.
wait_for() {
  local text="$1" tries
  for ((tries = 0; tries < ${WAIT_SECONDS:-30} * 5; tries++)); do
    if screen | grep -qF -- "${text}"; then return 0; fi
    sleep 0.2
  done
  fail "the screen never showed: ${text}
$(screen)"
}
