"""Loaders for on-disk formats (IDX, CIFAR-10 python batches, image folders) on generated files."""

from __future__ import annotations

import codecs
import gzip
import os
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from idx_files import (
    IDX_NAMES,
    N_TEST,
    N_TRAIN,
    SIDE,
    ids,
    idx_bytes,
    make_idx_folder,
    numbered_images,
    write,
)
from privlab.data.bundle import DataBundle, DatasetError
from privlab.data.cifar import CIFAR10_NAMES, cifar10, load_cifar10_folder, safe_unpickle
from privlab.data.idx import (
    FASHION_NAMES,
    fashion_mnist_idx,
    load_idx_folder,
    load_idx_pair,
    mnist_idx,
    read_idx,
)
from privlab.data.image_folder import image_folder, load_image_folder
from privlab.registry import DATASETS


@pytest.fixture
def idx_folder(tmp_path: Path) -> Path:
    return make_idx_folder(tmp_path / "mnist")


# ---------------------------------------------------------------------------- IDX: reading


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_roundtrip(tmp_path: Path, gz: bool) -> None:
    images = numbered_images(0, 5)
    path = write(tmp_path / ("img.gz" if gz else "img"), idx_bytes(images))
    out = read_idx(path)
    assert out.dtype == np.uint8 and out.shape == (5, SIDE, SIDE)
    np.testing.assert_array_equal(out, images)


@pytest.mark.parametrize(
    ("code", "dtype"), [(0x09, np.int8), (0x0B, np.int16), (0x0C, np.int32), (0x0D, np.float32)]
)
def test_read_idx_other_types_big_endian(tmp_path: Path, code: int, dtype: type) -> None:
    values = np.array([[-3, 2], [1000 if dtype != np.int8 else 7, 0]], dtype=dtype)
    out = read_idx(write(tmp_path / "v", idx_bytes(values, code)))
    np.testing.assert_array_equal(out, values)


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx_values_labels_and_shapes(tmp_path: Path, gz: bool) -> None:
    folder = make_idx_folder(tmp_path / "m", gz=gz)
    x, y = load_idx_folder(folder)
    assert x.shape == (N_TRAIN + N_TEST, 1, SIDE, SIDE) and x.dtype == torch.float32
    assert y.dtype == torch.int64
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    expected = np.concatenate([numbered_images(0, N_TRAIN), numbered_images(N_TRAIN, N_TEST)])
    np.testing.assert_allclose(x[:, 0].numpy(), expected / 255.0, atol=1e-7)
    assert y.tolist() == [i % 10 for i in range(N_TRAIN + N_TEST)]


def test_mnist_idx_bundle(idx_folder: Path) -> None:
    bundle = mnist_idx(path=str(idx_folder))
    assert isinstance(bundle, DataBundle) and bundle.name == "mnist_idx"
    assert bundle.input_shape == (1, SIDE, SIDE) and bundle.num_classes == 10
    assert bundle.class_names == tuple(str(d) for d in range(10))
    sizes = len(bundle.members), len(bundle.nonmembers), len(bundle.population)
    assert sum(sizes) == N_TRAIN + N_TEST


def test_fashion_mnist_class_names(idx_folder: Path) -> None:
    bundle = fashion_mnist_idx(path=str(idx_folder))
    assert bundle.name == "fashion_mnist_idx"
    assert bundle.class_names == FASHION_NAMES and bundle.class_names[0] == "T-shirt/top"


def test_split_train_and_test_need_only_their_files(tmp_path: Path) -> None:
    train_only = make_idx_folder(tmp_path / "tr", splits=("train",))
    x, _ = load_idx_folder(train_only, "train")
    assert len(x) == N_TRAIN
    with pytest.raises(DatasetError, match="t10k-images-idx3-ubyte"):
        load_idx_folder(train_only, "all")
    x, _ = load_idx_folder(make_idx_folder(tmp_path / "te", splits=("test",)), "test")
    assert len(x) == N_TEST
    with pytest.raises(ValueError, match="split"):
        load_idx_folder(train_only, "validation")


def test_dotted_file_names_are_found(tmp_path: Path) -> None:
    folder = make_idx_folder(tmp_path / "m", splits=("train",))
    for name in IDX_NAMES["train"]:
        (folder / name).rename(folder / name.replace("-idx", ".idx"))
    assert len(load_idx_folder(folder, "train")[0]) == N_TRAIN


def test_registry_builds_mnist_idx(idx_folder: Path) -> None:
    assert {"mnist_idx", "fashion_mnist_idx", "cifar10", "image_folder"} <= set(DATASETS.names())
    bundle = DATASETS.build("mnist_idx", path=str(idx_folder))
    assert bundle.hashes() == mnist_idx(path=str(idx_folder)).hashes()


# ---------------------------------------------------------------------------- IDX: errors


def test_missing_file_names_file_folder_and_expected(idx_folder: Path) -> None:
    (idx_folder / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DatasetError) as err:
        mnist_idx(path=str(idx_folder))
    msg = str(err.value)
    assert "missing" in msg and "t10k-labels-idx1-ubyte" in msg and str(idx_folder) in msg
    assert "train-images-idx3-ubyte[.gz]" in msg


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="missing"):
        mnist_idx(path=str(tmp_path / "nowhere"))


def test_bad_magic_number(tmp_path: Path) -> None:
    path = write(tmp_path / "img", idx_bytes(numbered_images(0, 2), magic=b"\x01\x02\x08\x03"))
    with pytest.raises(DatasetError, match="magic") as err:
        read_idx(path)
    assert "img" in str(err.value)


def test_unknown_dtype_code(tmp_path: Path) -> None:
    path = write(tmp_path / "img", idx_bytes(numbered_images(0, 2), code=0x07))
    with pytest.raises(DatasetError, match=r"dtype code 0x07"):
        read_idx(path)


def test_images_with_wrong_dtype_code(idx_folder: Path) -> None:
    floats = numbered_images(0, N_TRAIN).astype(np.float32)
    write(idx_folder / "train-images-idx3-ubyte", idx_bytes(floats, code=0x0D))
    with pytest.raises(DatasetError, match="dtype code") as err:
        load_idx_folder(idx_folder)
    assert "train-images-idx3-ubyte" in str(err.value)


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_file_reports_expected_and_found(tmp_path: Path, gz: bool) -> None:
    payload = idx_bytes(numbered_images(0, 3))  # 16 header bytes + 48 pixels = 64
    path = write(tmp_path / ("img.gz" if gz else "img"), payload[:-5])
    with pytest.raises(DatasetError) as err:
        read_idx(path)
    msg = str(err.value)
    assert "truncated" in msg and "64" in msg and "59" in msg and path.name in msg


def test_truncated_header_and_trailing_bytes(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="truncated"):
        read_idx(write(tmp_path / "a", b"\x00\x00\x08\x03\x00\x00"))
    with pytest.raises(DatasetError, match="truncated"):
        read_idx(write(tmp_path / "b", b"\x00\x00"))
    with pytest.raises(DatasetError, match="mismatch"):
        read_idx(write(tmp_path / "c", idx_bytes(numbered_images(0, 2)) + b"xx"))


def test_corrupt_gzip(tmp_path: Path) -> None:
    garbage = tmp_path / "train-images-idx3-ubyte.gz"
    garbage.write_bytes(b"this is not gzip at all")
    with pytest.raises(DatasetError, match="corrupt") as err:
        read_idx(garbage)
    assert garbage.name in str(err.value)
    cut = tmp_path / "cut.gz"
    cut.write_bytes(gzip.compress(idx_bytes(numbered_images(0, 50)))[:-20])
    with pytest.raises(DatasetError, match="corrupt"):
        read_idx(cut)


def test_image_label_count_mismatch(idx_folder: Path) -> None:
    write(idx_folder / "train-labels-idx1-ubyte", idx_bytes(np.zeros(N_TRAIN - 1, np.uint8)))
    with pytest.raises(DatasetError, match="mismatch") as err:
        load_idx_folder(idx_folder)
    assert "train-labels-idx1-ubyte" in str(err.value) and "train-images" in str(err.value)


@pytest.mark.parametrize("bad", [10, 255])
def test_labels_outside_range_are_mislabelled(tmp_path: Path, bad: int) -> None:
    images = write(tmp_path / "images", idx_bytes(numbered_images(0, 3)))
    labels = write(tmp_path / "labels", idx_bytes(np.array([0, bad, 1], np.uint8)))
    with pytest.raises(DatasetError, match="mislabelled") as err:
        load_idx_pair(images, labels)
    assert "labels" in str(err.value) and str(bad) in str(err.value)


# ---------------------------------------------------------------------------- CIFAR helpers

PER_BATCH = 6
BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def cifar_rows(start: int, n: int) -> np.ndarray:
    rows = ((np.arange(n)[:, None] * 5 + np.arange(3072)[None]) % 256).astype(np.uint8)
    rows[:, 0] = np.arange(start, start + n)  # first red pixel = global index
    return rows


def make_cifar_folder(root: Path, protocol: int = 2, meta: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for b, name in enumerate(BATCHES):
        start = b * PER_BATCH
        record = {
            b"batch_label": name.encode(),
            b"data": cifar_rows(start, PER_BATCH),
            b"labels": [i % 10 for i in range(start, start + PER_BATCH)],
        }
        (root / name).write_bytes(pickle.dumps(record, protocol=protocol))
    if meta:
        names = [f"class{c}".encode() for c in range(10)]
        (root / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}, protocol=2))
    return root


@pytest.fixture
def cifar_folder(tmp_path: Path) -> Path:
    return make_cifar_folder(tmp_path / "cifar-10-batches-py")


# ---------------------------------------------------------------------------- CIFAR: reading


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar_values_labels_and_layout(tmp_path: Path, protocol: int) -> None:
    x, y, names = load_cifar10_folder(make_cifar_folder(tmp_path / "c", protocol=protocol))
    n = PER_BATCH * len(BATCHES)
    assert x.shape == (n, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    rows = np.concatenate([cifar_rows(b * PER_BATCH, PER_BATCH) for b in range(len(BATCHES))])
    # Row layout: 1024 red, 1024 green, 1024 blue values, each 32×32 row-major.
    np.testing.assert_allclose(x.reshape(n, -1).numpy(), rows / 255.0, atol=1e-7)
    np.testing.assert_allclose(x[:, 1, 0, 0].numpy(), rows[:, 1024] / 255.0, atol=1e-7)
    assert y.tolist() == [i % 10 for i in range(n)]
    assert names == tuple(f"class{c}" for c in range(10))


def test_cifar_legacy_numpy_core_names_and_array_labels(tmp_path: Path) -> None:
    """Python-2-era files reference numpy.core.multiarray; labels may be a numpy array."""
    folder = make_cifar_folder(tmp_path / "c")
    record = {b"data": cifar_rows(0, PER_BATCH), b"labels": np.arange(PER_BATCH) % 10}
    blob = pickle.dumps(record, protocol=2)
    legacy = blob.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
    assert legacy != blob
    (folder / "data_batch_1").write_bytes(legacy)
    x, y, _ = load_cifar10_folder(folder, "train")
    assert len(x) == 5 * PER_BATCH and y[:PER_BATCH].tolist() == list(range(PER_BATCH))


def test_cifar_splits_meta_and_parent_folder(tmp_path: Path) -> None:
    folder = make_cifar_folder(tmp_path / "cifar-10-batches-py", meta=False)
    x_train, _, names = load_cifar10_folder(folder, "train")
    assert len(x_train) == 5 * PER_BATCH and names == CIFAR10_NAMES
    assert len(load_cifar10_folder(folder, "test")[0]) == PER_BATCH
    assert len(load_cifar10_folder(tmp_path)[0]) == 6 * PER_BATCH  # the archive's parent


def test_cifar_bundle_and_registry(cifar_folder: Path) -> None:
    bundle = DATASETS.build("cifar10", path=str(cifar_folder), members=0.5, nonmembers=0.25)
    assert bundle.name == "cifar10" and bundle.input_shape == (3, 32, 32)
    assert bundle.class_names[3] == "class3" and bundle.num_classes == 10
    assert len(bundle.members) == 18 and len(bundle.nonmembers) == 9


# ---------------------------------------------------------------------------- CIFAR: errors


def test_cifar_missing_batches(cifar_folder: Path) -> None:
    (cifar_folder / "data_batch_3").unlink()
    (cifar_folder / "test_batch").unlink()
    with pytest.raises(DatasetError, match="missing") as err:
        cifar10(path=str(cifar_folder))
    assert "data_batch_3" in str(err.value) and "test_batch" in str(err.value)


@pytest.mark.parametrize(
    "mangle", [lambda b: b[: len(b) // 2], lambda b: b[:3], lambda b: b"\x80\x02garbage"]
)
def test_cifar_truncated_or_corrupt_pickle(cifar_folder: Path, mangle: Callable) -> None:
    path = cifar_folder / "data_batch_2"
    path.write_bytes(mangle(path.read_bytes()))
    with pytest.raises(DatasetError, match="corrupt or truncated") as err:
        load_cifar10_folder(cifar_folder)
    assert "data_batch_2" in str(err.value)


@pytest.mark.parametrize(
    ("record", "word"),
    [
        ({b"data": np.zeros((PER_BATCH, 100), np.uint8), b"labels": [0] * PER_BATCH}, "shape"),
        ({b"data": np.zeros(3072, np.uint8), b"labels": [0]}, "shape"),
        ({b"data": np.zeros((PER_BATCH, 3072), np.float32), b"labels": [0] * 6}, "dtype"),
        ({b"data": cifar_rows(0, PER_BATCH), b"labels": [0] * (PER_BATCH + 1)}, "mismatch"),
        ({b"data": cifar_rows(0, PER_BATCH), b"labels": [0, 1, 2, 3, 10, -1]}, "mislabelled"),
        ({b"data": cifar_rows(0, PER_BATCH)}, "labels"),
        ([1, 2, 3], "dict"),
    ],
)
def test_cifar_inconsistent_batch(cifar_folder: Path, record: object, word: str) -> None:
    (cifar_folder / "test_batch").write_bytes(pickle.dumps(record, protocol=4))
    with pytest.raises(DatasetError, match=word) as err:
        load_cifar10_folder(cifar_folder, "test")
    assert "test_batch" in str(err.value)


def test_cifar_corrupt_meta(cifar_folder: Path) -> None:
    (cifar_folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"a", b"b"]}))
    with pytest.raises(DatasetError, match=r"batches\.meta"):
        load_cifar10_folder(cifar_folder, "test")


class _Evil:
    """Pickles as a call to os.system; the tests only ever *load* it with the safe unpickler."""

    def __reduce__(self) -> tuple:
        return (os.system, ("echo pwned",))


class _Rot13:
    def __reduce__(self) -> tuple:
        return (codecs.encode, ("pwned", "rot13"))


@pytest.mark.parametrize(
    ("payload", "name"),
    [
        (_Evil(), "system"),
        ({b"data": _Evil(), b"labels": []}, "system"),
        (eval, "eval"),
        (_Rot13(), "rot13"),
    ],
)
def test_restricted_unpickler_refuses_other_globals(
    cifar_folder: Path, monkeypatch: pytest.MonkeyPatch, payload: object, name: str
) -> None:
    blob = pickle.dumps(payload, protocol=2)  # dumping never calls os.system
    calls: list[object] = []
    monkeypatch.setattr(os, "system", lambda *a: calls.append(a))
    (cifar_folder / "data_batch_1").write_bytes(blob)
    with pytest.raises(DatasetError, match="refused") as err:
        safe_unpickle(cifar_folder / "data_batch_1")
    assert name in str(err.value) and "data_batch_1" in str(err.value)
    with pytest.raises(DatasetError, match="unsafe"):
        cifar10(path=str(cifar_folder))
    assert calls == []


# ---------------------------------------------------------------------------- image folders


def save(path: Path, value: int, size: tuple[int, int] = (6, 5), mode: str = "L") -> None:
    """A ``size`` (w, h) image whose first pixel is ``value`` (an id) and the rest a ramp."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    arr = ((np.arange(w * h) * 7 + value) % 256).astype(np.uint8).reshape(h, w)
    arr[0, 0] = value
    if mode == "RGB":
        arr = np.stack([arr, 255 - arr, np.full_like(arr, 9)], axis=-1)
    Image.fromarray(arr, mode=mode).save(path)


def make_image_folder(root: Path, counts: dict[str, int], mode: str = "L") -> Path:
    value = 0
    for cls, n in counts.items():
        for i in range(n):
            save(root / cls / f"{i:03d}.png", value, mode=mode)
            value += 1
    return root


@pytest.fixture
def faces(tmp_path: Path) -> Path:
    return make_image_folder(tmp_path / "faces", {"bob": 6, "alice": 6, "carol": 6})


def test_image_folder_values_labels_and_names(faces: Path) -> None:
    (faces / "alice" / "notes.txt").write_text("not an image")
    (faces / ".cache").mkdir()
    save(faces / "bob" / ".hidden.png", 200)
    x, y, names = load_image_folder(faces)
    assert names == ("alice", "bob", "carol")
    assert x.shape == (18, 1, 5, 6) and x.dtype == torch.float32
    assert y.tolist() == [0] * 6 + [1] * 6 + [2] * 6
    # "bob" was written first (ids 0..5) but sorts second.
    assert sorted(ids(x[y == 1])) == list(range(6)) and sorted(ids(x[y == 0])) == list(range(6, 12))
    first = ((np.arange(30) * 7 + 6) % 256).astype(np.float32).reshape(5, 6)
    first[0, 0] = 6
    np.testing.assert_allclose(x[0, 0].numpy(), first / 255.0, atol=1e-7)


def test_image_folder_rgb_and_resize(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "rgb", {"a": 2, "b": 2}, mode="RGB")
    x, _, _ = load_image_folder(root, grayscale=False)
    assert x.shape == (4, 3, 5, 6)
    np.testing.assert_allclose(x[:, 2].numpy(), 9 / 255.0, atol=1e-7)
    save(root / "b" / "big.png", 3, size=(11, 9), mode="RGB")
    x, _, _ = load_image_folder(root, size=4, grayscale=True)
    assert x.shape == (5, 1, 4, 4)


def test_image_folder_size_mismatch_names_file_and_sizes(faces: Path) -> None:
    save(faces / "carol" / "zz_odd.png", 3, size=(7, 8))
    with pytest.raises(DatasetError, match="mismatch") as err:
        load_image_folder(faces)
    msg = str(err.value)
    assert "zz_odd.png" in msg and "7×8" in msg and "6×5" in msg and "000.png" in msg


@pytest.mark.parametrize(
    ("setup", "word", "named"),
    [
        (lambda root: None, "missing", "nothere"),
        (lambda root: root.write_text("x"), "not a folder", "nothere"),
        (lambda root: (root.mkdir(), (root / "a.png").write_bytes(b"")), "no class", "nothere"),
        (lambda root: save(root / "only" / "0.png", 1), "at least 2", "only"),
        (lambda root: (save(root / "a" / "0.png", 1), (root / "b").mkdir()), "empty", "b"),
        (
            lambda root: (save(root / "a" / "0.png", 1), save(root / "b" / "0.png", 2),
                          (root / "b" / "1.png").write_bytes(b"not a png")),
            "corrupt",
            "1.png",
        ),
    ],
)  # fmt: skip
def test_image_folder_errors(tmp_path: Path, setup: Callable, word: str, named: str) -> None:
    root = tmp_path / "nothere"
    setup(root)
    with pytest.raises(DatasetError, match=word) as err:
        image_folder(path=str(root))
    assert named in str(err.value)


def test_image_folder_bundle_through_registry(faces: Path) -> None:
    bundle = DATASETS.build("image_folder", path=str(faces), size=4, members=6, nonmembers=6)
    assert bundle.name == "image_folder" and bundle.input_shape == (1, 4, 4)
    assert bundle.num_classes == 3 and bundle.class_names == ("alice", "bob", "carol")
    assert len(bundle.members) == 6 and len(bundle.population) == 6


# ---------------------------------------------------------------------------- bundles: splits

LOADERS: dict[str, Callable[[Path], Callable[..., DataBundle]]] = {
    "mnist_idx": lambda tmp: lambda **kw: mnist_idx(path=str(make_idx_folder(tmp / "m")), **kw),
    "cifar10": lambda tmp: lambda **kw: cifar10(path=str(make_cifar_folder(tmp / "c")), **kw),
    "image_folder": lambda tmp: (
        lambda **kw: image_folder(
            path=str(make_image_folder(tmp / "f", {"a": 8, "b": 8, "c": 8})), **kw
        )
    ),
}


def split_ids(bundle: DataBundle) -> tuple[set[int], set[int], set[int]]:
    return ids(bundle.members.x), ids(bundle.nonmembers.x), ids(bundle.population.x)


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_splits_disjoint_and_seeded(tmp_path: Path, name: str) -> None:
    build = LOADERS[name](tmp_path)
    a, b, c = split_ids(build(seed=0))
    assert len(a) > 0 and len(b) > 0 and len(c) > 0
    assert not (a & b) and not (a & c) and not (b & c)
    assert split_ids(build(seed=0)) == (a, b, c)
    assert build(seed=0).hashes() == build(seed=0).hashes()
    assert split_ids(build(seed=1))[0] != a
