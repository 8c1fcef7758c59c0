"""Datasets through torchvision's classes and file formats, held as uint8 tensors on the training device.

Where the files are looked for, in order: the data root (`--data-root`, else env BNEXP_DATA, else bnexp's
own data folder in its cache), then bnexp's own data folder. Official `.gz` files are checked against
torchvision's md5 list and decoded into bnexp's cache, never into the data root (which may be read-only).
Only when nothing is found is a download tried, into bnexp's own folder (not with BNEXP_OFFLINE=1).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import socket
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torchvision import datasets

from bnexp.config import DatasetConfig
from bnexp.errors import BnexpError
from bnexp.models import InputSpec

DATASETS: dict[str, type[datasets.MNIST]] = {"fashion_mnist": datasets.FashionMNIST, "mnist": datasets.MNIST}
# Official split sizes and input shapes, for validating a config before anything is loaded.
SPLIT_SIZES = {"fashion_mnist": (60000, 10000), "mnist": (60000, 10000)}
INPUTS = {name: InputSpec(1, 28, 28, 10) for name in DATASETS}
FIX_HINT = (
    "point --data-root or BNEXP_DATA at a folder holding {cls}/raw/ with the four official .gz files "
    "(e.g. --data-root ../shared/data), or run once with network access"
)


def cache_dir() -> Path:
    """bnexp's own per-user cache: BNEXP_CACHE, else $XDG_CACHE_HOME/bnexp, else ~/.cache/bnexp."""
    if os.environ.get("BNEXP_CACHE"):
        return Path(os.environ["BNEXP_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "bnexp"


def data_root(cli_root: str | Path | None = None) -> tuple[Path, str]:
    """The data root and where it came from (for messages)."""
    if cli_root:
        return Path(cli_root), "--data-root"
    if os.environ.get("BNEXP_DATA"):
        return Path(os.environ["BNEXP_DATA"]), "BNEXP_DATA"
    return cache_dir() / "data", "bnexp's default data folder"


@dataclass
class Split:
    images: Tensor  # uint8 (N, C, H, W) on the device
    labels: Tensor  # int64 (N,) on the device

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class Data:
    name: str
    train: Split
    test: Split
    inputs: InputSpec
    mean: float  # pixel statistics in [0, 1] units used by `to_input`
    std: float
    source: str  # the folder the files were read from

    def to_input(self, images: Tensor) -> Tensor:
        """uint8 images -> normalized float32, on whatever device they are."""
        return images.float().sub_(255.0 * self.mean).div_(255.0 * self.std)


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _extract(gz: Path, target: Path) -> None:
    """gunzip atomically: a partial file never takes the target's name."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=target.name + ".")
    try:
        with gzip.open(gz, "rb") as src, os.fdopen(fd, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        os.replace(tmp, target)
    except (OSError, EOFError, zlib.error) as e:
        Path(tmp).unlink(missing_ok=True)
        raise BnexpError(f"{gz}: cannot decompress ({e}); the file is truncated or corrupted. Replace it.") from None


def _readable_root(cls: type[datasets.MNIST], root: Path, verify: bool) -> Path | None:
    """A folder torchvision can read `cls` from without downloading, or None if `root` lacks the files."""
    raw = root / cls.__name__ / "raw"
    names = [n for n, _ in cls.resources]
    if all((raw / n.removesuffix(".gz")).is_file() for n in names):
        return root  # already decoded (e.g. a torchvision download folder): read in place
    present = [n for n in names if (raw / n).is_file()]
    if not present:
        return None
    if len(present) < len(names):
        missing = ", ".join(sorted(set(names) - set(present)))
        hint = FIX_HINT.format(cls=cls.__name__)
        raise BnexpError(f"{raw}: incomplete {cls.__name__} files, missing {missing}; {hint}")
    digests = {}
    for name, expected in cls.resources:
        digests[name] = _md5(raw / name)
        if verify and digests[name] != expected:
            raise BnexpError(
                f"{raw / name}: checksum mismatch (md5 {digests[name]}, expected {expected}): the file is "
                "truncated or corrupted; replace it with the official file (or set dataset.verify_checksums: "
                "false for your own IDX files)"
            )
    # decoded copies are keyed by the sources' md5s, so a changed source is never served stale
    key = hashlib.md5("".join(digests[n] for n in names).encode()).hexdigest()
    decoded = cache_dir() / "decoded" / key
    for name in names:
        target = decoded / cls.__name__ / "raw" / name.removesuffix(".gz")
        if not target.is_file():
            _extract(raw / name, target)
    return decoded


def _download(cls: type[datasets.MNIST], root: Path) -> str | None:
    """Try torchvision's download into bnexp's own folder; returns why it failed, or None."""
    if os.environ.get("BNEXP_OFFLINE"):
        return "downloads are off (BNEXP_OFFLINE is set)"
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(20)
    try:
        cls(root=str(root), train=True, download=True)
        return None
    except Exception as e:  # torchvision raises RuntimeError, URLError, OSError... all mean "no data"
        return f"download failed: {type(e).__name__}: {e}"
    finally:
        socket.setdefaulttimeout(previous)


def locate(cfg: DatasetConfig, cli_root: str | Path | None = None) -> Path:
    """The folder to read `cfg.name` from, preparing decoded copies or downloading if needed."""
    cls = DATASETS[cfg.name]
    root, origin = data_root(cli_root)
    own = cache_dir() / "data"
    looked = []
    for candidate in dict.fromkeys([root, own]):
        looked.append(f"{candidate / cls.__name__ / 'raw'}" + (f" ({origin})" if candidate == root else ""))
        found = _readable_root(cls, candidate, cfg.verify_checksums)
        if found is not None:
            return found
    failure = _download(cls, own)
    if failure is None:
        return own
    raise BnexpError(
        f"{cls.__name__} not found; looked in {'; '.join(looked)}; {failure}. Fix: {FIX_HINT.format(cls=cls.__name__)}"
    )


def balanced_subset(labels: Tensor, size: int, num_classes: int) -> Tensor:
    """Indices of the first size/num_classes images of each class (remainder to the lowest classes)."""
    per_class = [size // num_classes + (c < size % num_classes) for c in range(num_classes)]
    picks = []
    for c, k in enumerate(per_class):
        idx = torch.nonzero(labels == c).flatten()
        if len(idx) < k:
            raise BnexpError(f"subset of {size} needs {k} images of class {c}, the data has {len(idx)}")
        picks.append(idx[:k])
    return torch.sort(torch.cat(picks)).values


def _read_split(cls: type[datasets.MNIST], root: Path, train: bool, subset: int | None) -> tuple[Tensor, Tensor]:
    try:
        ds = cls(root=str(root), train=train, download=False)
        images, labels = ds.data, ds.targets
    except (AssertionError, RuntimeError, ValueError, OSError, IndexError) as e:
        raise BnexpError(
            f"{root / cls.__name__ / 'raw'}: not valid IDX files ({type(e).__name__}: {e}); replace them "
            "with the official files"
        ) from None
    if images.dim() != 3 or len(images) != len(labels) or images.dtype != torch.uint8:
        raise BnexpError(
            f"{root / cls.__name__ / 'raw'}: images {tuple(images.shape)} and labels {tuple(labels.shape)} "
            "do not match (expected N x H x W uint8 images and N labels)"
        )
    if subset is not None:
        if subset > len(labels):
            split = "train" if train else "test"
            raise BnexpError(f"{split} subset of {subset} is larger than the {len(labels)} {split} images")
        idx = balanced_subset(labels, subset, int(labels.max()) + 1)
        images, labels = images[idx], labels[idx]
    return images.unsqueeze(1).contiguous(), labels.long()


def load_data(cfg: DatasetConfig, device: torch.device, cli_root: str | Path | None = None) -> Data:
    """Load both splits of `cfg.name` as uint8 tensors on `device`."""
    cls = DATASETS[cfg.name]
    root = locate(cfg, cli_root)
    train_x, train_y = _read_split(cls, root, True, cfg.subset)
    test_x, test_y = _read_split(cls, root, False, cfg.test_subset)
    if cfg.normalize == "standardize":
        pixels = train_x.float().div_(255.0)
        mean, std = pixels.mean().item(), pixels.std().item()
    else:
        mean, std = 0.0, 1.0
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    return Data(
        name=cfg.name,
        train=Split(train_x.to(device), train_y.to(device)),
        test=Split(test_x.to(device), test_y.to(device)),
        inputs=InputSpec(train_x.shape[1], train_x.shape[2], train_x.shape[3], num_classes),
        mean=mean,
        std=std,
        source=str(root),
    )


def shuffled_batches(n: int, batch_size: int, generator: torch.Generator, device: torch.device) -> list[Tensor]:
    """One epoch's batches of indices from a seeded permutation. A trailing batch of a single image is
    dropped: BatchNorm cannot train on it, and one image is no gradient estimate for the others either."""
    perm = torch.randperm(n, generator=generator).to(device)
    batches = list(perm.split(batch_size))
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches.pop()
    return batches
