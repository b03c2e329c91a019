"""Object detection quality of the instances found in the region graph (SGDet), computed by
pycocotools' ``COCOeval`` (bbox and segm AP, AP50, AR@100, and the class-agnostic segm AP
and recall at IoU 0.5), as a torchmetrics ``Metric`` whose masks travel as RLE bytes in
list states that DDP gathers."""

from __future__ import annotations

import contextlib
import io
import logging

import numpy as np
import torch
from torchmetrics import Metric

log = logging.getLogger(__name__)


def encode_masks(masks: torch.Tensor) -> list[dict]:
    """COCO RLEs of bool masks ``[M, H, W]`` (pycocotools' encoder)."""
    from pycocotools import mask as mask_utils

    array = np.asfortranarray(masks.permute(1, 2, 0).cpu().numpy().astype(np.uint8))
    return mask_utils.encode(array) if masks.size(0) else []


class DetectionEval(Metric):
    """Detection quality of the instances found in ``sgdet``, by pycocotools' ``COCOeval``.

    ``update(image_ids, pred_masks, pred_labels, pred_scores, pred_batch, gt_masks,
    gt_labels, gt_batch)`` takes bool masks at the working resolution; they are kept as COCO
    RLEs (bytes) in list states, which DDP gathers; images seen twice (a distributed
    sampler's padding) count once. ``compute()`` returns ``segm_AP``, ``segm_AP50``,
    ``segm_AR100``, ``bbox_AP``, ``bbox_AP50``, ``bbox_AR100``, and class-agnostic
    ``segm_AP50_agnostic`` and ``obj_recall50`` (share of annotated objects with an instance
    of mask IoU >= 0.5, COCOeval's recall at 100 detections).
    """

    full_state_update = False
    FIELDS = ("image", "label", "score", "height", "width", "rle", "rle_len")

    def __init__(self, num_categories: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_categories = num_categories
        for side in ("dt", "gt"):
            for f in self.FIELDS:
                self.add_state(f"{side}_{f}", [], dist_reduce_fx="cat")

    def _add(self, side: str, image_ids, masks, labels, scores, batch) -> None:
        rles = encode_masks(masks)
        counts = [r["counts"] for r in rles]
        device = labels.device
        h, w = masks.shape[1:]
        n = masks.size(0)
        values = {
            "image": image_ids[batch].long(),
            "label": labels.long(),
            "score": scores.float(),
            "height": torch.full((n,), h, dtype=torch.long, device=device),
            "width": torch.full((n,), w, dtype=torch.long, device=device),
            "rle": torch.frombuffer(bytearray(b"".join(counts)), dtype=torch.uint8).to(device)
            if counts
            else torch.zeros(0, dtype=torch.uint8, device=device),
            "rle_len": torch.tensor([len(c) for c in counts], dtype=torch.long, device=device),
        }
        for f, v in values.items():
            getattr(self, f"{side}_{f}").append(v)

    def update(
        self,
        image_ids,
        pred_masks,
        pred_labels,
        pred_scores,
        pred_batch,
        gt_masks,
        gt_labels,
        gt_batch,
    ) -> None:
        self._add("dt", image_ids, pred_masks, pred_labels, pred_scores, pred_batch)
        ones = torch.ones(gt_labels.numel(), device=gt_labels.device)
        self._add("gt", image_ids, gt_masks, gt_labels, ones, gt_batch)

    def _records(self, side: str) -> list[dict]:
        def cat(f):
            value = getattr(self, f"{side}_{f}")
            if isinstance(value, list):
                value = torch.cat(value) if value else torch.zeros(0)
            return value.cpu()

        v = {f: cat(f) for f in self.FIELDS}
        raw = bytes(v["rle"].to(torch.uint8).numpy())
        ends = np.cumsum(v["rle_len"].numpy())
        records = []
        for i, end in enumerate(ends):
            start = end - int(v["rle_len"][i])
            records.append(
                {
                    "image_id": int(v["image"][i]),
                    "category_id": int(v["label"][i]) + 1,
                    "score": float(v["score"][i]),
                    "segmentation": {
                        "size": [int(v["height"][i]), int(v["width"][i])],
                        "counts": raw[start:end],
                    },
                }
            )
        return records

    def compute(self) -> dict[str, torch.Tensor]:
        gt, dt = self._records("gt"), self._records("dt")
        return {
            k: torch.tensor(v)
            for k, v in coco_detection_metrics(gt, dt, self.num_categories).items()
        }


def coco_detection_metrics(gt: list[dict], dt: list[dict], num_categories: int) -> dict[str, float]:
    """COCOeval's bbox and segm AP, AP50, AR@100, and class-agnostic segm AP50 and recall
    at IoU 0.5, of detections ``dt`` against ground truth ``gt`` (records with
    ``image_id``, ``category_id``, ``segmentation`` as RLE, and for ``dt`` a ``score``).
    Boxes are the masks' tight boxes. An image listed twice counts once."""
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    names = (
        "segm_AP",
        "segm_AP50",
        "segm_AR100",
        "bbox_AP",
        "bbox_AP50",
        "bbox_AR100",
        "segm_AP50_agnostic",
        "obj_recall50",
    )
    images = {}
    for r in gt + dt:
        images.setdefault(r["image_id"], r["segmentation"]["size"])
    if not gt:
        return dict.fromkeys(names, float("nan"))

    def dedupe(records: list[dict]) -> list[dict]:
        seen, out = set(), []
        for r in records:  # a record repeated verbatim (same image evaluated twice) counts once
            key = (r["image_id"], r["category_id"], r["score"], r["segmentation"]["counts"])
            if key not in seen:
                seen.add(key)
                out.append(r)
        return out

    gt, dt = dedupe(gt), dedupe(dt)
    anns = []
    for i, r in enumerate(gt, 1):
        rle = r["segmentation"]
        anns.append(
            {
                **r,
                "id": i,
                "iscrowd": 0,
                "area": float(mask_utils.area(rle)),
                "bbox": mask_utils.toBbox(rle).tolist(),
            }
        )
    dataset = {
        "images": [{"id": k, "height": s[0], "width": s[1]} for k, s in images.items()],
        "annotations": anns,
        "categories": [{"id": c + 1, "name": str(c)} for c in range(num_categories)],
    }
    results = [{**r, "bbox": mask_utils.toBbox(r["segmentation"]).tolist()} for r in dt]
    values = {}
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        coco = COCO()
        coco.dataset = dataset
        coco.createIndex()
        detections = coco.loadRes(results) if results else None
        for iou_type in ("segm", "bbox"):
            if detections is None:
                values.update(
                    {f"{iou_type}_AP": 0.0, f"{iou_type}_AP50": 0.0, f"{iou_type}_AR100": 0.0}
                )
                continue
            ev = COCOeval(coco, detections, iou_type)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
            values[f"{iou_type}_AP"] = ev.stats[0]
            values[f"{iou_type}_AP50"] = ev.stats[1]
            values[f"{iou_type}_AR100"] = ev.stats[8]
        if detections is None:
            values["segm_AP50_agnostic"] = values["obj_recall50"] = 0.0
        else:
            ev = COCOeval(coco, detections, "segm")
            ev.params.useCats = 0
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
            values["segm_AP50_agnostic"] = ev.stats[1]
            # recall [T, K, A, M]: IoU 0.5, the one (merged) category, all areas, 100 detections
            values["obj_recall50"] = float(ev.eval["recall"][0, 0, 0, -1])
    log.debug("COCOeval:\n%s", printed.getvalue())
    return {k: float(max(values[k], 0.0)) for k in names}
