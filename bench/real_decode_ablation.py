"""Why stage 10 loses to faster-whisper on real speech: the same weights decoded several ways on a
data dir (mini_multi's test_real: the English and Spanish Asterisk prompts), CER with its
substitutions, deletions and insertions (sclite, after the scoring normalizer), one row per way.

  cd egs2/mini_multi/asr1    # after a run (./run.sh): its dump/ and exp/
  ../../../.venv/bin/python ../../../bench/real_decode_ablation.py --data dump/raw/test_real \
      --exp exp/asr_zero_shot_whisper_base
  ../../../.venv/bin/python ../../../bench/real_decode_ablation.py --data dump/raw/test_real \
      --exp exp/asr_train_lora

--exp: a fine-tuned experiment (its export/merged for this project's decoder and export/ct2 for
faster-whisper: the same weights), or the zero-shot one (its config.yaml, and Whisper base's
CTranslate2 folder). The ways (--ways, comma-separated):

  ours_unpadded_beam   this project, unpadded input, beam 5, Whisper's ranking (conf/decode.yaml)
  ours_unpadded_greedy ... greedy
  ours_padded_beam     this project, input padded to 30 s as Whisper was trained (longer
                       utterances read in 30-s windows), beam 5, length cap 0.5 x 1500 frames
                       (that is the 444 tokens of the context)
  ours_padded_greedy   ... greedy
  ours_padded_trimmed  ... beam 5, but an utterance cut at 30 s and a 150-token cap (maxlenratio
                       0.1: run.sh's zero-shot decoding until 2026-12-07)
  ours_padded_espnet   ... beam 5, ESPnet's ranking (summed log-probability)
  ours_padded_filters  ... beam 5, Whisper's ranking, its token filters (SuppressBlank,
                       SuppressTokens) and its length cap (the 448-token context)
  fw_beam              faster-whisper, beam 5, temperature 0, no timestamps, no fallback
  fw_greedy            ... greedy
  ct2_beam             stage 10's --backend ct2 (batched; token for token fw_beam)
  ct2_unpadded         ... each utterance at its own length (--do_pad_trim false), as trained
  ct2_fallback         ... with Whisper's temperature fallback (0, 0.2, ..., 1.0)

Every way decodes the utterances one batch after another (batch 8); the order of the ways is
interleaved per batch so that a slow minute of the machine hits them alike, and the seconds are
each way's total.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from espnet_lalora.datadir import read_map  # noqa: E402
from espnet_lalora.scoring import parse_result, run_sclite, write_trn  # noqa: E402
from espnet_lalora.text_norm import characters  # noqa: E402

WAYS = ["ours_unpadded_beam", "ours_unpadded_greedy", "ours_padded_beam", "ours_padded_greedy",
        "ours_padded_trimmed", "ours_padded_espnet", "ours_padded_filters", "fw_beam", "fw_greedy",
        "ct2_beam", "ct2_unpadded", "ct2_fallback"]


def ours(model_config, model_file):
    """{way: decode(batch of (audio, lang)) -> texts} for this project's decoder."""
    from espnet_lalora.decoding import DecodeOptions
    from espnet_lalora.transcriber import WhisperTranscriber, load_model, windows

    transcriber = WhisperTranscriber(load_model(model_config, model_file, "cpu"))
    encoder = transcriber.model.encoder

    def way(padded, trim=False, **options):
        """trim: a padded utterance longer than 30 s is cut there (stage 10 before 2026-12-07)
        instead of read in 30-s windows."""
        options = DecodeOptions(**options)

        def decode(batch):
            encoder.do_pad_trim = padded
            pieces = [(n, p) for n, (audio, _) in enumerate(batch)
                      for p in (windows(audio, padded) if not trim else [audio])]
            encoded = [transcriber.encode(p) for _, p in pieces]
            prompts = [transcriber.prompt(batch[n][1]) for n, _ in pieces]
            texts = [transcriber.to_text(r)[0] for r in transcriber(encoded, prompts, options)]
            return [" ".join(t.strip() for (n, _), t in zip(pieces, texts) if n == i)
                    for i in range(len(batch))]
        return decode

    return {"ours_unpadded_beam": way(False, beam_size=5, ranking="whisper", maxlenratio=0.5),
            "ours_unpadded_greedy": way(False, beam_size=1, maxlenratio=0.5),
            "ours_padded_beam": way(True, beam_size=5, ranking="whisper", maxlenratio=0.5),
            "ours_padded_greedy": way(True, beam_size=1, maxlenratio=0.5),
            "ours_padded_trimmed": way(True, trim=True, beam_size=5, ranking="whisper",
                                       maxlenratio=0.1),
            "ours_padded_espnet": way(True, beam_size=5, ranking="espnet", maxlenratio=0.5),
            "ours_padded_filters": way(True, beam_size=5, ranking="whisper", maxlenratio=0.5,
                                       whisper_filters=True)}


def ct2_backend(ct2_dir, ways):
    """{way: decode} for stage 10's CTranslate2 backend, a model loaded for each way asked."""
    from espnet_lalora.ct2_transcriber import CT2Options, CT2Transcriber

    options = {"ct2_beam": {}, "ct2_unpadded": {"pad_to_30s": False},
               "ct2_fallback": {"temperatures": (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)}}

    def way(**chosen):
        transcriber = CT2Transcriber(ct2_dir, CT2Options(**chosen))
        return lambda batch: [t[0] for t in transcriber([a for a, _ in batch],
                                                        [lang for _, lang in batch])]

    return {w: way(**options[w]) for w in ways if w in options}


def faster_whisper(ct2_dir):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from faster_whisper import WhisperModel

    model = WhisperModel(str(ct2_dir), device="cpu", compute_type="float32", cpu_threads=2)

    def way(beam):
        def decode(batch):
            out = []
            for audio, lang in batch:
                segments, _ = model.transcribe(audio, language=lang, beam_size=beam,
                                               temperature=0.0, without_timestamps=True,
                                               condition_on_previous_text=False)
                out.append(" ".join(s.text.strip() for s in segments))
            return out
        return decode

    return {"fw_beam": way(5), "fw_greedy": way(1)}


def score(refs, hyps, langs):
    """sclite counts of characters after the scoring normalizer."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_trn(tmp / "ref.trn", {u: characters(t, langs[u]) for u, t in refs.items()})
        write_trn(tmp / "hyp.trn", {u: characters(hyps.get(u, ""), langs[u]) for u in refs})
        run_sclite(tmp / "ref.trn", tmp / "hyp.trn", tmp / "result.txt")
        return parse_result(tmp / "result.txt")["count"]


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="a data dir (wav.scp, text, "
                        "utt2lang) of 16 kHz audio, e.g. dump/raw/test_real")
    parser.add_argument("--exp", type=Path, required=True, help="an experiment: trained "
                        "(export/merged and export/ct2) or zero-shot (config.yaml)")
    parser.add_argument("--ways", default=",".join(WAYS))
    parser.add_argument("--per_lang", type=int, default=0, help="the first N utterances of "
                        "each language (0: all)")
    parser.add_argument("--batch_size", type=int, default=8)
    args = parser.parse_args()
    import soundfile
    import torch

    torch.set_num_threads(2)
    ways = [w for w in args.ways.split(",") if w]
    for w in ways:
        if w not in WAYS:
            sys.exit(f"error: --ways: unknown way {w!r}; choose from {','.join(WAYS)}")
    refs, langs = read_map(args.data / "text"), read_map(args.data / "utt2lang")
    wavs = read_map(args.data / "wav.scp")
    keys = sorted(refs)
    if args.per_lang:
        keys = [k for lang in sorted(set(langs.values()))
                for k in [k for k in keys if langs[k] == lang][:args.per_lang]]
    merged = args.exp / "export" / "merged"
    if (merged / "model.pth").is_file():
        config, model_file = merged / "config.yaml", merged / "model.pth"
        ct2 = args.exp / "export" / "ct2"
    elif (args.exp / "config.yaml").is_file():  # zero-shot: the config names the weights
        from espnet_lalora.whisper_weights import ct2_model_dir

        config, model_file, ct2 = args.exp / "config.yaml", None, ct2_model_dir("base")
    else:
        sys.exit(f"error: --exp {args.exp}: neither export/merged/model.pth (a trained "
                 f"experiment after stage 9) nor config.yaml (the zero-shot one after stage 10)")
    decoders = {}
    if any(w.startswith("ours") for w in ways):
        decoders.update(ours(config, model_file))
    if any(w.startswith("fw") for w in ways):
        decoders.update(faster_whisper(ct2))
    if any(w.startswith("ct2") for w in ways):
        decoders.update(ct2_backend(ct2, ways))
    hyps = {w: {} for w in ways}
    seconds = dict.fromkeys(ways, 0.0)
    audio = {k: soundfile.read(wavs[k], dtype="float32")[0] for k in keys}
    started = time.monotonic()
    for start in range(0, len(keys), args.batch_size):
        batch = keys[start:start + args.batch_size]
        for w in ways:
            t0 = time.monotonic()
            texts = decoders[w]([(audio[k], langs[k]) for k in batch])
            seconds[w] += time.monotonic() - t0
            hyps[w].update(zip(batch, texts))
        done = start + len(batch)
        eta = (time.monotonic() - started) / done * (len(keys) - done)
        print(f"[ablation] {done}/{len(keys)} utterances, ETA {eta / 60:.1f} min",
              file=sys.stderr, flush=True)
    total_audio = sum(len(a) for a in audio.values()) / 16000
    print(f"\n{len(keys)} utterances ({total_audio / 60:.1f} min of audio) of {args.data}; "
          f"model: {args.exp}; CER % after the scoring normalizer, "
          f"per language and all, with all's substitutions / deletions / insertions; RTF: "
          f"decoding seconds / audio seconds (2 threads).\n")
    lang_list = sorted({langs[k] for k in keys})
    print("| way | " + " | ".join(f"CER {l}" for l in lang_list)
          + " | CER | sub | del | ins | RTF |")
    print("|---|" + "---|" * (len(lang_list) + 5))
    for w in ways:
        cells = []
        for lang in lang_list:
            sub = [k for k in keys if langs[k] == lang]
            c = score({k: refs[k] for k in sub}, hyps[w], langs)
            cells.append(f"{100 * c['Err'] / max(1, c['Corr'] + c['Sub'] + c['Del']):.1f}")
        c = score({k: refs[k] for k in keys}, hyps[w], langs)
        n = max(1, c["Corr"] + c["Sub"] + c["Del"])
        print(f"| {w} | " + " | ".join(cells) + f" | {100 * c['Err'] / n:.1f} | "
              f"{100 * c['Sub'] / n:.1f} | {100 * c['Del'] / n:.1f} | {100 * c['Ins'] / n:.1f} | "
              f"{seconds[w] / total_audio:.2f} |")


if __name__ == "__main__":
    main()
