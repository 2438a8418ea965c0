"""The report's plot: CER against trainable parameters, greedy decoding, per training size."""

from pathlib import Path

import numpy as np

from espnet_lalora.significance import cer_interval, run_cers
from sweep_stats import matrix

MARKERS = (("full", "o", "C0", "blue circles"), ("low", "s", "C3", "red squares"))


def panel(ax, profile, tables, test):
    """One test set's panel; returns zero-shot Whisper's CER (named in the title, not drawn:
    far above the others), or None."""
    zero_shot = None
    for size, marker, color, _ in MARKERS:
        if size not in tables:
            continue
        rows, order = tables[size]["rows"]["greedy"], tables[size]["order"]
        for row, pairs in rows.items():
            if ":" in row:  # another decoding of a method: same parameters
                continue
            errors, lengths, sentences = matrix(profile, pairs, test, order)
            mean = run_cers(errors, lengths).mean()
            if row == "zero_shot":
                zero_shot = mean
                continue
            low, high = cer_interval(errors, lengths, sentences)
            x = np.mean([r["trainable"] for r, _ in pairs])
            ax.errorbar(x, mean, yerr=[[max(0, mean - low)], [max(0, high - mean)]],
                        fmt=marker, capsize=3, color=color)
            ax.annotate(row + ("" if size == "full" else f" ({size})"), (x, mean),
                        textcoords="offset points", xytext=(4, 4), fontsize=8)
    return zero_shot


def plot(profile, tables, path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for ax, test in zip(axes, ["test", "ood"]):
        zero_shot = panel(ax, profile, tables, test)
        ax.set_xscale("log")
        ax.set_xlabel("trainable parameters")
        ax.set_ylabel("CER % (mean over seeds, 95% interval:\nseeds and sentences)", fontsize=9)
        ax.set_title(profile.set_names[test].replace("`", "") + (
            f" (zero-shot Whisper base: {zero_shot:.1f})" if zero_shot is not None else ""),
            fontsize=10)
        ax.grid(alpha=0.3)
    low = profile.sizes.get("low")
    fig.suptitle("Greedy decoding; blue circles: full training set"
                 + (f"; red squares: {low.legend}" if low else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
