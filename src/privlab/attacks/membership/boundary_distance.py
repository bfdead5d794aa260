"""Decision-boundary distance, label-only (Choquette-Choo et al. 2021, §4.2): members lie
farther from the decision boundary than non-members. The boundary is found from predicted
labels alone with HopSkipJump (Chen, Jordan & Wainwright 2020): a misclassified starting point,
a binary search back to the boundary, then iterations of a Monte-Carlo estimate of the
boundary's normal from the labels of random probes, a geometric step search along it and a
binary search back to the boundary.

Every example of a batch advances together: each round of queries is one batched call of
``target.predict``. Every point recorded as "across the boundary" was answered so by the
target, so a score is an upper bound on the true distance to the boundary (within the value
range), never below it.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from privlab.attacks.base import MembershipAttack
from privlab.registry import ATTACKS
from privlab.threat_model import Access, Target

NORMS = ("l2", "linf")
#: elements of the probe tensor built at once by one gradient estimate (its memory bound)
CHUNK_ELEMENTS = 1 << 24


def distance(delta: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-example L2 or L∞ norm of ``delta`` (N × …)."""
    flat = delta.flatten(1)
    return flat.norm(dim=1) if norm == "l2" else flat.abs().amax(dim=1)


def _col(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``v`` (N) shaped to broadcast over the examples of ``like`` (N × …)."""
    return v.view(-1, *[1] * (like.dim() - 1))


class _Oracle:
    """The target's labels as the search sees them: is a point labelled other than its
    example's true class? Counts each example's queries."""

    def __init__(self, target: Target, y: torch.Tensor) -> None:
        self.target = target
        self.y = y
        self.queries = torch.zeros(len(y), dtype=torch.long, device=y.device)
        self.lo, self.hi = target.info.value_range

    def across(self, points: torch.Tensor, owner: torch.Tensor) -> torch.Tensor:
        """``points[k]`` is a query for example ``owner[k]``: True where its label ≠ y."""
        if not len(points):
            return torch.zeros(0, dtype=torch.bool, device=self.y.device)
        labels = self.target.predict(points).to(self.y.device)
        self.queries.index_add_(0, owner, torch.ones_like(owner))
        return labels != self.y[owner]


def _towards(x: torch.Tensor, x_adv: torch.Tensor, a: torch.Tensor, norm: str) -> torch.Tensor:
    """The point a fraction ``a`` of the way from x to x_adv: on the segment (L2), or x_adv
    clipped to the L∞ ball of radius a·‖x_adv − x‖∞ around x (HopSkipJump's projection)."""
    if norm == "l2":
        return torch.lerp(x, x_adv, _col(a, x))
    radius = _col(a * distance(x_adv - x, "linf"), x)
    return torch.minimum(torch.maximum(x_adv, x - radius), x + radius)


def _bisect(
    oracle: _Oracle,
    x: torch.Tensor,
    x_adv: torch.Tensor,
    owner: torch.Tensor,
    norm: str,
    steps: int,
) -> torch.Tensor:
    """Binary search from x_adv (across) towards x (not across): the closest point found
    across the boundary, to 2^−steps of the path. Every returned point was answered across
    (or is x_adv itself)."""
    lo = torch.zeros(len(x), device=x.device, dtype=x.dtype)
    hi = torch.ones_like(lo)
    best = x_adv.clone()
    for _ in range(steps):
        mid = (lo + hi) / 2
        point = _towards(x, x_adv, mid, norm)
        across = oracle.across(point, owner)
        best[across] = point[across]
        hi = torch.where(across, mid, hi)
        lo = torch.where(across, lo, mid)
    return best


def _probe_directions(
    shape: tuple[int, ...], norm: str, gen: torch.Generator, device: torch.device
) -> torch.Tensor:
    """Random probe directions: uniform on the unit L2 sphere (L2), uniform in [−1, 1]^d (L∞)."""
    if norm == "linf":
        return torch.rand(shape, generator=gen, device=device) * 2 - 1
    u = torch.randn(shape, generator=gen, device=device)
    return u / u.flatten(2).norm(dim=2).view(*shape[:2], *[1] * (len(shape) - 2))


def _normal_chunk(
    oracle: _Oracle,
    xb: torch.Tensor,
    owner: torch.Tensor,
    delta: torch.Tensor,
    evals: int,
    gen: torch.Generator,
    norm: str,
) -> torch.Tensor:
    """HopSkipJump's estimate (Eqs. 9, 16) of the boundary's normal at the points ``xb``: the
    mean of ``evals`` random probes of radius δ, each signed by its label (+ across, − not),
    less the mean sign (the baseline that cuts the estimate's variance)."""
    n, extra = len(xb), [1] * (xb.dim() - 1)
    u = _probe_directions((n, evals, *xb.shape[1:]), norm, gen, xb.device)
    radius = delta.view(n, 1, *extra)
    probes = (xb.unsqueeze(1) + radius * u).clamp(oracle.lo, oracle.hi)
    u = (probes - xb.unsqueeze(1)) / radius  # the directions actually probed (after clipping)
    across = oracle.across(probes.flatten(0, 1), owner.repeat_interleave(evals))
    sign = across.view(n, evals).to(xb.dtype) * 2 - 1
    mean = sign.mean(dim=1, keepdim=True)
    weights = sign - torch.where(mean.abs() == 1, torch.zeros_like(mean), mean)
    grad = (weights.view(n, evals, *extra) * u).mean(dim=1)
    return grad / _col(distance(grad, "l2").clamp_min(1e-20), grad)


def _normal(
    oracle: _Oracle,
    xb: torch.Tensor,
    owner: torch.Tensor,
    delta: torch.Tensor,
    evals: int,
    gen: torch.Generator,
    norm: str,
) -> torch.Tensor:
    """:func:`_normal_chunk` over chunks of examples that keep the probes in memory bounds."""
    per = max(1, CHUNK_ELEMENTS // (evals * xb[0].numel()))
    return torch.cat(
        [
            _normal_chunk(
                oracle, xb[s : s + per], owner[s : s + per], delta[s : s + per], evals, gen, norm
            )
            for s in range(0, len(xb), per)
        ]
    )


def _geometric_step(
    oracle: _Oracle,
    xb: torch.Tensor,
    direction: torch.Tensor,
    size: torch.Tensor,
    owner: torch.Tensor,
    halvings: int,
) -> torch.Tensor:
    """HopSkipJump's step-size search: from each boundary point along ``direction``, halving
    the step until the target answers across (at most ``halvings`` tries; a point whose every
    try fails stays where it is)."""
    moved = xb.clone()
    size = size.clone()
    pending = torch.ones(len(xb), dtype=torch.bool, device=xb.device)
    for _ in range(halvings):
        idx = pending.nonzero().squeeze(1)
        if not len(idx):
            break
        trial = (xb[idx] + _col(size[idx], xb) * direction[idx]).clamp(oracle.lo, oracle.hi)
        ok = oracle.across(trial, owner[idx])
        moved[idx[ok]] = trial[ok]
        pending[idx[ok]] = False
        size[idx[~ok]] /= 2
    return moved


@ATTACKS.register("boundary_distance")
@dataclasses.dataclass(kw_only=True)
class BoundaryDistance(MembershipAttack):
    """Label-only: score = distance from x to the nearest input found that the target labels
    otherwise (Choquette-Choo et al. 2021), by a HopSkipJump search (Chen et al. 2020) on
    predicted labels only; 0 for an example the target already misclassifies.

    ``norm``: ``l2`` (default) or ``linf``. The search starts from the closest of ``starts``
    boundary points, each uniform noise the target labels otherwise (up to ``init_trials``
    draws) binary-searched back to the boundary (several starts: HopSkipJump is a local search,
    and the nearest boundary of a multi-class model may belong to any other class), then runs
    up to ``iterations`` HopSkipJump iterations, iteration t estimating the boundary's normal
    from min(``init_evals``·√t, ``max_evals``) probes and halving its step at most
    ``halvings`` times, while an example's queries stay within ``max_queries`` (the start, at
    most 1 + ``starts``·(``init_trials`` + the binary search's steps) queries, always runs).
    The defaults take about 1,300 labels per example on mnist5k. ``gamma`` sets the binary
    search's precision θ = γ/d^1.5 (L2) or γ/d² (L∞) of the path and the probe radius
    (HopSkipJump's). Inputs stay in the target's value range. ``seed`` fixes the random probes
    (a generator of its own, on the target's device). An example whose search found nothing
    across the boundary scores the value range's diameter.
    """

    name = "boundary_distance"
    requires = Access.LABELS
    norm: str = "l2"
    iterations: int = 10
    init_evals: int = 50
    max_evals: int = 500
    max_queries: int = 2500
    starts: int = 3
    init_trials: int = 20
    halvings: int = 10
    gamma: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")
        for key in ("iterations", "halvings", "init_evals", "max_evals", "max_queries"):
            least = 0 if key in ("iterations", "halvings") else 1
            if getattr(self, key) < least:
                raise ValueError(f"{key} must be at least {least}, got {getattr(self, key)}")
        if self.starts < 1 or self.init_trials < 1:
            raise ValueError(
                f"starts and init_trials must be at least 1, got {self.starts}, {self.init_trials}"
            )
        if not self.gamma > 0:
            raise ValueError(f"gamma must be positive, got {self.gamma}")

    def _score_batch(self, target: Target, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        return self.search(target, x, y)[0].double().cpu().numpy()

    def search(
        self, target: Target, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Each example's distance to the boundary found (0 where the target mislabels it) and
        the number of labels queried for it, on the target's device."""
        x, y = x.to(target.device), y.to(target.device)
        idx = (target.predict(x) == y).nonzero().squeeze(1)
        dist = torch.zeros(len(y), dtype=x.dtype, device=x.device)
        queries = torch.ones(len(y), dtype=torch.long, device=x.device)  # the label of x
        if not len(idx):
            return dist, queries
        gen = torch.Generator(device=x.device).manual_seed(self.seed)
        oracle = _Oracle(target, y[idx])
        oracle.queries += 1
        dims = x[0].numel()
        theta = self.gamma / (dims**1.5 if self.norm == "l2" else dims**2)
        steps = max(10, math.ceil(math.log2(1 / theta)))
        best = self._start(oracle, x[idx], gen, steps)
        dist[idx] = self._iterate(oracle, x[idx], best, gen, steps, self.gamma / dims)
        queries[idx] = oracle.queries
        return dist, queries

    def _start(
        self, oracle: _Oracle, x: torch.Tensor, gen: torch.Generator, steps: int
    ) -> torch.Tensor:
        """The first boundary points: of ``starts`` noise points the target labels otherwise,
        each binary-searched back to the boundary, the closest; x itself where no noise was.
        Each example's start depends on its own queries only."""
        best = x.clone()
        best_dist = torch.full((len(x),), math.inf, dtype=x.dtype, device=x.device)
        for _ in range(self.starts):
            noise, found = self._noise(oracle, x, gen)
            sel = found.nonzero().squeeze(1)
            point = _bisect(oracle, x[sel], noise[sel], sel, self.norm, steps)
            dist = distance(point - x[sel], self.norm)
            closer = dist < best_dist[sel]
            best[sel[closer]], best_dist[sel[closer]] = point[closer], dist[closer]
        return best

    def _noise(
        self, oracle: _Oracle, x: torch.Tensor, gen: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Uniform noise in the value range that the target labels otherwise (up to
        ``init_trials`` draws per example), and where such a draw was found."""
        noise, found = x.clone(), torch.zeros(len(x), dtype=torch.bool, device=x.device)
        for _ in range(self.init_trials):
            todo = (~found).nonzero().squeeze(1)
            if not len(todo):
                break
            draw = torch.rand(x[todo].shape, generator=gen, device=x.device, dtype=x.dtype)
            draw = oracle.lo + (oracle.hi - oracle.lo) * draw
            ok = oracle.across(draw, todo)
            noise[todo[ok]], found[todo[ok]] = draw[ok], True
        return noise, found

    def _iterate(
        self,
        oracle: _Oracle,
        x: torch.Tensor,
        best: torch.Tensor,
        gen: torch.Generator,
        steps: int,
        probe_scale: float,
    ) -> torch.Tensor:
        """HopSkipJump iterations from the boundary points ``best`` (x where none was found):
        normal estimate, geometric step, binary search back; the distance of the closest point
        across the boundary found for each example (the value range's diameter if none)."""
        dist = distance(best - x, self.norm)
        lost = dist == 0  # nothing across the boundary found
        for t in range(1, self.iterations + 1):
            evals = min(int(self.init_evals * math.sqrt(t)), self.max_evals)
            cost = evals + self.halvings + steps
            active = (~lost & (oracle.queries + cost <= self.max_queries)).nonzero().squeeze(1)
            if not len(active):
                break
            xb, d = best[active], dist[active]
            direction = _normal(oracle, xb, active, d * probe_scale, evals, gen, self.norm)
            if self.norm == "linf":
                direction = direction.sign()
            moved = _geometric_step(oracle, xb, direction, d / math.sqrt(t), active, self.halvings)
            point = _bisect(oracle, x[active], moved, active, self.norm, steps)
            new = distance(point - x[active], self.norm)
            closer = new < d
            best[active[closer]], dist[active[closer]] = point[closer], new[closer]
        lo, hi = oracle.lo, oracle.hi
        diameter = (hi - lo) * (math.sqrt(x[0].numel()) if self.norm == "l2" else 1.0)
        return dist.masked_fill(lost, diameter)
