"""Compiled kernels: numba versions of a few hot loops, bit-identical to their NumPy definitions.

A :class:`Kernel` pairs a function written as explicit loops in a fixed order (compiled with
``numba.njit``; numba is a dependency of the package) with a NumPy function that computes the
same numbers in the same order, used where numba cannot be imported or is disabled (much slower
for some kernels: the exact PSFs' DFT runs ~15-20x slower per PSF as NumPy). Every kernel of the package is
written so that the two agree bit for bit on any machine:

- sums run in a fixed order (no reduction trees, no BLAS), starting from ``0.0``;
- products are of float32 values taken to float64, which are exact, so whether the compiler
  fuses ``acc + a * b`` into one multiply-add or not, the sum rounds the same way (or the
  float64 product is rounded to float32 before the next operation, which no compiler may fuse);
- numba compiles without ``fastmath`` (no reassociation, and LLVM never contracts a multiply and
  an add into a fused multiply-add without fast-math flags: the polynomials of
  :mod:`z2t_dask.physics.optics.pupil_poly` and :mod:`z2t_dask.physics.optics.fixed_math`, whose
  products are not exact, rely on that; the tests compare them with their NumPy definitions bit for
  bit on the machine they run on).

Hence the output bytes of a simulation do not depend on whether numba is available (tests
compare both paths). ``Z2T_NUMBA=0`` in the environment, or :func:`numpy_only`, forces the NumPy
definitions. numba is imported on a kernel's first call, never on ``import z2t_dask``; compiled
code is cached on disk by numba (``cache=True``: next to this module, or in ``NUMBA_CACHE_DIR``).

This module imports nothing from the package: every layer may use it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["ENV_VAR", "Kernel", "available", "loaded", "numpy_here", "numpy_only", "present", "warm"]

log = logging.getLogger(__name__)

#: Environment variable: ``0``, ``off``, ``false`` or ``no`` disable the compiled kernels.
ENV_VAR = "Z2T_NUMBA"

_lock = threading.Lock()
_state: dict[str, Any] = {"numba": None, "forced_numpy": 0}
_thread = threading.local()  # numpy_here() depth of this thread
_KERNELS: list[Kernel] = []


def _numba() -> Any:
    """The numba module, or False when it is not installed or disabled (decided once per process)."""
    nb = _state["numba"]
    if nb is None:
        with _lock:
            nb = _state["numba"]
            if nb is None:
                if os.environ.get(ENV_VAR, "").strip().lower() in ("0", "off", "false", "no"):
                    nb = False
                else:
                    try:
                        import numba

                        nb = numba
                    except Exception:  # not installed, or broken against this NumPy: the NumPy path
                        nb = False
                _state["numba"] = nb
    return nb


def available() -> bool:
    """Whether compiled kernels are used in this process (numba importable and not disabled)."""
    return bool(_numba()) and not _state["forced_numpy"]


def present() -> bool:
    """Whether numba is importable and not disabled by ``Z2T_NUMBA`` (blocks of :func:`numpy_only` aside)."""
    return bool(_numba())


def loaded() -> bool:
    """Whether numba is already imported for the kernels of this process (never imports it)."""
    return bool(_state["numba"])


@contextlib.contextmanager
def numpy_only() -> Iterator[None]:
    """Run the NumPy definitions of every kernel inside the block (this process, all threads)."""
    with _lock:
        _state["forced_numpy"] += 1
    try:
        yield
    finally:
        with _lock:
            _state["forced_numpy"] -= 1


@contextlib.contextmanager
def numpy_here() -> Iterator[None]:
    """Run the NumPy definitions of every kernel inside the block, in this thread only.

    For callers with too little work to pay for numba's import (~0.5 s, ~110 MiB): a few exact
    PSFs that probe a cached library, say. The results are the same bits either way.
    """
    _thread.depth = getattr(_thread, "depth", 0) + 1
    try:
        yield
    finally:
        _thread.depth -= 1


class Kernel:
    """A loop kernel with a NumPy definition of the same arithmetic.

    Parameters
    ----------
    loops : callable
        The kernel as explicit loops over arrays and scalars (numba ``nopython`` subset); it
        writes its result into an output argument and returns None.
    reference : callable
        Same signature and effect, in NumPy; used when numba is not available, and by the tests
        as the definition the compiled loops must match bit for bit.
    example : callable, optional
        Returns small arguments of the types the package calls the kernel with: :func:`warm`
        calls the kernel once with them, so that numba's machine code for that signature is
        loaded (numba compiles, or loads from its cache, per signature on the first call).
    """

    def __init__(
        self,
        loops: Callable[..., None],
        reference: Callable[..., None],
        example: Callable[[], tuple[Any, ...]] | None = None,
    ):
        self.loops = loops
        self.reference = reference
        self.example = example
        self.__name__ = loops.__name__
        self.__doc__ = reference.__doc__
        self._compiled: Any = None
        _KERNELS.append(self)

    def compiled(self) -> Callable[..., None] | None:
        """The compiled loops (compiled, or loaded from numba's cache, on first use), or None."""
        if self._compiled is None:
            nb = _numba()
            with _lock:
                if self._compiled is None:
                    self._compiled = False
                    if nb:
                        try:
                            self._compiled = nb.njit(cache=True, nogil=True, boundscheck=False)(self.loops)
                        except Exception as exc:  # pragma: no cover - numba broken: the NumPy path
                            log.warning("numba cannot compile %s (%s): using NumPy", self.__name__, exc)
        return self._compiled or None

    def __call__(self, *args: Any) -> None:
        fn = None if _state["forced_numpy"] or getattr(_thread, "depth", 0) else self.compiled()
        (fn or self.reference)(*args)


def warm() -> int:
    """Compile (or load from numba's cache) every kernel imported so far; the number made ready.

    Each kernel with an ``example`` is called once with it, so that its machine code for the
    package's argument types is loaded too. A batch's forkserver calls this after importing a
    job's modules, so that every worker it forks starts with the kernels loaded (numba's import
    and cache loads cost ~1 s per process). Never raises; 0 without numba.
    """
    ready = 0
    for k in list(_KERNELS):
        try:
            fn = k.compiled()
            if fn is not None and k.example is not None:
                fn(*k.example())
            ready += fn is not None
        except Exception as exc:  # pragma: no cover - warming is an optimisation only
            log.debug("warming %s failed: %s", k.__name__, exc)
    return ready
