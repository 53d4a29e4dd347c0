"""`vmsilo build`: each VM's kernel, initrd, root image and system, built by Nix.

planner (what to build, from the evaluated derivations), progress (Nix's internal-json log,
parsed), display (that progress on a terminal or as plain lines), artifacts (the JSON
`vmsilo generate --artifacts` reads, written whole), run (the orchestration), status (which
VMs are built, running, current).
"""
