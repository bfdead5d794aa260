"""The audit's input layer on tiny files written here: every loader format round-trips, every bad
input is one AuditInputError naming the file (or split), pickles that need more than
``weights_only=True`` are refused without running, and the user's model is never touched."""

from __future__ import annotations

import io
import pickle
import threading
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from torch import nn

from privlab.auditing.checks import AuditDataWarning, AuditShape, check_model_and_data
from privlab.auditing.data_loading import load_user_data
from privlab.auditing.errors import AuditInputError
from privlab.auditing.model_loading import load_user_model
from privlab.data.bundle import DatasetError, Split
from privlab.registry import DATASETS

#: set by Payload's unpickling: proof that a refused file never ran
RAN: list[str] = []


def _record(what: str) -> str:
    RAN.append(what)
    return what


class Payload:
    """A pickled object that runs code when loaded without ``weights_only``."""

    def __reduce__(self) -> tuple[Callable[[str], str], tuple[str]]:
        return _record, ("payload ran",)


class MLP(nn.Module):
    def __init__(self, d: int = 6, classes: int = 3) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d, 8)
        self.fc2 = nn.Linear(8, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


MODEL_FILE = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(6, 8)
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


def make():
    torch.manual_seed(0)
    return Net()


instance = make()
not_a_model = 42


def returns_int():
    return 7


def raises():
    raise RuntimeError("no GPU here")


def nan_model():
    model = make()
    with torch.no_grad():
        model.fc1.bias[0] = float("nan")
    return model
"""


def fails(fn: Callable[[], object], where: object, *words: str) -> str:
    """``fn()`` raises one AuditInputError, one line, starting with ``where``, with ``words``."""
    with pytest.raises(AuditInputError) as info:
        fn()
    message = str(info.value)
    assert "\n" not in message, message
    assert message.startswith(f"{where}: "), message
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    return message


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "user_net.py"
    path.write_text(MODEL_FILE)
    return path


def _reference(model_file: Path) -> nn.Module:
    return load_user_model(f"{model_file}:make")


# ---------------------------------------------------------------- model loading: FILE.py:NAME


def test_a_callable_a_class_and_an_instance_give_an_eval_mode_module(model_file: Path) -> None:
    for name in ("make", "Net", "instance"):
        model = load_user_model(f"{model_file}:{name}")
        assert isinstance(model, nn.Module)
        assert not model.training
        assert model(torch.zeros(2, 6)).shape == (2, 3)


@pytest.mark.parametrize("suffix", [".safetensors", ".pt", "checkpoint.pt"])
def test_weights_round_trip(model_file: Path, tmp_path: Path, suffix: str) -> None:
    trained = _reference(model_file)
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(1.0)
    state = {k: v.clone() for k, v in trained.state_dict().items()}
    path = tmp_path / f"w{suffix}"
    if suffix == ".safetensors":
        save_file(state, str(path))
    elif suffix == ".pt":
        torch.save(state, path)
    else:  # a training script's checkpoint: the state dict nested under a known key
        torch.save({"epoch": 3, "model_state_dict": state}, path)
    loaded = load_user_model(f"{model_file}:make", path)
    x = torch.randn(4, 6)
    torch.testing.assert_close(loaded(x), trained(x))


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("{f}", ["expected FILE.py:NAME", "FILE.pt2"]),
        ("{f}:missing", ["defines no 'missing'"]),
        ("{f}:not_a_model", ["int", "not a callable"]),
        ("{f}:returns_int", ["returns_int() returned an object of type int", "not an nn.Module"]),
        ("{f}:raises", ["raises() raised RuntimeError: no GPU here"]),
        ("{f}:nan_model", ["tensor 'fc1.bias' holds 1 NaN/inf value"]),
    ],
)
def test_bad_model_specs(model_file: Path, spec: str, words: list[str]) -> None:
    spec = spec.format(f=model_file)
    where = spec if spec == str(model_file) else model_file
    fails(lambda: load_user_model(spec), where, *words)


def test_a_missing_or_broken_model_file(tmp_path: Path) -> None:
    fails(lambda: load_user_model(f"{tmp_path}/none.py:make"), f"{tmp_path}/none.py", "not found")
    broken = tmp_path / "broken.py"
    broken.write_text("import torch\nraise ImportError('needs timm')\n")
    fails(lambda: load_user_model(f"{broken}:make"), broken, "importing it raised", "needs timm")


def test_a_user_file_may_import_its_neighbours(tmp_path: Path) -> None:
    (tmp_path / "layers_of_user.py").write_text("from torch import nn\nHEAD = nn.Linear(6, 3)\n")
    main = tmp_path / "main_of_user.py"
    main.write_text("import layers_of_user\n\ndef make():\n    return layers_of_user.HEAD\n")
    assert load_user_model(f"{main}:make")(torch.zeros(1, 6)).shape == (1, 3)


def test_weights_that_do_not_fit_name_the_first_mismatched_tensor(
    model_file: Path, tmp_path: Path
) -> None:
    good = _reference(model_file).state_dict()
    spec = f"{model_file}:make"
    cases = {
        "missing": (
            {k: v for k, v in good.items() if k != "fc1.bias"},
            ["missing tensor 'fc1.bias'"],
        ),
        "extra": ({**good, "fc3.weight": torch.zeros(2)}, ["unexpected tensor 'fc3.weight'"]),
        "shape": (
            {**good, "fc2.weight": torch.zeros(4, 8)},
            ["'fc2.weight'", "(4, 8) in the file", "(3, 8) in the model"],
        ),
    }
    for name, (state, words) in cases.items():
        path = tmp_path / f"{name}.safetensors"
        save_file(state, str(path))
        fails(lambda p=path: load_user_model(spec, p), path, "do not fit", *words)


def test_non_finite_weights_name_the_tensor(model_file: Path, tmp_path: Path) -> None:
    state = dict(_reference(model_file).state_dict())
    state["fc2.bias"] = torch.tensor([0.0, float("nan"), float("inf")])
    path = tmp_path / "nan.pt"
    torch.save(state, path)
    fails(lambda: load_user_model(f"{model_file}:make", path), path, "'fc2.bias'", "2 NaN/inf")


def test_a_pickle_needing_more_than_weights_only_is_refused_unrun(
    model_file: Path, tmp_path: Path
) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"fc1.weight": torch.zeros(8, 6), "extra": Payload()}, path)
    RAN.clear()
    fails(
        lambda: load_user_model(f"{model_file}:make", path),
        path,
        "refused",
        "weights_only=True",
        "_record",
    )
    assert not RAN


def test_other_bad_weights_files(model_file: Path, tmp_path: Path) -> None:
    spec = f"{model_file}:make"
    fails(
        lambda: load_user_model(spec, tmp_path / "no.safetensors"),
        tmp_path / "no.safetensors",
        "not found",
    )
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"not safetensors")
    fails(lambda: load_user_model(spec, corrupt), corrupt, "corrupt safetensors")
    listed = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], listed)
    fails(lambda: load_user_model(spec, listed), listed, "expected a state dict")


# ---------------------------------------------------------------- model loading: FILE.pt2


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, nn.Module]:
    torch.manual_seed(0)
    model = MLP().eval()
    program = torch.export.export(
        model, (torch.randn(4, 6),), dynamic_shapes=({0: torch.export.Dim("batch")},)
    )
    path = tmp_path_factory.mktemp("pt2") / "mlp.pt2"
    torch.export.save(program, path)
    return path, model


def test_an_exported_program_runs_without_code(exported: tuple[Path, nn.Module]) -> None:
    path, model = exported
    loaded = load_user_model(str(path))
    x = torch.randn(5, 6)
    torch.testing.assert_close(loaded(x), model(x))
    shape = check_model_and_data(
        loaded,
        Split(x, torch.zeros(5, dtype=torch.long)),
        Split(x + 1, torch.ones(5, dtype=torch.long)),
    )
    assert shape.num_classes == 3


def test_an_exported_program_takes_no_weights_file(exported: tuple[Path, nn.Module]) -> None:
    path, _ = exported
    fails(lambda: load_user_model(str(path), "w.safetensors"), "w.safetensors", "own weights")


def test_a_pt2_with_a_fixed_batch_size_says_how_to_export(tmp_path: Path) -> None:
    path = tmp_path / "fixed.pt2"
    torch.export.save(torch.export.export(MLP().eval(), (torch.randn(2, 6),)), path)
    fails(lambda: load_user_model(str(path)), path, "fixed batch of 2", "dynamic")


def test_a_pt2_with_an_unsafe_pickle_inside_is_refused_unrun(
    exported: tuple[Path, nn.Module], tmp_path: Path
) -> None:
    path, _ = exported
    evil = tmp_path / "evil.pt2"
    buffer = io.BytesIO()
    torch.save(((Payload(),), {}), buffer)
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(evil, "w") as dst:
        for member in src.infolist():
            is_inputs = "sample_inputs/" in member.filename
            dst.writestr(member, buffer.getvalue() if is_inputs else src.read(member))
    RAN.clear()
    fails(lambda: load_user_model(str(evil)), evil, "refused", "sample_inputs", "weights_only=True")
    assert not RAN


def test_a_pt2_that_is_not_an_export(tmp_path: Path) -> None:
    text = tmp_path / "text.pt2"
    text.write_text("hello")
    fails(lambda: load_user_model(str(text)), text, "not a torch.export archive")
    empty = tmp_path / "empty.pt2"
    with zipfile.ZipFile(empty, "w") as zf:
        zf.writestr("x/archive_version", "0")
    fails(lambda: load_user_model(str(empty)), empty, "not a loadable torch.export program")
    fails(lambda: load_user_model(str(tmp_path / "none.pt2")), tmp_path / "none.pt2", "not found")


# ---------------------------------------------------------------- data loading


X = np.arange(24, dtype=np.float32).reshape(4, 6) / 24
Y = np.array([0, 2, 1, 2])


def _check_split(split: Split, x: np.ndarray = X, y: np.ndarray = Y) -> None:
    assert split.x.dtype == torch.float32 and split.y.dtype == torch.int64
    np.testing.assert_allclose(split.x.numpy(), x, rtol=1e-6)
    np.testing.assert_array_equal(split.y.numpy(), y)


def test_npz_tensor_dict_and_csv_round_trip(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=X.astype(np.float64), y=Y.astype(np.int32))
    _check_split(load_user_data(tmp_path / "d.npz"))
    torch.save({"x": torch.from_numpy(X), "y": torch.from_numpy(Y)}, tmp_path / "d.pt")
    _check_split(load_user_data(tmp_path / "d.pt"))
    rows = ["f0,f1,f2,label,f3,f4,f5"]
    rows += [
        ",".join([*map(repr, r[:3].tolist()), str(c), *map(repr, r[3:].tolist())])
        for r, c in zip(X, Y, strict=True)
    ]
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n\n")
    _check_split(load_user_data(tmp_path / "d.csv", label_column="label"))


def _csv(path: Path, header: str, x: np.ndarray = X, y: np.ndarray = Y) -> str:
    rows = [header] + [
        ",".join([*map(repr, r.tolist()), str(c)]) for r, c in zip(x, y, strict=True)
    ]
    path.write_text("\n".join(rows) + "\n")
    return str(path)


def test_a_csv_names_its_feature_columns_and_the_bundle_keeps_them(tmp_path: Path) -> None:
    header = "age,hours,sex=F,sex=M,work=a,work=b,label"
    members = _csv(tmp_path / "m.csv", header)
    loaded = load_user_data(members, label_column="label")
    assert loaded.feature_names == ("age", "hours", "sex=F", "sex=M", "work=a", "work=b")
    np.savez(tmp_path / "d.npz", x=X, y=Y)
    assert load_user_data(tmp_path / "d.npz").feature_names is None
    nonmembers = _csv(tmp_path / "n.csv", header)
    bundle = DATASETS.build(
        "user_files", members=members, nonmembers=nonmembers, label_column="label"
    )
    assert bundle.feature_names == loaded.feature_names
    # no CSV, no names; files naming their columns differently are refused
    npz = str(tmp_path / "d.npz")
    assert DATASETS.build("user_files", members=npz, nonmembers=npz).feature_names is None
    other = _csv(tmp_path / "o.csv", header.replace("hours", "weight"))
    with pytest.raises(DatasetError, match=r"o.csv.*feature columns.*differ from .*m.csv"):
        DATASETS.build("user_files", members=members, nonmembers=other, label_column="label")


def test_image_folders_round_trip_gray_and_rgb(tmp_path: Path) -> None:
    for mode, channels in (("L", 1), ("RGB", 3)):
        root = tmp_path / mode
        for label, cls in enumerate(("cat", "dog")):
            (root / cls).mkdir(parents=True)
            for i in range(2):
                value = 40 * (2 * label + i)
                Image.new(mode, (5, 4), (value,) * channels if channels > 1 else value).save(
                    root / cls / f"{i}.png"
                )
        split = load_user_data(root)
        assert split.x.shape == (4, channels, 4, 5)
        np.testing.assert_array_equal(split.y.numpy(), [0, 0, 1, 1])
        assert float(split.x[3].max()) == pytest.approx(120 / 255)


def _npz(tmp_path: Path, name: str = "bad.npz", **arrays: np.ndarray) -> Path:
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def test_bad_array_files(tmp_path: Path) -> None:
    cases: list[tuple[Path, list[str]]] = [
        (tmp_path / "nothing.npz", ["not found"]),
        (_npz(tmp_path, "a.npz", x=X), ["no array y", "arrays found: x"]),
        (_npz(tmp_path, "b.npz", x=np.array([["a"] * 6] * 4), y=Y), ["x has dtype <U1", "numbers"]),
        (_npz(tmp_path, "c.npz", x=X, y=Y + 0.5), ["y holds 0.5", "integer labels"]),
        (_npz(tmp_path, "d.npz", x=X, y=np.eye(3)[Y]), ["y has shape (4, 3)", "argmax"]),
        (_npz(tmp_path, "e.npz", x=X[:3], y=Y), ["x has 3 rows but y has 4"]),
        (_npz(tmp_path, "f.npz", x=X[:0], y=Y[:0]), ["no examples"]),
        (_npz(tmp_path, "g.npz", x=X[:, 0], y=Y), ["x has shape (4,)"]),
        (_npz(tmp_path, "h.npz", x=np.array([None] * 4), y=Y), ["unreadable .npz", "allow_pickle"]),
    ]
    (tmp_path / "data.txt").write_text("1 2 3")
    cases.append((tmp_path / "data.txt", ["unsupported data file", ".csv"]))
    (tmp_path / "one.npz").write_bytes(b"\x93NUMPY")
    cases.append((tmp_path / "one.npz", ["unreadable .npz"]))
    for path, words in cases:
        fails(lambda p=path: load_user_data(p), path, *words)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
def test_bad_tensor_dicts(tmp_path: Path) -> None:
    cases = {
        "list.pt": ([torch.zeros(2)], ["expected a dict with tensors x and y"]),
        "nokey.pth": ({"x": torch.zeros(2, 3)}, ["no key y", "keys found: 'x'"]),
        "nested.pt": ({"x": torch.zeros(2, 3), "y": [0, 1]}, ["y is of type list"]),
        "evil.pt": ({"x": torch.zeros(2, 3), "y": Payload()}, ["refused", "weights_only=True"]),
    }
    RAN.clear()
    for name, (obj, words) in cases.items():
        torch.save(obj, tmp_path / name)
        fails(lambda p=tmp_path / name: load_user_data(p), tmp_path / name, *words)
    assert not RAN
    (tmp_path / "pickled.pt").write_bytes(pickle.dumps({"x": 1}))
    fails(
        lambda: load_user_data(tmp_path / "pickled.pt"),
        tmp_path / "pickled.pt",
        "weights_only=True",
    )


@pytest.mark.parametrize(
    ("text", "label_column", "words"),
    [
        ("a,b,label\n1,2,0\n", None, ["needs label_column"]),
        ("a,b,label\n1,2,0\n", "y", ["no column 'y'", "columns: a, b, label"]),
        (
            "a,colour,city,label\n1,red,Oslo,0\n",
            "label",
            ["'colour', 'city'", "'red' in data row 1", "encode"],
        ),
        ("a,label\n1,0\n2,cat\n", "label", ["label column 'label' holds 'cat' (data row 2)"]),
        ("a,label\n1,0.5\n", "label", ["y holds 0.5"]),
        ("a,b,label\n1,2,0\n1,2\n", "label", ["data row 2 has 2 fields but the header has 3"]),
        ("a,label\n1,\n", "label", ["label column 'label' holds ''"]),
        ("", "label", ["empty CSV file"]),
        ("a,label\n", "label", ["no examples"]),
        ("label\n1\n", "label", ["no feature columns"]),
    ],
)
def test_bad_csv_files(
    tmp_path: Path, text: str, label_column: str | None, words: list[str]
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    fails(lambda: load_user_data(path, label_column=label_column), path, *words)


def test_bad_image_folders(tmp_path: Path) -> None:
    (tmp_path / "one" / "cat").mkdir(parents=True)
    Image.new("L", (3, 3)).save(tmp_path / "one" / "cat" / "0.png")
    fails(lambda: load_user_data(tmp_path / "one"), tmp_path / "one", "need at least 2 classes")
    (tmp_path / "one" / "dog").mkdir()
    (tmp_path / "one" / "dog" / "0.png").write_bytes(b"not a png")
    fails(
        lambda: load_user_data(tmp_path / "one"),
        tmp_path / "one" / "dog" / "0.png",
        "unreadable image",
    )


# ---------------------------------------------------------------- checks


def _split(n: int, seed: int, classes: int = 3, d: int = 6) -> Split:
    g = torch.Generator().manual_seed(seed)
    return Split(torch.rand(n, d, generator=g), torch.randint(0, classes, (n,), generator=g))


class Frozen(nn.Module):
    """Train mode, a frozen layer, BatchNorm statistics and dropout: all a check could disturb."""

    def __init__(self) -> None:
        super().__init__()
        self.frozen = nn.Linear(6, 8).requires_grad_(False)
        self.norm = nn.BatchNorm1d(8)
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.norm(self.frozen(x))))


def test_the_checks_report_the_shape_and_leave_the_users_model_untouched() -> None:
    model = Frozen().train()
    model.head.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    params = {n: (p, p.requires_grad) for n, p in model.named_parameters()}
    modes = {n: m.training for n, m in model.named_modules()}
    members, nonmembers, population = _split(20, 0), _split(20, 1), _split(10, 2)
    shape = check_model_and_data(model, members, nonmembers, population, device="cpu")
    lo = min(float(s.x.min()) for s in (members, nonmembers, population))
    hi = max(float(s.x.max()) for s in (members, nonmembers, population))
    assert shape == AuditShape((6,), 3, (lo, hi))
    assert {n: (p, p.requires_grad) for n, p in model.named_parameters()} == params
    assert {n: m.training for n, m in model.named_modules()} == modes
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)
    assert all(p.grad is None for p in model.parameters())


def test_a_declared_range_is_checked_and_returned() -> None:
    members, nonmembers = _split(10, 0), _split(10, 1)
    shape = check_model_and_data(MLP(), members, nonmembers, value_range=(0.0, 1.0))
    assert shape.value_range == (0.0, 1.0)
    fails(
        lambda: check_model_and_data(
            MLP(), members, Split(nonmembers.x * 2, nonmembers.y), value_range=(0, 1)
        ),
        "nonmembers",
        "outside the declared input range [0, 1]",
    )
    fails(
        lambda: check_model_and_data(MLP(), members, nonmembers, value_range=(1, 1)),
        "value_range",
        "empty",
    )


class Returns(nn.Module):
    def __init__(self, fn: Callable[[torch.Tensor], object]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> object:
        return self.fn(x)


def test_bad_models_are_named() -> None:
    members, nonmembers = _split(10, 0), _split(10, 1)
    cases: list[tuple[nn.Module, list[str]]] = [
        (MLP(d=5), ["forward raised RuntimeError", "mat1 and mat2", "shape (8, 6)"]),
        (Returns(lambda x: x.sum(1)), ["output shape (8,)", "at least 2 classes"]),
        (Returns(lambda x: x[:, :1]), ["output shape (8, 1)"]),
        (Returns(lambda x: (x,)), ["returned tuple"]),
        (Returns(lambda x: x / 0), ["NaN or inf in its output"]),
    ]
    for model, words in cases:
        fails(lambda m=model: check_model_and_data(m, members, nonmembers), "model", *words)


def test_bad_data_is_named_by_split() -> None:
    members, other = _split(10, 0), _split(10, 1)
    nan_x = other.x.clone()
    nan_x[4, 2] = float("nan")
    cases: list[tuple[Split, Split | None, str, list[str]]] = [
        (other, _split(5, 2, d=7), "population", ["input shape (7,)", "members' (6,)"]),
        (Split(nan_x, other.y), None, "nonmembers", ["NaN or inf in 1 example(s)", "row 4"]),
        (Split(other.x, other.y + 3), None, "nonmembers", ["outside [0, 3)", "3 outputs"]),
        (
            Split(other.x, other.y.float()),
            None,
            "nonmembers",
            ["torch.float32", "integer class index"],
        ),
        (
            Split(other.x.double().to(torch.int64), other.y),
            None,
            "nonmembers",
            ["torch.int64", "floats"],
        ),
        (Split(other.x[:0], other.y[:0]), None, "nonmembers", ["no examples"]),
    ]
    for nonmembers, population, where, words in cases:
        fails(
            lambda n=nonmembers, p=population: check_model_and_data(MLP(), members, n, p),
            where,
            *words,
        )


def test_overlapping_members_and_nonmembers_warn_with_the_count() -> None:
    members, other = _split(10, 0), _split(10, 1)
    x = other.x.clone()
    x[[1, 4, 7]] = members.x[[0, 0, 9]]
    with pytest.warns(AuditDataWarning, match=r"3 of 10 non-members are exact copies"):
        check_model_and_data(MLP(), members, Split(x, other.y))


def test_a_model_that_cannot_be_copied_is_refused_not_touched() -> None:
    model = MLP()
    model.lock = threading.Lock()  # deepcopy cannot copy a lock
    fails(
        lambda: check_model_and_data(model, _split(4, 0), _split(4, 1)), "model", "cannot be copied"
    )
