"""The inputs of a batch run: a folder, an ImageFolder tree, a list file or one image, and the
bytes of each input (regular files only, at most :data:`rdex.io.MAX_INPUT_BYTES`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rdex.io import MAX_INPUT_BYTES, display_name, read_regular_file

#: File suffixes taken as images when a folder is searched.
IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
)

LabelMode = Literal["auto", "folders", "none"]


@dataclass(frozen=True)
class InputItem:
    """One input image.

    Attributes:
        path: Location of the file (absolute).
        name: Name relative to the input root (POSIX separators), used in the manifest and for the
            output file names.
        true_label: True label as given (an ImageFolder class folder or a list entry): a class name
            or an index, resolved with the model's ``label_index`` when explaining.
    """

    path: Path
    name: str
    true_label: str | None = None


def _is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def find_inputs(source: str | os.PathLike[str], *, labels: LabelMode = "auto") -> list[InputItem]:
    """The images of a folder (recursively), of a list file, or a single image file.

    A folder whose images all lie exactly one level down, in at least two sub-folders, is read as
    an ImageFolder tree: the sub-folder names are the true labels (class names or indices).
    ``labels="folders"`` forces that reading (one sub-folder suffices), ``"none"`` disables it.

    A list file has one path per line (relative paths are relative to the list's folder), blank
    lines and ``#`` comments are ignored, and a true label may follow the path after a tab.

    Args:
        source: Folder, list file (any non-image suffix) or image file.
        labels: ``"auto"``, ``"folders"`` or ``"none"`` (see above).

    Returns:
        The inputs in a stable order (sorted by name for folders, list order for lists).

    Raises:
        FileNotFoundError: ``source`` does not exist.
        ValueError: No images found, or ``labels="folders"`` on a tree that is not one.
    """
    if labels not in ("auto", "folders", "none"):
        raise ValueError(f"unknown label mode {labels!r}; choose auto, folders or none")
    root = Path(source).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"input {str(source)!r} does not exist")
    root = root.resolve()
    if root.is_file():
        if _is_image_name(root):
            return [InputItem(root, _name(root.name))]
        return _read_list(root)
    if not root.is_dir():
        raise ValueError(f"input {display_name(str(source))!r} is not a file or folder")
    files = sorted(
        p
        for p in root.rglob("*")
        if _is_image_name(p) and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    files = [p for p in files if p.is_file()]
    if not files:
        raise ValueError(
            f"no images in {str(source)!r} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    rels = [p.relative_to(root) for p in files]
    depth_two = all(len(r.parts) == 2 for r in rels)
    classes = {r.parts[0] for r in rels} if depth_two else set()
    if labels == "folders" and not depth_two:
        raise ValueError(
            f"{str(source)!r} is not an ImageFolder tree: every image must lie in a class folder "
            "directly below it"
        )
    folder_labels = labels == "folders" or (labels == "auto" and len(classes) >= 2)
    return [
        InputItem(p, _name(r.as_posix()), _name(r.parts[0]) if folder_labels else None)
        for p, r in zip(files, rels, strict=True)
    ]


def _name(text: str) -> str:
    """A file name as valid Unicode for the manifest: bytes that are not UTF-8 (surrogate escapes
    from the file system) become ``\\xNN``, so the manifest and the report stay strict UTF-8."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


#: Largest list file read (bytes): a million paths fit many times over.
MAX_LIST_BYTES = 64 * 2**20


def _read_list(list_file: Path) -> list[InputItem]:
    items = []
    try:
        text = read_regular_file(list_file, limit=MAX_LIST_BYTES).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"the list {display_name(str(list_file))!r} is not UTF-8 text: {exc}"
        ) from None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        entry, _, label = line.partition("\t")
        path = Path(entry.strip()).expanduser()
        if not path.is_absolute():
            path = list_file.parent / path
        path = Path(os.path.normpath(path))
        try:
            name = path.relative_to(list_file.parent).as_posix()
        except ValueError:
            name = path.as_posix().lstrip("/")
        items.append(InputItem(path, _name(name), label.strip() or None))
    if not items:
        raise ValueError(f"the list {str(list_file)!r} names no images")
    return items


def _read_bytes(path: Path) -> tuple[bytes | None, str | None]:
    """The bytes of an input, or why not: only regular files of at most ``MAX_INPUT_BYTES`` are
    read (a device never ends, a FIFO blocks); anything else becomes an error record."""
    try:
        return read_regular_file(path, limit=MAX_INPUT_BYTES), None
    except (OSError, ValueError) as exc:
        return None, _reason(exc)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return display_name(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)
