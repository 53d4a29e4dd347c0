usage="usage: vm-start VM  (start a VM and the VMs it depends on)"
[[ ${1:-} == -h || ${1:-} == --help ]] && { echo "$usage"; exit 0; }
(($# == 1)) || die "$usage"
need_vm "$1"
start_vm "$1"
