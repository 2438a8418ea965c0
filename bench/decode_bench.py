"""Decoding benchmark: real-time factors side by side, in one process, on the same audio.

Audio: short espeak-ng utterances in Japanese, Korean, English and Spanish, made with the default
recipe's synthesizer. Model: Whisper base (the installed offline weights), zero-shot, float32, on
the CPU. RTF = decoding time / audio duration (model loading excluded); ratios are to
openai-whisper's greedy decoding.

  .venv/bin/python bench/decode_bench.py [--per_lang 5] [--threads 2] [--skip_espnet]
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile
import torch

ROOT = Path(__file__).resolve().parents[1]


def make_audio(per_lang, workdir):
    recipe = ROOT / "egs2/mini_multi/asr1"
    subprocess.run([sys.executable, str(recipe / "local/synth_corpus.py"), "--out",
                    str(workdir / "data"), "--audio_dir", str(workdir / "wav"),
                    "--train_per_lang", "1", "--dev_per_lang", "1", "--test_per_lang",
                    str(per_lang), "--seed", "7"], check=True, capture_output=True)
    subprocess.run([sys.executable, "-m", "espnet_lalora.bin.format_data", "--data",
                    str(workdir / "data/test"), "--out", str(workdir / "test")], check=True,
                   capture_output=True)
    langs = dict(l.split() for l in (workdir / "test/utt2lang").read_text().splitlines())
    wavs = dict(l.split() for l in (workdir / "test/wav.scp").read_text().splitlines())
    return [(u, soundfile.read(wavs[u], dtype="float32")[0], langs[u]) for u in sorted(wavs)]


def timed(name, fn, utts):
    start = time.perf_counter()
    texts = [fn(audio, lang) for _, audio, lang in utts]
    return name, time.perf_counter() - start, texts


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per_lang", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip_espnet", action="store_true", help="skip the slow ESPnet rows")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from espnet_lalora.quiet import quiet_espnet_imports

    quiet_espnet_imports()
    import whisper
    from faster_whisper import WhisperModel

    from espnet_lalora.config import write_config, zero_shot_config
    from espnet_lalora.transcriber import WhisperTranscriber, load_model
    from espnet_lalora.decoding import DecodeOptions
    from espnet_lalora.whisper_weights import prepare_ct2_model

    work = Path(tempfile.mkdtemp(prefix="decode_bench_"))
    utts = make_audio(args.per_lang, work)
    seconds = sum(len(a) for _, a, _ in utts) / 16000
    tokens = work / "tokens.txt"
    subprocess.run([sys.executable, "-m", "espnet2.bin.whisper_export_vocabulary",
                    "--whisper_model", "whisper_multilingual", "--output", str(tokens)],
                   check=True, capture_output=True)
    configs = {}
    for padded in (True, False):
        path = work / f"config_{'padded' if padded else 'unpadded'}.yaml"
        write_config(zero_shot_config(ROOT / "conf/whisper_base.yaml", tokens), path)
        if not padded:
            path.write_text(path.read_text().replace("do_pad_trim: true", "do_pad_trim: false"))
        configs[padded] = path

    openai_model = whisper.load_model("base", device="cpu").float().eval()

    def openai_greedy(audio, lang):
        mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(torch.from_numpy(audio)))[None]
        return whisper.decode(openai_model, mel, whisper.DecodingOptions(
            language=lang, without_timestamps=True, fp16=False, temperature=0.0))[0].text

    def ours(padded, beam):
        t = WhisperTranscriber(load_model(configs[padded], None, "cpu"))
        options = DecodeOptions(beam_size=beam, maxlenratio=0.1 if padded else 0.5,
                                whisper_filters=True)
        return lambda audio, lang: t.to_text(t([t.encode(audio)], [t.prompt(lang)], options)[0])[0]

    def espnet(padded, beam):
        from espnet2.bin.asr_inference import Speech2Text

        import espnet_lalora.espnet_plugin  # noqa: F401
        cache = {}

        def run(audio, lang):
            if lang not in cache:
                cache[lang] = Speech2Text(
                    asr_train_config=str(configs[padded]), beam_size=beam, ctc_weight=0.0,
                    maxlenratio=0.1 if padded else 0.5, lang_prompt_token=f"<|{lang}|> <|transcribe|>")
            return cache[lang](torch.from_numpy(audio))[0][0]
        for lang in sorted({lang for _, _, lang in utts}):  # build outside the timing
            run(utts[0][1][:16000], lang)
        return run

    fw = WhisperModel(str(prepare_ct2_model("base")), device="cpu", compute_type="float32",
                      cpu_threads=args.threads)

    def faster_whisper(beam):
        def run(audio, lang):
            segments, _ = fw.transcribe(audio, language=lang, beam_size=beam, temperature=0.0,
                                        without_timestamps=True, condition_on_previous_text=False)
            return "".join(s.text for s in segments)
        return run

    rows = [timed("openai-whisper greedy (30-s padded)", openai_greedy, utts)]
    rows.append(timed("espnet-lalora greedy (30-s padded)", ours(True, 1), utts))
    rows.append(timed("espnet-lalora beam 5 (30-s padded)", ours(True, 5), utts))
    rows.append(timed("faster-whisper beam 5, float32", faster_whisper(5), utts))
    rows.append(timed("espnet-lalora beam 5 (unpadded)", ours(False, 5), utts))
    if not args.skip_espnet:
        rows.append(timed("ESPnet asr_inference beam 5 (30-s padded)", espnet(True, 5), utts))
        rows.append(timed("ESPnet asr_inference beam 5 (unpadded)", espnet(False, 5), utts))
    base = rows[0][1]
    same_as_openai = [sum(a.strip() == b.strip() for a, b in zip(r[2], rows[0][2])) for r in rows]
    print(f"{len(utts)} utterances, {seconds:.1f} s of audio, {args.threads} threads, "
          f"Whisper base float32 on {torch.__version__}")
    print("| decoder | seconds | RTF | vs openai-whisper greedy | same text as openai greedy |")
    print("| --- | --- | --- | --- | --- |")
    for (name, elapsed, _), same in zip(rows, same_as_openai):
        print(f"| {name} | {elapsed:.1f} | {elapsed / seconds:.3f} | {elapsed / base:.2f}x | "
              f"{same}/{len(utts)} |")


if __name__ == "__main__":
    main()
