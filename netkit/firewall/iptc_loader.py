"""Importing python-iptables (``iptc``) once, on first use, without the work it does by default.

Left to itself, importing ``iptc`` runs ``ldconfig``/``gcc`` dozens of times to find libxtables and
the libiptc libraries, and imports setuptools' copy of distutils: ~300 ms.  With the environment
defaults and the import-time shortcuts below it costs ~40 ms.  Nothing here is left changed once
the import is done except the environment defaults, which an operator's own values override.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import sysconfig
import threading
import warnings
from typing import Any, Iterator

from netkit import errors

_LIB_DIRS_FALLBACK = ("/usr/lib64", "/lib64", "/usr/lib", "/lib", "/usr/local/lib")
_SONAMES = {"c": "libc.so.6", "ip4tc": "libip4tc.so.2", "ip6tc": "libip6tc.so.2"}
_iptc: Any = None
_load_lock = threading.Lock()


def _lib_dirs() -> list[str]:
    """Library directories, the interpreter's multiarch ones first."""
    arch = sysconfig.get_config_var("MULTIARCH") or getattr(sys.implementation, "_multiarch", "") or ""
    dirs = [f"/usr/lib/{arch}", f"/lib/{arch}"] if arch else []
    return dirs + list(_LIB_DIRS_FALLBACK)


def _find_dir(filename: str, dirs: list[str]) -> str | None:
    return next((d for d in dirs if os.path.exists(os.path.join(d, filename))), None)


def _env_defaults(env: Any = os.environ) -> None:
    """Point python-iptables at the libraries directly (setdefault: an operator's values win).

    Without these it runs ``ldconfig``/``gcc`` dozens of times and imports setuptools' distutils.
    """
    dirs = _lib_dirs()
    xt_dir = _find_dir("libxtables.so.12", dirs)
    if xt_dir is not None:
        env.setdefault("PYTHON_IPTABLES_XTABLES_VERSION", "12")
        if os.path.isdir(os.path.join(xt_dir, "xtables")):
            env.setdefault("XTABLES_LIBDIR", os.path.join(xt_dir, "xtables"))
    libdirs = [d for d in (_find_dir("libip4tc.so.2", dirs), _find_dir("libip6tc.so.2", dirs)) if d]
    spec = importlib.util.find_spec("iptc")  # locates, does not import
    if spec is not None and spec.origin:
        libdirs.append(os.path.dirname(os.path.dirname(spec.origin)))  # libxtwrapper sits beside the package
    if libdirs:
        env.setdefault("IPTABLES_LIBDIR", ":".join(dict.fromkeys(libdirs)))
    env.setdefault("SETUPTOOLS_USE_DISTUTILS", "stdlib")


@contextlib.contextmanager
def _quick_import() -> Iterator[None]:
    """While importing iptc, spare it two kinds of work.

    - setuptools' distutils: its ``.pth`` shim was installed when the interpreter started, before
      SETUPTOOLS_USE_DISTUTILS=stdlib could be set here, and importing setuptools' copy costs
      ~190 ms.  With the variable at ``stdlib``, the shim is taken out for the import.
    - ``ctypes.util.find_library`` for libc, libip4tc and libip6tc (``ldconfig -p`` each time,
      ~17 ms in all): answered from the library directories; anything else, or anything not
      found there, goes to the real function.
    Both are put back afterwards.
    """
    import ctypes.util

    shims = []
    if os.environ.get("SETUPTOOLS_USE_DISTUTILS") == "stdlib":
        shims = [(i, f) for i, f in enumerate(sys.meta_path) if type(f).__module__ == "_distutils_hack"]
    for _, finder in shims:
        sys.meta_path.remove(finder)
    real = ctypes.util.find_library
    dirs = _lib_dirs()

    def quick(name: str) -> str | None:
        soname = _SONAMES.get(name)
        if soname and _find_dir(soname, dirs):
            return soname
        return real(name)

    ctypes.util.find_library = quick
    try:
        yield
    finally:
        ctypes.util.find_library = real
        for i, finder in shims:
            sys.meta_path.insert(i, finder)


def load() -> Any:
    """The ``iptc`` module, imported on first use."""
    global _iptc
    with _load_lock:
        if _iptc is None:
            _env_defaults()
            try:
                with warnings.catch_warnings(), _quick_import():
                    warnings.simplefilter("ignore", DeprecationWarning)  # stdlib distutils, 3.11
                    import iptc
            except Exception as exc:  # a missing library surfaces as OSError, AttributeError, XTablesError
                raise errors.CNIError(errors.NOT_AVAILABLE, "python-iptables cannot load the xtables libraries",
                                      f"{exc}; install Debian's libxtables12, libip4tc2 and libip6tc2") from None
            _iptc = iptc
    return _iptc

