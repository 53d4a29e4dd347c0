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
