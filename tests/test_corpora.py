"""The real-corpus recipes on small copies of their corpora's layouts (tests/corpus_fixtures.py):
each recipe's stages 1-12 once (a few training steps, no zero-shot decoding), shared by the tests
of its data dirs; the 4-hour sampler; the importer's and readers' errors on bad input."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile

import corpus_fixtures
from espnet_lalora.corpus import CorpusError, Utt, sample_hours
from espnet_lalora.datadir import load_data_dir, read_map

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--nj", "1", "--zero_shot", "false",
        "--train_args", "--max_epoch 1 --batch_size 4 --num_workers 0",
        "--inference_args", "--maxlenratio 0.3 --max_tokens 60 --repetition_guard 0"]
# recipe: (fixture, the recipe's data options for the fixture, languages)
RECIPES = {
    "commonvoice_lr": ("commonvoice", ["--langs", "ja,ko", "--hours", "0.001"], {"ja", "ko"}),
    "jsut": ("jsut", ["--dev_utts", "1", "--test_utts", "2"], {"ja"}),
    "zeroth_korean": ("zeroth", ["--dev_speakers", "1"], {"ko"}),
    "custom": ("custom", ["--data_lang", "ko"], {"ja", "ko"}),
    # real speech: the Asterisk prompts as tools/install.sh installs them (under /)
    "asterisk": ("asterisk", ["--langs", "en,es", "--train_per_lang", "3", "--dev_per_lang", "1",
                              "--test_per_lang", "2"], {"en", "es"}),
}


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpora")
    speech = corpus_fixtures.voices(root / "voices")
    made = {name: getattr(corpus_fixtures, name)(root, speech)
            for name in ("commonvoice", "jsut", "zeroth", "custom")}
    return dict(made, asterisk=Path("/"))


def copy_recipe(root: Path, name: str) -> Path:
    """A copy of egs2/<name>/asr1 in a scratch tree laid out like the repository."""
    for shared in ("local", "conf"):
        (root / shared).symlink_to(ROOT / shared)
    shutil.copytree(ROOT / "egs2" / name / "asr1", root / "egs2" / name / "asr1", symlinks=True,
                    ignore=shutil.ignore_patterns("data", "dump", "exp"))
    return root / "egs2" / name / "asr1"


def run(recipe: Path, *args, timeout=900, env=None):
    result = subprocess.run(["./run.sh", "--python", sys.executable, *args], cwd=recipe,
                            capture_output=True, text=True, timeout=timeout, env=env)
    result.output = result.stdout + result.stderr
    return result


@pytest.fixture(scope="module")
def tiny_whisper(tmp_path_factory):
    """A random 1-layer Whisper (d=64) given as "base" through $ESPNET_LALORA_WHISPER_DIR: these
    runs test the recipes' data, not the model (test_recipe.py runs the real base), and the small
    model keeps stages 6-10 cheap."""
    import torch
    from dataclasses import asdict
    from whisper.model import ModelDimensions, Whisper

    torch.manual_seed(0)
    dims = ModelDimensions(n_mels=80, n_audio_ctx=1500, n_audio_state=64, n_audio_head=2,
                           n_audio_layer=1, n_vocab=51865, n_text_ctx=448, n_text_state=64,
                           n_text_head=2, n_text_layer=1)
    model = Whisper(dims)
    with torch.no_grad():  # openai-whisper leaves it torch.empty (a checkpoint fills it)
        model.decoder.positional_embedding.normal_(0, 0.01)
    state = model.state_dict()
    assert all(torch.isfinite(t).all() for t in state.values())
    folder = tmp_path_factory.mktemp("tiny_whisper")
    torch.save({"dims": asdict(dims), "model_state_dict": state}, folder / "base.pt")
    return folder


# later runs in a recipe's tree, after its stages 1-12: "<recipe>/<method>" in all_runs
FOLLOW_UPS = {"custom": [["--method", "lang_experts", "--stage", "7"],
                         ["--method", "lang_distill_nolang", "--stage", "7"]]}


@pytest.fixture(scope="module")
def tiny_env(tiny_whisper):
    """The recipes' environment: the tiny Whisper as "base", one thread per process."""
    return dict(os.environ, OMP_NUM_THREADS="1", ESPNET_LALORA_WHISPER_DIR=str(tiny_whisper))


@pytest.fixture(scope="module")
def all_runs(corpora, tiny_env, tmp_path_factory):
    """Stages 1-12 of every recipe on its fixture, then its follow-up runs; the four recipes side
    by side (one thread each: the stages are mostly single-threaded start-up, so two cores run
    two recipes at once)."""
    from concurrent.futures import ThreadPoolExecutor

    def runs_of(name, recipe):
        fixture, opts, _ = RECIPES[name]
        done = {name: run(recipe, "--corpus_dir", str(corpora[fixture]), *opts, *FAST,
                          env=tiny_env)}
        for args in FOLLOW_UPS.get(name, []):
            if all(r.returncode == 0 for r in done.values()):
                done[f"{name}/{args[1]}"] = run(recipe, *args, *FAST, env=tiny_env)
        return done

    recipes = {name: copy_recipe(tmp_path_factory.mktemp(name), name) for name in RECIPES}
    with ThreadPoolExecutor(len(RECIPES)) as pool:
        futures = {name: pool.submit(runs_of, name, recipe) for name, recipe in recipes.items()}
        results = {}
        for name, future in futures.items():
            results.update(future.result())
    return {key: (recipes[key.split("/")[0]], RECIPES[key.split("/")[0]][2], result)
            for key, result in results.items()}


@pytest.fixture(scope="module", params=list(RECIPES))
def recipe_run(request, all_runs):
    """(recipe dir, languages, result) of one recipe's stages 1-12 run."""
    recipe, langs, result = all_runs[request.param]
    assert result.returncode == 0, result.output[-3000:]
    return recipe, langs, result


def test_stages_1_to_4_make_valid_data_dirs(recipe_run):
    recipe, langs, _ = recipe_run
    for name in ("train", "dev", "test"):
        files = load_data_dir(recipe / "data" / name, require_lang=True)
        assert set(files["utt2lang"].values()) <= langs
        assert (recipe / "data" / name / "spk2utt").is_file()
    for dump in ("train", "dev", "test"):
        wavs = read_map(recipe / "dump" / "raw" / dump / "wav.scp")
        for path in wavs.values():
            info = soundfile.info(path)
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    text = read_map(recipe / "dump/raw/train/text_whisper")
    assert all(t.startswith(tuple(f"<|{lang}|>" for lang in langs)) for t in text.values())


def test_stages_1_to_12_score_and_report(recipe_run):
    recipe, langs, result = recipe_run
    for stage in range(1, 13):
        assert f"Stage {stage}:" in result.stderr
    assert "loss=nan" not in (recipe / "exp/asr_train_lora/train.log").read_text()
    decode = recipe / "exp/asr_train_lora/decode_decode/test"
    n_test = len(read_map(recipe / "data/test/text"))
    assert len((decode / "text").read_text(encoding="utf-8").splitlines()) == n_test
    for metric in ("cer", "wer"):
        for lang in [""] + sorted(langs):
            assert (decode / f"score_{metric}" / lang / "result.txt").is_file()
    assert (decode / "text.norm.ref").is_file()  # normalized texts beside the raw ones
    assert "## CER" in (recipe / "exp/asr_train_lora/RESULTS.md").read_text(encoding="utf-8")


def test_commonvoice_subset_respects_cap_and_speakers(all_runs):
    recipe, _, result = all_runs["commonvoice_lr"]
    data = recipe / "data"
    spk = {s: set(read_map(data / s / "utt2spk").values()) for s in ("train", "dev", "test")}
    assert not spk["train"] & (spk["dev"] | spk["test"])
    # The fixture's speaker "t" has a training clip and is in test: it must be dropped.
    assert not any(s.endswith("tttttttttttt") for s in spk["train"])
    wav, langs = read_map(data / "train/wav.scp"), read_map(data / "train/utt2lang")
    for lang in ("ja", "ko"):
        seconds = sum(soundfile.info(p).duration for u, p in wav.items() if langs[u] == lang)
        assert 0 < seconds <= 0.001 * 3600 + 0.05  # mp3 decoders differ by a frame or two
    assert result.output.count("dropped 1 training utterances") == 2


def test_sampler_is_seeded_deterministic_and_capped():
    import random

    rng = random.Random(0)
    utts = [Utt(f"s{i % 30}-u{i:04d}", f"/a/{i}.mp3", "x", f"s{i % 30}", "ja") for i in range(2000)]
    dur = {u.utt: rng.uniform(1.0, 9.0) for u in utts}
    first = sample_hours(utts, 1.0, 7, lambda u: dur[u.utt])
    again = sample_hours(list(reversed(utts)), 1.0, 7, lambda u: dur[u.utt])
    other = sample_hours(utts, 1.0, 8, lambda u: dur[u.utt])
    total = sum(dur[u.utt] for u in first)
    assert [u.utt for u in first] == [u.utt for u in again]  # input order does not matter
    assert [u.utt for u in first] != [u.utt for u in other]
    assert 3600 - 1.0 <= total <= 3600
    assert sample_hours(utts, 0, 7, lambda u: 1 / 0) == utts  # 0: everything, nothing read


def importer(*args):
    """The importer's exit message (None: success)."""
    from espnet_lalora.bin import import_corpus

    try:
        import_corpus.main([str(a) for a in args])
    except SystemExit as e:
        return e.code
    return None


@pytest.mark.parametrize("row,message", [
    ("audio/nowhere.wav\thello", "audio file {audio}/nowhere.wav not found"),
    ("audio/a.wav\t  ", "empty transcript for audio/a.wav"),
    ("audio/a.wav\thello\tspk\tja\textra", "5 columns; expected 2 to 4"),
    ("audio/a.wav", "1 columns; expected 2 to 4"),
    ("audio/a.wav\thello\tspk\tjp", "language 'jp' is not a Whisper language"),
    ("audio/a.wav\thello", "no language: add a 4th column"),
])
def test_importer_names_the_bad_line(tmp_path, row, message):
    (tmp_path / "audio").mkdir()
    soundfile.write(tmp_path / "audio/a.wav", [0.1, -0.1] * 8000, 16000)
    table = tmp_path / "train.tsv"
    table.write_text("path\ttranscript\tspeaker\tlang\naudio/a.wav\tこんにちは\tspk\tja\n"
                     + row + "\n", encoding="utf-8")
    out = tmp_path / "data" / "train"
    code = importer("--table", table, "--out", out)
    assert code and code.startswith(f"error: {table}:3: ")
    assert message.format(audio=tmp_path / "audio") in code
    assert not out.exists()


def test_importer_reads_csv_quotes_and_kaldi_dirs(corpora, tmp_path):
    out = tmp_path / "data"
    assert importer("--corpus_dir", corpora["custom"], "--lang", "ko", "--out", out) is None
    assert list(read_map(out / "dev/text").values()) == ["물을, 주세요."]
    assert set(read_map(out / "test/utt2lang").values()) == {"ja", "ko"}


def pipe_corpus(root: Path, command: str) -> Path:
    """A corpus for egs2/custom: train.tsv, dev.tsv and a Kaldi dir test/ whose wav.scp line 2 is
    ``command`` ({wav}: the path of a real WAV file)."""
    corpus = root / "corpus"
    (corpus / "audio").mkdir(parents=True)
    wav = corpus / "audio" / "a.wav"
    soundfile.write(wav, [0.1, -0.1] * 8000, 16000)
    for name in ("train", "dev"):
        (corpus / f"{name}.tsv").write_text("audio/a.wav\tこんにちは\tspk\tja\n", encoding="utf-8")
    test = corpus / "test"
    test.mkdir()
    for name, values in (("wav.scp", [str(wav), command.format(wav=wav)]),
                         ("text", ["こんにちは", "さようなら"]), ("utt2spk", ["spk", "spk"]),
                         ("utt2lang", ["ja", "ja"])):
        (test / name).write_text(f"spk-a {values[0]}\nspk-b {values[1]}\n", encoding="utf-8")
    return corpus


def test_importer_refuses_wav_scp_commands_unless_allowed(tmp_path):
    planted = tmp_path / "planted"
    corpus = pipe_corpus(tmp_path, f"touch {planted}; cat {{wav}} |")
    out = tmp_path / "data"
    code = importer("--corpus_dir", corpus, "--out", out)
    assert code and code.startswith(f"error: {corpus / 'test' / 'wav.scp'}:2: utterance spk-b: ")
    assert "is a shell command" in code and "--allow_pipes true" in code, code
    assert not out.exists() and not planted.exists()

    # Allowed, a harmless command is imported as it is and stage 3 runs it.
    shutil.rmtree(corpus)
    corpus = pipe_corpus(tmp_path, "cat {wav} |")
    assert importer("--corpus_dir", corpus, "--out", out, "--allow_pipes", "true") is None
    command = read_map(out / "test" / "wav.scp")["spk-b"]
    assert command == f"cat {corpus / 'audio' / 'a.wav'} |"
    from espnet_lalora.bin import format_data

    format_data.main(["--data", str(out / "test"), "--out", str(tmp_path / "dump"), "--nj", "1",
                      "--allow_pipes", "true"])
    assert soundfile.info(str(tmp_path / "dump" / "data" / "spk-b.wav")).frames == 16000


def test_custom_recipe_runs_no_command_of_a_given_corpus(tmp_path):
    """The probe: a Kaldi dir given to egs2/custom with 'touch FILE; cat a.wav |' in wav.scp.
    Stages 1-3 stop at stage 1, naming the line and the opt-in; FILE is never created."""
    planted = tmp_path / "planted"
    corpus = pipe_corpus(tmp_path, f"touch {planted}; cat {{wav}} |")
    (tmp_path / "tree").mkdir()
    recipe = copy_recipe(tmp_path / "tree", "custom")
    result = run(recipe, "--stage", "1", "--stop_stage", "3", "--corpus_dir", str(corpus),
                 "--data_lang", "ja", timeout=300)
    assert result.returncode != 0
    assert f"{corpus / 'test' / 'wav.scp'}:2: utterance spk-b:" in result.output, result.output
    assert "--allow_pipes true" in result.output
    assert not planted.exists() and not (recipe / "data" / "test").exists()
    assert not (recipe / "dump").exists()

    # The opt-in reaches the importer through local/data.sh's --allow_pipes.
    result = run(recipe, "--stage", "1", "--stop_stage", "1", "--corpus_dir", str(corpus),
                 "--data_lang", "ja", "--local_data_opts", "--allow_pipes true", timeout=300)
    assert result.returncode == 0, result.output[-2000:]
    assert read_map(recipe / "data" / "test" / "wav.scp")["spk-b"].startswith("touch ")
    assert not planted.exists()  # imported, not run: stage 3 decides with its own opt-in


@pytest.fixture(scope="module")
def commonvoice_recipe(all_runs):
    recipe, _, result = all_runs["commonvoice_lr"]
    assert result.returncode == 0, result.output[-3000:]
    return recipe


def snapshot(folder: Path):
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("how", ["missing dir", "unreadable mp3"])
def test_bad_corpus_fails_in_stage_1_and_keeps_data(commonvoice_recipe, corpora, tmp_path, how):
    """Through run.sh: a non-zero exit, the reason, and the earlier data dirs untouched. The
    stage-1 stamp is removed when the stage starts (its options changed), so that nothing counts
    the old data as the outcome of the new options."""
    if how == "missing dir":
        corpus_dir, message = tmp_path / "nowhere", "does not exist. Expected the folder of"
    else:  # ja has no clip_durations.tsv: the sampler reads the mp3 headers in stage 1
        corpus_dir = tmp_path / "cv"
        shutil.copytree(corpora["commonvoice"], corpus_dir)
        (corpus_dir / "ja/clips/common_voice_ja_1001.mp3").write_bytes(b"ID3\x03garbage" * 20)
        message = "ja/train.tsv:3: cannot read audio"
    stamp = commonvoice_recipe / "data" / ".stage1.done"  # there after the fixture's full run
    before = snapshot(commonvoice_recipe / "data")
    result = run(commonvoice_recipe, "--stage", "1", "--stop_stage", "1",
                 "--corpus_dir", str(corpus_dir))
    assert result.returncode != 0
    assert message in result.output, result.output[-2000:]
    assert not stamp.exists()
    assert snapshot(commonvoice_recipe / "data") == {p: b for p, b in before.items() if p != stamp}


@pytest.mark.parametrize("recipe,corpus,args,message", [
    ("commonvoice", "jsut", {}, "does not look like a Common Voice release (one folder per "
     "language): missing {root}/*/train.tsv"),
    ("commonvoice", "commonvoice", {"locales": ["ja", "fr"]}, "--langs fr: {root}/fr not found "
     "(languages present in {root}: ja, ko)"),
    ("commonvoice", None, {}, "--corpus_dir is required: the folder of a Common Voice release"),
    ("jsut", "zeroth", {}, "does not look like JSUT (jsut_ver1.1, basic5000 subset): missing "
     "{root}/basic5000/transcript_utf8.txt"),
    ("zeroth_korean", "jsut", {}, "does not look like Zeroth-Korean (OpenSLR 40): missing "
     "{root}/train_data_01/*/*/*.trans.txt"),
])
def test_wrong_layout_names_what_was_expected_and_where_to_get_it(corpora, recipe, corpus,
                                                                  args, message):
    from espnet_lalora.bin import prep_commonvoice, prep_jsut, prep_zeroth_korean

    root = corpora[corpus] if corpus else ""
    module, defaults, url = {
        "commonvoice": (prep_commonvoice, {"locales": ["ja"]}, "commonvoice.mozilla.org"),
        "jsut": (prep_jsut, {"dev_utts": 1, "test_utts": 1}, "shinnosuketakamichi"),
        "zeroth_korean": (prep_zeroth_korean, {"dev_speakers": 1}, "openslr.org/40"),
    }[recipe]
    with pytest.raises(CorpusError) as error:
        module.prepare(root, hours=4, seed=1, **{**defaults, **args})
    assert message.format(root=root) in str(error.value)
    assert url in str(error.value)


def test_unreadable_mp3_in_stage_3_names_the_line(tmp_path):
    from espnet_lalora.bin import format_data

    bad = tmp_path / "bad.mp3"
    bad.write_bytes(b"ID3\x03garbage" * 20)
    data = tmp_path / "data"
    data.mkdir()
    for name, value in (("wav.scp", bad), ("text", "こんにちは"), ("utt2spk", "s"),
                        ("utt2lang", "ja")):
        (data / name).write_text(f"s-u1 {value}\n", encoding="utf-8")
    with pytest.raises(SystemExit) as exit_info:
        format_data.main(["--data", str(data), "--out", str(tmp_path / "dump"), "--nj", "1"])
    assert "wav.scp:1: utterance s-u1: cannot read" in exit_info.value.code
    assert not (tmp_path / "dump").exists()


def test_readers_name_bad_transcript_lines(corpora, tmp_path):
    from espnet_lalora.bin import prep_jsut, prep_zeroth_korean

    jsut = tmp_path / "jsut"
    shutil.copytree(corpora["jsut"], jsut)
    transcript = jsut / "basic5000/transcript_utf8.txt"
    transcript.write_text(transcript.read_text(encoding="utf-8") + "BASIC5000_0009:雨\n",
                          encoding="utf-8")
    with pytest.raises(CorpusError, match=r"transcript_utf8.txt:7: .*BASIC5000_0009.wav not found"):
        prep_jsut.prepare(jsut, 0, 1, 1, 1)
    zeroth = tmp_path / "zeroth"
    shutil.copytree(corpora["zeroth"], zeroth)
    trans = zeroth / "test_data_01/003/201/201_003.trans.txt"
    trans.write_text("201_003_0000\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"201_003.trans.txt:1: 201_003_0000 has an empty"):
        prep_zeroth_korean.prepare(zeroth, 0, 1, 1)


def test_normalizer_per_language():
    from espnet_lalora.text_norm import characters, normalize, words

    assert normalize("Don't STOP, l’eau!", "en") == "don't stop l'eau"
    assert normalize("'quoted'", "en") == "quoted"
    assert normalize("İSTANBUL Irmak", "tr") == "istanbul ırmak"
    assert normalize("ＡＢＣ　１２３、ﾃｽﾄ。「です」", "ja") == "abc 123 テスト です"
    assert characters("오늘은 날씨가", "ko") == characters("오늘은날씨가", "ko")
    assert words("오늘은 날씨가", "ko") != words("오늘은날씨가", "ko")


def test_language_check_keeps_the_whisper_hook():
    """Stage 1 and 4 tools check language codes without importing whisper (torch); that must
    not use up the import hook that makes whisper.load_model find the offline weights."""
    code = ("import sys, espnet_lalora\n"
            "from espnet_lalora.whisper_langs import check_language\n"
            "check_language('ja', 'test')\n"
            "assert 'torch' not in sys.modules\n"
            "import whisper\n"
            "assert whisper.load_model._espnet_lalora\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_commonvoice_subset_is_the_same_every_time(corpora):
    from espnet_lalora.bin import prep_commonvoice

    first, again = (prep_commonvoice.prepare(corpora["commonvoice"], ["ja", "ko"], 0.001, 5)
                    for _ in range(2))
    assert [u.utt for u in first["train"]] == [u.utt for u in again["train"]]
    assert len(first["train"]) < 8  # the cap took some, not all


def test_language_experts_route_fuse_and_distill_in_a_users_recipe(all_runs, tiny_env):
    """``--method lang_experts`` in the custom recipe (ja, ko): one run trains both experts;
    stage 9 writes the bundle, a model per language and the two fusions; stage 10 decodes the
    fusions and the experts routed by the given and by the detected language, and the reports
    have their rows and the language-identification accuracy. A student without language token
    then trains on the experts' posteriors and decodes without one. The decoder refuses a test
    language without expert, unless told to fall back to the fusion."""
    import yaml

    recipe, _, result = all_runs["custom"]
    assert result.returncode == 0, result.output[-3000:]
    assert "custom/lang_experts" in all_runs, "the lang_experts run did not start"
    _, _, result = all_runs["custom/lang_experts"]
    assert result.returncode == 0, result.output[-3000:]
    exp = recipe / "exp" / "asr_train_lang_experts"
    export = exp / "export"
    bundle = yaml.safe_load((export / "experts" / "experts.yaml").read_text())
    assert bundle["languages"] == ["ja", "ko"] and bundle["rank"] == 8  # from utt2lang
    for folder in ("expert_ja", "expert_ko", "fused_learned", "merged"):
        assert (export / folder / "model.pth").is_file(), folder
    weights = yaml.safe_load((export / "fusion_weights.json").read_text())
    assert weights["granularity"] == "module" and len(weights["weights"]) == 16  # 1-layer model
    assert (export / "expert_similarity.png").is_file() and (export / "fusion_weights.png").is_file()
    for suffix in ("", "_fused_learned", "_routed", "_routed_lid", "_routed_lid_fused"):
        assert (exp / f"decode_decode{suffix}/test/score_cer/result.txt").is_file(), suffix
    lid = yaml.safe_load((exp / "decode_decode_routed_lid/test/lid_accuracy.yaml").read_text())
    assert lid["total"] == 2 and set(lid["per_language"]) == {"ja", "ko"}
    results = (exp / "RESULTS.md").read_text()
    assert "## Language identification" in results and "![fusion_weights]" in results
    summary = (recipe / "exp" / "RESULTS.md").read_text()
    params = yaml.safe_load((export / "params.yaml").read_text())
    experts = f"{params['trainable']:,}"
    assert f"|asr_train_lang_experts|decode_decode_routed|lang_experts|{experts}|{experts}|" \
        in summary
    assert f"|asr_train_lang_experts|decode_decode|lang_experts|{experts}|0|" in summary
    assert f"|{lid['accuracy']:.1f}|" in summary.split("decode_decode_routed_lid|")[1]

    # the decoder and a language without expert
    test = recipe / "dump/raw/test"
    utt2lang = recipe / "utt2lang.es"

    def decode(*extra):
        return subprocess.run(
            [sys.executable, "-m", "espnet_lalora.bin.whisper_inference",
             "--asr_train_config", str(export / "experts/config.yaml"),
             "--asr_model_file", str(export / "experts/experts.pth"),
             "--data_path_and_name_and_type", f"{test / 'wav.scp'},speech,sound",
             "--utt2lang", str(utt2lang), "--output_dir", str(recipe / "fallback"),
             "--maxlenratio", "0.1", *extra], capture_output=True, text=True, env=tiny_env)

    lines = (test / "utt2lang").read_text().splitlines()
    utt2lang.write_text(lines[0] + "\n")  # a test utterance missing from utt2lang
    missing = decode("--route", "utt2lang")
    assert missing.returncode != 0
    assert "1 utterances lack audio or language" in missing.stderr and lines[1].split()[0] in \
        missing.stderr
    utt2lang.write_text("".join(f"{line.split()[0]} es\n" for line in lines))
    refused = decode("--route", "utt2lang")
    assert refused.returncode != 0
    assert "language 'es' (from " in refused.stderr and "has no expert (experts: ja, ko)" in \
        refused.stderr and "--expert_fallback fused" in refused.stderr
    assert not (recipe / "fallback").exists()
    plain = decode()
    assert plain.returncode != 0 and "--route none: this is a language-expert model" in \
        plain.stderr
    fallback = decode("--route", "utt2lang", "--expert_fallback", "fused")
    assert fallback.returncode == 0, fallback.stderr[-2000:]
    assert len((recipe / "fallback/1best_recog/text").read_text().splitlines()) == 2

    # the distilled student, without language token
    _, _, result = all_runs["custom/lang_distill_nolang"]
    assert result.returncode == 0, result.output[-3000:]
    student = recipe / "exp" / "asr_train_lang_distill_nolang"
    assert re.search(r"kd=\d", (student / "train.log").read_text())
    prompts = [line.split()[1] for line in
               (student / "decode_decode/test/token_int").read_text().splitlines()]
    assert prompts == ["50359", "50359"]  # <|transcribe|> right after <|startoftranscript|>
    params = yaml.safe_load((student / "export" / "params.yaml").read_text())
    assert params["method"] == "lang_distill" and params["adapted_modules"] == 16
