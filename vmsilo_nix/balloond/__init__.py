"""vmsilo-balloond: moves memory between the host and the VMs with the virtio balloon.

``policy`` decides (pure), ``sources`` reads the host's /proc files, ``crosvm_ctl`` talks to
crosvm, ``daemon`` runs the loop, ``cli`` is the ``vmsilo-balloond`` command.
"""
