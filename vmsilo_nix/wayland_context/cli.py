"""``vmsilo wayland-context``: what a VM's proxy script runs, in the desktop session."""

from __future__ import annotations

import argparse
import functools
import sys

from vmsilo_nix.facts import ENGINE as SANDBOX_ENGINE
from vmsilo_nix.sd_notify import notify_ready
from vmsilo_nix.wayland_context import DEFAULT_TIMEOUT


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``vmsilo wayland-context``."""
    parser.add_argument(
        "--socket",
        required=True,
        metavar="PATH",
        help="the socket to create and register (the VM's --wayland-sock)",
    )
    parser.add_argument(
        "--app-id", required=True, help="the security context's app id (the VM's name)"
    )
    parser.add_argument(
        "--instance-id",
        required=True,
        help='the security context\'s instance id (the VM and its colour, e.g. "banking #2e7d32")',
    )
    parser.add_argument(
        "--engine",
        default=SANDBOX_ENGINE,
        help=f"the security context's sandbox engine (default: {SANDBOX_ENGINE})",
    )
    parser.add_argument(
        "--display",
        metavar="NAME|PATH",
        help="the compositor's socket (default: $WAYLAND_SOCKET or $WAYLAND_DISPLAY)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"how long to wait for the compositor to answer (default: {DEFAULT_TIMEOUT:g})",
    )


def run(args: argparse.Namespace) -> int:
    """Serve until stopped. Exit status 0 when stopped by a signal; a failure (including the
    compositor going away) raises :class:`~.compositor.WaylandError`."""
    # Here, not at the top: loading libwayland through cffi adds ~45 ms to the import of the
    # vmsilo command (~280 ms), which every other subcommand would pay.
    from vmsilo_nix.wayland_context.compositor import CompositorClosedError  # noqa: PLC0415
    from vmsilo_nix.wayland_context.registration import Registration, register  # noqa: PLC0415
    from vmsilo_nix.wayland_context.serve import serve  # noqa: PLC0415

    def ready(r: Registration) -> None:
        print(
            f"vmsilo wayland-context: {r.socket_path} is served by the compositor as "
            f"sandbox engine {r.engine!r}, app id {r.app_id!r}, instance id {r.instance_id!r}",
            file=sys.stderr,
            flush=True,
        )
        notify_ready()

    stopped_by = serve(
        functools.partial(
            register,
            args.socket,
            engine=args.engine,
            app_id=args.app_id,
            instance_id=args.instance_id,
            display=args.display,
            timeout=args.timeout,
        ),
        on_ready=ready,
    )
    if stopped_by is None:
        raise CompositorClosedError(
            f"the compositor closed the connection; {args.socket} is no longer served"
        )
    return 0
