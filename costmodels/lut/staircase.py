"""Where a layer's latency steps as its ranks grow, and how far FLOPs mis-rank its candidates.

HALOC's first design principle says latency on real hardware moves in steps, so rank candidates
should be multiples of 32 (16 or 8 for layers of 64 or 32 channels or fewer). On a given target that is
a claim to check: along the equal-rank diagonal, a rank is *efficient* when no larger rank is as fast or
faster; the principle holds when the efficient ranks are exactly the multiples of the layer's step. FLOPs (MACs) as a stand-in for
latency is judged by Kendall's tau between the two over every rank pair of the grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import kendalltau


@dataclass(frozen=True)
class Staircase:
    """What a layer's (r1, r2) latency grid shows; ranks in ``ranks`` are the diagonal r1 = r2."""

    ranks: tuple[int, ...]
    latency: tuple[float, ...]              # along r1 = r2, in the grid's unit (cycles or seconds)
    distinct_values: int                    # distinct latencies over the whole grid
    grid_points: int                        # rank pairs with a latency
    grid_size: int                          # rank pairs in the grid (the rest failed: no legal mapping)
    changes: int                            # diagonal increments that change the latency
    increments: int
    inversions: tuple[tuple[int, int], ...]  # (r, r_next): the larger rank is strictly faster
    efficient: tuple[int, ...]              # diagonal ranks that no larger rank matches or beats
    principle_step: int                     # HALOC's step for this layer: 32, or 16 / 8 for narrow layers
    efficient_on_step: int                  # efficient ranks that are multiples of the step
    on_step: int                            # diagonal ranks that are multiples of the step
    largest_steps: tuple[tuple[int, int, float], ...]  # (r, r_next, relative jump) of the 3 biggest
    kendall_tau_macs: float                 # tau(MACs, latency) over the whole grid
    faster_than_original_up_to: int | None  # largest diagonal rank faster than the original layer

    @property
    def principle_holds(self) -> bool:
        """Every multiple of the step is efficient and every efficient rank is a multiple of the step."""
        return self.efficient_on_step == self.on_step == len(self.efficient)


def analyse_staircase(r1s: tuple[int, ...], r2s: tuple[int, ...], latency: np.ndarray, macs: np.ndarray,
                      original_latency: float, principle_step: int = 32) -> Staircase:
    """``latency`` and ``macs`` are (len(r1s), len(r2s)) grids; NaN latencies (failed points) are skipped."""
    latency = np.asarray(latency, dtype=float)
    macs = np.asarray(macs, dtype=float)
    if latency.shape != (len(r1s), len(r2s)) or macs.shape != latency.shape:
        raise ValueError(f"grid shapes differ: ranks {len(r1s)}x{len(r2s)}, latency {latency.shape}, "
                         f"macs {macs.shape}")
    column = {r: j for j, r in enumerate(r2s)}
    diagonal = [(r, float(latency[i, column[r]])) for i, r in enumerate(r1s)
                if r in column and not np.isnan(latency[i, column[r]])]
    ranks = tuple(r for r, _ in diagonal)
    values = np.array([v for _, v in diagonal])
    pairs = list(zip(diagonal, diagonal[1:]))
    changes = sum(1 for (_, a), (_, b) in pairs if a != b)
    inversions = tuple((ra, rb) for (ra, a), (rb, b) in pairs if b < a)
    efficient = tuple(r for k, r in enumerate(ranks) if not np.any(values[k + 1:] <= values[k]))
    jumps = sorted(((ra, rb, (b - a) / a) for (ra, a), (rb, b) in pairs if a > 0), key=lambda j: -abs(j[2]))
    ok = ~np.isnan(latency)
    tau = kendalltau(macs[ok], latency[ok]).statistic if ok.sum() > 1 else float("nan")
    faster = [r for r, v in diagonal if v < original_latency]
    return Staircase(
        ranks=ranks, latency=tuple(values.tolist()), distinct_values=len(np.unique(latency[ok])),
        grid_points=int(ok.sum()), grid_size=int(latency.size), changes=changes, increments=len(pairs), inversions=inversions,
        efficient=efficient, principle_step=principle_step,
        efficient_on_step=sum(1 for r in efficient if r % principle_step == 0),
        on_step=sum(1 for r in ranks if r % principle_step == 0), largest_steps=tuple(jumps[:3]),
        kendall_tau_macs=float(tau), faster_than_original_up_to=max(faster) if faster else None)


def staircase_lines(staircase: Staircase) -> list[str]:
    """The analysis as Markdown bullet lines."""
    s = staircase
    steps = "; ".join(f"{a} -> {b}: {j:+.1%}" for a, b, j in s.largest_steps)
    inversions = ", ".join(f"{b} faster than {a}" for a, b in s.inversions[:6]) or "none"
    lines = [
        f"- {s.grid_points} rank pairs"
        f"{f' of {s.grid_size} (the others have no legal mapping on this target)' if s.grid_points < s.grid_size else ''}"
        f" take {s.distinct_values} distinct latencies; along r1 = r2, "
        f"{s.changes} of {s.increments} rank increments change the latency.",
        f"- Largest steps along r1 = r2: {steps}.",
        f"- Larger rank strictly faster ({len(s.inversions)} cases): {inversions}"
        f"{' ...' if len(s.inversions) > 6 else ''}.",
        f"- Efficient ranks (no larger rank as fast): {len(s.efficient)}, of which "
        f"{s.efficient_on_step} are multiples of {s.principle_step} (the diagonal has {s.on_step}); HALOC's "
        f"multiples-of-{s.principle_step} principle {'holds' if s.principle_holds else 'does not hold exactly'} here: "
        f"efficient ranks {', '.join(map(str, s.efficient[:16]))}{' ...' if len(s.efficient) > 16 else ''}.",
        f"- Kendall tau of MACs vs latency over the grid: {s.kendall_tau_macs:.3f} "
        f"(1 = FLOPs order the candidates exactly as the hardware does).",
        f"- Faster than the original layer along r1 = r2 up to r = {s.faster_than_original_up_to}"
        if s.faster_than_original_up_to is not None else "- No rank on the diagonal beats the original layer.",
    ]
    return lines
