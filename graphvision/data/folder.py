"""Image folders: ``root/{train,val}/<class>/*.{png,jpg,jpeg}``, one label per image."""

from __future__ import annotations

from pathlib import Path

from graphvision.data.images import IMAGE_SUFFIXES

FOLDER_LAYOUT = """expected image-folder layout:
    ROOT/train/<class>/*.png|jpg|jpeg   (images in nested sub-folders belong to <class>)
    ROOT/val/<class>/*.png|jpg|jpeg
(set it with data.root=ROOT)"""


def folder_classes(root: str | Path, split: str = "train") -> list[str]:
    """Sorted class names (sub-folders of ``root/split``); fails naming the path if none."""
    root = Path(root)
    split_dir = root / split
    if not split_dir.is_dir():
        raise FileNotFoundError(f"data.root={root}: missing folder {split_dir}/.\n{FOLDER_LAYOUT}")
    classes = sorted(
        p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith(".")
    )
    if not classes:
        raise FileNotFoundError(
            f"data.root={root}: {split_dir}/ has no class folders.\n{FOLDER_LAYOUT}"
        )
    return classes


def folder_images(root: str | Path, split: str, classes: list[str]) -> list[tuple[Path, int]]:
    """``(path, class index)`` of every image under ``root/split``, sorted by path. As in
    torchvision's ``ImageFolder``, an image in a nested sub-folder belongs to its top-level
    class folder; hidden files and folders (``.name``) are left out.

    Raises:
        ValueError: a class folder of ``split`` is not among ``classes`` (the training classes).
        FileNotFoundError: a class folder holds no image (its class would have no examples),
            naming it.
    """
    split_dir = Path(root) / split
    found = folder_classes(root, split)
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise ValueError(
            f"{split_dir}: class folder(s) {unknown} do not exist in the training split; "
            f"known classes are {classes}"
        )
    items = []
    for c in found:
        images = [
            p
            for p in sorted((split_dir / c).rglob("*"))
            if p.suffix.lower() in IMAGE_SUFFIXES
            and p.is_file()
            and not any(part.startswith(".") for part in p.relative_to(split_dir).parts)
        ]
        if not images:
            raise FileNotFoundError(
                f"{split_dir / c}/: the class folder holds no images ({', '.join(IMAGE_SUFFIXES)}), "
                f"so class {c!r} would have no examples: add images or remove the folder.\n{FOLDER_LAYOUT}"
            )
        items += [(p, classes.index(c)) for p in images]
    return items
