"""Holding out a validation split, and recording it so that it is never derived again.

`hold_out(labels, val, seed, classes)` holds out a stratified split of the classes that can give
an image (scikit-learn's train_test_split, fixed by the seed): every such class keeps its share in
both parts; a class with a single image cannot give one away and stays in training, named in
`messages` (it used to make the whole split unstratified without a word).

A run records its split (`SplitRecord`, written to RUN_DIR/split.json: the rule, every item of
both parts by relative path or index, per-class counts, a fingerprint of the data). `resnets eval
RUN` and `--resume` read the split back from that record (`apply_record`) instead of recomputing
it, and refuse, naming how many files were added and removed, when the data no longer matches
(unless told to accept the change).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from resnets.atomic import write_json
from resnets.errors import DataError
from resnets.text import shorten

SPLIT_FILE = "split.json"
RULE = "stratified (scikit-learn train_test_split, random_state = split seed); classes of one image stay in training"


def check_val_split(val: float | int | None) -> None:
    """--val-split must be a fraction in (0, 1), a whole number of images, or 0 (hold nothing out).

    Raises DataError in our words (never scikit-learn's)."""
    if val is None or val == 0:
        return
    if isinstance(val, bool) or val < 0 or (val >= 1 and not float(val).is_integer()):
        raise DataError(
            f"--val-split {val}: give a fraction between 0 and 1 (0.1 holds out 10% of the training "
            "images), a whole number of images (e.g. 500), or 0 to hold out none"
        )


@dataclass
class HeldOut:
    """The result of `hold_out`: sorted index tensors, per-class counts and what to tell the user."""

    train: torch.Tensor
    val: torch.Tensor
    per_class: dict[str, dict[str, int]]
    kept_in_training: list[str]
    messages: list[str] = field(default_factory=list)


def hold_out(
    labels: torch.Tensor, val: float | int, seed: int, classes: Sequence[str], *, legacy: bool = False
) -> HeldOut:
    """A fixed, stratified train/val split of `labels` (N,): `val` is a fraction (< 1) or a count.

    The classes of two or more images are split by scikit-learn's stratified train_test_split
    (`random_state=seed`; a fraction holds out ceil(val x their images)), so every one keeps its
    share in both parts; classes of one image are kept whole in training (named in `messages`).
    `legacy=True` repeats what versions before the split was recorded did for such data (one tiny
    class made the whole split unstratified): only to re-derive an old run's split.

    Raises DataError, in our words, when `val` is not a valid split, holds out nothing, holds out
    fewer images than there are classes to stratify, or leaves a class no training image.
    """
    from sklearn.model_selection import train_test_split

    check_val_split(val)
    n = int(labels.shape[0])
    counts = torch.bincount(labels, minlength=len(classes)).tolist()
    splittable = [c for c, k in enumerate(counts) if k >= 2]
    small = [classes[c] for c, k in enumerate(counts) if k == 1]
    if legacy and small:
        splittable, small = [c for c, k in enumerate(counts) if k], []
    keep = torch.isin(labels, torch.as_tensor(splittable, dtype=torch.int64))
    index = torch.nonzero(keep).flatten()
    pool, groups = len(index), len(splittable)
    size = float(val) if val < 1 else int(val)
    total = math.ceil(size * pool - 1e-9) if isinstance(size, float) else size
    if not splittable:
        raise DataError(f"--val-split {val}: no class has two images, so none can give one to validation")
    stratify = labels[index].numpy() if not (legacy and min(counts[c] for c in splittable) < 2) else None
    if total < 1:
        raise DataError(f"--val-split {val} holds out no image of {pool}; give a larger fraction or a count")
    if total > pool - 1 or (stratify is not None and pool - total < groups):
        raise DataError(
            f"--val-split {val} holds out {total} of {n} images; at most {pool - groups} can be held out "
            "while every class keeps a training image"
        )
    if stratify is not None and total < groups:
        raise DataError(
            f"--val-split {val} holds out {total} image(s), fewer than the {groups} classes a stratified "
            f"split gives one each; hold out at least {groups}"
        )
    _, held = train_test_split(index.numpy(), test_size=size, stratify=stratify, random_state=seed)
    val_index = torch.as_tensor(sorted(held.tolist()), dtype=torch.int64)
    in_train = torch.ones(n, dtype=torch.bool)
    in_train[val_index] = False
    train_index = torch.nonzero(in_train).flatten()
    messages = []
    if small:
        messages.append(
            f"class(es) {shorten([repr(c) for c in small], 5)} have one image each, too few to hold one "
            "out for validation: "
            "kept in training, not validated"
        )
    per_class = per_class_counts(labels, classes, train_index.tolist(), val_index.tolist())
    return HeldOut(train_index, val_index, per_class, small, messages)


# --- the record -----------------------------------------------------------------------------------


@dataclass
class SplitRecord:
    """What a run's data was: `kind` "files" (paths relative to `root`, posix) or "indices" (into
    the dataset's own order), the items of each part, the rule that made them, per-class counts,
    the classes kept in training, and a fingerprint (sha256) of the data itself."""

    kind: str
    rule: dict[str, Any]
    train: list[Any]
    val: list[Any]
    per_class: dict[str, dict[str, int]]
    kept_in_training: list[str]
    fingerprint: str
    root: str | None = None

    def summary(self) -> dict[str, Any]:
        """What config.json and the checkpoint keep: everything but the item lists."""
        record = asdict(self)
        del record["train"], record["val"]
        return {**record, "train_images": len(self.train), "val_images": len(self.val), "file": SPLIT_FILE}

    def write(self, run_dir: Path) -> Path:
        path = Path(run_dir) / SPLIT_FILE
        write_json(path, asdict(self))
        return path

    @classmethod
    def read(cls, run_dir: Path) -> SplitRecord | None:
        """The run's recorded split, or None for a run from before splits were recorded.

        Raises DataError for a split.json that cannot be read."""
        path = Path(run_dir) / SPLIT_FILE
        if not path.is_file():
            return None
        try:
            return cls(**json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError) as exc:
            raise DataError(f"{path}: unreadable split record ({type(exc).__name__})") from None


@dataclass(frozen=True)
class Earlier:
    """A run's earlier split, for loading its data again (a resume, `resnets eval RUN`): its
    `record` (split.json), or None for a run made before splits were recorded (then the split is
    derived again as that version did: hold_out's `legacy`); `accept_changed` goes on with data
    that changed since, instead of refusing it."""

    record: SplitRecord | None
    accept_changed: bool = False


def fingerprint(items: Sequence[str]) -> str:
    """sha256 of the sorted item names, one per line."""
    digest = hashlib.sha256()
    for item in sorted(items):
        digest.update(item.encode("utf-8") + b"\n")
    return digest.hexdigest()


def tensor_fingerprint(labels: torch.Tensor, images: torch.Tensor) -> str:
    """sha256 of in-memory data: its labels and image bytes, in order."""
    digest = hashlib.sha256()
    digest.update(labels.to(torch.int64).contiguous().numpy().tobytes())
    digest.update(images.contiguous().numpy().tobytes())
    return digest.hexdigest()


def describe_change(recorded: Sequence[str], now: Sequence[str]) -> tuple[list[str], list[str]]:
    """(added, removed) items between a recorded listing and the current one, sorted."""
    then, current = set(recorded), set(now)
    return sorted(current - then), sorted(then - current)


# --- making and re-applying a split ----------------------------------------------------------------


def split_tensors(
    labels: torch.Tensor,
    images: torch.Tensor,
    classes: Sequence[str],
    val: float | int,
    seed: int,
    *,
    earlier: Earlier | None = None,
    name: str = "the data",
) -> tuple[torch.Tensor, torch.Tensor, SplitRecord, list[str]]:
    """Hold out `val` of in-memory data (labels (N,), uint8 images (N, C, H, W)), or re-apply an
    `earlier` split when the data is the one it was made on. Returns (train index, val index,
    the record, messages).

    Raises DataError when the data differs from the recorded one, unless the earlier split
    accepts changed data, which then holds out anew."""
    recorded, accept_changed, legacy = _unpack(earlier)
    fingerprint_now = tensor_fingerprint(labels, images)
    messages: list[str] = []
    if recorded is not None:
        n = int(labels.shape[0])
        same = recorded.fingerprint == fingerprint_now
        if not same and not accept_changed:
            then = len(recorded.train) + len(recorded.val)
            raise DataError(
                f"{name} is not the data the run was made on ({then} images then, {n} now, different "
                "content); pass --accept-changed-data to hold out a new validation split anyway"
            )
        if same:
            train = torch.as_tensor(recorded.train, dtype=torch.int64)
            held = torch.as_tensor(recorded.val, dtype=torch.int64)
            return train, held, recorded, messages
        messages.append(f"{name} changed since the run was made: a new validation split was held out")
    plan = hold_out(labels, val, seed, classes, legacy=legacy)
    record = SplitRecord(
        kind="indices",
        rule={"val_split": val, "split_seed": seed, "method": RULE},
        train=plan.train.tolist(),
        val=plan.val.tolist(),
        per_class=plan.per_class,
        kept_in_training=plan.kept_in_training,
        fingerprint=fingerprint_now,
    )
    return plan.train, plan.val, record, messages + plan.messages


def split_files(
    root: Path,
    files: Sequence[str],
    labels: torch.Tensor,
    classes: Sequence[str],
    val: float | int | None,
    seed: int,
    *,
    val_files: Sequence[str] = (),
    val_labels: torch.Tensor | None = None,
    earlier: Earlier | None = None,
) -> tuple[list[int], list[int], SplitRecord, list[str]]:
    """The split of an image folder, as positions in `files + val_files` (the training folder's
    files, then those of its own val/ folder): `val` held out of `files` (stratified), or the
    val/ folder as it is when `val` is unset or 0. With an `earlier` split the items are matched
    by their path under `root`: the recorded validation files stay validation files.

    Raises DataError, naming how many files were added and removed, when the folder's files are
    not those of the record, unless the earlier split accepts changed data (then the recorded
    validation files still there stay validation files and the new ones go to training)."""
    recorded, accept_changed, legacy = _unpack(earlier)
    everything = [*files, *val_files]
    every_label = torch.cat([labels, val_labels]) if val_labels is not None else labels
    names = [Path(f).relative_to(root).as_posix() for f in everything]
    fingerprint_now = fingerprint(names)
    messages: list[str] = []
    if recorded is not None:
        added, removed = describe_change([*recorded.train, *recorded.val], names)
        if (added or removed) and not accept_changed:
            raise DataError(
                f"{root}: the folder changed since the run was made: {len(added)} file(s) added"
                + (f" ({shorten(added, 3)})" if added else "")
                + f", {len(removed)} removed"
                + (f" ({shorten(removed, 3)})" if removed else "")
                + "; the recorded validation split no longer matches (pass --accept-changed-data to keep "
                "the recorded validation files that remain and train on the rest)"
            )
        if added or removed:
            messages.append(
                f"{root}: {len(added)} file(s) added and {len(removed)} removed since the run was made; "
                "the recorded validation files that remain are validated, the rest trained on"
            )
        held_names = set(recorded.val)
        held = [i for i, n in enumerate(names) if n in held_names]
        train = [i for i, n in enumerate(names) if n not in held_names]
        record = _record_files(recorded, names, every_label, classes, train, held, fingerprint_now)
        return train, held, record, messages
    if val:
        plan = hold_out(labels, val, seed, classes, legacy=legacy)
        train, held = plan.train.tolist(), plan.val.tolist()
        rule = {"val_split": val, "split_seed": seed, "method": RULE}
        per_class, small, messages = plan.per_class, plan.kept_in_training, plan.messages
    else:
        train, held = list(range(len(files))), list(range(len(files), len(everything)))
        rule = {"val_split": val, "split_seed": seed, "method": "the dataset's own val/ folder"}
        per_class, small = per_class_counts(every_label, classes, train, held), []
    record = SplitRecord(
        kind="files",
        rule=rule,
        train=[names[i] for i in train],
        val=[names[i] for i in held],
        per_class=per_class,
        kept_in_training=small,
        fingerprint=fingerprint_now,
        root=str(root),
    )
    return train, held, record, messages


def _record_files(
    recorded: SplitRecord,
    names: list[str],
    every_label: torch.Tensor,
    classes: Sequence[str],
    train: list[int],
    held: list[int],
    fingerprint_now: str,
) -> SplitRecord:
    """The record of a re-applied split: the recorded rule, the items and counts as they are now."""
    return SplitRecord(
        kind="files",
        rule=recorded.rule,
        train=[names[i] for i in train],
        val=[names[i] for i in held],
        per_class=per_class_counts(every_label, classes, train, held),
        kept_in_training=recorded.kept_in_training,
        fingerprint=fingerprint_now,
        root=recorded.root,
    )


def per_class_counts(
    labels: torch.Tensor, classes: Sequence[str], train: Sequence[int], held: Sequence[int]
) -> dict[str, dict[str, int]]:
    """{class: {"train": n, "val": m}} for positions `train` and `held` of `labels`."""
    k = len(classes)
    index = torch.as_tensor(list(train), dtype=torch.int64)
    ours = torch.bincount(labels[index], minlength=k).tolist() if len(index) else [0] * k
    index = torch.as_tensor(list(held), dtype=torch.int64)
    theirs = torch.bincount(labels[index], minlength=k).tolist() if len(index) else [0] * k
    return {c: {"train": ours[i], "val": theirs[i]} for i, c in enumerate(classes)}


def own_split(
    train_labels: torch.Tensor,
    train_images: torch.Tensor,
    val_labels: torch.Tensor,
    val_images: torch.Tensor,
    classes: Sequence[str],
    *,
    earlier: Earlier | None = None,
    name: str = "the data",
) -> tuple[SplitRecord, list[str]]:
    """The record of in-memory data that comes split (CIFAR's training and test batches).

    Raises DataError when the data differs from the `earlier` record, unless that accepts changes."""
    recorded, accept_changed, _ = _unpack(earlier)
    labels = torch.cat([train_labels, val_labels])
    fingerprint_now = tensor_fingerprint(labels, torch.cat([train_images, val_images]))
    messages = []
    if recorded is not None and recorded.fingerprint != fingerprint_now:
        if not accept_changed:
            then, now = len(recorded.train) + len(recorded.val), int(labels.shape[0])
            raise DataError(
                f"{name} is not the data the run was made on ({then} images then, {now} now, different "
                "content); pass --accept-changed-data to evaluate on it anyway"
            )
        messages.append(f"{name} changed since the run was made")
    n = int(train_labels.shape[0])
    train, held = list(range(n)), list(range(n, int(labels.shape[0])))
    record = SplitRecord(
        kind="indices",
        rule={"val_split": None, "method": "the dataset's own test part"},
        train=train,
        val=[i - n for i in held],
        per_class=per_class_counts(labels, classes, train, held),
        kept_in_training=[],
        fingerprint=fingerprint_now,
    )
    return record, messages


def _unpack(earlier: Earlier | None) -> tuple[SplitRecord | None, bool, bool]:
    """(record, accept changed data, derive as before records) of an earlier split, or of none."""
    if earlier is None:
        return None, False, False
    return earlier.record, earlier.accept_changed, earlier.record is None
