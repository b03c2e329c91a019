"""Predict: ``python -m graphvision.predict ckpt_path=PATH image=FILE_OR_FOLDER [annotations=COCO.json]``.

Writes, per image, ``<name>.json`` (scene labels or image classes with probabilities; each
region's top classes and the CLS token's attention to it; the region graph's size; with
``annotations``, the objects and relations) and ``<name>.png`` (the region graph coloured
by attention, and with annotations the predicted scene graph).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig
from torch_geometric.data import Batch

from graphvision.data.cache import ImageJob, build_entry, to_graph
from graphvision.data.coco import ObjectConfig, read_coco
from graphvision.data.images import IMAGE_SUFFIXES, UnreadableImageError
from graphvision.eval import load_module
from graphvision.regions import RegionConfig
from graphvision.utils import CONFIG_DIR, rank_zero_logging

log = logging.getLogger(__name__)


def list_images(path: str | Path) -> list[Path]:
    """The image itself, or the images of a folder (sorted); a clear error if none."""
    path = Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(
            p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        )
        if files:
            return files
        raise FileNotFoundError(
            f"image={path}: the folder holds no images ({', '.join(IMAGE_SUFFIXES)})"
        )
    raise FileNotFoundError(
        f"image={path} does not exist: pass an image file or a folder of images"
    )


def predict_image(
    module,
    path: Path,
    regions: RegionConfig,
    objects: ObjectConfig,
    coco: tuple | None = None,
    top_k: int = 3,
    threshold: float = 0.5,
) -> tuple[dict, object, dict]:
    """Runs the model on one image; returns the JSON record, the graph and the raw outputs."""
    info = module.hparams.info
    records, category_ids = coco or ({}, ())
    record = records.get(path.name)
    if record is not None and info["task"] == "relations":
        job = ImageJob(
            str(path),
            record.id,
            (record.width, record.height),
            tuple(record.annotations),
            tuple(category_ids),
        )
    elif info["task"] == "relations":  # no annotations: the same target fields, with no objects
        job = ImageJob(str(path), 0, category_ids=tuple(range(1, len(info["categories"]) + 1)))
    else:
        job = ImageJob(str(path), 0)
    entry = build_entry(job, regions, objects)
    graph = to_graph(entry)
    batch = Batch.from_data_list([graph], follow_batch=["obj_label", "rel_label"])
    with torch.no_grad():
        out = module.net(batch, return_attention=True)
    attention = out["attention"][-1]  # last layer, (N,)
    result = {
        "image": str(path),
        "size": list(reversed(graph.image.shape[1:])),
        "regions": graph.num_nodes,
        "edges": int(graph.edge_index.size(1)) // 2,
    }
    if info["task"] == "classification":
        probs = out["class_logits"].softmax(-1)[0]
        result["classes"] = sorted(
            ({"class": c, "probability": float(p)} for c, p in zip(info["classes"], probs)),
            key=lambda d: -d["probability"],
        )
        result["region_attention"] = [float(a) for a in attention]
        return result, graph, out
    names = info["categories"]
    probs = out["scene_logits"].sigmoid()[0]
    ranked = sorted(
        ({"category": c, "probability": float(p)} for c, p in zip(names, probs)),
        key=lambda d: -d["probability"],
    )
    result["scene"] = [d for d in ranked if d["probability"] >= threshold] or ranked[:1]
    result["scene_all"] = ranked
    region_probs = out["region_logits"].softmax(-1)  # (N, C + 1): last column is background
    labels = [*names, "background"]
    top = region_probs.topk(min(top_k, region_probs.size(1)), dim=1)
    result["region_details"] = [
        {"region": i, "centroid": [round(float(v), 4) for v in graph.pos[i]],
         "attention": float(attention[i]),
         "top_classes": [{"category": labels[int(c)], "probability": float(p)}
                         for p, c in zip(top.values[i], top.indices[i])]}
        for i in range(graph.num_nodes)
    ]  # fmt: skip
    if graph.num_objects:
        obj_p = out["object_logits"].softmax(-1)
        rel_p = out["relation_logits"].softmax(-1)
        result["objects"] = [
            {"index": m, "true": names[int(graph.obj_label[m])], "predicted": names[int(obj_p[m].argmax())],
             "probability": float(obj_p[m].max()), "box": [round(float(v), 4) for v in graph.obj_box[m]]}
            for m in range(graph.num_objects)
        ]  # fmt: skip
        rels = info["relations"]
        result["relations"] = [
            {"subject": int(s), "object": int(o), "true": rels[int(graph.rel_label[k])],
             "predicted": rels[int(rel_p[k].argmax())], "probability": float(rel_p[k].max())}
            for k, (s, o) in enumerate(graph.rel_index.T)
        ]  # fmt: skip
    return result, graph, out


def draw_prediction(result: dict, graph, out: dict, path: Path) -> None:
    """The PNG overlay: region graph coloured by attention (+ the predicted scene graph)."""
    from graphvision.viz import draw_region_graph, draw_scene_graph, file_figure

    panels = 2 if result.get("objects") else 1
    fig, axes = file_figure(1, panels, figsize=(6 * panels, 5.5))
    draw_region_graph(
        graph.image,
        graph.segments,
        graph.pos,
        graph.edge_index,
        values=out["attention"][-1],
        ax=axes[0, 0],
        cmap="magma",
        label="CLS attention (last layer)",
    )
    top = result.get("scene") or result.get("classes", [])[:3]
    axes[0, 0].set_title(
        ", ".join(f"{d.get('category', d.get('class'))} {d['probability']:.2f}" for d in top[:4]),
        fontsize=8,
    )
    if panels == 2:
        objs = result["objects"]
        draw_scene_graph(
            graph.image,
            graph.obj_box,
            [o["predicted"] for o in objs],
            graph.rel_index,
            [r["predicted"] for r in result["relations"]],
            ax=axes[0, 1],
        )
        axes[0, 1].set_title("predicted objects and relations", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def predict(cfg: DictConfig) -> list[Path]:
    module = load_module(cfg.ckpt_path)
    module.eval()
    data_cfg = module.hparams.get("data_config") or {}
    regions = RegionConfig(**(data_cfg.get("regions") or {}))
    objects = ObjectConfig(**(data_cfg.get("objects") or {}))
    images = list_images(cfg.image)
    coco = None
    if cfg.get("annotations"):
        index = read_coco(cfg.annotations, Path(images[0]).parent)
        coco = ({img.file.name: img for img in index.images}, [c["id"] for c in index.categories])
        if index.category_names != module.hparams.info["categories"]:
            raise ValueError(
                f"{cfg.annotations}: its categories differ from those {cfg.ckpt_path} predicts"
            )
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written, skipped = [], []
    for path in images:
        try:
            result, graph, out = predict_image(
                module, path, regions, objects, coco, cfg.top_k, cfg.threshold
            )
        except UnreadableImageError as err:
            if len(images) == 1:
                raise
            log.warning("skipped %s", err)
            skipped.append(str(path))
            continue
        target = out_dir / f"{path.stem}.json"
        target.write_text(json.dumps(result, indent=1) + "\n")
        draw_prediction(result, graph, out, out_dir / f"{path.stem}.png")
        written.append(target)
    if skipped:
        log.warning(
            "skipped %d of %d images that could not be read: %s", len(skipped), len(images), skipped
        )
    if not written:
        raise RuntimeError(f"no image under {cfg.image} could be read")
    return written


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="predict")
def main(cfg: DictConfig) -> None:
    rank_zero_logging()
    written = predict(cfg)
    print(f"wrote {len(written)} prediction(s) (JSON + PNG) to {Path(cfg.out_dir).resolve()}")


if __name__ == "__main__":
    main()
