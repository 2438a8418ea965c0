"""Decode a Kaldi data dir with an ESPnet Whisper model using espnet-lalora's kv-cached, batched
beam search (see espnet_lalora.decoding). Inputs, options and outputs follow ESPnet's
``asr_inference``: ``<output_dir>/1best_recog/{text,token,token_int,score}``.

Each utterance is told its language (``--utt2lang`` or ``--lang``): Whisper's prompt
``<|startoftranscript|><|lang|><|transcribe|><|notimestamps|>``; or the language is detected
(``--detect_language true``, or ``--route lid`` for language experts) among ``--lid_languages``
and written to ``1best_recog/lang``.

Language experts (an ``experts.pth`` bundle as ``--asr_model_file``): ``--route utt2lang``
decodes each utterance with its own language's expert, ``--route lid`` with the expert of the
language that the base model detects; the utterances of a batch may mix languages.
"""

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import soundfile

from espnet_lalora.transcriber import WhisperTranscriber, load_model, windows


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
    p.add_argument("--maxlenratio", type=float, default=0.5,
                   help="pytorch: at most this many new tokens per encoder frame (ESPnet's "
                        "rule); ct2 stops at the context or --max_tokens")
    p.add_argument("--batch_size", type=int, default=8, help="utterances decoded together")
    p.add_argument("--ngpu", type=int, default=0)
    p.add_argument("--dtype", default="float32", choices=["float32", "int8"],
                   help="int8: dynamic int8 quantization of the decoder's Linear layers (CPU "
                        "only; espnet_lalora.transcriber.quantize_int8)")
    p.add_argument("--whisper_filters", type=lambda s: s.lower() == "true", default=False,
                   help="apply openai-whisper's SuppressBlank/SuppressTokens filters")
    p.add_argument("--repetition_guard", type=int, default=4,
                   help="end a hypothesis repeating an n-gram this many times in a row (0: off; ct2: "
                        "its result cut there)")
    p.add_argument("--repetition_span", type=int, default=20,
                   help="... where the repeats cover at least this many tokens (a bigram needs "
                        "10 repeats, one token 20: short repeats are speech; 0: any n-gram)")
    p.add_argument("--max_tokens", type=_optional_int, default=None,
                   help="a cap on the new tokens besides --maxlenratio and the model's 448-token "
                        "context (openai-whisper's sample_len is 224; none: no cap)")
    p.add_argument("--ranking", default="espnet", choices=["espnet", "whisper"],
                   help="beam search and ranking: ESPnet's (the beam best (hypothesis, token) "
                        "pairs, the best summed log-probability wins) or openai-whisper's (each "
                        "beam proposes beam+1 tokens, --patience, length-normalized ranking; "
                        "with --whisper_filters true its beam search token for token)")
    p.add_argument("--patience", type=float, default=1.0,
                   help="--ranking whisper: stop once round(beam_size * patience) hypotheses "
                        "have ended")
    p.add_argument("--length_penalty", type=_optional_float, default=None,
                   help="--ranking whisper: rank by sum log-probability / length (none) or / "
                        "((5 + length) / 6) ** length_penalty (Google NMT's, 0 to 1)")
    p.add_argument("--config", type=Path,
                   help="an ESPnet decoding YAML (beam_size, maxlenratio, batch_size, ranking, "
                        "patience, length_penalty, whisper_filters, dtype, repetition_guard, "
                        "repetition_span, max_tokens)")
    p.add_argument("--detect_language", type=_bool, default=False,
                   help="ignore the given language: Whisper's language identification picks it "
                        "among --lid_languages (the language-unknown case)")
    p.add_argument("--lid_languages", default="",
                   help="comma-separated candidates of the language identification (default: "
                        "the languages of --utt2lang)")
    p.add_argument("--route", default="none", choices=["none", "utt2lang", "lid"],
                   help="language experts: the expert of the given (utt2lang) or the detected "
                        "(lid, by the base model) language")
    p.add_argument("--lid_by", default="base", choices=["base", "fused"],
                   help="language experts, --route lid: the model that detects the language: "
                        "the base model (Whisper's own LID) or the uniformly fused experts")
    p.add_argument("--expert_fallback", default="error", choices=["error", "fused"],
                   help="language experts: an utterance whose language has no expert is an "
                        "error, or is decoded with the uniformly fused experts")
    p.add_argument("--language_token", type=_bool, default=True,
                   help="false: a prompt without a language token (a model trained without)")
    p.add_argument("--backend", default="pytorch", choices=["pytorch", "ct2", "auto"],
                   help="pytorch: this project's decoder (every model kind); ct2: the model's "
                        "CTranslate2 export through faster-whisper's decoding (merged models "
                        "and zero-shot Whisper; espnet_lalora.ct2_transcriber); auto: ct2 where "
                        "it can decode the model with the given options, else pytorch")
    p.add_argument("--do_pad_trim", type=_optional_bool, default=None,
                   help="pad the audio to 30 s before the encoder, as Whisper was trained "
                        "(longer audio: 30-s windows); false: each utterance at its own length, "
                        "as this project trains (none: as the model's config says: decoded as "
                        "trained)")
    p.add_argument("--silence_tail", type=float, default=1.0,
                   help="seconds of silence after each utterance that is read at its own length "
                        "(a model trained unpadded saw its batch's padding there; without it, "
                        "short utterances loop). Utterances are then padded to whole seconds "
                        "and batched with others of that length only, so a result does not "
                        "depend on its batch")
    p.add_argument("--temperatures", default="0",
                   help="comma-separated; more than one: Whisper's temperature fallback (an "
                        "utterance whose result is a loop or improbable is sampled again at the "
                        "next temperature, best of 5). ct2 backend only")
    p.add_argument("--compression_ratio_threshold", type=float, default=2.4,
                   help="fallback when the text's gzip compression ratio is above this (a loop)")
    p.add_argument("--logprob_threshold", type=float, default=-1.0,
                   help="fallback when the average log-probability per token is below this")
    return p


def _optional_bool(value: str):
    return None if value.lower() in ("none", "null", "") else _bool(value)


def _optional_float(value: str):
    return None if value.lower() in ("none", "null", "") else float(value)


def _optional_int(value: str):
    return None if value.lower() in ("none", "null", "") else int(value)


def _bool(value: str) -> bool:
    if value.lower() not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")
    return value.lower() == "true"


def main(argv=None):
    args = get_parser().parse_args(argv)
    import yaml

    from espnet_lalora.datadir import DataDirError, read_map, write_map
    from espnet_lalora.progress import Progress

    if args.config:  # an ESPnet decoding config: its keys are defaults, the command line wins
        conf = yaml.safe_load(args.config.read_text()) or {}
        given = {a.split("=")[0].lstrip("-") for a in (argv or sys.argv[1:]) if a.startswith("--")}
        for key in ("beam_size", "maxlenratio", "batch_size", "ranking", "patience",
                    "length_penalty", "whisper_filters", "dtype", "repetition_guard",
                    "repetition_span", "max_tokens", "backend", "do_pad_trim", "temperatures",
                    "compression_ratio_threshold", "logprob_threshold", "silence_tail"):
            if key in conf and key not in given:
                value = conf[key]
                if key == "length_penalty":
                    value = _optional_float(str(value))
                elif key == "max_tokens":
                    value = _optional_int(str(value))
                elif key == "whisper_filters":
                    value = _bool(str(value))
                elif key == "do_pad_trim":
                    value = _optional_bool(str(value))
                elif key == "temperatures":
                    value = ",".join(str(t) for t in value) if isinstance(value, list) \
                        else str(value)
                else:
                    value = type(getattr(args, key))(value)
                setattr(args, key, value)
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
    if args.silence_tail < 0:
        sys.exit(f"error: --silence_tail {args.silence_tail}: seconds, 0 or more")
    if args.beam_size < 1 or args.batch_size < 1:
        sys.exit("error: --beam_size and --batch_size must be at least 1")
    if args.maxlenratio <= 0:
        sys.exit("error: --maxlenratio must be > 0 (tokens per encoder frame, e.g. 0.5)")
    if args.max_tokens is not None and args.max_tokens < 1:
        sys.exit("error: --max_tokens must be at least 1 (or none: no cap)")
    if args.repetition_guard < 0 or args.repetition_span < 0:
        sys.exit("error: --repetition_guard and --repetition_span must be 0 (off) or more")
    if args.ranking not in ("espnet", "whisper"):
        sys.exit(f"error: --ranking must be espnet or whisper, got {args.ranking!r}")
    if args.ranking == "whisper" and round(args.beam_size * args.patience) < 1:
        sys.exit("error: --patience must leave round(beam_size * patience) >= 1")
    if args.length_penalty is not None and not 0 <= args.length_penalty <= 1:
        sys.exit("error: --length_penalty must be between 0 and 1 (or none)")
    from espnet_lalora.whisper_langs import check_language

    try:
        for lang in sorted({langs[k] for k in keys}):
            check_language(lang, str(args.utt2lang) if not args.lang else "--lang")
    except ValueError as e:
        sys.exit(f"error: {e}")

    lid = args.detect_language or args.route == "lid"
    candidates = ([c for c in args.lid_languages.split(",") if c] if args.lid_languages
                  else sorted({langs[k] for k in keys}))
    try:
        for lang in candidates:
            check_language(lang, "--lid_languages")
    except ValueError as e:
        sys.exit(f"error: {e}")

    device = "cuda" if args.ngpu > 0 else "cpu"
    try:
        temperatures = tuple(float(t) for t in args.temperatures.split(",") if t.strip())
    except ValueError:
        temperatures = ()
    if not temperatures or any(t < 0 for t in temperatures):
        sys.exit(f"error: --temperatures {args.temperatures!r}: comma-separated numbers >= 0, "
                 "e.g. 0 or 0,0.2,0.4,0.6,0.8,1.0")
    if args.dtype not in ("float32", "int8"):
        sys.exit(f"error: dtype {args.dtype!r} (from --config {args.config}): float32 or int8")
    detected = {}
    ct2_cannot, folder = None, None
    if args.backend != "pytorch":
        if lid or args.route != "none" or not args.language_token or args.task != "transcribe":
            ct2_cannot = ("--backend ct2 transcribes with the given language; language "
                          "detection, routed experts, prompts without a language token and "
                          "translation need --backend pytorch")
        else:
            from espnet_lalora.ct2_transcriber import ct2_folder

            try:
                folder = ct2_folder(args.asr_model_file, args.asr_train_config)
            except ValueError as e:
                ct2_cannot = f"--backend ct2: {e}"
    if args.backend == "auto":
        args.backend = "pytorch" if ct2_cannot else "ct2"
        print(f"decoder: {args.backend}" + (f" ({ct2_cannot})" if ct2_cannot else ""),
              file=sys.stderr)
    if args.backend == "ct2":
        if ct2_cannot:
            sys.exit(f"error: {ct2_cannot}")
        decode_batch = ct2_decoder(args, folder, langs, temperatures, device)
    else:
        if len(temperatures) > 1:
            sys.exit("error: --temperatures (the fallback) is an option of --backend ct2")
        if args.dtype == "int8" and device != "cpu":
            sys.exit("error: --dtype int8 is for CPU decoding (--ngpu 0)")
        decode_batch = pytorch_decoder(args, keys, langs, lid, candidates, detected, device)

    progress = Progress(len(keys), f"decode {wav_scp.parent.name}")
    start, audio_seconds = time.monotonic(), 0.0
    out = {name: {} for name in ("text", "token", "token_int", "score")}
    try:
        frames = {k: soundfile.info(wavs[k]).frames for k in keys}
    except (soundfile.LibsndfileError, RuntimeError) as e:
        sys.exit(f"error: {wav_scp}: cannot read audio ({e}); run stage 3 first")
    padded = (trained_padded(args.asr_train_config) if args.do_pad_trim is None
              else args.do_pad_trim)
    tail = 0.0 if padded else args.silence_tail
    length = input_lengths(frames, tail)
    order = sorted(keys, key=lambda k: (length[k], frames[k]))
    for batch in batches(order, length, args.batch_size, grouped=tail > 0):
        speeches = []
        for key in batch:
            speech, rate = soundfile.read(wavs[key], dtype="float32")
            if rate != 16000 or speech.ndim != 1:
                sys.exit(f"error: {wav_scp}: {key}: expected 16 kHz mono audio (stage 3 writes it)")
            audio_seconds += len(speech) / 16000
            speeches.append(np.pad(speech, (0, length[key] - len(speech))))
        for key, (text, tokens, token_int, score) in zip(batch, decode_batch(batch, speeches)):
            out["text"][key] = text
            out["token"][key] = " ".join(tokens)
            out["token_int"][key] = " ".join(map(str, token_int))
            out["score"][key] = f"{score:.6f}"
        progress.update(len(batch))
    elapsed = time.monotonic() - start
    result_dir = args.output_dir / "1best_recog"
    result_dir.mkdir(parents=True, exist_ok=True)
    for name, mapping in out.items():
        write_map(result_dir / name, mapping)
    if detected:
        write_map(result_dir / "lang", detected)
        right = sum(detected[k] == langs[k] for k in detected)
        print(f"language identification: {right}/{len(detected)} right "
              f"({100.0 * right / len(detected):.1f}%) among {', '.join(candidates)}",
              file=sys.stderr)
    print(f"decoded {len(keys)} utterances ({audio_seconds:.1f} s of audio) in {elapsed:.1f} s: "
          f"real-time factor {elapsed / max(audio_seconds, 1e-9):.3f}", file=sys.stderr)


def input_lengths(frames: dict, tail: float) -> dict:
    """Samples each utterance is decoded at: its own with ``tail`` seconds of silence, rounded
    up to whole seconds (``tail`` 0: its own; 30-s padding happens later, in the model)."""
    if tail <= 0:
        return dict(frames)
    return {k: math.ceil(n / 16000 + tail) * 16000 for k, n in frames.items()}


def batches(order, length: dict, size: int, grouped: bool):
    """Consecutive utterances of ``order`` in batches of up to ``size``; ``grouped``: of one
    input length each, so that no utterance is padded further by its batch."""
    batch = []
    for key in order:
        if batch and (len(batch) == size or grouped and length[key] != length[batch[0]]):
            yield batch
            batch = []
        batch.append(key)
    if batch:
        yield batch


def trained_padded(config) -> bool:
    """Whether the model's input is padded to 30 s (its config's encoder_conf.do_pad_trim, as
    ESPnet's encoder reads it: true for zero-shot Whisper, false where this project trained)."""
    import yaml

    conf = yaml.safe_load(Path(config).read_text(encoding="utf-8")) or {}
    return bool((conf.get("encoder_conf") or {}).get("do_pad_trim", False))


def ct2_decoder(args, folder, langs, temperatures, device):
    """decode_batch(keys, speeches) -> (text, tokens, token ids, score) per utterance, through
    the model's CTranslate2 export."""
    from espnet_lalora.ct2_transcriber import CT2Options, CT2Transcriber

    ct2 = CT2Transcriber(folder, CT2Options(
        beam_size=args.beam_size, patience=args.patience, temperatures=temperatures,
        compute_type=args.dtype, compression_ratio_threshold=args.compression_ratio_threshold,
        logprob_threshold=args.logprob_threshold, max_tokens=args.max_tokens,
        repetition_guard=args.repetition_guard, repetition_span=args.repetition_span,
        pad_to_30s=trained_padded(args.asr_train_config) if args.do_pad_trim is None
        else args.do_pad_trim), device)

    def decode_batch(keys, speeches):
        results = ct2(speeches, [langs[k] for k in keys])
        return [(text, ct2.token_strings(ids), ids, score) for text, ids, score in results]
    return decode_batch


def pytorch_decoder(args, keys, langs, lid, candidates, detected, device):
    """decode_batch(keys, speeches) -> (text, tokens, token ids, score) per utterance, with this
    project's decoder; ``detected`` receives the detected languages (``lid``)."""
    from espnet_lalora.decoding import DecodeOptions
    from espnet_lalora.methods.expert_router import FUSED, NO_EXPERT

    if not Path(args.asr_train_config).is_file():
        sys.exit(f"error: --asr_train_config {args.asr_train_config} not found")
    try:
        model = load_model(args.asr_train_config, args.asr_model_file, device)
    except ValueError as e:
        sys.exit(f"error: --asr_model_file {args.asr_model_file}: {e}")
    if args.do_pad_trim is not None:
        model.encoder.do_pad_trim = args.do_pad_trim
    if args.dtype == "int8":
        from espnet_lalora.transcriber import quantize_int8

        quantize_int8(model)
    transcriber = WhisperTranscriber(model, device)
    router = transcriber.router
    if (args.route != "none") != (router is not None):
        sys.exit(f"error: --route {args.route}" + (" " if router is None else "") + (
            "needs a language-expert model (--asr_model_file .../export/experts/experts.pth)"
            if router is None else ": this is a language-expert model; decode it with "
            "--route utt2lang or --route lid (or decode one of its merged exports)"))

    def expert_of(key, lang, source):
        if lang in router.languages:
            return router.languages.index(lang)
        if args.expert_fallback == "fused":
            return FUSED
        sys.exit(f"error: {key}: language {lang!r} ({source}) has no expert (experts: "
                 f"{', '.join(router.languages)}); add --expert_fallback fused to decode such "
                 "utterances with the uniformly fused experts")

    if args.route == "utt2lang":
        for k in keys:
            expert_of(k, langs[k], f"from {args.utt2lang or '--lang'}")
    options = DecodeOptions(beam_size=args.beam_size, maxlenratio=args.maxlenratio,
                            whisper_filters=args.whisper_filters,
                            repetition_guard=args.repetition_guard,
                            repetition_span=args.repetition_span, max_tokens=args.max_tokens,
                            ranking=args.ranking,
                            patience=args.patience, length_penalty=args.length_penalty)

    def decode_batch(batch, speeches):
        # each utterance (or window) is encoded at its own length (Whisper's encoder has no
        # padding mask); the decoder masks the padding of the batch
        encoded, prompts, routes, owner = [], [], [], []
        for index, (key, speech) in enumerate(zip(batch, speeches)):
            lang, enc = langs[key], None
            if lid:  # Whisper's LID (of the first 30 s); experts: by the base model or the fusion
                lid_route = None
                if router is not None:
                    lid_route = NO_EXPERT if args.lid_by == "base" else FUSED
                enc = transcriber.encode(speech, lid_route)
                lang = detected[key] = transcriber.detect_language(enc, candidates, lid_route)
            route = None
            if router is not None:
                route = expert_of(key, lang, "detected" if lid else "given")
            # Whisper reads 30 s at a time: as faster-whisper without timestamps, a longer
            # utterance is read window after window (the windows decoded independently)
            pieces = windows(speech, model.encoder.do_pad_trim)
            for piece in pieces:
                reuse = enc is not None and router is None and len(pieces) == 1
                encoded.append(enc if reuse else transcriber.encode(piece, route))
                routes.append(route)
                prompts.append(transcriber.prompt(lang if args.language_token else None,
                                                  args.task))
                owner.append(index)
        results = transcriber(encoded, prompts, options, routes if router is not None else None)
        out = []
        for index in range(len(batch)):
            parts = [transcriber.to_text(r) + (r.score,)
                     for r, o in zip(results, owner) if o == index]
            out.append(parts[0] if len(parts) == 1 else (
                " ".join(p[0].strip() for p in parts), [t for p in parts for t in p[1]],
                [t for p in parts for t in p[2]], sum(p[3] for p in parts)))
        return out
    return decode_batch


if __name__ == "__main__":
    main()
