"""Traffic checks that mean the same on an idle machine and on a loaded 2-core one.

A positive check ("this must answer") tries up to ``TRIES`` times, each try with its own timeout:
a single lost SYN, datagram or ARP request on a busy machine must not fail a test, while a path that
is really broken fails every try.

A negative check ("this must NOT answer") tries once, and is only trusted next to a control: an
answer the same client got over the same path (the same port before the change, or another port on
the same address, or the same path with the blocking rule removed).  Without one, a negative check
passes just as well when the client, the link or the server is what is broken.

``Namespace.ask`` / ``Namespace.ping`` (tests/sandbox.py) are the positive checks and return an
:class:`Answer`; ``Namespace.unanswered`` / ``Namespace.unreachable`` are the negative checks and
take that answer as their ``control``.  Clients that are not a Namespace (HTTP through urllib, a
runtime's ``exec``) use :func:`first_answer` and :func:`unanswered` directly.
"""

from __future__ import annotations

import time
from typing import Callable, Union

TRIES = 3           # tries of a positive check
TRY_TIMEOUT = 2     # seconds each try waits for its answer (tests/traffic.py's clients, ping -W)
_PAUSE = 0.2        # between tries: lets a neighbour entry that was still resolving settle


class Answer(str):
    """What a positive check got (the server's text), and which client got it."""

    client: str

    def __new__(cls, text: str, client: str) -> "Answer":
        self = super().__new__(cls, text)
        self.client = client
        return self


# A control: an answer already got, or a check run right after the negative one (for a path that only
# opens by removing what blocks it, e.g. a guard rule).
Control = Union[str, None, Callable[[], Union[str, None]]]


def first_answer(try_once: Callable[[], str | None], tries: int = TRIES) -> str | None:
    """``try_once()`` up to ``tries`` times; its first answer (not None), or None when every try got none."""
    for attempt in range(tries):
        got = try_once()
        if got is not None:
            return got
        if attempt + 1 < tries:
            time.sleep(_PAUSE)
    return None


def unanswered(try_once: Callable[[], str | None], control: Control, what: str, client: str = "") -> bool:
    """True when one try of ``try_once()`` gets no answer and ``control`` proves the path exists.

    ``control`` is an answer the same client got over the same path, or a callable run after the try
    that returns one.  A missing control, or one another client got, fails the check (it would prove
    nothing); so does an answer to the try, with what answered.
    """
    got = try_once()
    if got is not None:
        raise AssertionError(f"{what}: expected no answer, got {got!r}")
    proof = control() if callable(control) else control
    if proof is None:
        raise AssertionError(f"{what}: no answer, but the control got none either: the path itself is broken, "
                             "so the missing answer proves nothing")
    if client and isinstance(proof, Answer) and proof.client != client:
        raise AssertionError(f"{what}: the control was answered to {proof.client}, not to this client {client}")
    return True
