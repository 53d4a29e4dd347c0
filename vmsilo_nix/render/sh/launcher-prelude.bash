# The launcher's helpers; vm, runtime, overlay, socket_wait and stop_grace are set above.
children=()
sockets=()

say() { printf 'vmsilo-launch[%s]: %s\n' "$vm" "$*" >&2; }

# shellcheck disable=SC2317  # run by the EXIT trap, which shellcheck does not follow
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  local pid
  for pid in "${children[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  local deadline=$((SECONDS + stop_grace))
  for pid in "${children[@]}"; do
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  local path
  for path in "${sockets[@]}"; do rm -f -- "$path" "$path.pid"; done
  rm -f -- "$runtime/fingerprint"
  if [[ -n $overlay ]]; then rm -f -- "$overlay"; fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start() {  # start a child in the background and remember it
  "$@" &
  children+=("$!")
}

wait_for_socket() {  # PATH PID: wait until PATH is a socket, failing early if PID died
  local deadline=$((SECONDS + socket_wait))
  until [[ -S $1 ]]; do
    if ! kill -0 "$2" 2>/dev/null; then say "the process serving $1 exited"; exit 1; fi
    if ((SECONDS >= deadline)); then say "timed out waiting for $1"; exit 1; fi
    sleep 0.05
  done
}

mkdir -p -- "$runtime"
