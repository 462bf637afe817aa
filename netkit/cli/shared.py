"""What every verb file of the ``netkit`` command shares: a failure as one readable line, the root check,
the runtime root, CMD after ``--``, a list of click options applied as one decorator.

The verb files import this module, never the package's ``__init__`` (which imports them to build
the command tree), so the import order of the package does not matter.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any, Callable, NoReturn, TypeVar

import click

from netkit import errors
from netkit.agent import protocol

if TYPE_CHECKING:
    from netkit.runtime.root import Root

T = TypeVar("T")


def fail(exc: Exception) -> NoReturn:
    """Print ``exc`` as one line on stderr and exit with status 1."""
    click.echo(f"{errors.LINE_PREFIX}{exc}", err=True)
    sys.exit(1)


def call(fn: Callable[[], T]) -> T:
    """Call ``fn``; known failures become one line on stderr and exit status 1."""
    try:
        return fn()
    except (errors.CNIError, OSError, ValueError) as exc:
        fail(exc)


def require_root() -> None:
    """Stop with one line unless running as root (namespaces, mounts, links need it)."""
    if os.geteuid() != 0:
        fail(errors.CNIError(errors.INTERNAL, "netkit must run as root"))


def root(ctx: click.Context) -> Root:
    """The runtime root given by ``netkit --root`` (or $NETKIT_ROOT); the runtime needs root privileges."""
    # Imported here: `netkit cni ...` and `netkit lab graph` never load the runtime.
    from netkit.runtime.root import Root

    require_root()
    return Root(ctx.obj)


def after_dashes(command: tuple[str, ...]) -> list[str]:
    """CMD without the ``--`` that separates it (click keeps it once a positional came first)."""
    return list(command[1:] if command[:1] == ("--",) else command)


def each(names: tuple[str, ...], fn: Callable[[str], Any]) -> None:
    """Apply ``fn`` to each name in turn and echo the name once done (as ``docker stop A B`` does)."""
    for name in names:
        call(lambda: fn(name))
        click.echo(name)


def options(decorators: list[Callable[..., Any]]) -> Callable[..., Any]:
    """One decorator that applies click ``decorators`` in the order listed (first listed, first in --help)."""
    def apply(fn: Callable[..., Any]) -> Callable[..., Any]:
        for decorator in reversed(decorators):
            fn = decorator(fn)
        return fn
    return apply


def agent_socket(name: str = "socket") -> Callable[[Any], Any]:
    """The ``--socket`` option of the commands that start, ask or stop the agent, passed as ``name``."""
    return click.option("--socket", name, envvar=protocol.ENV_SOCKET, default=protocol.DEFAULT_SOCKET,
                        show_default=True, help="The agent's socket ($NETKIT_AGENT_SOCKET).")
