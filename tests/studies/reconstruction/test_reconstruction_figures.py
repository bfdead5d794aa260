"""The reconstruction study's figures draw what their axes and legends say."""

from __future__ import annotations

import numpy as np

from privlab.studies.reconstruction import report as rr


def test_the_chance_line_of_the_log_fpr_roc_is_tpr_equals_fpr(monkeypatch):
    drawn = []
    monkeypatch.setattr(rr, "to_b64", lambda fig: drawn.append(fig) or "")
    fpr = [0.0, 0.001, 0.01, 0.1, 1.0]
    variant = {"name": "N=10", "roc": {"fpr": fpr, "tpr": [0.0, 0.2, 0.5, 0.8, 1.0]}}
    rr.weak_roc_figure({"weak_adversary": {"variants": [variant]}})
    (ax,) = drawn[0].axes
    assert ax.get_xscale() == "log" and ax.get_yscale() == "linear"
    (chance,) = [line for line in ax.get_lines() if line.get_label() == "chance"]
    x, y = (np.asarray(v, dtype=float) for v in chance.get_data())
    # on a log x-axis TPR = FPR is a curve: enough points to draw it, each on the diagonal
    assert len(x) >= 50 and np.allclose(x, y)
    assert x.min() <= 1e-3 and x.max() == 1.0


def test_the_dp_tradeoff_draws_one_curve_per_head_size(monkeypatch):
    """Fig. 4 at N = 10 and N = 40 in one run: each N is its own curve, in ε order (the two
    sizes were once joined into one zig-zag line)."""
    drawn = []
    monkeypatch.setattr(rr, "to_b64", lambda fig: drawn.append(fig) or "")

    def variant(n: int, eps: float | None, acc: float) -> dict:
        privacy = None if eps is None else {"epsilon": eps}
        return {"name": f"N={n} {eps}", "n": n, "privacy": privacy, "utility": {"accuracy": acc},
                "tpr_at_fpr_0.01": 0.02, "tpr": 0.2}  # fmt: skip

    variants = [variant(10, None, 0.8), variant(10, 100.0, 0.7), variant(10, 1.0, 0.1),
                variant(40, 1.0, 0.25), variant(40, 100.0, 0.94)]  # fmt: skip
    rr.tradeoff_figure({"weak_adversary": {"variants": variants}})
    (ax,) = drawn[0].axes
    lines = {line.get_label(): line.get_data() for line in ax.get_lines()}
    x, y = lines["N = 10: head test accuracy"]
    assert list(x) == [1.0, 100.0] and list(y) == [0.1, 0.7]  # the non-private head has no ε
    x, y = lines["N = 40: head test accuracy"]
    assert list(x) == [1.0, 100.0] and list(y) == [0.25, 0.94]
    assert {"N = 40: TPR @ FPR = 0.01", "N = 10: TPR* (τ)", "TPR = 0.015"} <= set(lines)
    single = rr.tradeoff_figure({"weak_adversary": {"variants": variants[:3]}})
    assert single == "" and "head test accuracy" in {
        ln.get_label() for ln in drawn[1].axes[0].get_lines()
    }
