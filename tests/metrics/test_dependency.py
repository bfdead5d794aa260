"""Scale-invariant dependency measures (linear CKA, distance correlation) beside BiDO's nHSIC:
invariances, independent computations, dependent vs independent data, nHSIC's scale problem,
and the per-layer measurements and report columns of the AT-AT study."""

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from privlab.metrics.dependency import distance_correlation, linear_cka
from privlab.metrics.hsic import layer_hsic, normalized_hsic
from privlab.studies.targets.inversion_report import inversion_table


def _data(m=64, d=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(m, d, generator=g, dtype=torch.float64)
    z = torch.tanh(x @ torch.randn(d, 6, generator=g, dtype=torch.float64))
    return x, z, torch.rand(m, 6, generator=g, dtype=torch.float64)


def _orthogonal(d, seed=1):
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(seed)))
    return q.double()


# -- independent computations, written out with numpy ---------------------------------------


def _numpy_dcor(a, b):
    """Székely et al. (2007): double-centred distance matrices, V-statistics, dCor_n."""

    def centred(x):
        d = cdist(x, x)
        return d - d.mean(0) - d.mean(1)[:, None] + d.mean()

    a_, b_ = centred(a), centred(b)
    dcov2, va, vb = (a_ * b_).mean(), (a_ * a_).mean(), (b_ * b_).mean()
    return np.sqrt(dcov2 / np.sqrt(va * vb))


def _numpy_dcor_bias_corrected(a, b):
    """Székely & Rizzo (2014), U-centring entry by entry, R*_n = (Ã·B̃)/sqrt((Ã·Ã)(B̃·B̃))."""

    def u_centred(x):
        d, n = cdist(x, x), len(x)
        out = np.zeros_like(d)
        for i in range(n):
            for j in range(n):
                if i != j:
                    out[i, j] = (
                        d[i, j]
                        - d[i].sum() / (n - 2)
                        - d[:, j].sum() / (n - 2)
                        + d.sum() / ((n - 1) * (n - 2))
                    )
        return out

    a_, b_ = u_centred(a), u_centred(b)
    return (a_ * b_).sum() / np.sqrt((a_ * a_).sum() * (b_ * b_).sum())


def _numpy_cka(a, b):
    """Kornblith et al. (2019), feature space: ‖BᵀA‖²_F / (‖AᵀA‖_F ‖BᵀB‖_F), centred columns."""
    a, b = a - a.mean(0), b - b.mean(0)
    return np.linalg.norm(b.T @ a) ** 2 / (np.linalg.norm(a.T @ a) * np.linalg.norm(b.T @ b))


def _numpy_unbiased_hsic(k, l):
    """Song et al. (2012), Eq. 5: the unbiased HSIC estimator of two Gram matrices."""
    n = len(k)
    k, l = k - np.diag(np.diag(k)), l - np.diag(np.diag(l))
    one = np.ones(n)
    return (
        np.trace(k @ l)
        + (one @ k @ one) * (one @ l @ one) / ((n - 1) * (n - 2))
        - 2 / (n - 2) * (one @ k @ l @ one)
    ) / (n * (n - 3))


def test_distance_correlation_matches_the_double_centred_distance_matrices():
    x, z, _ = _data()
    a, b = x.numpy(), z.numpy()
    assert distance_correlation(x, z, debiased=False) == pytest.approx(_numpy_dcor(a, b), rel=1e-10)
    assert distance_correlation(x, z) == pytest.approx(_numpy_dcor_bias_corrected(a, b), rel=1e-10)


def test_linear_cka_matches_the_feature_space_formula_and_the_unbiased_hsic():
    x, z, _ = _data()
    a, b = x.numpy(), z.numpy()
    assert linear_cka(x, z, debiased=False) == pytest.approx(_numpy_cka(a, b), rel=1e-10)
    k, l = a @ a.T, b @ b.T
    expected = _numpy_unbiased_hsic(k, l) / np.sqrt(
        _numpy_unbiased_hsic(k, k) * _numpy_unbiased_hsic(l, l)
    )
    assert linear_cka(x, z) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("measure", [distance_correlation, linear_cka])
@pytest.mark.parametrize("debiased", [True, False])
def test_invariant_to_scaling_rotation_and_shift_where_nhsic_is_not(measure, debiased):
    x, z, _ = _data()
    q = _orthogonal(z.shape[1])
    base = measure(x, z, debiased=debiased)
    for c in (1e-3, 0.5, 37.0):
        assert measure(x, c * z, debiased=debiased) == pytest.approx(base, rel=1e-8)
        assert measure(c * x + 2.0, z, debiased=debiased) == pytest.approx(base, rel=1e-8)
    assert measure(x, z @ q + 1.0, debiased=debiased) == pytest.approx(base, rel=1e-8)
    # the problem on the same data: BiDO's nHSIC (fixed Gaussian bandwidth) moves with the scale
    nhsic = [normalized_hsic(x, c * z) for c in (0.1, 1.0, 10.0)]
    assert max(nhsic) > 1.5 * min(nhsic)


def test_dependent_and_independent_data_are_told_apart_even_in_high_dimension():
    g = torch.Generator().manual_seed(3)
    for d in (10, 784):  # 784: more dimensions than the 128 examples (a flattened MNIST image)
        x = torch.rand(128, d, generator=g)
        dependent = torch.relu(x @ torch.randn(d, 64, generator=g) / d**0.5)
        independent = torch.rand(128, 64, generator=g)
        for measure in (distance_correlation, linear_cka):
            assert measure(x, dependent) > 0.1
            assert abs(measure(x, independent)) < 0.05
    # without the bias correction, independent 784-dimensional data looks strongly dependent
    assert distance_correlation(x, independent, debiased=False) > 0.8
    assert linear_cka(x, independent, debiased=False) > 0.3


def test_inputs_are_checked():
    with pytest.raises(ValueError, match="rows"):
        distance_correlation(torch.rand(5, 2), torch.rand(4, 2))
    with pytest.raises(ValueError, match="at least 4"):
        linear_cka(torch.rand(3, 2), torch.rand(3, 2))
    assert linear_cka(torch.rand(6, 2), torch.ones(6, 2)) == 0.0  # a constant has no alignment


def test_layer_measures_survive_a_function_preserving_rescaling_nhsic_does_not(tiny):
    """A ReLU layer's activations scaled by c (weights in × c, out ÷ c): the same network."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(64, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4)
    )
    x, y = tiny.members.x[:120], tiny.members.y[:120]
    before = layer_hsic(model, x, y, num_classes=4, batch_size=60)
    with torch.no_grad():
        model[1].weight.mul_(20.0), model[1].bias.mul_(20.0), model[3].weight.div_(20.0)
    after = layer_hsic(model, x, y, num_classes=4, batch_size=60)
    (b,), (a,) = before, after
    assert set(b) == {"layer", "hsic_xz", "hsic_yz", "dcor_xz", "dcor_yz", "cka_xz", "cka_yz"}
    for key in ("dcor_xz", "dcor_yz", "cka_xz", "cka_yz"):
        assert a[key] == pytest.approx(b[key], rel=1e-5)
    assert abs(a["hsic_xz"] - b["hsic_xz"]) > 0.1 * b["hsic_xz"]


def _view(hsic_rows):
    """A targets study's flat view (what the HTML and console tables render) of one target."""
    target = {
        "name": "natural",
        "utility": {"test_acc": 0.9},
        "inversion": {"hsic": hsic_rows, "attacks": []},
    }
    return {"targets": [target]}


def test_the_report_shows_dcor_beside_nhsic_and_a_dash_for_older_reports():
    new = [{"layer": 0, "hsic_xz": 30.0, "hsic_yz": 12.0, "dcor_xz": 0.41, "dcor_yz": 0.22}]
    header, cells = inversion_table(_view(new))
    row = dict(zip(header, cells[0], strict=True))
    assert header.index("dCor(X,Z)") == header.index("nHSIC(Y,Z)") + 1
    assert (row["nHSIC(X,Z)"], row["dCor(X,Z)"], row["dCor(Y,Z)"]) == ("30.000", "0.410", "0.220")
    old = [{"layer": 0, "hsic_xz": 30.0, "hsic_yz": 12.0}]  # written before the measure
    header, cells = inversion_table(_view(old))
    row = dict(zip(header, cells[0], strict=True))
    assert (row["nHSIC(X,Z)"], row["dCor(X,Z)"], row["dCor(Y,Z)"]) == ("30.000", "—", "—")
