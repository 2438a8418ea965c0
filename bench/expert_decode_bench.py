"""Routed decoding of language experts against one merged model: the cost of per-row experts.

Both decode the same test set in the same mixed-language batches (sorted by length, as stage 10
batches them), with this project's decoder and the same options: the expert bundle routed by each
utterance's language (``--route utt2lang``: every adapted Linear adds its row's own low-rank
update) and the uniformly fused export (plain weights, zero overhead). The two are interleaved
batch by batch, ``--repeats`` times; the table reports the median of the per-repetition totals.

  .venv/bin/python bench/expert_decode_bench.py \\
      --exp egs2/mini_multi/asr1/exp/asr_train_lang_experts --data egs2/mini_multi/asr1/dump/raw/test
"""

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import soundfile
import torch


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp", required=True, type=Path, help="a trained lang_experts experiment")
    parser.add_argument("--data", required=True, type=Path, help="a dump/raw test set")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--beam_size", type=int, default=1)
    parser.add_argument("--maxlenratio", type=float, default=0.5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from espnet_lalora.datadir import read_map
    from espnet_lalora.decoding import DecodeOptions
    from espnet_lalora.transcriber import WhisperTranscriber, load_model

    export = args.exp / "export"
    routed = WhisperTranscriber(load_model(export / "experts/config.yaml",
                                           export / "experts/experts.pth", "cpu"))
    merged = WhisperTranscriber(load_model(export / "merged/config.yaml",
                                           export / "merged/model.pth", "cpu"))
    languages = routed.router.languages
    wavs, langs = read_map(args.data / "wav.scp"), read_map(args.data / "utt2lang")
    audio = {u: soundfile.read(wavs[u], dtype="float32")[0] for u in wavs}
    order = sorted(wavs, key=lambda u: len(audio[u]))
    batches = [order[i:i + args.batch_size] for i in range(0, len(order), args.batch_size)]
    mixed = sum(len({langs[u] for u in b}) > 1 for b in batches)
    options = DecodeOptions(beam_size=args.beam_size, maxlenratio=args.maxlenratio)
    seconds = sum(len(a) for a in audio.values()) / 16000

    def run(transcriber, batch):
        routes = [languages.index(langs[u]) for u in batch]
        start = time.perf_counter()
        if transcriber is routed:
            encoded = [transcriber.encode(audio[u], r) for u, r in zip(batch, routes)]
            transcriber(encoded, [transcriber.prompt(langs[u]) for u in batch], options, routes)
        else:
            encoded = [transcriber.encode(audio[u]) for u in batch]
            transcriber(encoded, [transcriber.prompt(langs[u]) for u in batch], options)
        return time.perf_counter() - start

    run(routed, batches[0]), run(merged, batches[0])  # warm-up
    totals = {"routed": [], "merged": []}
    for rep in range(args.repeats):
        spent = {"routed": 0.0, "merged": 0.0}
        for i, batch in enumerate(batches):
            pair = [("routed", routed), ("merged", merged)]
            for name, transcriber in (pair if (i + rep) % 2 == 0 else pair[::-1]):
                spent[name] += run(transcriber, batch)
        for name in spent:
            totals[name].append(spent[name])
        print(f"repetition {rep + 1}/{args.repeats}: routed {spent['routed']:.1f} s, merged "
              f"{spent['merged']:.1f} s", file=sys.stderr)

    routed_t, merged_t = (statistics.median(totals[n]) for n in ("routed", "merged"))
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores, {args.threads} threads; "
          f"torch {torch.__version__}")
    print(f"test set: {len(order)} utterances ({seconds:.0f} s of audio), {len(batches)} batches "
          f"of {args.batch_size} ({mixed} mixing languages), beam {args.beam_size}, "
          f"{args.repeats} interleaved repetitions, medians")
    print()
    print("| decoding | time (s) | RTF | vs merged |")
    print("|---|---|---|---|")
    print(f"| one merged model (uniform fusion) | {merged_t:.2f} | {merged_t / seconds:.3f} | "
          f"1.00x |")
    print(f"| routed experts, per-row updates ({len(languages)} experts) | {routed_t:.2f} | "
          f"{routed_t / seconds:.3f} | {routed_t / merged_t:.2f}x |")


if __name__ == "__main__":
    main()
