"""Rename the lead a bundled single-lead model reads from a multi-lead recording; what it computes is not changed.

A single-lead model trains on single-lead recordings whatever their lead is called (a single-lead recording serves
a single-lead model, ``ecg_shared.preprocessing.select_leads``), so the name it stores decides one thing only: which
lead it reads where a recording has several. The bundled rhythm model learned from CinC 2017, recorded with
AliveCor's handheld device, whose two electrodes under the fingers of each hand give lead I; its recipe named lead
II, so it read lead II of every 12-lead recording. This writes the new name into the ONNX file's metadata (the
preprocessing's lead, and the beat features' rhythm lead) and into its card; the graph stays byte for byte. The
recipe (``bundled-model.sh``) names the new lead too, which trains the same graph: the name never reaches training.

    .venv/bin/python services/training/scripts/single_lead_name.py models/rhythm-1lead.onnx I

Why lead I: ``services/training/scripts/experiments/rhythm_lead_on_ptbxl.py`` (docs/training.md).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import onnx

from ecg_shared.formats import normalise_lead_name
from ecg_shared.model_metadata import ModelMetadata


def renamed_card(card: dict, old: str, new: str) -> dict:
    """The card with the lead's name changed where the trainer writes it: the preprocessing, the summary and the
    limitation that states the expected preprocessing (each must name the old lead, or nothing is written)."""
    card = json.loads(json.dumps(card))
    card["preprocessing"]["leads"] = [new]
    if f"ECG ({old})" not in card["summary"]:
        raise SystemExit(f"the card's summary does not name lead {old}: {card['summary']!r}")
    card["summary"] = card["summary"].replace(f"ECG ({old})", f"ECG ({new})")
    limitations = card["limitations"]
    index = next(i for i, text in enumerate(limitations) if text.startswith("Expects the preprocessing"))
    if f"leads {old}, resampled" not in limitations[index]:
        raise SystemExit(f"the card's preprocessing limitation does not name lead {old}: {limitations[index]!r}")
    limitations[index] = limitations[index].replace(f"leads {old}, resampled", f"leads {new}, resampled")
    return card


def main(model_path: Path, lead: str) -> None:
    new = normalise_lead_name(lead)
    card_path = model_path.with_name(model_path.name.removesuffix(".onnx") + ".card.json")
    model = onnx.load(str(model_path))
    props = {p.key: p.value for p in model.metadata_props}
    metadata = ModelMetadata.from_onnx_props(props)
    if len(metadata.preprocessing.leads) != 1:
        raise SystemExit(f"{model_path} reads {len(metadata.preprocessing.leads)} leads: only a single-lead model")
    (old,) = metadata.preprocessing.leads
    if old == new:
        print(f"{model_path} already reads lead {new}")
        return
    card = renamed_card(json.loads(card_path.read_text()), old, new)  # checked before anything is written
    graph = model.graph.SerializeToString()
    metadata.preprocessing = dataclasses.replace(metadata.preprocessing, leads=(new,))
    if metadata.features is not None:
        metadata.features = {**metadata.features, "rhythm_lead": new}
    props.update(metadata.to_onnx_props())
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, props)
    assert model.graph.SerializeToString() == graph
    onnx.save(model, str(model_path))
    card_path.write_text(json.dumps(card, indent=2, sort_keys=False) + "\n")
    print(f"{model_path}: reads lead {new} (was {old}); graph unchanged; {card_path.name} updated")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
