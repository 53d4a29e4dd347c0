usage="usage: vm-stop [--timeout SECONDS] VM  (power button, then forced after the timeout)"
timeout=@STOP_TIMEOUT@
while (($#)); do
  case $1 in
    -h|--help) echo "$usage"; exit 0 ;;
    --timeout) [[ ${2:-} =~ ^[0-9]+$ ]] || die "$usage"; timeout=$2; shift 2 ;;
    *) break ;;
  esac
done
(($# == 1)) || die "$usage"
need_vm "$1"
vm=$1
active "$vm" || { echo "$vm is not running"; exit 0; }
"$crosvm" powerbtn "${control[$vm]}" 2>/dev/null || true
deadline=$((SECONDS + timeout))
while active "$vm" && ((SECONDS < deadline)); do sleep 0.2; done
if active "$vm"; then
  printf '%s did not power off within %ss; stopping it\n' "$vm" "$timeout" >&2
  "$crosvm" stop "${control[$vm]}" 2>/dev/null || true
  stop_vm "$vm"
fi
