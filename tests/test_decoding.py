"""The kv-cached batched decoder against the real counterparts: openai-whisper's greedy decoding,
ESPnet's beam search, and itself one utterance at a time."""

from pathlib import Path

import pytest
import torch
from conftest import UTTERANCES, build_espnet_model

from espnet_lalora.decoding import DecodeOptions

ROOT = Path(__file__).resolve().parents[1]


def transcriber_for(token_list, pad, fused_attention=True):
    from espnet_lalora.transcriber import WhisperTranscriber

    model = build_espnet_model(ROOT / "conf" / "whisper_base.yaml", token_list, "--encoder_conf",
                               f"do_pad_trim={'true' if pad else 'false'}")
    return WhisperTranscriber(model.eval(), fused_attention=fused_attention)


@pytest.fixture(scope="module")
def padded(token_list):
    return transcriber_for(token_list, pad=True)


@pytest.fixture(scope="module")
def unpadded(token_list):
    return transcriber_for(token_list, pad=False)


@pytest.mark.parametrize("utt", sorted(UTTERANCES))
def test_greedy_equals_openai_whisper_greedy(speech, whisper_base, padded, utt):
    import whisper

    audio, lang = speech[utt]
    mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(torch.from_numpy(audio)))[None]
    reference = whisper.decode(whisper_base, mel, whisper.DecodingOptions(
        language=lang, without_timestamps=True, fp16=False, temperature=0.0))[0]
    options = DecodeOptions(beam_size=1, maxlenratio=1.0, max_tokens=224, whisper_filters=True,
                            repetition_guard=0)
    ours = padded([padded.encode(audio)], [padded.prompt(lang)], options)[0]
    assert ours.tokens == reference.tokens, (ours.tokens, reference.tokens)


# More sentences for the test against openai-whisper's beam search: with UTTERANCES, 11 in five
# languages. {id: (language, voice, text)}
MORE_UTTERANCES = {
    "en3": ("en", "en", "My brother bought three small apples at the market yesterday."),
    "es1": ("es", "es", "El tren sale de la estación a las ocho de la mañana."),
    "es2": ("es", "es", "Mi hermana vive en una casa pequeña cerca del mar."),
    "ja2": ("ja", "ja", "わたしは まいにち こうえんを さんぽします。"),
    "ko3": ("ko", "ko", "저는 매일 아침 커피를 한 잔 마십니다."),
    "de1": ("de", "de", "Der Hund schläft ruhig unter dem großen Tisch."),
}


@pytest.fixture(scope="module")
def all_speech(speech, tmp_path_factory):
    import numpy as np
    import soundfile
    from conftest import synthesize

    out = dict(speech)
    for utt, (lang, voice, text) in MORE_UTTERANCES.items():
        path = synthesize(text, voice, tmp_path_factory.mktemp("more_speech") / f"{utt}.wav")
        audio, _ = soundfile.read(path, dtype="float32")
        out[utt] = (np.ascontiguousarray(audio), lang)
    return out


@pytest.fixture(scope="module")
def openai_features(all_speech, whisper_base):
    """openai-whisper's encoder output of each utterance (30-s padded), computed once: decode()
    takes it in place of the log-mel features."""
    import whisper

    with torch.no_grad():
        return {utt: whisper_base.encoder(whisper.log_mel_spectrogram(
            whisper.pad_or_trim(torch.from_numpy(audio)))[None])
            for utt, (audio, _) in all_speech.items()}


def openai_beam(whisper_base, features, lang, **options):
    import whisper

    return whisper.decode(whisper_base, features, whisper.DecodingOptions(
        language=lang, without_timestamps=True, fp16=False, temperature=0.0, **options))[0].tokens


def whisper_ranking(**options):
    """--ranking whisper as openai-whisper decodes: its logit filters, its 224-token limit
    (sample_len; maxlenratio 1.0 leaves it to max_tokens), no repetition guard."""
    options.setdefault("max_tokens", 224)
    return DecodeOptions(ranking="whisper", whisper_filters=True, maxlenratio=1.0,
                         repetition_guard=0, **options)


def test_whisper_ranking_equals_openai_whisper_beam_search(all_speech, openai_features,
                                                          whisper_base, padded):
    """--ranking whisper --beam_size 5 against whisper.decode(beam_size=5): token for token on
    11 utterances in 5 languages, ours decoded as one batch (each utterance leaves it at its own
    stop, openai-whisper's: beam_size x patience finished candidates). Both decode the same
    encoder output (ours of the padded audio: test_fused_encoder_attention_...)."""
    keys = sorted(all_speech)
    assert len(keys) >= 10 and len({all_speech[k][1] for k in keys}) >= 3
    ours = padded([openai_features[k][0] for k in keys],
                  [padded.prompt(all_speech[k][1]) for k in keys], whisper_ranking(beam_size=5))
    differ = [k for k, r in zip(keys, ours) if r.tokens != openai_beam(
        whisper_base, openai_features[k], all_speech[k][1], beam_size=5)]
    print(f"whisper ranking, beam 5: {len(keys) - len(differ)}/{len(keys)} equal to openai-whisper")
    assert not differ, differ


def test_fused_encoder_attention_is_openai_whisper_up_to_rounding(all_speech, openai_features,
                                                                token_list, padded):
    """The ESPnet encoder of the padded audio with openai-whisper's attention is openai-whisper's
    encoder output bit for bit; through the fused kernel (the decoder's default) it is within
    float rounding of it, and greedy decoding reads the same tokens from both."""
    exact = transcriber_for(token_list, pad=True, fused_attention=False)
    options = DecodeOptions(beam_size=1, maxlenratio=1.0, max_tokens=224, whisper_filters=True,
                            repetition_guard=0)
    for utt in ("en1", "ja1", "ko1"):
        audio, lang = all_speech[utt]
        assert torch.equal(exact.encode(audio), openai_features[utt][0]), utt
        fused = padded.encode(audio)
        assert (fused - openai_features[utt][0]).abs().max() < 1e-3, utt
        results = [t([e], [padded.prompt(lang)], options)[0].tokens
                   for t, e in ((exact, openai_features[utt][0]), (padded, fused))]
        assert results[0] == results[1], utt


@pytest.mark.parametrize("options,utts", [
    (dict(beam_size=5, patience=2.0, length_penalty=0.6), ["es1"]),  # 10 finished, NMT penalty
    (dict(beam_size=3, patience=0.5), ["ko3"]),  # 2 finished (1.5 rounds to 2), + 1 running
    (dict(beam_size=4, sample_len=5), ["es1", "ko3"]),  # the length limit: running ones count
])
def test_whisper_ranking_options_equal_openai_whisper(all_speech, openai_features, whisper_base,
                                                      padded, options, utts):
    ours_options = dict(options)
    if "sample_len" in ours_options:
        ours_options["max_tokens"] = ours_options.pop("sample_len")
    for utt in utts:
        lang = all_speech[utt][1]
        ours = padded([openai_features[utt][0]], [padded.prompt(lang)],
                      whisper_ranking(**ours_options))[0]
        assert ours.tokens == openai_beam(whisper_base, openai_features[utt], lang, **options), utt


def test_early_exit_changes_nothing(speech, unpadded):
    """ESPnet ranking: an utterance leaves the batch once its best finished hypothesis can no
    longer be beaten (scores only fall); running every utterance to its length limit (here 0.25
    tokens per frame, about twice the longest result) gives the same tokens, and the same scores
    up to float rounding."""
    keys = sorted(UTTERANCES)
    encoded = [unpadded.encode(speech[k][0]) for k in keys]
    prompts = [unpadded.prompt(speech[k][1]) for k in keys]
    options = DecodeOptions(maxlenratio=0.25, beam_size=5)
    early = unpadded(encoded, prompts, options)
    options.early_exit = False
    late = unpadded(encoded, prompts, options)
    assert [r.yseq for r in early] == [r.yseq for r in late]
    # A smaller batch changes the BLAS blocking, so the scores agree to float rounding only.
    assert [r.score for r in early] == pytest.approx([r.score for r in late], rel=1e-5)


def test_whisper_ranked_utterances_leave_the_batch_without_changing_the_others(speech, unpadded):
    """Whisper ranking stops an utterance at openai-whisper's own stop (beam_size x patience
    finished candidates: token for token against openai-whisper in the tests above); once
    stopped its finished set is final, so running on could not show anything. What the exit can
    break is the batch: the rows of an utterance that left are dropped from the cache while the
    others go on. Every utterance decoded in one batch equals it decoded alone, and the
    utterances did leave at different steps (their lengths differ)."""
    keys = sorted(UTTERANCES)
    encoded = [unpadded.encode(speech[k][0]) for k in keys]
    prompts = [unpadded.prompt(speech[k][1]) for k in keys]
    for options in (dict(beam_size=5, ranking="whisper"),
                    dict(beam_size=3, ranking="whisper", patience=2.0)):
        options = DecodeOptions(maxlenratio=0.25, **options)
        batch = unpadded(encoded, prompts, options)
        alone = [unpadded([e], [p], options)[0] for e, p in zip(encoded, prompts)]
        assert len({len(r.tokens) for r in batch}) > 2, "every utterance stopped at once"
        assert [r.yseq for r in batch] == [r.yseq for r in alone], options
        assert [r.score for r in batch] == pytest.approx([r.score for r in alone], rel=1e-5)


def test_beam_search_equals_espnet_beam_search(speech, unpadded):
    """Against ESPnet's BatchBeamSearch at three length limits per utterance: one it ends well
    before (10 tokens past our result at maxlenratio 0.5: ESPnet's search, without caches, runs
    every utterance to its limit, so a tight one keeps this test short); one that cuts every hypothesis (0.05: ESPnet appends end-of-text
    to each running hypothesis at maxlen, unscored, and so do we); and one on the very step where
    the best hypothesis emits end-of-text (ESPnet appends a second one there: [..., eot, eot];
    ours keeps one, the tokens and score being the same)."""
    from espnet.nets.batch_beam_search import BatchBeamSearch
    from espnet.nets.scorers.length_bonus import LengthBonus

    model = unpadded.model
    beam, eos = 5, model.eos
    espnet_search = BatchBeamSearch(
        scorers={"decoder": model.decoder, "length_bonus": LengthBonus(len(model.token_list))},
        weights={"decoder": 1.0, "length_bonus": 0.0}, beam_size=beam,
        vocab_size=len(model.token_list), sos=model.sos, eos=eos,
        token_list=model.token_list, pre_beam_score_key="full").eval()
    ends = {"normal": 0, "forced": 0, "eot at the limit": 0}

    def compare(utt, encoded, prompt, ratio):
        """Both decoders at ``ratio``; returns how ESPnet's best hypothesis ended, and its yseq."""
        with torch.no_grad():
            best = espnet_search(x=encoded, maxlenratio=ratio, minlenratio=0.0)[0]
        expected, maxlen = best.yseq.tolist(), max(1, int(ratio * encoded.shape[0]))
        if expected[-2:] == [eos, eos]:
            expected, kind = expected[:-1], "eot at the limit"
        elif len(expected) == len(prompt) + maxlen + 1:  # maxlen tokens and the forced eot
            kind = "forced"
        else:
            kind = "normal"
        ours = unpadded([encoded], [prompt], DecodeOptions(beam_size=beam, maxlenratio=ratio,
                                                           repetition_guard=0))[0]
        assert ours.yseq == expected, (utt, ratio, kind)
        assert abs(ours.score - float(best.score)) < 1e-3, (utt, ratio, kind)
        ends[kind] += 1
        return kind, expected

    for utt in ("en1", "ko1", "ja1", "en2"):
        audio, lang = speech[utt]
        encoded = unpadded.encode(audio)
        prompt = unpadded.prompt(lang)
        espnet_search.set_hyp_primer(prompt)
        ours = unpadded([encoded], [prompt], DecodeOptions(beam_size=beam, maxlenratio=0.5,
                                                           repetition_guard=0))[0]
        kind, normal_end = compare(utt, encoded, prompt,
                                   (len(ours.tokens) + 10.5) / encoded.shape[0])
        assert kind == "normal", utt
        assert compare(utt, encoded, prompt, 0.05)[0] == "forced", utt
        # maxlen = the normal end's tokens with eot: eot is due on the last step
        ratio = (len(normal_end) - len(prompt) + 0.5) / encoded.shape[0]
        assert compare(utt, encoded, prompt, ratio)[0] != "normal", utt
    print(f"beam 5: identical to ESPnet on 12 decodings; ends: {ends}")
    assert ends["eot at the limit"] >= 1, ends  # the [..., eot, eot] case did come up


def test_int8_quantizes_every_block_linear_and_stays_close(speech, token_list, padded):
    """--dtype int8: the 60 Linears of Whisper base's decoder blocks are int8 (the encoder stays
    float32: transcriber.quantize_int8 says why), and where zero-shot base is sure of itself (English, 30-s padded) the greedy text is
    float32's. (The accuracy that counts, on a fine-tuned model's test set:
    bench/decode_bench.py.)"""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicInt8Linear

    from espnet_lalora.text_norm import normalize
    from espnet_lalora.transcriber import quantize_int8

    int8 = transcriber_for(token_list, pad=True)
    quantize_int8(int8.model)
    modules = list(int8.model.modules())
    assert sum(isinstance(m, DynamicInt8Linear) for m in modules) == 60
    blocks = list(int8.model.decoder.decoders.blocks)
    assert not [m for b in blocks for m in b.modules() if isinstance(m, torch.nn.Linear)]
    options = DecodeOptions(beam_size=1, maxlenratio=0.1)
    for utt in ("en1", "en2"):
        audio, lang = speech[utt]
        texts = [model.to_text(model([model.encode(audio)], [model.prompt(lang)], options)[0])[0]
                 for model in (padded, int8)]
        assert normalize(texts[0]) == normalize(texts[1]), texts  # as scored: "today." = "today"


def test_batched_decoding_equals_one_by_one(speech, unpadded):
    options = DecodeOptions(beam_size=3, maxlenratio=0.5)
    keys = sorted(UTTERANCES)
    encoded = [unpadded.encode(speech[k][0]) for k in keys]
    prompts = [unpadded.prompt(speech[k][1]) for k in keys]
    together = unpadded(encoded, prompts, options)
    for k, e, p, r in zip(keys, encoded, prompts, together):
        alone = unpadded([e], [p], options)[0]
        assert alone.tokens == r.tokens, k
        assert abs(alone.score - r.score) < 1e-3


def test_repetition_guard_ends_a_loop():
    from espnet_lalora.decoding import _repeats

    assert _repeats([5, 1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3], 4)
    assert not _repeats([5, 1, 2, 3, 1, 2, 3, 1, 2, 3], 4)
    assert _repeats([7, 7, 7, 7], 4) and not _repeats([7, 8, 7, 7, 7], 4)
    # with a span, a short n-gram needs more repeats: ceil(20 / n)
    assert not _repeats([7] * 19, 4, 20) and _repeats([7] * 20, 4, 20)
    assert not _repeats([1, 2] * 9, 4, 20) and _repeats([1, 2] * 10, 4, 20)
    assert not _repeats([1, 2, 3, 4, 5] * 3, 4, 20) and _repeats([1, 2, 3, 4, 5] * 4, 4, 20)


def test_repetition_guard_spares_real_repeats_and_ends_real_loops():
    """Through Whisper's own tokenizer, with the guard's defaults, checked after every token as
    the search does: repeats that are speech run to their end; loops are ended."""
    from whisper.tokenizer import get_tokenizer

    from espnet_lalora.decoding import DecodeOptions, cut_repetition

    options = DecodeOptions()
    tokenizer = get_tokenizer(multilingual=True)

    def first_cut(text):  # the CTranslate2 backend cuts its results by the same rule
        tokens = tokenizer.encode(text)
        cut = cut_repetition(tokens, options.repetition_guard, options.repetition_span)
        return (len(cut) if len(cut) < len(tokens) else None), len(tokens)

    for speech in ("ㅋㅋㅋㅋㅋㅋㅋㅋㅋㅋ 진짜 웃기다", " no no no no no no, I said no", "はいはいはいはい、わかりました",
                   " 0 0 0 0 0 0 0 0 1", " ha ha ha ha ha ha ha ha ha ha", " 네 네 네 네 네 네",
                   " 1111 2222 1111 2222", " la la la la la la la la la la la la"):
        assert first_cut(speech)[0] is None, speech
    for loop, repeats in ((" I don't know what to do.", 6), (" ありがとうございました。", 8),
                          (" 감사합니다", 25), ("ㅋ", 100)):
        cut, total = first_cut(loop * repeats)
        assert cut is not None and cut < total, loop


def test_unmerged_lora_decodes_like_the_merged_model(speech, token_list):
    import copy

    from espnet_lalora.transcriber import WhisperTranscriber
    from espnet_lalora.methods.lora_layer import LoRALinear, merge_lora

    torch.manual_seed(0)
    model = build_espnet_model(ROOT / "conf" / "train_lora.yaml", token_list).eval()
    for module in model.modules():
        if isinstance(module, LoRALinear):
            torch.nn.init.normal_(module.lora_B, std=0.01)
    merged = copy.deepcopy(model)
    merge_lora(merged)
    options = DecodeOptions(beam_size=3, maxlenratio=0.5)
    results = []
    for m in (model, merged):
        t = WhisperTranscriber(m)
        results.append([t([t.encode(speech[k][0])], [t.prompt(speech[k][1])], options)[0].tokens
                        for k in ("en1", "ko1")])
    assert results[0] == results[1]


@pytest.mark.parametrize("extra,message", [
    (["--lang", "ja", "--beam_size", "0"], "--beam_size and --batch_size must be at least 1"),
    (["--lang", "ja", "--maxlenratio", "0"], "--maxlenratio must be > 0"),
    (["--lang", "jp"], "language 'jp' is not a Whisper language code"),
    (["--lang", "ja", "--ranking", "whisper", "--patience", "0.05"], "--patience must leave"),
    (["--lang", "ja", "--length_penalty", "2"], "--length_penalty must be between 0 and 1"),
    (["--lang", "ja", "--dtype", "int8", "--ngpu", "1"], "--dtype int8 is for CPU decoding"),
    (["--lang", "ja", "--max_tokens", "0"], "--max_tokens must be at least 1 (or none"),
    (["--lang", "ja", "--repetition_span", "-1"], "--repetition_guard and --repetition_span must"),
    ([], "give --utt2lang or --lang"),
])
def test_decoder_rejects_bad_options(tmp_path, extra, message):
    import subprocess
    import sys

    (tmp_path / "wav.scp").write_text("a-1 /nowhere.wav\n")
    result = subprocess.run([sys.executable, "-m", "espnet_lalora.bin.whisper_inference",
                             "--asr_train_config", "none.yaml", "--output_dir", str(tmp_path / "o"),
                             "--data_path_and_name_and_type", f"{tmp_path / 'wav.scp'},speech,sound",
                             *extra], capture_output=True, text=True)
    assert result.returncode != 0 and message in result.stderr, result.stderr
    assert not (tmp_path / "o").exists()


def test_decoding_config_sets_the_ranking(tmp_path):
    """conf/decode.yaml's keys reach the decoder: a bad ranking there is refused like on the
    command line, and the command line wins over the config."""
    import subprocess
    import sys

    (tmp_path / "wav.scp").write_text("a-1 /nowhere.wav\n")
    (tmp_path / "decode.yaml").write_text("ranking: beam\npatience: 2.0\nlength_penalty: null\n")
    base = [sys.executable, "-m", "espnet_lalora.bin.whisper_inference", "--asr_train_config",
            "none.yaml", "--output_dir", str(tmp_path / "o"), "--lang", "ja",
            "--data_path_and_name_and_type", f"{tmp_path / 'wav.scp'},speech,sound",
            "--config", str(tmp_path / "decode.yaml")]
    result = subprocess.run(base, capture_output=True, text=True)
    assert result.returncode != 0 and "--ranking must be espnet or whisper" in result.stderr
    # the command line's ranking passes; the next check (length_penalty) stops it, no model load
    result = subprocess.run(base + ["--ranking", "whisper", "--length_penalty", "2"],
                            capture_output=True, text=True)
    assert result.returncode != 0 and "--length_penalty must be" in result.stderr, result.stderr
    assert not (tmp_path / "o").exists()
    # the guard's and the cap's keys too
    (tmp_path / "decode.yaml").write_text("repetition_span: -2\nmax_tokens: null\n")
    result = subprocess.run(base, capture_output=True, text=True)
    assert result.returncode != 0 and "--repetition_span must" in result.stderr, result.stderr
    (tmp_path / "decode.yaml").write_text("max_tokens: 0\n")
    result = subprocess.run(base, capture_output=True, text=True)
    assert result.returncode != 0 and "--max_tokens must be at least 1" in result.stderr


class MarkovDecoder:
    """A stand-in for CachedWhisperDecoder: the next token's probabilities depend only on the
    last token (``table[last]``), so a search's outcome can be worked out by hand."""

    def __init__(self, table):
        from types import SimpleNamespace

        self.logits = torch.tensor(table).log()
        self.d = SimpleNamespace(positional_embedding=torch.zeros(448, 1),
                                 token_embedding=SimpleNamespace(num_embeddings=len(table)))

    def cross_kv(self, audio):
        return [(audio, audio)]

    def step(self, tokens, offset, cache, cross, group, audio_mask=None):
        return self.logits[tokens[:, -1]].clone(), [(torch.zeros(tokens.shape[0], 1),) * 2]


def test_whisper_ranking_keeps_a_guarded_loop_out_of_the_finished():
    """Tokens 1-4, end-of-text 5, prompt [0]. From the prompt, 1 and 2 are equally likely; 2
    loops (2 -> 2: 0.8), 1 -> 3 -> 4 -> end-of-text is the sentence. At beam 2, patience 2 (4
    finished to collect), the guard ends [2, 2, 2, 2] at step 4. Ranked as finished, the loop
    would win (sum/length -0.37 against -0.64 for [1, 3, 4]); it is not finished (openai-whisper
    would run it on to the limit), so the sentence wins. With fewer than beam finished at the
    stop, the loop is a candidate again, as openai-whisper's running hypotheses are."""
    from espnet_lalora.decoding import _length_penalty, beam_search

    e = 1e-6
    table = [[e, .45, .45, e, e, .1],  # 0: the prompt
             [e, e, e, .6, e, .4],  # 1
             [e, e, .8, e, e, .2],  # 2: loops
             [e, e, e, e, .6, .4],  # 3
             [e, .1, e, e, e, .9],  # 4
             [.2] * 5 + [e]]  # 5: end-of-text (never fed)
    decoder, audio = MarkovDecoder(table), torch.zeros(1, 100, 1)

    def search(**options):
        return beam_search(decoder, audio, torch.tensor([100]), [[0]], 5, DecodeOptions(
            ranking="whisper", beam_size=2, **{"maxlenratio": 0.2, **options}))[0].tokens

    assert search(patience=2.0) == [1, 3, 4]
    assert search(patience=2.0, repetition_guard=0) == [1, 3, 4]
    # Both 1 and 2 go on to 2, 2 is likelier: at the limit of 4 tokens nothing has finished; the
    # guard ended [2, 2, 2, 2] there, the running [1, 2, 2, 2] scores lower: the loop wins
    table[0], table[1], table[2] = [e, .3, .6, e, e, .1], [e, e, .99, e, e, .01], [e, e, .99,
                                                                                   e, e, .01]
    decoder = MarkovDecoder(table)
    assert search(maxlenratio=0.04) == [2, 2, 2, 2]
    assert _length_penalty(0, None) == 1 and _length_penalty(7, None) == 7
    assert _length_penalty(7, 0.6) == 2 ** 0.6
