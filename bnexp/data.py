"""Datasets through torchvision's classes and file formats, held as uint8 tensors on the training device.

Where the files are looked for, in order: the data root (`--data-root`, else env BNEXP_DATA, else bnexp's
own data folder in its cache), then bnexp's own data folder. Official archives (.gz, .tar.gz) are checked
against torchvision's md5 list and unpacked into bnexp's cache, never into the data root (which may be
read-only). Only when nothing is found is a download tried, into bnexp's own folder (not with BNEXP_OFFLINE).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import shutil
import socket
import tarfile
import tempfile
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision import datasets

from bnexp.config import DATASET_CLASSES, DatasetConfig
from bnexp.errors import BnexpError
from bnexp.models import InputSpec

FIX_HINT = (
    "point --data-root or BNEXP_DATA at a folder holding {layout} (e.g. --data-root ../shared/data for the "
    "MNIST family), or run once with network access"
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


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_md5(path: Path, expected: str, verify: bool) -> str:
    digest = _md5(path)
    if verify and digest != expected:
        raise BnexpError(
            f"{path}: checksum mismatch (md5 {digest}, expected {expected}): the file is truncated or corrupted; "
            "replace it with the official file (or set dataset.verify_checksums: false for your own files)"
        )
    return digest


def _unpack_atomically(target: Path, unpack) -> None:
    """Run `unpack(tmp_dir)` and move its result to `target`: a partial unpack never takes the name."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        unpack(tmp)
        os.replace(tmp / target.name, target)
    except (OSError, EOFError, zlib.error, tarfile.TarError) as e:
        raise BnexpError(f"cannot unpack into {target} ({e}): the source is truncated or corrupted") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class Source:
    """How one dataset's official files are found, checked and read through its torchvision class."""

    cls: type
    layout: str  # for messages: where the files go under the data root
    sizes: tuple[int, int]  # official train and test sizes
    inputs: InputSpec

    def present(self, root: Path) -> bool:
        """Whether `root` holds the files, looked at without reading them (the dry run's check, and the first step
        of readable_root's); files that are there in part are an error (BnexpError)."""
        raise NotImplementedError

    def readable_root(self, root: Path, verify: bool) -> Path | None:
        """A folder torchvision can read without downloading, or None if `root` has no files for it."""
        raise NotImplementedError

    def read(self, root: Path, train: bool, verify: bool) -> tuple[Tensor, Tensor]:
        """uint8 images (N, C, H, W) and int64 labels."""
        raise NotImplementedError


class IdxSource(Source):
    """MNIST and Fashion-MNIST: four IDX files, gzipped, in <root>/<Class>/raw/."""

    sizes = (60000, 10000)
    inputs = InputSpec(1, 28, 28, 10)

    def __init__(self, cls: type[datasets.MNIST]):
        self.cls = cls
        self.layout = f"{cls.__name__}/raw/ with the four official .gz files"

    def _decoded(self, raw: Path) -> bool:
        return all((raw / n.removesuffix(".gz")).is_file() for n, _ in self.cls.resources)

    def present(self, root: Path) -> bool:
        raw = root / self.cls.__name__ / "raw"
        if self._decoded(raw):
            return True
        names = [n for n, _ in self.cls.resources]
        present = [n for n in names if (raw / n).is_file()]
        if present and len(present) < len(names):
            missing = ", ".join(sorted(set(names) - set(present)))
            raise BnexpError(f"{raw}: incomplete files, missing {missing}; {FIX_HINT.format(layout=self.layout)}")
        return bool(present)

    def readable_root(self, root: Path, verify: bool) -> Path | None:
        raw = root / self.cls.__name__ / "raw"
        names = [n for n, _ in self.cls.resources]
        if not self.present(root):
            return None
        if self._decoded(raw):
            return root  # already decoded (e.g. a torchvision download folder): read in place
        digests = [_check_md5(raw / name, md5, verify) for name, md5 in self.cls.resources]
        # decoded copies are keyed by the sources' md5s, so a changed source is never served stale
        decoded = cache_dir() / "decoded" / hashlib.md5("".join(digests).encode()).hexdigest()
        for name in names:
            target = decoded / self.cls.__name__ / "raw" / name.removesuffix(".gz")
            if not target.is_file():

                def gunzip(tmp: Path, name: str = name, target: Path = target) -> None:
                    with gzip.open(raw / name, "rb") as src, (tmp / target.name).open("wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)

                _unpack_atomically(target, gunzip)
        return decoded

    def read(self, root: Path, train: bool, verify: bool) -> tuple[Tensor, Tensor]:
        ds = self.cls(root=str(root), train=train, download=False)
        return ds.data.unsqueeze(1).contiguous(), ds.targets.long()


class _UncheckedCIFAR100(datasets.CIFAR100):
    """torchvision's CIFAR-100 reader without its md5 checks (dataset.verify_checksums: false)."""

    def _check_integrity(self) -> bool:
        return True

    def _load_meta(self) -> None:
        self.meta = {**self.meta, "md5": None}  # check_integrity(path, None) only checks existence
        super()._load_meta()


class CifarSource(Source):
    """CIFAR-100: the python pickles in <root>/cifar-100-python/, or the official .tar.gz beside it."""

    cls = datasets.CIFAR100
    layout = "cifar-100-python/ (train, test, meta) or cifar-100-python.tar.gz"
    sizes = (50000, 10000)
    inputs = InputSpec(3, 32, 32, 100)

    def _unpacked(self, root: Path) -> bool:
        return all((root / self.cls.base_folder / name).is_file() for name in ("train", "test", "meta"))

    def present(self, root: Path) -> bool:
        return self._unpacked(root) or (root / self.cls.filename).is_file()

    def readable_root(self, root: Path, verify: bool) -> Path | None:
        archive = root / self.cls.filename
        if self._unpacked(root):
            return root  # torchvision's own reader checks each file's md5 when verifying
        if not self.present(root):
            return None
        digest = _check_md5(archive, self.cls.tgz_md5, verify)
        decoded = cache_dir() / "decoded" / digest
        if not (decoded / self.cls.base_folder / "meta").is_file():

            def untar(tmp: Path) -> None:
                safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # Python >= 3.10.12
                with tarfile.open(archive, "r:gz") as tar:
                    tar.extractall(tmp / decoded.name, **safe)

            _unpack_atomically(decoded, untar)
        return decoded

    def read(self, root: Path, train: bool, verify: bool) -> tuple[Tensor, Tensor]:
        cls = self.cls if verify else _UncheckedCIFAR100
        try:
            ds = cls(root=str(root), train=train, download=False)
        except RuntimeError as e:  # torchvision's "not found or corrupted" (md5 mismatch)
            raise BnexpError(
                f"{root / self.cls.base_folder}: {e}; replace the files with the official ones (or set "
                "dataset.verify_checksums: false and dataset.trust_unverified_pickles: true for your own files)"
            ) from None
        except (pickle.UnpicklingError, EOFError, TypeError, AttributeError, ImportError, IndexError) as e:
            raise BnexpError(
                f"{root / self.cls.base_folder}: the {'train' if train else 'test'} pickle is not a "
                f"CIFAR-100 file ({type(e).__name__}: {e})"
            ) from None
        images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
        return images, torch.tensor(ds.targets, dtype=torch.long)


SOURCES: dict[str, Source] = {
    "fashion_mnist": IdxSource(datasets.FashionMNIST),
    "mnist": IdxSource(datasets.MNIST),
    "cifar100": CifarSource(),
}
if {name: s.inputs.num_classes for name, s in SOURCES.items()} != DATASET_CLASSES:
    raise RuntimeError("bnexp.data.SOURCES and bnexp.config.DATASET_CLASSES must name the same datasets and classes")


def model_inputs(cfg: DatasetConfig) -> InputSpec:
    """What a model of this dataset sees, known before any file is read: the source's images, resized if asked."""
    inputs = SOURCES[cfg.name].inputs
    return replace(inputs, height=cfg.resize, width=cfg.resize) if cfg.resize else inputs


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
    inputs: InputSpec  # what the model sees (after `resize`)
    mean: list[float]  # per-channel pixel statistics in [0, 1] units used by `to_input`
    std: list[float]
    source: str  # the folder the files were read from
    resize: int | None = None

    def __post_init__(self) -> None:
        device = self.train.images.device
        shape = (1, len(self.mean), 1, 1)
        self._shift = (255.0 * torch.tensor(self.mean, device=device)).view(shape)
        self._scale = (255.0 * torch.tensor(self.std, device=device)).view(shape)

    def to_input(self, images: Tensor) -> Tensor:
        """uint8 images -> normalized float32 (resized if asked), on whatever device they are."""
        x = images.float().sub_(self._shift).div_(self._scale)
        if self.resize:
            x = F.interpolate(x, size=(self.resize, self.resize), mode="bilinear", align_corners=False)
        return x


def _no_download() -> str | None:
    """Why no download would be tried, or None."""
    return "downloads are off (BNEXP_OFFLINE is set)" if os.environ.get("BNEXP_OFFLINE") else None


def _download(source: Source, root: Path) -> str | None:
    """Try torchvision's download into bnexp's own folder; returns why it failed, or None."""
    refused = _no_download()
    if refused:
        return refused
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(20)
    try:
        source.cls(root=str(root), train=True, download=True)
        return None
    except Exception as e:  # torchvision raises RuntimeError, URLError, OSError... all mean "no data"
        return f"download failed: {type(e).__name__}: {e}"
    finally:
        socket.setdefaulttimeout(previous)


def _candidates(cli_root: str | Path | None) -> dict[Path, str]:
    """The folders where a dataset's files are looked for, in order, each as messages name it."""
    root, origin = data_root(cli_root)
    folders = {root: f"{root} ({origin})"}
    folders.setdefault(cache_dir() / "data", str(cache_dir() / "data"))
    return folders


def _not_found(cfg: DatasetConfig, cli_root: str | Path | None, failure: str) -> BnexpError:
    layout = SOURCES[cfg.name].layout
    return BnexpError(
        f"{cfg.name} not found; looked for {layout} in {'; '.join(_candidates(cli_root).values())}; "
        f"{failure}. Fix: {FIX_HINT.format(layout=layout)}"
    )


def locate(cfg: DatasetConfig, cli_root: str | Path | None = None) -> tuple[Path, Path]:
    """The folder to read `cfg.name` from (preparing decoded copies or downloading if needed), and the
    folder where its files were found (for messages and provenance)."""
    source = SOURCES[cfg.name]
    for candidate in _candidates(cli_root):
        found = source.readable_root(candidate, cfg.verify_checksums)
        if found is not None:
            return found, candidate
    own = download_folder()
    failure = _download(source, own)
    if failure is None:
        return own, own
    raise _not_found(cfg, cli_root, failure)


def check_present(cfg: DatasetConfig, cli_root: str | Path | None = None) -> Path | None:
    """What load_data would refuse before reading (with its messages), checked without reading, hashing,
    unpacking, downloading or writing anything (the dry run): the folder holding `cfg.name`'s files, or None
    where they are not there and the run would download them (into `download_folder()`). Files that are there
    but damaged are found only by the run."""
    _refuse_unverified_pickles(cfg)
    source = SOURCES[cfg.name]
    for candidate in _candidates(cli_root):
        if source.present(candidate):
            return candidate
    refused = _no_download()
    if refused:
        raise _not_found(cfg, cli_root, refused)
    return None


def download_folder() -> Path:
    """Where a run downloads a dataset that is nowhere else."""
    return cache_dir() / "data"


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


def _read_split(
    source: Source, root: Path, shown: Path, train: bool, subset: int | None, verify: bool
) -> tuple[Tensor, Tensor]:
    split = "train" if train else "test"
    try:
        images, labels = source.read(root, train, verify)
    except (AssertionError, RuntimeError, ValueError, OSError, IndexError, EOFError, KeyError) as e:
        raise BnexpError(
            f"{shown}: the {split} files in {source.layout.split(' ')[0]} are not valid ({type(e).__name__}: {e}); "
            "replace them with the official files"
        ) from None
    if images.dim() != 4 or len(images) != len(labels) or images.dtype != torch.uint8:
        raise BnexpError(
            f"{shown}: {split} images {tuple(images.shape)} and labels {tuple(labels.shape)} do not match "
            "(expected N uint8 images and N labels)"
        )
    classes = source.inputs.num_classes
    if len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < classes:
        raise BnexpError(
            f"{shown}: {split} labels range from {int(labels.min())} to {int(labels.max())}, outside the {classes} "
            f"classes of {source.layout.split(' ')[0]} (0 to {classes - 1}); replace them with the official files"
        )
    if subset is not None:
        if subset > len(labels):
            raise BnexpError(f"{split} subset of {subset} is larger than the {len(labels)} {split} images")
        idx = balanced_subset(labels, subset, classes)
        images, labels = images[idx], labels[idx]
    return images, labels


def pixel_statistics(images: Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and sample sd of uint8 images in [0, 1] units, from exact integer sums: the same
    numbers for any thread count (a float reduction's rounding depends on how it is split across threads,
    and these numbers scale every input)."""
    channels = images.shape[1]
    total, squares = torch.zeros(channels, dtype=torch.long), torch.zeros(channels, dtype=torch.long)
    for chunk in images.split(4096):  # integer sums: exact in any order; chunks bound the int64 temporaries
        pixels = chunk.transpose(0, 1).reshape(channels, -1).long().cpu()
        total += pixels.sum(1)
        squares += pixels.square().sum(1)
    n = images.numel() // channels
    total, squares = total.tolist(), squares.tolist()
    mean = [s / n / 255.0 for s in total]
    var = [(q - s * s / n) / (n - 1) / 255.0**2 for s, q in zip(total, squares, strict=True)]
    return mean, [v**0.5 for v in var]


def _refuse_unverified_pickles(cfg: DatasetConfig) -> None:
    if cfg.name == "cifar100" and not cfg.verify_checksums and not cfg.trust_unverified_pickles:
        raise BnexpError(
            "dataset.verify_checksums: false for cifar100 would unpickle files nobody checked, and "
            "unpickling can run code: set dataset.trust_unverified_pickles: true if you trust them"
        )


def load_data(cfg: DatasetConfig, device: torch.device, cli_root: str | Path | None = None) -> Data:
    """Load both splits of `cfg.name` as uint8 tensors on `device`. A decoded copy in bnexp's cache that does
    not read back (a damaged cache) is deleted and decoded again from the sources, once."""
    source = SOURCES[cfg.name]
    _refuse_unverified_pickles(cfg)
    root, shown = locate(cfg, cli_root)
    try:
        train_x, train_y = _read_split(source, root, shown, True, cfg.subset, cfg.verify_checksums)
        test_x, test_y = _read_split(source, root, shown, False, cfg.test_subset, cfg.verify_checksums)
    except BnexpError as e:
        decoded = cache_dir() / "decoded"
        if not root.resolve().is_relative_to(decoded.resolve()):
            raise
        print(f"warning: bnexp's decoded copy in {root} does not read back ({e}); decoding it again", flush=True)
        shutil.rmtree(root, ignore_errors=True)
        root, shown = locate(cfg, cli_root)
        try:
            train_x, train_y = _read_split(source, root, shown, True, cfg.subset, cfg.verify_checksums)
            test_x, test_y = _read_split(source, root, shown, False, cfg.test_subset, cfg.verify_checksums)
        except BnexpError as again:
            raise BnexpError(
                f"{again} (bnexp's decoded copy in {root} was rebuilt from {shown} and still does not "
                "read: the problem is in the source files)"
            ) from None
    channels = train_x.shape[1]
    if cfg.normalize == "standardize":
        mean, std = pixel_statistics(train_x)
    else:
        mean, std = [0.0] * channels, [1.0] * channels
    num_classes = max(int(max(train_y.max(), test_y.max())) + 1, source.inputs.num_classes)
    height, width = (cfg.resize, cfg.resize) if cfg.resize else train_x.shape[2:]
    return Data(
        name=cfg.name,
        train=Split(train_x.to(device), train_y.to(device)),
        test=Split(test_x.to(device), test_y.to(device)),
        inputs=InputSpec(channels, height, width, num_classes),
        mean=mean,
        std=std,
        source=str(shown),
        resize=cfg.resize,
    )


class DataCache:
    """Data per (dataset config, device), loaded on first use: each cell of a grid over `dataset.*` or `device`
    trains on its own data, and cells that agree share one copy."""

    def __init__(self, data_root: str | Path | None):
        self.data_root = data_root
        self._loaded: dict[tuple[DatasetConfig, str], Data] = {}

    def get(self, cfg: DatasetConfig, device: torch.device) -> Data:
        key = (cfg, str(device))
        if key not in self._loaded:
            self._loaded[key] = load_data(cfg, device, self.data_root)
        return self._loaded[key]


def data_digest(data: Data) -> str:
    """sha256 of the images and labels the runs see (both splits, before normalization): names the data in
    records without naming the machine's folders."""
    h = hashlib.sha256()
    for t in (data.train.images, data.train.labels, data.test.images, data.test.labels):
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def keep_last_batch(size: int, processes: int = 1) -> bool:
    """An epoch's trailing short batch is trained on when every process gets the same share of it, of at
    least 2 images: one image is no batch statistic, and no gradient estimate for the others either."""
    return size > 0 and size % processes == 0 and size // processes >= 2


def shuffled_batches(
    n: int, batch_size: int, generator: torch.Generator, device: torch.device, processes: int = 1
) -> list[Tensor]:
    """One epoch's global batches of indices from a seeded permutation (see keep_last_batch for the last)."""
    perm = torch.randperm(n, generator=generator).to(device)
    batches = list(perm.split(batch_size))
    if len(batches[-1]) < batch_size and not keep_last_batch(len(batches[-1]), processes):
        batches.pop()
    return batches
