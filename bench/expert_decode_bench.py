"""Routed decoding of language experts against one merged model: the cost of per-row experts.

Both run the same test set in the same mixed-language batches (sorted by length, as stage 10
batches them): the expert bundle routed by each utterance's language (``--route utt2lang``:
every adapted Linear adds its row's own low-rank update) and one merged model (the uniform
fusion: plain weights, zero overhead). A merged model decodes other tokens than the routed
experts, so a free-running comparison would time different work. Both therefore run the same
work: the encoder on every utterance, then the decoder step by step (key/value caches, one token
per step and row, as greedy decoding runs) over the tokens that the routed experts decoded
(teacher-forced). The two are interleaved batch by batch, ``--repeats`` times; the table reports
the median of the per-repetition totals.

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

    eot = routed.whisper_tokenizer.eot
    decoded = {}  # the routed experts' tokens (beam search, untimed): the work both repeat
    for batch in batches:
        routes = [languages.index(langs[u]) for u in batch]
        encoded = [routed.encode(audio[u], r) for u, r in zip(batch, routes)]
        results = routed(encoded, [routed.prompt(langs[u]) for u in batch], options, routes)
        decoded.update({u: r.tokens for u, r in zip(batch, results)})

    @torch.no_grad()
    def run(transcriber, batch):
        """(encoder seconds, decoder seconds) of one batch, teacher-forced on ``decoded``."""
        routes = [languages.index(langs[u]) for u in batch]
        start = time.perf_counter()
        if transcriber is routed:
            encoded = [transcriber.encode(audio[u], r) for u, r in zip(batch, routes)]
            transcriber._route(routes)
        else:
            encoded = [transcriber.encode(audio[u]) for u in batch]
        encoder_done = time.perf_counter()
        lengths = torch.tensor([e.shape[0] for e in encoded])
        padded = torch.nn.utils.rnn.pad_sequence(encoded, batch_first=True)
        mask = torch.arange(padded.shape[1])[None] < lengths[:, None]
        decoder = transcriber.decoder
        cross = decoder.cross_kv(padded)
        prompts = torch.tensor([transcriber.prompt(langs[u]) for u in batch])
        longest = max(len(decoded[u]) for u in batch) + 1
        forced = torch.tensor([decoded[u] + [eot] * (longest - len(decoded[u])) for u in batch])
        _, cache = decoder.step(prompts, 0, None, cross, 1, mask)
        for t in range(longest - 1):
            _, cache = decoder.step(forced[:, t:t + 1], prompts.shape[1] + t, cache, cross, 1,
                                    mask)
        end = time.perf_counter()
        return encoder_done - start, end - encoder_done

    run(routed, batches[0]), run(merged, batches[0])  # warm-up
    totals = {name: {"encoder": [], "decoder": []} for name in ("routed", "merged")}
    for rep in range(args.repeats):
        spent = {name: [0.0, 0.0] for name in totals}
        for i, batch in enumerate(batches):
            pair = [("routed", routed), ("merged", merged)]
            for name, transcriber in (pair if (i + rep) % 2 == 0 else pair[::-1]):
                enc, dec = run(transcriber, batch)
                spent[name][0] += enc
                spent[name][1] += dec
        for name, (enc, dec) in spent.items():
            totals[name]["encoder"].append(enc)
            totals[name]["decoder"].append(dec)
        print(f"repetition {rep + 1}/{args.repeats}: routed {sum(spent['routed']):.1f} s, "
              f"merged {sum(spent['merged']):.1f} s", file=sys.stderr)

    def median(name, part=None):
        parts = ("encoder", "decoder") if part is None else (part,)
        return statistics.median(sum(totals[name][p][k] for p in parts)
                                 for k in range(args.repeats))
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores, {args.threads} threads; "
          f"torch {torch.__version__}")
    steps = sum(len(t) + 1 for t in decoded.values())
    print(f"test set: {len(order)} utterances ({seconds:.0f} s of audio), {len(batches)} batches "
          f"of {args.batch_size} ({mixed} mixing languages); decoder teacher-forced on the routed "
          f"experts' tokens (beam {args.beam_size} decode, {steps} tokens); {args.repeats} "
          "interleaved repetitions, medians")
    print()
    print("| decoding | encoder (s) | decoder (s) | total (s) | RTF | vs merged |")
    print("|---|---|---|---|---|---|")
    for name, label in (("merged", "one merged model (plain weights)"),
                        ("routed", f"routed experts, per-row updates ({len(languages)} experts)")):
        total = median(name)
        print(f"| {label} | {median(name, 'encoder'):.2f} | {median(name, 'decoder'):.2f} | "
              f"{total:.2f} | {total / seconds:.3f} | {total / median('merged'):.2f}x |")


if __name__ == "__main__":
    main()
