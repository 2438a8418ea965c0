"""Decode a Kaldi data dir with an ESPnet Whisper model using espnet-lalora's kv-cached, batched
beam search (see espnet_lalora.decoding). Inputs, options and outputs follow ESPnet's
``asr_inference``: ``<output_dir>/1best_recog/{text,token,token_int,score}``.

Each utterance is told its language (``--utt2lang`` or ``--lang``): Whisper's prompt
``<|startoftranscript|><|lang|><|transcribe|><|notimestamps|>``.
"""

import argparse
import sys
import time
from pathlib import Path

import soundfile

from espnet_lalora.transcriber import WhisperTranscriber, load_model


def get_parser():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--asr_train_config", required=True, type=Path)
    p.add_argument("--asr_model_file", default=None, help="omit (or 'none') for the config's weights")
    p.add_argument("--data_path_and_name_and_type", required=True,
                   help="wav.scp,speech,sound (as ESPnet's asr_inference)")
    p.add_argument("--key_file", type=Path, help="decode only these utterance ids")
    p.add_argument("--output_dir", required=True, type=Path)
    p.add_argument("--utt2lang", type=Path, help="utterance -> language code")
    p.add_argument("--lang", default=None, help="language of every utterance (instead of utt2lang)")
    p.add_argument("--task", default="transcribe", choices=["transcribe", "translate"])
    p.add_argument("--beam_size", type=int, default=5)
    p.add_argument("--maxlenratio", type=float, default=0.5)
    p.add_argument("--batch_size", type=int, default=8, help="utterances decoded together")
    p.add_argument("--ngpu", type=int, default=0)
    p.add_argument("--whisper_filters", type=lambda s: s.lower() == "true", default=False,
                   help="apply openai-whisper's SuppressBlank/SuppressTokens filters")
    p.add_argument("--repetition_guard", type=int, default=4,
                   help="end a hypothesis repeating an n-gram this many times (0: off)")
    p.add_argument("--config", type=Path, help="an ESPnet decoding YAML (beam_size, maxlenratio)")
    return p


def main(argv=None):
    args = get_parser().parse_args(argv)
    import yaml

    from espnet_lalora.datadir import DataDirError, read_map, write_map
    from espnet_lalora.decoding import DecodeOptions
    from espnet_lalora.progress import Progress

    if args.config:  # an ESPnet decoding config: its keys are defaults, the command line wins
        conf = yaml.safe_load(args.config.read_text()) or {}
        given = {a.split("=")[0].lstrip("-") for a in (argv or sys.argv[1:]) if a.startswith("--")}
        for key in ("beam_size", "maxlenratio", "batch_size"):
            if key in conf and key not in given:
                setattr(args, key, type(getattr(args, key))(conf[key]))
    wav_scp = Path(args.data_path_and_name_and_type.split(",")[0])
    try:
        wavs = read_map(wav_scp, "audio path")
        keys = (args.key_file.read_text().split() if args.key_file else list(wavs))
        if args.lang:
            langs = {k: args.lang for k in keys}
        elif args.utt2lang:
            langs = read_map(args.utt2lang, "language")
        else:
            sys.exit("error: give --utt2lang or --lang: Whisper is told each utterance's language")
    except DataDirError as e:
        sys.exit(f"error: {e}")
    missing = [k for k in keys if k not in wavs or k not in langs]
    if missing:
        sys.exit(f"error: {len(missing)} utterances lack audio or language (e.g. {missing[:3]})")
    if args.beam_size < 1 or args.batch_size < 1:
        sys.exit("error: --beam_size and --batch_size must be at least 1")
    if args.maxlenratio <= 0:
        sys.exit("error: --maxlenratio must be > 0 (tokens per encoder frame, e.g. 0.5)")
    from espnet_lalora.whisper_langs import check_language

    try:
        for lang in sorted({langs[k] for k in keys}):
            check_language(lang, str(args.utt2lang) if not args.lang else "--lang")
    except ValueError as e:
        sys.exit(f"error: {e}")

    device = "cuda" if args.ngpu > 0 else "cpu"
    transcriber = WhisperTranscriber(load_model(args.asr_train_config, args.asr_model_file,
                                                device), device)
    options = DecodeOptions(beam_size=args.beam_size, maxlenratio=args.maxlenratio,
                            whisper_filters=args.whisper_filters,
                            repetition_guard=args.repetition_guard)
    prompts = {k: transcriber.prompt(langs[k], args.task) for k in keys}

    progress = Progress(len(keys), f"decode {wav_scp.parent.name}")
    start, audio_seconds = time.monotonic(), 0.0
    out = {name: {} for name in ("text", "token", "token_int", "score")}
    # Utterances of similar length are decoded together; each is encoded at its own length
    # (Whisper's encoder has no padding mask), the decoder masks the padding of the batch.
    try:
        frames = {k: soundfile.info(wavs[k]).frames for k in keys}
    except (soundfile.LibsndfileError, RuntimeError) as e:
        sys.exit(f"error: {wav_scp}: cannot read audio ({e}); run stage 3 first")
    order = sorted(keys, key=lambda k: frames[k])
    for i in range(0, len(order), args.batch_size):
        batch = order[i:i + args.batch_size]
        encoded = []
        for key in batch:
            speech, rate = soundfile.read(wavs[key], dtype="float32")
            if rate != 16000 or speech.ndim != 1:
                sys.exit(f"error: {wav_scp}: {key}: expected 16 kHz mono audio (stage 3 writes it)")
            audio_seconds += len(speech) / 16000
            encoded.append(transcriber.encode(speech))
        results = transcriber(encoded, [prompts[k] for k in batch], options)
        for key, result in zip(batch, results):
            text, tokens, token_int = transcriber.to_text(result)
            out["text"][key] = text
            out["token"][key] = " ".join(tokens)
            out["token_int"][key] = " ".join(map(str, token_int))
            out["score"][key] = f"{result.score:.6f}"
        progress.update(len(batch))
    elapsed = time.monotonic() - start
    result_dir = args.output_dir / "1best_recog"
    result_dir.mkdir(parents=True, exist_ok=True)
    for name, mapping in out.items():
        write_map(result_dir / name, mapping)
    print(f"decoded {len(keys)} utterances ({audio_seconds:.1f} s of audio) in {elapsed:.1f} s: "
          f"real-time factor {elapsed / max(audio_seconds, 1e-9):.3f}", file=sys.stderr)


if __name__ == "__main__":
    main()
