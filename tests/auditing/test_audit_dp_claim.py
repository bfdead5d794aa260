"""The audit of a user's model trained with a DP recipe: the ε the recipe promises, the
white-box audit's lower bound beside it and their gap, in the summary; a broken DP-SGD step
(built here) breaks the promise there."""

from __future__ import annotations

import pytest

import privlab
from digits_audit import digits_arrays, fit_digits
from privlab.training import dp

RECIPE = {
    "epochs": 5,
    "batch_size": 40,
    "regime": {"name": "dp_sgd", "params": {"noise_multiplier": 3.0, "delta": 1e-5}},
}


@pytest.fixture(scope="module")
def data() -> dict:
    return digits_arrays()


def _audit(data: dict, out, **kwargs) -> privlab.AuditResult:
    return privlab.audit(
        fit_digits(*data["members"]),  # trained however the user trained it
        members=data["members"],
        nonmembers=data["nonmembers"],
        recipe=RECIPE,
        attacks=["loss_threshold"],
        out=out,
        **kwargs,
    )


def test_a_dp_recipe_claims_its_epsilon_and_the_audit_sets_a_lower_bound_beside_it(data, tmp_path):
    result = _audit(data, tmp_path)
    (target,) = result.report["studies"]["targets"]["runs"][0]["targets"]
    claimed = target["privacy"]["epsilon"]
    planned = dp.epsilon(3.0, 1 / 3, 5 * 3, 1e-5)  # 120 members in 3 batches of 40
    assert claimed == pytest.approx(planned)
    white = target["dp_audit"]["white_box"]
    assert 0 <= white["epsilon"] <= claimed
    line = next(s for s in result.summary if "claimed ε" in s)
    assert f"claimed ε {claimed:.2f}" in line and "gap" in line


def test_a_broken_step_breaks_the_promise_in_the_summary(data, tmp_path, monkeypatch):
    add_noise = dp.add_noise
    monkeypatch.setattr(dp, "add_noise", lambda s, std, g: add_noise(s, std / 10, g))
    result = _audit(data, tmp_path)
    assert any("PROMISE BROKEN" in s for s in result.summary)


def test_with_a_population_the_recipe_is_also_audited_with_canaries(data, tmp_path):
    """The recipe trained by privlab from fresh weights of the user's architecture, on the
    members plus the population's images as mislabelled canaries, each in with prob. ½."""
    result = _audit(data, tmp_path, population=data["population"])
    (target,) = result.report["studies"]["targets"]["runs"][0]["targets"]
    audit = target["dp_audit"]
    assert audit["canaries"] == min(1000, len(data["population"][1]))
    assert audit["method"].startswith("one-run") and audit["claimed_epsilon"] is not None
    assert 0 <= audit["epsilon"] <= audit["claimed_epsilon"] and not audit["violated"]
