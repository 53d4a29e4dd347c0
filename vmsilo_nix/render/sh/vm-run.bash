usage="usage: vm-run VM COMMAND [ARG...]  (start VM if needed, run COMMAND in it)"
[[ ${1:-} == -h || ${1:-} == --help ]] && { echo "$usage"; exit 0; }
(($# >= 2)) || die "$usage"
need_vm "$1"
vm=$1
shift
active "$vm" || start_vm "$vm"
exec "$vmsilo" channel run --cid "${cid[$vm]}" -- "$@"
