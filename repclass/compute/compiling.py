"""torch.compile (Inductor) for the hot kernels, where it pays; the eager path everywhere else.

The mode: `--compile auto|on|off` on `repclass train / predict / motifs`, or the environment
variable REPCLASS_COMPILE (pipelines); the option wins.

  auto  (default) compile once this process has run COMPILE_AFTER sequences through the kernels
        eagerly: small jobs (tests, a model on an easy cohort, a few repertoires) never pay the
        compilation (and `import torch._dynamo`, about 2 s), large ones (a CMV-sized cohort's
        training or prediction) get the compiled kernels after a bounded eager start
  on    compile from the first call
  off   never compile

On CPU the no-gradient pass does not wait for any of this: in modes auto and on it runs the C
kernel of compute/native.py (built once per machine, the eager floats to the bit), and in mode auto
so does the gradient pass's forward; `off` keeps the eager kernels everywhere.

Compilation needs a C++ compiler on CPU (Inductor writes C++); without one, or when compiling
fails for any reason, the kernels run eagerly and one log line says why. Compiled results equal
the eager ones within the dense-reference tolerance (tests/test_compiling.py); the compiled
kernels are chosen so that they sum the same rows in the same order (docs/performance.md).

Inductor caches what it compiled (TORCHINDUCTOR_CACHE_DIR, default a folder under the system's
temporary directory): the first compilation on a machine is the cold one, later processes load it.

May import: errors, compute.native (torch is imported when a kernel is first compiled).
"""
from __future__ import annotations

import logging
import os
import warnings
from typing import Any, Callable

from repclass.compute.native import compiler_on_path
from repclass.errors import UsageError

log = logging.getLogger(__name__)

MODES = ("auto", "on", "off")
#: The environment variable that sets the mode when `--compile` is not given.
ENVIRONMENT = "REPCLASS_COMPILE"
#: In mode "auto", sequences run eagerly through the kernels before they are compiled: about 20 s
#: of eager work on 2 CPU cores, against a cold compilation of 20-30 s and a warm one (Inductor's
#: cache, the compiler's imports included) of several seconds; the compiled kernels save 10-20%
#: (docs/performance.md, "torch.compile").
COMPILE_AFTER = 20_000_000

_mode: str | None = None
_broken: str | None = None  # why compiling was given up, once said
_seen = 0
_compiled: dict[Callable[..., Any], Callable[..., Any]] = {}


def configure(mode: str | None) -> None:
    """Set the mode for this process (None: back to REPCLASS_COMPILE or "auto")."""
    global _mode
    if mode is not None and mode not in MODES:
        raise UsageError(f"compile mode {mode!r} is not one of {', '.join(MODES)}")
    _mode = mode


def mode() -> str:
    """The mode in force: configure()'s, else REPCLASS_COMPILE's, else "auto"."""
    if _mode is not None:
        return _mode
    value = os.environ.get(ENVIRONMENT, "").strip().lower() or "auto"
    if value not in MODES:
        raise UsageError(f"{ENVIRONMENT}={os.environ[ENVIRONMENT]!r} is not one of {', '.join(MODES)}")
    return value


def reset() -> None:
    """Forget the sequences counted, a failure and the compiled kernels (tests, benchmarks)."""
    global _broken, _seen
    _broken = None
    _seen = 0
    _compiled.clear()


def failure() -> str | None:
    """Why this process gave up compiling (the log line's reason), or None."""
    return _broken


def cxx_compiler() -> str | None:
    """The C++ compiler Inductor would use on CPU ($CXX, else c++ / g++ / clang++ on PATH), or None."""
    return compiler_on_path("CXX", ("c++", "g++", "clang++"))


def _give_up(reason: str) -> None:
    global _broken
    if _broken is None:
        log.warning("torch.compile is off for this run (%s); the eager kernels give the same results, more slowly "
                    "(--compile off silences this)", reason)
    _broken = reason


def kernel(function: Callable[..., Any], n_sequences: int, device_type: str,
           options: dict[str, Any] | None = None) -> Callable[..., Any]:
    """`function` compiled when the mode says so (counting `n_sequences` towards COMPILE_AFTER),
    else `function` itself. `options`: Inductor settings for it (torch.compile's `options`). A
    compiled kernel that fails on its first call is given up for the rest of the process: the
    caller gets `function`'s result and one log line says why."""
    global _seen
    chosen = mode()
    if chosen == "off" or _broken is not None:
        return function
    _seen += n_sequences
    if chosen == "auto" and _seen < COMPILE_AFTER:
        return function
    compiled = _compiled.get(function)
    if compiled is None:
        if device_type == "cpu" and cxx_compiler() is None:
            _give_up("no C++ compiler found: set CXX or install g++/clang++")
            return function
        import torch

        log.info("compiling %s with torch.compile (Inductor); the first time on a machine takes 10-30 s",
                 function.__name__)
        with warnings.catch_warnings():
            # torch's compiler imports its own deprecated torch.jit.script_method: nothing a user can act on
            warnings.simplefilter("ignore", DeprecationWarning)
            compiled = _guarded(torch.compile(function, dynamic=True, options=options), function)
        _compiled[function] = compiled
    return compiled


def _guarded(compiled: Callable[..., Any], function: Callable[..., Any]) -> Callable[..., Any]:
    def run(*args: Any, **kwargs: Any) -> Any:
        if _broken is not None:
            return function(*args, **kwargs)
        try:
            return compiled(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - any compiler failure falls back to the same eager result
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            _give_up(f"compiling {function.__name__} failed: {type(exc).__name__}: {first[:200]}")
            return function(*args, **kwargs)

    return run
