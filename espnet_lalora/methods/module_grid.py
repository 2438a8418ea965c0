"""Per-module values of a Whisper model (LA-LoRA's importance, S2-LoRA's and AdaLoRA's learned
ranks) drawn on one grid: module types x layers, encoder and decoder side by side. Several panels
share a figure so that patterns can be compared at a glance."""

import re
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

from espnet_lalora.fileio import atomic_path
from espnet_lalora.methods.base import AdapterConfigError

ENCODER_TYPES = ["attn.query", "attn.key", "attn.value", "attn.out", "mlp.0", "mlp.2"]
DECODER_TYPES = ENCODER_TYPES[:4] + ["cross_attn.query", "cross_attn.key", "cross_attn.value",
                                     "cross_attn.out"] + ENCODER_TYPES[4:]
_NAME = re.compile(r"^(encoder|decoder)\..*\bblocks\.(\d+)\.(.+)$")


def parse_module(name: str) -> Tuple[str, int, str]:
    """``decoder.decoders.blocks.3.cross_attn.value`` -> ("decoder", 3, "cross_attn.value")"""
    m = _NAME.match(name)
    if not m:
        raise AdapterConfigError(f"{name}: not a module of a Whisper block")
    return m.group(1), int(m.group(2)), m.group(3)


class Panel:
    """One row of a figure: ``values`` {module name: number} (missing modules blank), drawn in
    log10 when ``log``; ``boxed`` modules get a red frame (LA-LoRA's chosen set)."""

    def __init__(self, title: str, values: Dict[str, float], label: str, log: bool = False,
                 boxed: Iterable[str] = ()):
        self.title, self.values, self.label, self.log = title, values, label, log
        self.boxed = set(boxed)


def plot_panels(panels: List[Panel], path: Path, title: Optional[str] = None):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    parts = [("encoder", ENCODER_TYPES), ("decoder", DECODER_TYPES)]
    height = 4.6 * len(panels)
    fig, axes = plt.subplots(len(panels), 2, figsize=(12, height), squeeze=False,
                             gridspec_kw={"wspace": 0.45, "hspace": 0.45,
                                          "top": 1 - 0.9 / height})  # room for the titles only
    for row, panel in zip(axes, panels):
        rows = [(*parse_module(n), v) for n, v in panel.values.items()]
        shown = [np.log10(v) if panel.log else v for *_, v in rows if v > 0 or not panel.log]
        vmin, vmax = (min(shown), max(shown)) if shown else (0, 1)
        for ax, (part, types) in zip(row, parts):
            layers = sorted({layer for p, layer, _, _ in rows if p == part})
            grid = np.full((len(types), max(1, len(layers))), np.nan)
            for p, layer, kind, v in rows:
                if p == part and kind in types and not (panel.log and v <= 0):
                    grid[types.index(kind), layers.index(layer)] = np.log10(v) if panel.log else v
            im = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=vmin, vmax=vmax)
            for name in panel.boxed:
                p, layer, kind = parse_module(name)
                if p == part:
                    x, y = layers.index(layer), types.index(kind)
                    ax.add_patch(plt.Rectangle((x - 0.5, y - 0.5), 1, 1, fill=False, ec="red",
                                               lw=2.2))
            ax.set_xticks(range(len(layers)), layers)
            ax.set_yticks(range(len(types)), types)
            ax.set_xlabel("layer (block)")
            ax.set_title(f"{panel.title}: {part}" if len(panels) > 1 else part)
        fig.colorbar(im, ax=list(row), label=panel.label)
    if title or len(panels) == 1:
        fig.suptitle(title or panels[0].title, y=1 - 0.15 / height)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)


def write_rank_pattern(method: str, pattern: Dict[str, dict], out_dir: Path) -> dict:
    """A method's learned rank pattern (``Method.rank_pattern``) as ``rank_pattern.json`` and
    the heat map ``rank_pattern.png`` in ``out_dir``; returns the JSON's content."""
    import json

    rows = []
    for name, entry in pattern.items():
        part, layer, kind = parse_module(name)
        rows.append({"name": name, "part": part, "layer": layer, "type": kind, **entry})
    kept, of = sum(r["rank"] for r in rows), sum(r["of"] for r in rows)
    content = {"method": method, "kept": kept, "of": of, "modules": rows}
    with atomic_path(out_dir / "rank_pattern.json") as tmp:
        tmp.write_text(json.dumps(content, indent=1) + "\n", encoding="utf-8")
    plot_panels([Panel(f"{method}: learned rank per module ({kept} of {of} kept)",
                       {r["name"]: r["rank"] for r in rows}, "kept rank (non-zero coefficients)")],
                out_dir / "rank_pattern.png")
    return content
