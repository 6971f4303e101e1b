"""Ways to run the diagonal linear recurrence  h_t = a_t * h_{t-1} + b_t  (h_{-1} = 0).

Glossary: B batch, T time, S state features (any trailing shape), L chunk length,
C = ceil(T / L) chunks.

Every cell whose gates depend on the input only (minGRU, minLSTM, the selective
SSM; the LRU with a constant complex a) reduces to this recurrence once a and b
are computed for all t at once. It can be run four ways, all equal up to rounding
(tests/test_new_cells.py):

  loop      T element-wise steps (``torch.addcmul``), O(T S) work, T kernel launches;
  chunked   a two-level scan: the L steps inside every chunk run for all C chunks at
            once, then C steps carry the state across chunks, then one fix-up
            h_t += (a_{c,1} ... a_{c,j}) h_{c-1}; O(T S) work in ~L + C launches
            (L = ceil(sqrt T) by default: ~2 sqrt(T));
  parallel  Hillis & Steele's scan: ceil(log2 T) vectorized passes, O(T S log T) work;
  log       Heinsen 2023's log-space scan, the form of Feng et al. 2024's appendix:
            log h_t = a*_t + logcumsumexp_t(log b_t - a*_t), a*_t = sum_{s<=t} log a_s;
            needs a > 0 and b > 0 (minGRU/minLSTM with the positive candidate g);
            2 cumulative ops, O(T S) work, but exp/log on everything.

Which is fastest depends on the device (benchmarks/scan_paths.py): on a CPU the
loop wins (each of its steps is a small, cache-resident element-wise op); on a GPU
the scans win (the loop pays a kernel launch per step). ``resolve`` turns a cell's
``scan: auto`` into the measured choice for the device of its input.
"""
from __future__ import annotations

import math

import torch

from ..checks import check, check_choice, is_int

METHODS = ("loop", "chunked", "parallel", "log")
LINEAR = ("loop", "chunked", "parallel")  # the methods that take any real or complex a, b
Auto = dict[str, tuple[tuple[float, str], ...]]  # device type -> ((longest T, method), ...), first match
# ``scan: auto``: the fastest path measured per device (benchmarks/scan_paths.py, T = 200, 1000, 5000,
# forward + backward; results in benchmarks/results/scan_paths-*.json; docs/benchmarks.md, "Recurrences on their
# fastest path"). The default; a cell overrides it with its own measurements (minGRU, minLSTM, LRU).
AUTO: Auto = {"cpu": ((math.inf, "loop"),),
              "cuda": ((math.inf, "chunked"),)}  # selective SSM on an H100: fastest at T = 1000, 5000


def check_scan(scan: str, chunk: int | None, allowed: tuple[str, ...] = METHODS) -> None:
    """``model.layer.scan`` and ``model.layer.chunk``: a method the cell supports, or auto."""
    check_choice("model.layer.scan", scan, ("auto",) + allowed)
    check(chunk is None or (is_int(chunk) and chunk >= 1), "model.layer.chunk", chunk,
          "must be an integer >= 1 or null (null = ceil(sqrt(T)))")


def resolve(scan: str, x: torch.Tensor, auto: Auto = AUTO) -> str:
    """``auto`` -> the measured default for ``x``'s device and length T = x.shape[1]; anything else unchanged."""
    if scan != "auto":
        return scan
    T = x.shape[1]
    return next(method for bound, method in auto.get(x.device.type, AUTO["cpu"]) + ((math.inf, "loop"),)
                if T <= bound)


def scan_loop(a: torch.Tensor, b: torch.Tensor, convex: bool = False,
              keep: torch.Tensor | None = None) -> torch.Tensor:
    """(B, T, *S) coefficients -> (B, T, *S) states, one step at a time (``keep`` (L,) increasing:
    only the states at those steps, (B, L, *S)).

    ``convex``: a, b are (w, c) of the convex form h_t = lerp(h_{t-1}, c_t, w_t) = (1 - w_t) h_{t-1}
    + w_t c_t (minGRU, minLSTM), run with ``torch.lerp``: ~10% faster forward + backward than
    ``addcmul`` on CPU (T = 200, B = 64, H = 128, one thread).
    """
    h = torch.zeros_like(b[:, 0])  # (B, *S)
    kept = None if keep is None else set(keep.tolist())
    out = []
    # unbind, not a[:, t]: one backward stack instead of T full-size zero gradients
    for t, (a_t, b_t) in enumerate(zip(a.unbind(1), b.unbind(1))):
        h = torch.lerp(h, b_t, a_t) if convex else torch.addcmul(b_t, a_t, h)  # (B, *S)
        if kept is None or t in kept:
            out.append(h)
    return torch.stack(out, dim=1)


def scan_chunked(a: torch.Tensor, b: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
    """Two-level scan in linear space: chunks of ``chunk`` steps (default ceil(sqrt(T)))."""
    B, T = b.shape[:2]
    rest = b.shape[2:]
    L = chunk or max(1, math.ceil(math.sqrt(T)))
    pad = (-T) % L
    if pad:  # a = 1, b = 0 past the end: the state just carries on
        a = torch.cat([a, a.new_ones(B, pad, *rest)], dim=1)
        b = torch.cat([b, b.new_zeros(B, pad, *rest)], dim=1)
    C = (T + pad) // L
    a = a.reshape(B, C, L, *rest)  # (B, C, L, *S)
    b = b.reshape(B, C, L, *rest)
    # 1) inside every chunk from a zero state, all chunks at once: L steps over (B, L, C, *S)
    local = scan_loop(a.transpose(1, 2), b.transpose(1, 2)).transpose(1, 2)  # (B, C, L, *S)
    decay = torch.cumprod(a, dim=2)  # (B, C, L, *S): a_{c,1} ... a_{c,j}
    # 2) the state entering each chunk: C steps of h_c = decay_{c,L} h_{c-1} + local_{c,L}
    carry_in = scan_loop(decay[:, :, -1], local[:, :, -1])  # (B, C, *S): state at the end of chunk c
    carry_in = torch.cat([torch.zeros_like(carry_in[:, :1]), carry_in[:, :-1]], dim=1)  # entering chunk c
    # 3) fix-up
    h = local + decay * carry_in.unsqueeze(2)  # (B, C, L, *S)
    return h.reshape(B, C * L, *rest)[:, :T]


def scan_parallel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hillis-Steele inclusive scan of the affine maps h -> a h + b: ceil(log2 T) passes."""
    T, k = b.shape[1], 1
    while k < T:  # after this pass b_t = h_t from the state 2k steps back, a_t = their decay product
        b = torch.cat([b[:, :k], torch.addcmul(b[:, k:], a[:, k:], b[:, :-k])], dim=1)
        a = torch.cat([a[:, :k], a[:, k:] * a[:, :-k]], dim=1)
        k *= 2
    return b


def scan_log(log_a: torch.Tensor, log_b: torch.Tensor) -> torch.Tensor:
    """Log-space scan (Heinsen 2023; Feng et al. 2024, appendix): a = exp(log_a), b = exp(log_b) > 0."""
    a_star = torch.cumsum(log_a, dim=1)  # (B, T, *S)
    return torch.exp(a_star + torch.logcumsumexp(log_b - a_star, dim=1))


def run_scan(method: str, a: torch.Tensor, b: torch.Tensor, chunk: int | None = None,
             convex: bool = False) -> torch.Tensor:
    """The linear-space methods by name (``log`` needs log-coefficients: call ``scan_log``);
    ``convex``: a, b are (w, c) of h_t = (1 - w_t) h_{t-1} + w_t c_t."""
    if method == "loop":
        return scan_loop(a, b, convex)
    if convex:
        a, b = 1 - a, a * b
    if method == "chunked":
        return scan_chunked(a, b, chunk)
    if method == "parallel":
        return scan_parallel(a, b)
    raise ValueError(f"run_scan: {method!r} is not a linear-space scan")
