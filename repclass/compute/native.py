"""The convolution embedding's no-gradient kernel in C, built once per machine with its C compiler.

What it computes is `ConvolutionEmbedding._chunk_maxima` before the SELU: for every sequence, the
largest over its windows of the window's sum. The eager path builds every window's row indices
into the pair/position table (`_window_indices`: an (n, T, columns) int32 array), sums those rows
with `embedding_bag` (an (n, T, D) array written to memory) and reads them back for the maximum
(`amax`). This kernel reads each sequence's codes once and, per window, adds the taps' weight rows
of the small per-tap table (`_parts`), two taps at a time exactly as `_tables` built the pair rows,
the position row last, keeping the running maximum in registers; nothing is written but the (n, D)
result. The same terms in the same order, starting from 0 as `embedding_bag` does: the eager
path's floats to the bit (tests/test_native.py). Windows past a sequence's end, which the eager
path masks with -1e6, are skipped (they never win). Training's gradient pass asks for the winning
window of each maximum too (`argmax`), the first one on ties as torch's `max(dim)` reports it, so
its sparse backward reaches the same table rows as the eager path's.

Built on first use with `$CC` (else cc, gcc or clang) at -O3 for this machine's CPU into a cache
folder ($REPCLASS_CACHE_DIR; else $XDG_CACHE_HOME/repclass or ~/.cache/repclass, and where that
cannot be written a per-user folder in the temporary directory), under a name made of the source,
the compiler and the CPU's instruction sets, so a home shared by a cluster's mixed nodes never
loads a library built for another CPU. Loaded with ctypes, which releases the GIL during each
call: a block is split across the process's torch threads. Without a compiler, or when building
fails, the eager kernels run and one log line says why.

May import: nothing of repclass (torch and ctypes when first used).
"""
from __future__ import annotations

import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CACHE_ENVIRONMENT = "REPCLASS_CACHE_DIR"

SOURCE = r"""
#include <stdint.h>

/* The generic loop for one sequence (any number of kernels D; sequences longer than MAX_SPAN):
   out = the maximum over the sequence's windows of the window's sum, the terms added in
   ConvolutionEmbedding._tables' order; arg (unless NULL) = the first window that reaches it, as
   torch's max(dim) reports it. 32 kernels take window_max_32 below. */
#define WINDOW_MAX_BODY(D)                                                                             \
    const int64_t length = lengths[s];                                                                 \
    const int64_t windows = (length > kernel_size ? length : kernel_size) - kernel_size + 1;           \
    float best[D], sum[D], combined[D];                                                                \
    int64_t where[D];                                                                                  \
    for (int64_t j = 0; j < (D); j++) { best[j] = -__builtin_inff(); where[j] = 0; }                   \
    for (int64_t t = 0; t < windows; t++) {                                                            \
        for (int64_t j = 0; j < (D); j++) sum[j] = 0.0f;                                               \
        for (int64_t g = 0; g < n_groups; g++) {                                                       \
            const int64_t first = group_first[g], taps = group_taps[g];                                \
            const float *restrict row = aa + (first * 21 + code(sequence, columns, t + first)) * (D);  \
            for (int64_t j = 0; j < (D); j++) combined[j] = row[j];                                    \
            for (int64_t tap = first + 1; tap < first + taps; tap++) {                                 \
                row = aa + (tap * 21 + code(sequence, columns, t + tap)) * (D);                        \
                for (int64_t j = 0; j < (D); j++) combined[j] += row[j];                               \
            }                                                                                          \
            if (g == n_groups - 1) {                                                                   \
                const float *restrict place = position + (length * table_windows + t) * (D);           \
                if (folded) {                                                                          \
                    for (int64_t j = 0; j < (D); j++) combined[j] += place[j];                         \
                    for (int64_t j = 0; j < (D); j++) sum[j] += combined[j];                           \
                } else {                                                                               \
                    for (int64_t j = 0; j < (D); j++) sum[j] += combined[j];                           \
                    for (int64_t j = 0; j < (D); j++) sum[j] += place[j];                              \
                }                                                                                      \
            } else {                                                                                   \
                for (int64_t j = 0; j < (D); j++) sum[j] += combined[j];                               \
            }                                                                                          \
        }                                                                                              \
        for (int64_t j = 0; j < (D); j++) {                                                            \
            where[j] = sum[j] > best[j] ? t : where[j];                                                \
            best[j] = sum[j] > best[j] ? sum[j] : best[j];                                             \
        }                                                                                              \
    }                                                                                                  \
    for (int64_t j = 0; j < (D); j++) out[s * (D) + j] = best[j];                                      \
    if (arg) for (int64_t j = 0; j < (D); j++) arg[s * (D) + j] = where[j];

/* The code at `p`; past the codes' columns, the padding code 20 (whose weight rows are 0). */
static inline int64_t code(const uint8_t *sequence, int64_t columns, int64_t p) {
    return p < columns ? sequence[p] : 20;
}

/* 32 floats as four vectors of 8 (GCC/clang vector extensions: AVX on x86-64, two NEON registers
   each on ARM), held in registers across a sequence's windows. */
typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));
static inline v8f load8(const float *p) { v8f v; __builtin_memcpy(&v, p, sizeof v); return v; }
static inline v8f max8(v8f a, v8f b) { v8i m = a > b; return (v8f)(((v8i)a & m) | ((v8i)b & ~m)); }

#define MAX_SPAN 512  /* sequences longer than this (none in practice) take the generic loop */

static void window_max_32(const uint8_t *restrict sequence, int64_t columns, int64_t length,
                          const float *restrict aa, const float *restrict position, int64_t kernel_size,
                          int64_t n_groups, const int64_t *restrict group_first, const int64_t *restrict group_taps,
                          int32_t folded, int32_t pairs, int64_t table_windows, float *restrict out,
                          int64_t *restrict arg) {
    const int64_t windows = (length > kernel_size ? length : kernel_size) - kernel_size + 1;
    /* Each position's row offset in aa for its tap: the codes read once, padding past the columns. */
    int32_t rows[MAX_SPAN];
    const int64_t span = windows + kernel_size - 1;
    for (int64_t p = 0; p < span; p++) rows[p] = (int32_t)(p < columns ? sequence[p] : 20) * 32;
    const v8f inf = {__builtin_inff(), __builtin_inff(), __builtin_inff(), __builtin_inff(),
                     __builtin_inff(), __builtin_inff(), __builtin_inff(), __builtin_inff()};
    v8f b0 = -inf, b1 = -inf, b2 = -inf, b3 = -inf;
    v8i w0 = {0}, w1 = {0}, w2 = {0}, w3 = {0};  /* the winning windows, where arg is wanted */
    const float *last_place = position + length * table_windows * 32;
    for (int64_t t = 0; t < windows; t++) {
        v8f s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0};
        /* every group but the last: pairs of taps where the table was built from pairs (the default) */
        const int64_t full = n_groups - 1;
        if (pairs) {
            for (int64_t g = 0; g < full; g++) {
                const float *row = aa + 2 * g * 21 * 32 + rows[t + 2 * g];
                const float *next = aa + (2 * g + 1) * 21 * 32 + rows[t + 2 * g + 1];
                s0 += load8(row) + load8(next); s1 += load8(row + 8) + load8(next + 8);
                s2 += load8(row + 16) + load8(next + 16); s3 += load8(row + 24) + load8(next + 24);
            }
        }
        for (int64_t g = pairs ? full : 0; g < n_groups; g++) {
            const int64_t first = group_first[g], taps = group_taps[g];
            const float *row = aa + first * 21 * 32 + rows[t + first];
            v8f c0 = load8(row), c1 = load8(row + 8), c2 = load8(row + 16), c3 = load8(row + 24);
            for (int64_t tap = first + 1; tap < first + taps; tap++) {
                row = aa + tap * 21 * 32 + rows[t + tap];
                c0 += load8(row); c1 += load8(row + 8); c2 += load8(row + 16); c3 += load8(row + 24);
            }
            if (g == n_groups - 1) {
                const float *place = last_place + t * 32;
                if (folded) {
                    c0 += load8(place); c1 += load8(place + 8); c2 += load8(place + 16); c3 += load8(place + 24);
                    s0 += c0; s1 += c1; s2 += c2; s3 += c3;
                } else {
                    s0 += c0; s1 += c1; s2 += c2; s3 += c3;
                    s0 += load8(place); s1 += load8(place + 8); s2 += load8(place + 16); s3 += load8(place + 24);
                }
            } else {
                s0 += c0; s1 += c1; s2 += c2; s3 += c3;
            }
        }
        if (arg) {  /* loop-invariant: the compiler keeps two copies of the loop */
            const v8i now = {(int32_t)t, (int32_t)t, (int32_t)t, (int32_t)t,
                             (int32_t)t, (int32_t)t, (int32_t)t, (int32_t)t};
            v8i m = s0 > b0; w0 = (now & m) | (w0 & ~m);
            m = s1 > b1; w1 = (now & m) | (w1 & ~m);
            m = s2 > b2; w2 = (now & m) | (w2 & ~m);
            m = s3 > b3; w3 = (now & m) | (w3 & ~m);
        }
        b0 = max8(s0, b0); b1 = max8(s1, b1); b2 = max8(s2, b2); b3 = max8(s3, b3);
    }
    __builtin_memcpy(out, &b0, 32); __builtin_memcpy(out + 8, &b1, 32);
    __builtin_memcpy(out + 16, &b2, 32); __builtin_memcpy(out + 24, &b3, 32);
    if (arg) {
        for (int j = 0; j < 8; j++) {
            arg[j] = w0[j]; arg[8 + j] = w1[j]; arg[16 + j] = w2[j]; arg[24 + j] = w3[j];
        }
    }
}

/* For sequences [begin, end) (codes: (n, columns), lengths: (n,)): out[s, :] (d floats) = the
   maximum over the sequence's windows t of sum over its tap groups g of (the group's taps' weight
   rows aa[tap, code, :] added left to right), the last group's plus the (length, window) row of
   `position` (folded: added to the group's sum first); arg[s, :] (unless NULL) the window of that
   maximum (the gradient pass's: its backward reaches only the winning window). */
void window_max_f32(const uint8_t *restrict codes, int64_t columns, const int64_t *restrict lengths,
                    const float *restrict aa, const float *restrict position, int64_t d, int64_t kernel_size,
                    int64_t n_groups, const int64_t *restrict group_first, const int64_t *restrict group_taps,
                    int32_t folded, int64_t table_windows, float *restrict out, int64_t *restrict arg,
                    int64_t begin, int64_t end) {
    int32_t pairs = 1;  /* every group but the last is two adjacent taps, g-th starting at tap 2g */
    for (int64_t g = 0; g + 1 < n_groups; g++) pairs &= group_first[g] == 2 * g && group_taps[g] == 2;
    for (int64_t s = begin; s < end; s++) {
        const uint8_t *sequence = codes + s * columns;
        if (d == 32 && (lengths[s] > kernel_size ? lengths[s] : kernel_size) <= MAX_SPAN) {
            window_max_32(sequence, columns, lengths[s], aa, position, kernel_size, n_groups, group_first,
                          group_taps, folded, pairs, table_windows, out + s * 32, arg ? arg + s * 32 : 0);
        } else {
            WINDOW_MAX_BODY(d)
        }
    }
}
"""

_library: Any = None
_tried = False
_pool: ThreadPoolExecutor | None = None
_pool_workers = 0


def compiler_on_path(variable: str, names: tuple[str, ...]) -> str | None:
    """The compiler named by the environment `variable` if set, else the first of `names` on PATH
    (the path found), or None."""
    for name in [os.environ[variable]] if os.environ.get(variable) else names:
        found = shutil.which(name)
        if found:
            return found
    return None


def c_compiler() -> str | None:
    """$CC, else cc / gcc / clang on PATH, or None."""
    return compiler_on_path("CC", ("cc", "gcc", "clang"))


def cache_folders() -> list[Path]:
    """Where the library is looked for and built, in this order: $REPCLASS_CACHE_DIR alone when it
    is set; else the user's cache folder, then a per-user folder in the system's temporary
    directory (for a home that cannot be written, as in some containers)."""
    if os.environ.get(CACHE_ENVIRONMENT):
        return [Path(os.environ[CACHE_ENVIRONMENT])]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    user = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    return [Path(base) / "repclass", Path(tempfile.gettempdir()) / f"repclass-{user}"]


def _cpu_features() -> str:
    """The CPU's model and instruction sets, as the library is built for them (-march=native)."""
    try:
        with open("/proc/cpuinfo") as handle:
            lines = [line for line in handle if line.startswith(("flags", "Features", "model name"))]
        return "".join(sorted(set(lines)))
    except OSError:
        return platform.processor()


def _library_name(compiler: str) -> str:
    key = hashlib.sha256("\0".join([SOURCE, compiler, platform.machine(), _cpu_features()]).encode()).hexdigest()
    return f"native-{key[:16]}.so"


def _build(compiler: str, target: Path) -> None:
    """Compile SOURCE into `target` (written under a temporary name, then renamed: two processes
    building at once both end with a whole library)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".build-") as work:
        source = Path(work) / "native.c"
        source.write_text(SOURCE)
        built = Path(work) / target.name
        base = [compiler, "-O3", "-ffp-contract=off", "-fPIC", "-shared", "-o", str(built), str(source)]
        # -march=native where the compiler has it: the library is named by this CPU's features.
        result = subprocess.run(base[:2] + ["-march=native"] + base[2:], capture_output=True, text=True)
        if result.returncode != 0:
            result = subprocess.run(base, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError((result.stderr.strip().splitlines() or ["no message"])[-1][:200])
        os.replace(built, target)


def _load_or_build(compiler: str) -> Any:
    """The library from the first cache folder that has it or where it can be built; a folder
    that cannot be written (OSError) passes on to the next, the last one's error is raised."""
    import ctypes

    name = _library_name(compiler)
    folders = cache_folders()
    for index, folder in enumerate(folders):
        path = folder / name
        try:
            if not path.exists():
                started = time.perf_counter()
                _build(compiler, path)
                log.info("built the embedding's C kernel in %.1f s (%s)", time.perf_counter() - started, path)
            return ctypes.CDLL(str(path))
        except OSError:
            if index == len(folders) - 1:
                raise
    raise AssertionError("no cache folder")  # cache_folders() is never empty


def library() -> Any:
    """The loaded kernel library, built first if needed; None (said once in the log) where it cannot be."""
    global _library, _tried
    if _tried:
        return _library
    _tried = True
    import ctypes

    compiler = c_compiler()
    if compiler is None:
        log.info("no C compiler found (set CC or install gcc/clang): the embedding runs its eager kernels")
        return None
    try:
        loaded = _load_or_build(compiler)
    except Exception as exc:  # noqa: BLE001 - any failure leaves the same results to the eager kernels
        log.warning("the embedding's C kernel is off for this run (%s: %s); the eager kernels give the same "
                    "results, more slowly", type(exc).__name__, str(exc).strip()[:200])
        return None
    function = loaded.window_max_f32
    int64, pointer = ctypes.c_int64, ctypes.c_void_p
    function.argtypes = [pointer, int64, pointer, pointer, pointer, int64, int64, int64, pointer, pointer,
                         ctypes.c_int32, int64, pointer, pointer, int64, int64]
    function.restype = None
    _library = loaded
    return _library


def reset() -> None:
    """Forget the loaded library (tests: another cache folder or compiler)."""
    global _library, _tried
    _library, _tried = None, False


def window_max(codes: Any, lengths: Any, aa: Any, position: Any, *, kernel_size: int,
               groups: list[tuple[int, int]], folded: bool, layout: tuple[int, int], threads: int,
               argmax: bool = False) -> Any:
    """(n, columns) uint8 codes, (n,) int64 lengths -> (n, D) float32: each sequence's maximum over
    its windows of the window's sum, before the SELU (`ConvEmbedding._chunk_maxima`'s values).
    With `argmax`, also (n, D) int64: the first window reaching each maximum (torch's `max(dim)`),
    as (maxima, windows).

    `aa` (K, 21, D), `position` and `layout` are `ConvEmbedding._parts`; `groups` its tap groups
    and `folded` whether the position rows are added to the last group's rows (`_tables`)."""
    import torch

    global _pool, _pool_workers
    function = library().window_max_f32
    codes, lengths = codes.contiguous(), lengths.contiguous()
    aa, position = aa.detach().float().contiguous(), position.detach().float().contiguous()
    n, d = codes.shape[0], aa.shape[2]
    out = torch.empty((n, d), dtype=torch.float32)
    arg = torch.empty((n, d), dtype=torch.int64) if argmax else None
    first = torch.tensor([g[0] for g in groups], dtype=torch.int64)
    taps = torch.tensor([g[1] for g in groups], dtype=torch.int64)
    fixed = (codes.data_ptr(), codes.shape[1], lengths.data_ptr(), aa.data_ptr(), position.data_ptr(), d, kernel_size,
             len(groups), first.data_ptr(), taps.data_ptr(), int(folded), layout[0], out.data_ptr(),
             arg.data_ptr() if arg is not None else None)
    # Pieces of at least 4096 sequences: below that a thread's start costs more than it saves.
    pieces = max(1, min(threads, n // 4096))
    bounds = [n * i // pieces for i in range(pieces + 1)]
    if pieces == 1:
        function(*fixed, 0, n)
    else:
        if _pool is None or _pool_workers < pieces:
            _pool, _pool_workers = ThreadPoolExecutor(max_workers=pieces, thread_name_prefix="repclass-native"), pieces
        for future in [_pool.submit(function, *fixed, bounds[i], bounds[i + 1]) for i in range(pieces)]:
            future.result()
    return (out, arg) if argmax else out
