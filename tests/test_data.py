from __future__ import annotations

import gzip
import os
import stat

import pytest
import torch

from bnexp.config import DatasetConfig
from bnexp.data import balanced_subset, load_data, shuffled_batches
from bnexp.errors import BnexpError

from .conftest import SHARED_DATA, write_tiny_cifar100, write_tiny_dataset

CPU = torch.device("cpu")
TINY = DatasetConfig(name="fashion_mnist", verify_checksums=False)


def snapshot(root):
    return sorted((p.relative_to(root), p.stat().st_mtime_ns) for p in root.rglob("*"))


def test_loads_idx_gz_as_uint8_tensors(tiny_root):
    data = load_data(TINY, CPU, tiny_root)
    assert data.train.images.shape == (300, 1, 28, 28) and data.train.images.dtype == torch.uint8
    assert data.test.labels.shape == (100,) and data.test.labels.dtype == torch.int64
    assert data.inputs.num_classes == 10 and data.inputs.channels == 1
    x = data.to_input(data.train.images)
    assert x.dtype == torch.float32
    assert abs(x.mean().item()) < 1e-4 and abs(x.std().item() - 1) < 1e-3  # standardized with train stats


def test_unit_normalization_matches_to_tensor(tiny_root):
    data = load_data(DatasetConfig(name="fashion_mnist", verify_checksums=False, normalize="unit"), CPU, tiny_root)
    assert torch.equal(data.to_input(data.train.images[:3]), data.train.images[:3].float() / 255)


def test_never_writes_into_the_data_root(tiny_root):
    before = snapshot(tiny_root)
    mode = tiny_root.stat().st_mode
    for p in [tiny_root, *tiny_root.rglob("*")]:
        if p.is_dir():
            p.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        load_data(TINY, CPU, tiny_root)
        load_data(TINY, CPU, tiny_root)  # second time from the decoded cache
    finally:
        for p in [tiny_root, *tiny_root.rglob("*")]:
            if p.is_dir():
                p.chmod(mode)
    assert snapshot(tiny_root) == before


def test_data_root_from_environment(tiny_root, monkeypatch):
    monkeypatch.setenv("BNEXP_DATA", str(tiny_root))
    assert len(load_data(TINY, CPU).train) == 300


def test_missing_data_says_where_it_looked_and_how_to_fix(tmp_path):
    with pytest.raises(BnexpError) as e:
        load_data(TINY, CPU, tmp_path / "empty")
    msg = str(e.value)
    assert f"looked for FashionMNIST/raw/ with the four official .gz files in {tmp_path / 'empty'}" in msg
    assert "--data-root" in msg and "BNEXP_OFFLINE" in msg


def test_incomplete_files(tiny_root):
    (tiny_root / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(BnexpError, match=r"missing t10k-labels-idx1-ubyte\.gz"):
        load_data(TINY, CPU, tiny_root)


def test_checksum_mismatch_is_reported(tiny_root):
    with pytest.raises(BnexpError, match="checksum mismatch"):
        load_data(DatasetConfig(name="fashion_mnist"), CPU, tiny_root)


def test_truncated_gzip(tiny_root):
    path = tiny_root / "FashionMNIST" / "raw" / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(BnexpError, match="truncated or corrupted"):
        load_data(TINY, CPU, tiny_root)


def test_bad_idx_payload(tiny_root):
    path = tiny_root / "FashionMNIST" / "raw" / "train-images-idx3-ubyte.gz"
    with gzip.open(path, "wb") as f:
        f.write(b"\x00\x00\x08\x03" + (5).to_bytes(4, "big") * 3 + b"\x01" * 7)  # too few pixels
    with pytest.raises(BnexpError, match=f"{tiny_root}: the train files in FashionMNIST/raw/ are not valid"):
        load_data(TINY, CPU, tiny_root)


def test_labels_outside_the_datasets_classes_are_refused(tiny_root):
    """Issue 37, item 12: a label of 200 would train a 201-class model recorded as fashion_mnist."""
    import numpy as np

    from .conftest import write_idx

    labels = np.arange(300) % 10
    labels[7] = 200
    write_idx(tiny_root / "FashionMNIST" / "raw" / "train-labels-idx1-ubyte.gz", labels)
    with pytest.raises(BnexpError, match="train labels range from 0 to 200, outside the 10 classes"):
        load_data(TINY, CPU, tiny_root)


def test_balanced_subset_is_deterministic_and_balanced(tiny_root):
    data = load_data(
        DatasetConfig(name="fashion_mnist", verify_checksums=False, subset=55, test_subset=20), CPU, tiny_root
    )
    counts = torch.bincount(data.train.labels, minlength=10).tolist()
    assert counts == [6] * 5 + [5] * 5
    again = load_data(
        DatasetConfig(name="fashion_mnist", verify_checksums=False, subset=55, test_subset=20), CPU, tiny_root
    )
    assert torch.equal(data.train.images, again.train.images)
    labels = torch.tensor([0, 1, 0, 1, 1])
    assert balanced_subset(labels, 2, 2).tolist() == [0, 1]
    with pytest.raises(BnexpError, match="needs 3 images of class 0"):
        balanced_subset(labels, 6, 2)


def test_subset_larger_than_split(tiny_root):
    with pytest.raises(BnexpError, match="larger than the 300 train images"):
        load_data(DatasetConfig(name="fashion_mnist", verify_checksums=False, subset=301), CPU, tiny_root)


def test_shuffled_batches_are_seeded_and_drop_single_image_tail():
    a = shuffled_batches(129, 64, torch.Generator().manual_seed(1), CPU)
    b = shuffled_batches(129, 64, torch.Generator().manual_seed(1), CPU)
    assert [len(x) for x in a] == [64, 64] and all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    c = shuffled_batches(130, 64, torch.Generator().manual_seed(1), CPU)
    assert [len(x) for x in c] == [64, 64, 2]
    assert sorted(torch.cat(c).tolist()) == list(range(130))


def test_mnist_folder(tmp_path):
    root = write_tiny_dataset(tmp_path / "d", folder="MNIST", n_train=50, n_test=20)
    data = load_data(DatasetConfig(name="mnist", verify_checksums=False), CPU, root)
    assert len(data.train) == 50 and len(data.test) == 20


@pytest.mark.skipif(
    not SHARED_DATA.is_dir() and not os.environ.get("BNEXP_REQUIRE_REAL_DATA"),
    reason="the official files are not beside this checkout (CI sets BNEXP_REQUIRE_REAL_DATA)",
)
def test_official_files_verify_and_decode():
    data = load_data(DatasetConfig(name="fashion_mnist", normalize="standardize"), CPU, SHARED_DATA)
    assert data.train.images.shape == (60000, 1, 28, 28) and len(data.test) == 10000
    assert torch.bincount(data.train.labels).tolist() == [6000] * 10
    assert data.mean[0] == pytest.approx(0.2860, abs=1e-4) and data.std[0] == pytest.approx(0.3530, abs=1e-4)


@pytest.mark.parametrize("archive", [False, True])
def test_cifar100_from_pickles_or_official_archive(tmp_path, archive):
    root = write_tiny_cifar100(tmp_path / "c", archive=archive)
    before = snapshot(root)
    cfg = DatasetConfig(name="cifar100", verify_checksums=False, trust_unverified_pickles=True, resize=64)
    data = load_data(cfg, CPU, root)
    assert data.train.images.shape == (400, 3, 32, 32) and data.train.images.dtype == torch.uint8
    assert data.inputs.channels == 3 and data.inputs.num_classes == 100 and data.inputs.height == 64
    assert len(data.mean) == 3 and data.to_input(data.test.images[:2]).shape == (2, 3, 64, 64)
    assert snapshot(root) == before  # the archive is unpacked into the cache, not beside it


def test_cifar100_checksums_are_checked(tmp_path):
    root = write_tiny_cifar100(tmp_path / "c")
    with pytest.raises(BnexpError, match="Dataset not found or corrupted"):
        load_data(DatasetConfig(name="cifar100"), CPU, root)
    archived = write_tiny_cifar100(tmp_path / "a", archive=True)
    with pytest.raises(BnexpError, match="checksum mismatch"):
        load_data(DatasetConfig(name="cifar100"), CPU, archived)
