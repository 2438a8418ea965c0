"""How stage 10 pads a model that reads unpadded audio: batches sorted by length and padded to
their longest (the old way: short utterances get no silence after them), each utterance with a
silence tail and whole-second lengths batched only with its own length (stage 10 now,
--silence_tail), against 30-s padding (faster-whisper's way). The model's CTranslate2 export,
beam 5, batches of 8; CER % after the scoring normalizer, seconds of decoding.

  .venv/bin/python bench/silence_tail_ablation.py \\
      --exp egs2/mini_multi/asr1/sweep/full/exp/asr_lora_lr0.001_seed1 \\
      --sets egs2/mini_multi/asr1/sweep/full/dump/raw/test_real [--ways sorted,tail1,padded]
"""

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from decode_bench import cer, read_set  # noqa: E402

# way: (pad to 30 s, silence tail in seconds or None: batch padding only)
WAYS = {"sorted": (False, None), "tail0.5": (False, 0.5), "tail1": (False, 1.0),
        "tail2": (False, 2.0), "padded": (True, None)}


def decode(transcriber, utts, tail):
    lengths = {i: len(a) for i, (_, a, _, _) in enumerate(utts)}
    if tail is not None:  # whole seconds after the tail; a batch holds one length
        lengths = {i: math.ceil(n / 16000 + tail) * 16000 for i, n in lengths.items()}
    order = sorted(lengths, key=lambda i: (lengths[i], len(utts[i][1])))
    hyps, batch = [None] * len(utts), []

    def flush():
        out = transcriber([np.pad(utts[i][1], (0, lengths[i] - len(utts[i][1]))) for i in batch],
                          [utts[i][2] for i in batch])
        for i, result in zip(batch, out):
            hyps[i] = result[0]
        batch.clear()

    for i in order:
        if batch and (len(batch) == 8 or tail is not None and lengths[i] != lengths[batch[0]]):
            flush()
        batch.append(i)
    flush()
    return hyps


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp", type=Path, required=True, help="an experiment with export/ct2")
    parser.add_argument("--sets", required=True, help="comma-separated formatted data dirs")
    parser.add_argument("--ways", default="sorted,tail1,padded",
                        help=f"comma-separated: {', '.join(WAYS)}")
    args = parser.parse_args()
    from espnet_lalora.ct2_transcriber import CT2Options, CT2Transcriber

    models = {pad: CT2Transcriber(args.exp / "export/ct2", CT2Options(pad_to_30s=pad))
              for pad in {WAYS[w][0] for w in args.ways.split(",")}}
    print("| set | way | CER % | seconds |\n| --- | --- | --- | --- |")
    for data in args.sets.split(","):
        utts = read_set(Path(data))
        for way in args.ways.split(","):
            pad, tail = WAYS[way]
            start = time.monotonic()
            hyps = decode(models[pad], utts, tail)
            print(f"| {Path(data).name} | {way} | "
                  f"{cer([u[3] for u in utts], hyps, [u[2] for u in utts]):.1f} | "
                  f"{time.monotonic() - start:.0f} |", flush=True)


if __name__ == "__main__":
    main()
