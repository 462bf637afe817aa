"""A minimal ctypes binding to libnftables' JSON API (Debian's ``libnftables1``).

Why our own: PyPI has no ``nftables`` package, Debian's ``python3-nftables`` installs only for the
system interpreter, and ``pip-nftables`` is a copy of the same ~300-line binding.  netkit needs four
calls: make a context, run a JSON command, read the output and error buffers.  In-process this costs
~3 ms per atomic batch, against a fork + exec of ``nft``.
"""

from __future__ import annotations

import ctypes
import functools
import json
from typing import Any

from netkit import errors
from netkit.firewall import release

_OUTPUT_HANDLE = 1 << 3
_OUTPUT_JSON = 1 << 4
_lib: ctypes.CDLL | None = None


def _load() -> ctypes.CDLL:
    global _lib  # one handle per process: the library is stateless apart from contexts
    if _lib is None:
        try:
            # The soname first: ctypes.util.find_library imports shutil, subprocess and tempfile and
            # runs `ldconfig -p`, several ms of every exec that touches the firewall.
            lib = ctypes.CDLL("libnftables.so.1", use_errno=True)
        except OSError:
            from ctypes.util import find_library

            try:
                lib = ctypes.CDLL(find_library("nftables") or "libnftables.so.1", use_errno=True)
            except OSError as exc:
                raise errors.CNIError(errors.NOT_AVAILABLE, "libnftables is not installed",
                                      f"{exc}; install Debian's libnftables1") from None
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
        lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_output_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
        _lib = lib
    return _lib


class Nft:
    """One libnftables context, bound to the network namespace of the thread that made it."""

    def __init__(self) -> None:
        self._lib = _load()
        self._ctx = self._lib.nft_ctx_new(0)
        if not self._ctx:
            raise errors.CNIError(errors.KERNEL, "failed to create an nftables context")
        self._lib.nft_ctx_output_set_flags(self._ctx, _OUTPUT_JSON | _OUTPUT_HANDLE)
        self._lib.nft_ctx_buffer_output(self._ctx)
        self._lib.nft_ctx_buffer_error(self._ctx)

    def run(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Run ``commands`` (JSON command objects) as one atomic batch; return the output objects."""
        text = json.dumps({"nftables": commands}).encode()
        rc = self._lib.nft_run_cmd_from_buffer(self._ctx, text)
        out = self._lib.nft_ctx_get_output_buffer(self._ctx) or b""
        if rc != 0:
            err = (self._lib.nft_ctx_get_error_buffer(self._ctx) or b"").decode(errors="replace").strip()
            raise NftError(err or f"nftables command failed (rc {rc})")
        if not out.strip():
            return []
        return list(json.loads(out).get("nftables", []))

    def close(self) -> None:
        """Free the context off this thread: its socket's release may wait (see release.py), also
        for a context that only listed, when someone's commit deleted something just before."""
        if self._ctx:
            release.later(functools.partial(self._lib.nft_ctx_free, self._ctx))
            self._ctx = None

    def __enter__(self) -> "Nft":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class NftError(Exception):
    """libnftables refused a batch; nothing of it was applied."""
