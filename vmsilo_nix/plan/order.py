"""The order VMs start in: each after the VMs it depends on, otherwise in configuration order."""

from __future__ import annotations

import heapq

from vmsilo_nix.config.model import Config


def start_order(config: Config) -> list[str]:
    """A topological order of ``dependsOn``; validation guarantees there is no cycle."""
    position = {vm.name: i for i, vm in enumerate(config.nixos_vms)}
    waiting_on = {vm.name: set(vm.depends_on) & position.keys() for vm in config.nixos_vms}
    dependants: dict[str, list[str]] = {name: [] for name in position}
    for name, deps in waiting_on.items():
        for dep in deps:
            dependants[dep].append(name)
    ready = [(position[n], n) for n, deps in waiting_on.items() if not deps]
    heapq.heapify(ready)
    order = []
    while ready:
        _, name = heapq.heappop(ready)
        order.append(name)
        for later in dependants[name]:
            waiting_on[later].discard(name)
            if not waiting_on[later]:
                heapq.heappush(ready, (position[later], later))
    return order
