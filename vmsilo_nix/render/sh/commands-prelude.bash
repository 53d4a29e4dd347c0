# Shared by the vm-* commands; the facts tables (unit, control, runtime, cid, fingerprint)
# are defined above this part.
die() { printf '%s: %s\n' "${0##*/}" "$*" >&2; exit 2; }
known() {  # VM: is it one of ours?
  [[ -n ${1:-} && -v "unit[$1]" ]]
}
need_vm() {
  known "${1:-}" || die "unknown VM '${1:-}' (VMs: ${!unit[*]})"
}
active() { systemctl is-active --quiet -- "${unit[$1]}"; }
# Starting and stopping are allowed to the VM user by the host module's polkit rule; never ask
# for a password (a script would hang on the prompt): fail with systemctl's message instead.
# shellcheck disable=SC2317  # not every command uses every helper
start_vm() { systemctl start --no-ask-password -- "${unit[$1]}"; }
# shellcheck disable=SC2317
stop_vm() { systemctl stop --no-ask-password -- "${unit[$1]}"; }
# The fingerprint the launcher wrote: read only from a regular file, at most 256 bytes, and
# never for long (the directory is the VM user's; vm-status may run as root).
# shellcheck disable=SC2317
read_fingerprint() {  # FILE
  [[ -f $1 && ! -L $1 ]] || return 0
  timeout 2 head -c 256 -- "$1" 2>/dev/null || true
}
