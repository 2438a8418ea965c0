"""Do stage 9's exports decode like the model they came from? Transcribes a test set with

- this project's decoder on the merged ESPnet model (the reference),
- openai-whisper on ``export/whisper/model.pt`` (``whisper.load_model`` + ``whisper.decode``),
- faster-whisper on ``export/ct2`` (``WhisperModel(...).transcribe``),

all greedy, 30-s padded input (how openai-whisper and faster-whisper always run), openai-whisper's
token filters, no timestamps, and counts the utterances with identical tokens:

    python -m espnet_lalora.bin.check_exports --asr_exp exp/asr_train_lora --data dump/raw/test
"""

import argparse
import json
import sys
import time
from pathlib import Path

import soundfile


def reference(export: Path, audio, langs):
    from espnet_lalora.transcriber import WhisperTranscriber, load_model
    from espnet_lalora.decoding import DecodeOptions

    model = load_model(export / "merged" / "config.yaml", export / "merged" / "model.pth", "cpu")
    model.encoder.do_pad_trim = True  # the exported models always see 30-s windows
    transcriber = WhisperTranscriber(model)
    # 1500 frames x 0.15 > 224 tokens: the cap is Whisper's own sample length, as in openai-whisper
    options = DecodeOptions(beam_size=1, maxlenratio=0.15, max_tokens=224, whisper_filters=True,
                            repetition_guard=0)
    out = {}
    for key, speech in audio.items():
        result = transcriber([transcriber.encode(speech)], [transcriber.prompt(langs[key])],
                             options)[0]
        out[key] = result.tokens
    return out


def openai_whisper(export: Path, audio, langs):
    import whisper

    model = whisper.load_model(str(export / "whisper" / "model.pt"), device="cpu").float()
    out = {}
    for key, speech in audio.items():
        mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(speech))
        options = whisper.DecodingOptions(language=langs[key], without_timestamps=True, fp16=False)
        out[key] = list(whisper.decode(model, mel, options).tokens)
    return out


def faster_whisper(export: Path, audio, langs, threads, openai_features=False):
    from faster_whisper import WhisperModel

    model = WhisperModel(str(export / "ct2"), device="cpu", compute_type="float32",
                         cpu_threads=threads)
    if openai_features:
        # faster-whisper computes the log-mel of the unpadded audio and pads the features; openai-
        # whisper pads the audio first. The padded frames differ, and a barely trained model can
        # then choose other tokens. openai-whisper's features isolate the exported weights.
        import whisper

        own = model.feature_extractor

        class OpenAIFeatures:
            def __getattr__(self, name):  # sampling rate, hop length, ...: faster-whisper's
                return getattr(own, name)

            def __call__(self, audio, **_):
                return whisper.log_mel_spectrogram(whisper.pad_or_trim(audio)).numpy()

        model.feature_extractor = OpenAIFeatures()
    out = {}
    for key, speech in audio.items():
        segments, _ = model.transcribe(
            speech, language=langs[key], beam_size=1, temperature=0.0, without_timestamps=True,
            condition_on_previous_text=False, vad_filter=False, no_speech_threshold=None,
            log_prob_threshold=None, compression_ratio_threshold=None)
        out[key] = [t for s in segments for t in s.tokens]
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--asr_exp", required=True, type=Path)
    parser.add_argument("--data", required=True, type=Path, help="a formatted data dir (stage 3)")
    parser.add_argument("--max_utts", type=int, default=0, help="the first N utterances (0: all)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, help="write the tokens of each system here (JSON)")
    parser.add_argument("--features", choices=["own", "openai"], default="own",
                        help="faster-whisper's log-mel: its own, or openai-whisper's (same input)")
    args = parser.parse_args(argv)

    from espnet_lalora.datadir import DataDirError, read_map
    from espnet_lalora.quiet import quiet_espnet_imports

    export = args.asr_exp / "export"
    for needed in ("merged/model.pth", "whisper/model.pt", "ct2/model.bin"):
        if not (export / needed).is_file():
            sys.exit(f"error: {export / needed} not found; run stage 9 first")
    try:
        wavs = read_map(args.data / "wav.scp", "audio path")
        langs = read_map(args.data / "utt2lang", "language")
    except DataDirError as e:
        sys.exit(f"error: {e}")
    keys = sorted(wavs)[: args.max_utts or None]
    audio = {k: soundfile.read(wavs[k], dtype="float32")[0] for k in keys}
    quiet_espnet_imports()
    import torch

    torch.set_num_threads(args.threads)
    runs = {"this project (merged ESPnet model)": lambda: reference(export, audio, langs),
            "openai-whisper (whisper/model.pt)": lambda: openai_whisper(export, audio, langs),
            "faster-whisper (ct2/, float32)": lambda: faster_whisper(
                export, audio, langs, args.threads, args.features == "openai")}
    systems, seconds = {}, {}
    for name, run in runs.items():
        start = time.monotonic()
        systems[name] = run()
        seconds[name] = time.monotonic() - start
        print(f"{name}: {len(keys)} utterances in {seconds[name]:.1f} s", file=sys.stderr)
    ref = next(iter(systems.values()))
    print(f"| decoder | identical tokens ({len(keys)} utterances of {args.data}) | time (s) |")
    print("| --- | --- | --- |")
    for name, tokens in systems.items():
        same = sum(tokens[k] == ref[k] for k in keys)
        print(f"| {name} | {same}/{len(keys)} | {seconds[name]:.1f} |")
    if args.out:
        args.out.write_text(json.dumps(systems, indent=1))


if __name__ == "__main__":
    main()
