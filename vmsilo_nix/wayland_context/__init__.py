"""``vmsilo wayland-context``: a VM's Wayland socket, served by the compositor under a security
context (``wp_security_context_v1``) that names the VM.

Rooms: :mod:`.compositor` (the connection, through pywayland and libwayland), :mod:`.registration`
(the socket and the one registration), :mod:`.serve` (keeping it until a signal or the compositor
ends it) and :mod:`.cli` (the command line). Only :mod:`.cli` is imported by the ``vmsilo``
command; the others load libwayland, so they are imported when the command runs.
"""

DEFAULT_TIMEOUT = 10.0  # seconds to wait for the compositor to answer a roundtrip
