"""vmsilo-tray: guest tray icons (StatusNotifierItem) on the host's panel, in the VM's colour.

``protocol`` (the frames), ``transport`` (them over vsock or Unix sockets), ``icons`` (icon names
to pixmaps, in the guest), ``guest`` (the guest's watcher and item reader), ``host`` (the host's
items and menus), ``cli`` (the console scripts).
"""
