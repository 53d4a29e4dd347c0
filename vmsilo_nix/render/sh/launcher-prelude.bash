# The launcher's helpers; vm, runtime, overlay, socket_wait, stop_grace, stopped_status and
# remove_made_taps are set above.
children=()
made_taps=()  # TAPs this launcher created (remove_made_taps, above, removes them at exit)
killed=()  # children whose group cannot take SIGTERM (start_killed): SIGKILL at once
sockets=()

say() { printf 'vmsilo-launch[%s]: %s\n' "$vm" "$*" >&2; }

# Microseconds since the epoch: every wait measures from its own start, finer than $SECONDS.
now_us() { local t=$EPOCHREALTIME; REPLY=$((10#${t/[.,]/})); }

# shellcheck disable=SC2317  # run by the EXIT trap, which shellcheck does not follow
cleanup() {
  local status=$?
  # Once begun, the cleanup finishes: a second SIGTERM (vm-stop's forced path, a shutdown)
  # must not leave sockets, the fingerprint or the overlay behind.
  trap - EXIT
  trap '' INT TERM
  local pid
  # Each child leads its own process group (set -m below): the group reaches what a child
  # started itself, such as the backend pw-container runs through a shell.
  for pid in "${killed[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
  for pid in "${children[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  now_us
  local start=$REPLY
  for pid in "${children[@]}"; do
    while kill -0 -- "-$pid" 2>/dev/null; do
      now_us
      if ((REPLY - start >= stop_grace * 1000000)); then
        say "process $pid did not exit within ${stop_grace}s of SIGTERM; killing it"
        break
      fi
      sleep 0.1
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  local path
  for path in "${sockets[@]}"; do rm -f -- "$path" "$path.pid"; done
  rm -f -- "$runtime/fingerprint"
  remove_made_taps
  if [[ -n $overlay ]]; then rm -f -- "$overlay"; fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit "$stopped_status"' TERM

# Job control: every background child gets a process group of its own, led by it.
set -m
start() {  # start a child in the background and remember it
  "$@" &
  children+=("$!")
}
# shellcheck disable=SC2317  # not every launcher has sound
# pw-container blocks SIGTERM and SIGINT (it reads them from a signalfd) and the command it
# runs inherits that mask, so a backend under it never sees SIGTERM; it keeps nothing to save.
start_killed() {
  start "$@"
  killed+=("$!")
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

# shellcheck disable=SC2317  # not every VM shares a directory
need_directory() {  # DIR OPTION HINT: refuse to start when a shared directory is missing
  [[ -d $1 ]] && return 0
  say "$2: the directory $1 does not exist; $3"
  exit 1
}

# shellcheck disable=SC2317  # not every launcher has sound
# The sound backend is a client of the VM user's PipeWire, which belongs to the user's session
# (their systemd user manager), not to this system service: find it where that session keeps
# it, and say so at once when no session runs, rather than starting a backend that cannot play.
need_pipewire() {  # OPTION: the option that asked for sound
  export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/run/user/$UID}"
  local socket="${PIPEWIRE_RUNTIME_DIR:-$XDG_RUNTIME_DIR}/pipewire-0"
  [[ -S $socket ]] && return 0
  say "$1: sound needs the PipeWire of the VM user's session, and it is not running (no socket $socket); log in first (or let the user's session linger: loginctl enable-linger), or turn sound off"
  exit 1
}

mkdir -p -- "$runtime"
