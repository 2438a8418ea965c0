"""LoRA language experts on the real Whisper base model: routing by the transcript's language
token in ESPnet's forward (an expert learns from its language only), mixed-language batches
decoded per row exactly as each merged expert decodes alone, exact fusion, the distillation
term, the bundle format and its checks, and the decoder's errors for languages without an
expert."""

import copy
from pathlib import Path

import pytest
import torch
import yaml
from conftest import build_espnet_model, config_copy

from espnet_lalora.decoding import DecodeOptions
from espnet_lalora.methods.base import AdapterConfigError
from espnet_lalora.methods.expert_bundle import combine_bundles, load_bundle_into, save_bundle
from espnet_lalora.methods.expert_layer import expert_modules, merge_with_weights
from espnet_lalora.methods.expert_router import FUSED, NO_EXPERT, language_token_ids

ROOT = Path(__file__).resolve().parents[1]
LANGS = ["en", "ja", "ko"]


def experts_model(token_list, langs=LANGS, *extra):
    torch.manual_seed(0)  # the same model whatever ran before in this process
    model = build_espnet_model(ROOT / "conf" / "train_lang_experts.yaml", token_list,
                               "--adapter_conf", f"languages=[{','.join(langs)}]",
                               "--encoder_conf", "do_pad_trim=false", *extra)
    torch.manual_seed(0)
    for m in expert_modules(model).values():  # trained-like experts: each moves the model
        m.experts_B.data.normal_(0.0, 0.01)
    return model.eval()


@pytest.fixture(scope="module")
def model(token_list):
    return experts_model(token_list)


def batch_of(speech, utts, langs):
    """ESPnet's training batch: speech and transcript (language token first, as stage 4 writes
    it; a few text tokens). The audio is cut to one length (1.5 s): without 30-s padding,
    Whisper's encoder (no padding mask) would see another utterance's padding in a batch."""
    cut = 24000
    assert all(len(speech[u][0]) >= cut for u in utts)
    waves = [torch.from_numpy(speech[u][0][:cut]) for u in utts]
    lengths = torch.tensor([len(w) for w in waves])
    wave = torch.nn.utils.rnn.pad_sequence(waves, batch_first=True)
    lang_ids = language_token_ids(langs)
    text = torch.tensor([[lid, 50359, 50363, 400 + sum(map(ord, u)) % 97, 1002]
                         for u, lid in zip(utts, lang_ids)])
    return dict(speech=wave, speech_lengths=lengths, text=text,
                text_lengths=torch.full((len(utts),), text.shape[1]))


def test_trainable_count_is_one_raw_lora_per_language(model):
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == 3 * 1_081_344
    assert len(expert_modules(model)) == 96


def test_training_routes_each_utterance_to_its_own_expert(model, speech):
    """In a mixed batch each expert gets exactly the gradient of its own utterances (half of
    it: ESPnet averages the loss over the batch), and an absent language's expert none."""
    model.train()

    def expert_grads(batch):
        model.zero_grad()
        loss, _, _ = model(**batch)
        loss.backward()
        m = model.encoder.encoders.blocks[2].attn.value
        return m.experts_B.grad.clone(), m.experts_A.grad.clone()

    mixed = expert_grads(batch_of(speech, ["ja1", "ko1"], ["ja", "ko"]))
    assert model.lang_router.route.tolist() == [1, 2]
    alone_ja = expert_grads(batch_of(speech, ["ja1"], ["ja"]))
    alone_ko = expert_grads(batch_of(speech, ["ko1"], ["ko"]))
    model.eval()
    for g_mixed, g_ja, g_ko in zip(mixed, alone_ja, alone_ko):
        assert float(g_mixed[0].abs().max()) == 0.0  # en: not in the batch
        assert float(g_ja[1].abs().max()) > 0
        # the batch of two runs other GEMM shapes through 12 blocks: float32 rounding differs
        # by up to ~1e-4 of the gradient's scale (measured over seeds), and CI once saw 2.5e-3
        # (threaded reductions); a misrouted row would differ by its whole size
        for got, alone in ((g_mixed[1], g_ja[1] / 2), (g_mixed[2], g_ko[2] / 2)):
            torch.testing.assert_close(got, alone, rtol=0, atol=1e-2 * float(alone.abs().max()))


def test_a_language_without_expert_in_training_is_named(model, speech):
    batch = batch_of(speech, ["en1"], ["fr"])
    with pytest.raises(RuntimeError, match=r"not the language token of an expert \(en, ja, ko\)"):
        model(**batch)


@pytest.fixture(scope="module")
def transcriber(model):
    from espnet_lalora.transcriber import WhisperTranscriber

    # a copy: the transcriber puts the encoder's attention through the fused kernel in place, and
    # the other tests compare `model` with a freshly built base model to 1e-5
    return WhisperTranscriber(copy.deepcopy(model))


def test_mixed_language_batch_decodes_as_each_merged_expert_alone(model, transcriber, speech):
    """The per-row update (multi-LoRA serving) against plain merged weights: a batch mixing three
    languages (beam 2, so the rows are regrouped as utterances finish) gives, per utterance, the
    tokens that its language's merged expert gives alone; another expert gives other tokens."""
    from espnet_lalora.transcriber import WhisperTranscriber

    utts = ["en1", "ja1", "ko1", "ko2"]
    langs = [speech[u][1] for u in utts]
    routes = [LANGS.index(lang) for lang in langs]
    options = DecodeOptions(beam_size=2, maxlenratio=0.2, repetition_guard=0)
    encoded = [transcriber.encode(speech[u][0], r) for u, r in zip(utts, routes)]
    mixed = transcriber(encoded, [transcriber.prompt(lang) for lang in langs], options, routes)
    for lang in LANGS:
        merged = copy.deepcopy(model)
        merge_with_weights(merged, one_language=lang)
        alone = WhisperTranscriber(merged.eval())
        for utt, result in zip(utts, mixed):
            if speech[utt][1] != lang:
                continue
            ref = alone([alone.encode(speech[utt][0])], [alone.prompt(lang)], options)[0]
            assert result.tokens == ref.tokens, (utt, result.tokens, ref.tokens)
    other = transcriber([transcriber.encode(speech["ko1"][0], 0)], [transcriber.prompt("ko")],
                        options, [0])[0]
    assert other.tokens != mixed[2].tokens  # the en expert on Korean speech: the route matters


def test_no_expert_route_is_the_base_model_and_fused_route_the_fusion(model, token_list, speech):
    base = build_espnet_model(ROOT / "conf" / "whisper_base.yaml", token_list, "--encoder_conf",
                              "do_pad_trim=false").eval()
    fused = copy.deepcopy(model)
    merge_with_weights(fused)  # uniform
    x = torch.from_numpy(speech["ko1"][0])[None]
    lengths = torch.tensor([x.shape[1]])
    with torch.no_grad():
        model.lang_router.route = torch.tensor([NO_EXPERT])
        routed_base, _ = model.encode(x, lengths)
        model.lang_router.route = torch.tensor([FUSED])
        routed_fused, _ = model.encode(x, lengths)
        expected_base, _ = base.encode(x, lengths)
        expected_fused, _ = fused.encode(x, lengths)
    torch.testing.assert_close(routed_base, expected_base, rtol=0, atol=1e-5)
    torch.testing.assert_close(routed_fused, expected_fused, rtol=1e-4, atol=2e-3)
    assert float((expected_base - expected_fused).abs().max()) > 0.1


def test_fusion_merges_the_exact_weighted_sum_of_updates(model):
    name = "decoder.decoders.blocks.1.cross_attn.value"
    layer = model.get_submodule(name)
    w0 = layer.weight.detach().clone()
    deltas = [layer.expert_scaling * layer.experts_B[e] @ layer.experts_A[e] for e in range(3)]
    weights = {m.group: torch.tensor([0.5, -0.25, 2.0]) for m in expert_modules(model).values()}
    fused = copy.deepcopy(model)
    assert merge_with_weights(fused, weights) == 96
    expected = w0 + 0.5 * deltas[0] - 0.25 * deltas[1] + 2.0 * deltas[2]
    torch.testing.assert_close(fused.get_submodule(name).weight, expected, rtol=1e-5, atol=1e-6)
    assert not any("expert" in k or "lang_router" in k for k in fused.state_dict())
    assert torch.equal(layer.weight, w0)  # the original keeps its experts unmerged


def test_bundle_round_trip_and_its_checks(model, token_list, tmp_path):
    config = {"encoder_conf": {"whisper_model": "base"}, "adapter_conf": {"rank": 8}}
    save = lambda obj, path: (path.parent.mkdir(parents=True, exist_ok=True),  # noqa: E731
                              torch.save(obj, path))
    meta = save_bundle(model, config, tmp_path / "b1", save)
    assert meta["languages"] == LANGS and meta["rank"] == 8 and len(meta["modules"]) == 96
    fresh = experts_model(token_list)
    for m in expert_modules(fresh).values():
        m.experts_B.data.zero_()
    load_bundle_into(fresh, tmp_path / "b1")
    name = "encoder.encoders.blocks.0.mlp.0"
    assert torch.equal(fresh.get_submodule(name).experts_B, model.get_submodule(name).experts_B)

    # experts trained on another base model (same shapes, other weights) are refused
    other = copy.deepcopy(fresh)
    with torch.no_grad():
        other.decoder.decoders.token_embedding.weight[:4] += 1.0
    with pytest.raises(ValueError, match="trained on another base model"):
        load_bundle_into(other, tmp_path / "b1")

    # combining bundles: languages concatenate; another rank or a language twice is refused
    second = tmp_path / "b2"
    save_bundle(model, config, second, save)
    meta2 = yaml.safe_load((second / "experts.yaml").read_text())
    (second / "experts.yaml").write_text(yaml.safe_dump(dict(meta2, languages=["es", "fr", "de"])))
    combined, state = combine_bundles([tmp_path / "b1", second])
    assert combined["languages"] == LANGS + ["es", "fr", "de"]
    assert state[f"{name}.experts_A"].shape[0] == 6
    with pytest.raises(ValueError, match="language"):
        combine_bundles([tmp_path / "b1", tmp_path / "b1"])
    (second / "experts.yaml").write_text(yaml.safe_dump(dict(meta2, languages=["es"], rank=4)))
    with pytest.raises(ValueError, match="rank 4 differs"):
        combine_bundles([tmp_path / "b1", second])


def test_distillation_adds_the_kl_to_the_experts_and_drops_the_language_token(
        model, token_list, speech, tmp_path):
    """The student's loss is ESPnet's cross-entropy plus kd_weight * T^2 * KL(teacher ||
    student), the teacher being each utterance's own expert on the same transcript; without the
    language token the student sees the transcript one token shorter, aligned to the teacher's
    positions after the language token."""
    save = lambda obj, path: (path.parent.mkdir(parents=True, exist_ok=True),  # noqa: E731
                              torch.save(obj, path))
    save_bundle(model, {"encoder_conf": {"whisper_model": "base"}}, tmp_path / "bundle", save)
    batch = batch_of(speech, ["ja1", "ko1"], ["ja", "ko"])
    for language_token in (True, False):
        conf = tmp_path / f"distill_{language_token}.yaml"
        config_copy("train_lang_distill.yaml", conf, "teacher: exp/asr_train_lang_experts/export/"
                    "experts", f"teacher: {tmp_path / 'bundle'}")
        if not language_token:
            conf.write_text(conf.read_text().replace("language_token: true",
                                                     "language_token: false"))
        student = build_espnet_model(conf, token_list, "--encoder_conf", "do_pad_trim=false")
        assert sum(p.numel() for p in student.parameters() if p.requires_grad) == 1_081_344
        student.train()
        seen = {}
        student.decoder.register_forward_hook(
            lambda m, inputs, out: seen.setdefault("ys_in", []).append(inputs[2]))
        student.criterion_att.register_forward_pre_hook(
            lambda m, inputs: seen.__setitem__("criterion", inputs))
        loss, stats, _ = student(**batch)
        teacher_ys, student_ys = seen["ys_in"][0], seen["ys_in"][1]
        if language_token:
            assert torch.equal(teacher_ys, student_ys)
        else:
            assert torch.equal(student_ys[:, 1:], teacher_ys[:, 2:])  # the language token gone
            assert student_ys.shape[1] == teacher_ys.shape[1] - 1
        # the student's LoRA starts at zero: the student is the base model, the teacher is not,
        # so the KL is positive; the loss is ESPnet's cross-entropy (the criterion without its
        # hooks) + 1.0 * kd
        assert float(stats["kd"]) > 0
        cross_entropy = student.criterion_att.forward(*seen["criterion"])
        torch.testing.assert_close(loss.reshape(()), cross_entropy + stats["kd"].reshape(()),
                                   rtol=1e-5, atol=1e-4)
        assert student.lang_distill.teacher_logits is None  # used once, then dropped
        # validation: no teacher pass, no KL in the loss
        student.eval()
        seen.clear()
        _, stats, _ = student(**batch)
        assert len(seen["ys_in"]) == 1 and "kd" not in stats


@pytest.mark.parametrize("conf,message", [
    ({"languages": ["ja", "jp"]}, "jp"),
    ({"languages": []}, "adapter_conf.languages is empty"),
    ({"languages": ["ja", "ja"]}, "listed twice"),
    ({"rank": 0}, "adapter_conf.rank = 0"),
    ({"fusion_granularity": "head"}, "fusion_granularity"),
])
def test_bad_expert_configs_are_refused(conf, message):
    from espnet_lalora.methods import get_method

    with pytest.raises(AdapterConfigError, match=message):
        get_method("lang_experts").parse_config(conf)


def test_distillation_teacher_must_be_a_bundle(tmp_path):
    from espnet_lalora.methods import get_method

    method = get_method("lang_distill")
    with pytest.raises(AdapterConfigError, match="adapter_conf.teacher is not set"):
        method.parse_config({})
    config = method.parse_config({"teacher": str(tmp_path)})
    with pytest.raises(AdapterConfigError, match="not an expert bundle"):
        method.inject(torch.nn.Module(), config)


def test_the_teacher_is_an_input_of_the_students_training(capsys):
    """The driver's stage-8 fingerprint covers what check_config lists after the method: the
    teacher bundle of a student (retrained experts retrain the student), nothing for LoRA."""
    from espnet_lalora.bin.check_config import main

    recipe = Path(__file__).resolve().parents[1] / "egs2/mini_multi/asr1/conf"
    main(["--asr_config", str(recipe / "train_lang_distill.yaml"), "--print_info"])
    assert capsys.readouterr().out == "lang_distill - -\texp/asr_train_lang_experts/export/experts\n"
    main(["--asr_config", str(recipe / "train_lora.yaml"), "--print_info"])
    assert capsys.readouterr().out == "lora - -\n"
