usage="usage: vm-shell VM  (an interactive shell in VM)"
[[ ${1:-} == -h || ${1:-} == --help ]] && { echo "$usage"; exit 0; }
(($# == 1)) || die "$usage"
need_vm "$1"
active "$1" || start_vm "$1"
exec "$vmsilo" channel shell --cid "${cid[$1]}"
