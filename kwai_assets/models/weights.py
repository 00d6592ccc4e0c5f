"""One on-disk format for every model: `weights.pt` (a state dict, loaded with weights_only) and `config.json` (what
rebuilds the module: its dataclass config and sizes). Each model module's `save` / `load` goes through here."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn


def write(model: nn.Module, folder: str | Path, meta: dict) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), folder / "weights.pt")
    (folder / "config.json").write_text(json.dumps(meta, indent=2))
    return folder


def read(folder: str | Path) -> tuple[dict, dict]:
    """(meta, state dict) of a folder `write` filled; tensors on the CPU, nothing unpickled."""
    folder = Path(folder)
    return (json.loads((folder / "config.json").read_text()),
            torch.load(folder / "weights.pt", map_location="cpu", weights_only=True))
