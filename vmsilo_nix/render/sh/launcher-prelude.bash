# The launcher's helpers; vm, runtime, overlay, socket_wait and stop_grace are set above.
children=()
sockets=()

say() { printf 'vmsilo-launch[%s]: %s\n' "$vm" "$*" >&2; }

# Microseconds since the epoch: every wait measures from its own start, finer than $SECONDS.
now_us() { local t=$EPOCHREALTIME; REPLY=$((10#${t/[.,]/})); }

# shellcheck disable=SC2317  # run by the EXIT trap, which shellcheck does not follow
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  local pid
  for pid in "${children[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  now_us
  local start=$REPLY
  for pid in "${children[@]}"; do
    while kill -0 "$pid" 2>/dev/null; do
      now_us
      if ((REPLY - start >= stop_grace * 1000000)); then
        say "process $pid did not exit within ${stop_grace}s of SIGTERM; killing it"
        break
      fi
      sleep 0.1
    done
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

wait_for_socket() {  # PATH WHAT [PID]: wait up to socket_wait seconds, from now, for PATH
  # to be a socket; fail early when PID (the process meant to create it) has exited.
  now_us
  local start=$REPLY
  until [[ -S $1 ]]; do
    if [[ -n ${3:-} ]] && ! kill -0 "$3" 2>/dev/null; then
      say "$2 exited before creating its socket $1"
      exit 1
    fi
    now_us
    if ((REPLY - start >= socket_wait * 1000000)); then
      say "waited ${socket_wait}s for $2 to create its socket $1; giving up"
      exit 1
    fi
    sleep 0.05
  done
}

mkdir -p -- "$runtime"
