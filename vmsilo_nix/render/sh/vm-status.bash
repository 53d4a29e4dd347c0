usage="usage: vm-status [--json] [VM...]  (not built, built, running current, running outdated, failed)"
json=0
if [[ ${1:-} == -h || ${1:-} == --help ]]; then echo "$usage"; exit 0; fi
if [[ ${1:-} == --json ]]; then json=1; shift; fi
vms=("$@")
((${#vms[@]})) || vms=(@ALL_VMS@)
for vm in "${vms[@]}"; do need_vm "$vm"; done
present() {  # the files a VM boots from, one a line: are they all there (not collected)?
  local file
  [[ -n $1 ]] || return 1
  while IFS= read -r file; do [[ -e $file ]] || return 1; done <<<"$1"
}
first=1
((json)) && printf '{'
for vm in "${vms[@]}"; do
  # The same states and words as `vmsilo status` (which also knows "running stale").
  if systemctl is-failed --quiet -- "${unit[$vm]}"; then
    state=failed
  elif active "$vm"; then
    state="running current"
    running=$(read_fingerprint "${runtime[$vm]}/fingerprint")
    [[ $running == "${fingerprint[$vm]}" ]] || state="running outdated"
  elif present "${built[$vm]}"; then
    state=built
  else
    state="not built"
  fi
  if ((json)); then
    ((first)) || printf ','
    printf '"%s":"%s"' "$vm" "$state"
  else
    case $state in
      "running outdated")
        printf '%s\trunning outdated (restart it to apply the new configuration)\n' "$vm" ;;
      *) printf '%s\t%s\n' "$vm" "$state" ;;
    esac
  fi
  first=0
done
((json)) && printf '}\n'
exit 0
