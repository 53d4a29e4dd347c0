usage="usage: vm-status [--json] [VM...]  (running, stopped, or running an outdated configuration)"
json=0
if [[ ${1:-} == -h || ${1:-} == --help ]]; then echo "$usage"; exit 0; fi
if [[ ${1:-} == --json ]]; then json=1; shift; fi
vms=("$@")
((${#vms[@]})) || vms=(@ALL_VMS@)
for vm in "${vms[@]}"; do need_vm "$vm"; done
first=1
((json)) && printf '{'
for vm in "${vms[@]}"; do
  if active "$vm"; then
    state=running
    running=$(cat -- "${runtime[$vm]}/fingerprint" 2>/dev/null || true)
    [[ $running == "${fingerprint[$vm]}" ]] || state=outdated
  else
    state=stopped
  fi
  if ((json)); then
    ((first)) || printf ','
    printf '"%s":"%s"' "$vm" "$state"
  else
    case $state in
      outdated)
        printf '%s\trunning (outdated: restart it to apply the new configuration)\n' "$vm" ;;
      *) printf '%s\t%s\n' "$vm" "$state" ;;
    esac
  fi
  first=0
done
((json)) && printf '}\n'
exit 0
