"""The reconstruction study's ROC figure draws what its axes say."""

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
