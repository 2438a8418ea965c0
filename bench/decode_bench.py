"""Decoding benchmark: speed and CER of the decoders side by side, in one process, on the same
audio, interleaved.

Two cases:
- zero-shot (default): Whisper base (the installed offline weights) on short espeak-ng
  utterances in Japanese, Korean, English and Spanish made with the default recipe's
  synthesizer (other sentences than its test set: seed 7), or on ``--test``, 30-s padded as
  Whisper expects;
- fine-tuned (``--asr_exp egs2/mini_multi/asr1/exp/asr_train_lora``): that experiment's merged
  model (and its openai-whisper and CTranslate2 exports) on the recipe's test set
  (``--test dump/raw/test``): unpadded for this project's decoder, as it was trained;
  openai-whisper and faster-whisper pad every input to 30 s.

Each repetition decodes every utterance with every decoder, the decoders in a rotated order per
utterance, so that a noisy machine does not favour whichever runs first; a decoder's time is the
median over ``--reps`` repetitions of its summed per-utterance times (model loading excluded).
RTF = time / audio duration. CER: characters without spaces, after the scoring normalizer
(espnet_lalora.text_norm), against the reference transcripts.

  .venv/bin/python bench/decode_bench.py [--per_lang 5] [--reps 3] [--threads 2]
  .venv/bin/python bench/decode_bench.py --test egs2/mini_multi/asr1/dump/raw/test_real \
      --max_utts 20     # zero-shot on real speech (the Asterisk prompts)
  .venv/bin/python bench/decode_bench.py --asr_exp egs2/mini_multi/asr1/exp/asr_train_lora \\
      --test egs2/mini_multi/asr1/dump/raw/test [--max_utts 40]
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile
import torch

ROOT = Path(__file__).resolve().parents[1]
SILENCE_TAIL = 1.0  # conf/decode.yaml's silence_tail
sys.path.insert(0, str(ROOT / "bench"))
from expert_decode_bench import cpu_model  # noqa: E402


def synthesized(per_lang, workdir):
    recipe = ROOT / "egs2/mini_multi/asr1"
    subprocess.run([sys.executable, str(recipe / "local/synth_corpus.py"), "--out",
                    str(workdir / "data"), "--audio_dir", str(workdir / "wav"),
                    "--train_per_lang", "1", "--dev_per_lang", "1", "--test_per_lang",
                    str(per_lang), "--free_per_lang", "0", "--room_per_lang", "0",
                    "--engine_per_lang", "0", "--seed", "7"], check=True, capture_output=True)
    subprocess.run([sys.executable, "-m", "espnet_lalora.bin.format_data", "--data",
                    str(workdir / "data/test"), "--out", str(workdir / "test")], check=True,
                   capture_output=True)
    return workdir / "test"


def read_set(test: Path, max_utts=None):
    """[(utt, audio, lang, reference)] of a formatted (16 kHz) data dir."""
    from espnet_lalora.datadir import read_map

    wavs, langs, texts = (read_map(test / n) for n in ("wav.scp", "utt2lang", "text"))
    utts = sorted(wavs)
    if max_utts and max_utts < len(utts):  # evenly spread: every language, not the first ones
        utts = [utts[i * len(utts) // max_utts] for i in range(max_utts)]
    return [(u, soundfile.read(wavs[u], dtype="float32")[0], langs[u], texts[u]) for u in utts]


def cer(refs, hyps, langs) -> float:
    import jiwer

    from espnet_lalora.text_norm import normalize

    def chars(text, lang):
        return " ".join(normalize(text, lang).replace(" ", "")) or "-"

    return 100.0 * jiwer.cer([chars(r, l) for r, l in zip(refs, langs)],
                             [chars(h, l) for h, l in zip(hyps, langs)])


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per_lang", type=int, default=5, help="zero-shot case: utterances")
    parser.add_argument("--asr_exp", type=Path, help="fine-tuned case: an experiment with exports")
    parser.add_argument("--test", type=Path, help="fine-tuned case: a formatted test set")
    parser.add_argument("--max_utts", type=int, default=None)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", default="",
                        help="decoders to run: parts of their names, separated by ';'")
    args = parser.parse_args()
    if args.asr_exp is not None and args.test is None:
        sys.exit("error: --asr_exp needs --test (the fine-tuned case: a formatted test set)")
    torch.set_num_threads(args.threads)

    from espnet_lalora.quiet import quiet_espnet_imports

    quiet_espnet_imports()
    import ctranslate2
    import whisper
    from faster_whisper import WhisperModel

    from espnet_lalora.bin.whisper_inference import input_lengths
    from espnet_lalora.config import write_config, zero_shot_config
    from espnet_lalora.decoding import DecodeOptions
    from espnet_lalora.transcriber import WhisperTranscriber, load_model, quantize_int8
    from espnet_lalora.whisper_weights import prepare_ct2_model

    work = Path(tempfile.mkdtemp(prefix="decode_bench_"))
    fine_tuned = args.asr_exp is not None
    if fine_tuned:
        utts = read_set(args.test, args.max_utts)
        config = args.asr_exp / "export/merged/config.yaml"
        model_file = args.asr_exp / "export/merged/model.pth"
        ct2_dir = args.asr_exp / "export/ct2"
        openai_path = str(args.asr_exp / "export/whisper/model.pt")
        padded, maxlenratio = False, 0.5
    else:
        utts = read_set(args.test, args.max_utts) if args.test else read_set(
            synthesized(args.per_lang, work))
        tokens = work / "tokens.txt"
        subprocess.run([sys.executable, "-m", "espnet2.bin.whisper_export_vocabulary",
                        "--whisper_model", "whisper_multilingual", "--output", str(tokens)],
                       check=True, capture_output=True)
        config = work / "config.yaml"
        write_config(zero_shot_config(ROOT / "conf/whisper_base.yaml", tokens), config)
        model_file, ct2_dir, openai_path = None, prepare_ct2_model("base"), "base"
        padded, maxlenratio = True, 0.1
    seconds = sum(len(a) for _, a, _, _ in utts) / 16000

    openai_model = whisper.load_model(openai_path, device="cpu").float().eval()

    def as_stage10(audio):
        """stage 10's input of a model read unpadded: a second of silence, whole seconds"""
        if padded:
            return audio
        return np.pad(audio, (0, input_lengths({0: len(audio)}, SILENCE_TAIL)[0] - len(audio)))

    def openai(beam):
        def run(audio, lang):
            mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(torch.from_numpy(audio)))[None]
            return whisper.decode(openai_model, mel, whisper.DecodingOptions(
                language=lang, without_timestamps=True, fp16=False, temperature=0.0,
                beam_size=None if beam == 1 else beam))[0].text
        return run

    def ours(beam, ranking="espnet", int8=False, fused=True):
        model = load_model(config, model_file, "cpu")  # padded or not as its config says
        if int8:
            quantize_int8(model)
        t = WhisperTranscriber(model, fused_attention=fused)
        options = DecodeOptions(beam_size=beam, maxlenratio=maxlenratio, ranking=ranking,
                                whisper_filters=ranking == "whisper")
        return lambda audio, lang: t.to_text(t([t.encode(as_stage10(audio))], [t.prompt(lang)],
                                               options)[0])[0]

    def faster_whisper(beam, compute_type):
        fw = WhisperModel(str(ct2_dir), device="cpu", compute_type=compute_type,
                          cpu_threads=args.threads)

        def run(audio, lang):
            segments, _ = fw.transcribe(audio, language=lang, beam_size=beam, temperature=0.0,
                                        without_timestamps=True, condition_on_previous_text=False,
                                        vad_filter=False)
            return "".join(s.text for s in segments)
        return run

    def ct2_backend(compute_type):
        """stage 10's --backend ct2 (here one utterance per call, as every row), padded or not
        as stage 10 reads the model (as it was trained)"""
        from espnet_lalora.ct2_transcriber import CT2Options, CT2Transcriber

        t = CT2Transcriber(ct2_dir, CT2Options(compute_type=compute_type, pad_to_30s=padded))
        return lambda audio, lang: t([as_stage10(audio)], [lang])[0][0]

    pad = "30-s padded" if padded else f"unpadded, {SILENCE_TAIL:g}-s silence tail"
    decoders = {
        "openai-whisper greedy": openai(1),
        "openai-whisper beam 5": openai(5),
        f"espnet-lalora greedy ({pad})": ours(1),
        f"espnet-lalora beam 5, ESPnet ranking ({pad})": ours(5),
        f"espnet-lalora beam 5, Whisper ranking ({pad})": ours(5, "whisper"),
        f"espnet-lalora beam 5, Whisper ranking, unfused encoder attention ({pad})":
            ours(5, "whisper", fused=False),
        f"espnet-lalora beam 5, Whisper ranking, int8 ({pad})": ours(5, "whisper", int8=True),
        f"espnet-lalora greedy, int8 ({pad})": ours(1, int8=True),
        "faster-whisper beam 5, float32 (30-s padded)": faster_whisper(5, "float32"),
        "faster-whisper beam 5, int8 (30-s padded)": faster_whisper(5, "int8"),
        f"stage 10 --backend ct2, float32 ({pad})": ct2_backend("float32"),
        f"stage 10 --backend ct2, int8 ({pad})": ct2_backend("int8"),
    }
    if args.only:
        keep = [n.strip() for n in args.only.split(";") if n.strip()]
        decoders = {n: d for n, d in decoders.items() if any(k in n for k in keep)}
    names = list(decoders)
    for name in names:  # warm-up outside the timing (first-call allocations, lazy init)
        decoders[name](utts[0][1][:16000], utts[0][2])

    times = {n: [] for n in names}
    texts = {n: {} for n in names}
    for rep in range(args.reps):
        elapsed = {n: 0.0 for n in names}
        for index, (utt, audio, lang, _) in enumerate(utts):
            shift = (index + rep) % len(names)
            for name in names[shift:] + names[:shift]:
                start = time.perf_counter()
                text = decoders[name](audio, lang)
                elapsed[name] += time.perf_counter() - start
                texts[name][utt] = text
        for name in names:
            times[name].append(elapsed[name])
        print(f"repetition {rep + 1}/{args.reps} done", file=sys.stderr, flush=True)

    refs = [r for _, _, _, r in utts]
    langs = [l for _, _, l, _ in utts]
    base = statistics.median(times[names[0]])
    case = (f"fine-tuned {args.asr_exp} on {args.test}" if fine_tuned else
            f"zero-shot Whisper base on {args.test}" if args.test else
            "zero-shot Whisper base on espeak-ng sentences (seed 7)")
    print(f"{case}: {len(utts)} utterances, {seconds:.1f} s of audio; {cpu_model()}, "
          f"{args.threads} threads; torch {torch.__version__}, CTranslate2 "
          f"{ctranslate2.__version__}; median of {args.reps} interleaved repetitions")
    print("| decoder | seconds | RTF | vs first row | CER % |")
    print("| --- | --- | --- | --- | --- |")
    for name in names:
        median = statistics.median(times[name])
        hyps = [texts[name][u] for u, _, _, _ in utts]
        print(f"| {name} | {median:.1f} | {median / seconds:.3f} | {median / base:.2f}x | "
              f"{cer(refs, hyps, langs):.1f} |")


if __name__ == "__main__":
    main()
