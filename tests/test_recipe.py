"""The recipe driver: option errors, and the embedded recipe end to end on a handful of
utterances (all 12 stages, a few training steps), re-run, and resume after a killed stage 8;
LA-LoRA's stages 7-8 on the same tiny data (one and two processes, bad input, reuse)."""

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from espnet_lalora.datadir import read_map
from espnet_lalora.scoring import parse_result
from conftest import assert_resumed, config_copy, recipe_copy

ROOT = Path(__file__).resolve().parents[1]
RECIPE = "egs2/mini_multi/asr1"
TINY = "--langs ja,ko --train_per_lang 6 --dev_per_lang 2 --test_per_lang 2 --real_per_lang 1"


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    """A copy of the recipe in a scratch tree laid out like the repository."""
    root = tmp_path_factory.mktemp("lalora")
    return recipe_copy(root, RECIPE)


def run(recipe, *args, timeout=900):
    return subprocess.run(["./run.sh", "--python", sys.executable, *args], cwd=recipe,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("args,message", [
    (["--bogus", "1"], "unknown option --bogus"),
    (["--stage", "5", "--stop_stage", "3"], "--stage 5 is after --stop_stage 3"),
    (["--asr_config", "conf/nowhere.yaml", "--stage", "8"], "conf/nowhere.yaml: file not found"),
    (["--stage", "x"], "--stage must be a non-negative integer"),
    (["--nj"], "option --nj needs a value"),
    (["--zero_shot", "maybe"], "--zero_shot must be true or false"),
    (["--method", "vo-lora"], "--method vo-lora: no conf/train_vo-lora.yaml; known: adalora aw_lora"),
    (["--asr_tag", "../../../../elsewhere"], "--asr_tag '../../../../elsewhere': must be a plain name"),
    (["--train_set", ""], "--train_set '': must be a plain name"),
    (["--valid_set", "dev/../../x"], "--valid_set 'dev/../../x': must be a plain name"),
    (["--test_sets", "test data/.."], "(the folder name of data/..) '..': must be a plain name"),
    (["--train_args", "--max_epoch '1"], "--train_args '--max_epoch '1': cannot be split into words"),
    (["--lang", "jp"], "--lang jp: not a Whisper language code"),
    (["--allow_pipes", "yes"], "--allow_pipes must be true or false, got 'yes'"),
    (["--whisper_model", "../base"], "../base: no such file or folder; give a Whisper size name"),
    (["--prepare_nproc", "0"], "--prepare_nproc must be a positive integer, got '0'"),
])
def test_bad_options_fail_before_any_stage(recipe, args, message):
    result = run(recipe, *args)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
    assert "Stage" not in result.stderr
    assert not (recipe / "data").exists() and not (recipe / "exp").exists()


def test_rank_zero_is_refused_before_training(recipe, tmp_path):
    config = tmp_path / "rank0.yaml"
    config_copy("train_lora.yaml", config, "rank: 8", "rank: 0")
    result = run(recipe, "--asr_config", str(config), "--stage", "8")
    assert result.returncode != 0 and "adapter_conf.rank = 0" in result.stderr


def test_help_lists_every_option_with_its_default(recipe):
    result = run(recipe, "--help")
    assert result.returncode == 0
    for line in ("--stage", "--test_sets", "--speed_perturb_factors", "--asr_config"):
        assert line in result.stdout
    assert "[conf/train_lora.yaml]" in result.stdout


def test_default_recipe_end_to_end(recipe):
    """Stages 1-12 on a few utterances, then a re-run that does nothing."""
    # six epochs of three steps at a high learning rate: enough to learn the grammar's sentences
    # (test CER about 6% where zero-shot has 73%), so that a model that did not train fails
    args = ["--local_data_opts", TINY, "--nj", "1",
            "--train_args", "--max_epoch 6 --batch_size 4 --num_workers 0 --optim_conf lr=0.005 "
            "--scheduler_conf warmup_steps=2",
            "--inference_args", "--maxlenratio 0.3 --repetition_guard 0",
            "--zero_shot_inference_args", "--max_tokens 30"]
    first = run(recipe, *args)
    assert first.returncode == 0, first.stderr[-3000:]
    for stage in range(1, 13):
        assert f"Stage {stage}:" in first.stderr
    exp = recipe / "exp"
    # run.sh's five test sets: in-grammar, and out-of-grammar / room / other engine (no ko
    # engine), and real speech (the Asterisk prompts: en and es, whatever the training languages)
    for model in ("asr_train_lora", "asr_zero_shot_whisper_base"):
        for test, count, langs in (("test", 4, ("ja", "ko")), ("test_free", 4, ("ja", "ko")),
                                   ("test_room", 4, ("ja", "ko")), ("test_engine", 2, ("ja",)),
                                   ("test_real", 2, ("en", "es"))):
            decode = exp / model / "decode_decode" / test
            assert len((decode / "text").read_text(encoding="utf-8").splitlines()) == count
            for metric in ("cer", "wer"):
                for lang in ("",) + langs:
                    assert (decode / f"score_{metric}" / lang / "result.txt").is_file()
    # fine-tuning moved the model: on the in-grammar sets of its languages it has fewer errors
    # than zero-shot Whisper (adapters that never trained would not)
    def errors(model, test):
        return parse_result(exp / model / "decode_decode" / test / "score_cer/result.txt")
    for test in ("test", "test_room"):
        tuned, zero = errors("asr_train_lora", test), errors("asr_zero_shot_whisper_base", test)
        assert tuned["count"]["Err"] < 0.7 * zero["count"]["Err"], (test, tuned, zero)
    resources = yaml.safe_load((exp / "asr_train_lora" / "train_resources.yaml").read_text())
    assert resources["train_seconds"] > 1 and resources["peak_rss_mb"] > 200
    assert resources["resumed"] is False
    results = (exp / "asr_train_lora" / "RESULTS.md").read_text(encoding="utf-8")
    assert "|dataset|Snt|Wrd|Corr|Sub|Del|Ins|Err|S.Err|" in results
    assert "trainable parameters: 1,081,344" in results and "## CER" in results
    summary = (exp / "RESULTS.md").read_text(encoding="utf-8")
    assert "asr_train_lora" in summary and "asr_zero_shot_whisper_base" in summary
    export = exp / "asr_train_lora" / "export"
    assert (export / "merged" / "model.pth").is_file()
    assert (export / "adapter" / "adapter.pth").stat().st_size < 10_000_000
    assert (export / "ct2" / "model.bin").is_file() and (export / "whisper" / "model.pt").is_file()

    again = run(recipe, *args)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stderr.count("skipping") >= 8
    assert "Stage 8 done in 0 s" in again.stderr or "is trained; skipping" in again.stderr

    # The merged model is an ordinary ESPnet model: stock asr_inference, no plugin code. ESPnet's
    # search at beam 1 and this project's decoder at beam 1 (stage 10's decoder, run as stage 10
    # runs it), with the same length limit, give the same tokens on every Japanese test utterance
    # (one prompt per run).
    env = dict(os.environ, ESPNET_LALORA_OFFLINE="1")
    ja = [line.split()[0] for line in (recipe / "dump/raw/test/utt2lang").read_text().splitlines()
          if line.split()[1] == "ja"]
    assert len(ja) == 2
    (recipe / "key").write_text("\n".join(ja) + "\n")
    stock = subprocess.run([sys.executable, "-m", "espnet2.bin.asr_inference",
                            "--asr_train_config", str(export / "merged/config.yaml"),
                            "--asr_model_file", str(export / "merged/model.pth"),
                            "--data_path_and_name_and_type", "dump/raw/test/wav.scp,speech,sound",
                            "--key_file", "key", "--output_dir", "stock", "--beam_size", "1",
                            "--ctc_weight", "0", "--maxlenratio", "0.3",
                            "--lang_prompt_token", "<|ja|> <|transcribe|>"],
                           cwd=recipe, capture_output=True, text=True, env=env)
    assert stock.returncode == 0, stock.stderr[-2000:]
    greedy = subprocess.run([sys.executable, "-m", "espnet_lalora.bin.whisper_inference",
                             "--asr_train_config", str(export / "merged/config.yaml"),
                             "--asr_model_file", str(export / "merged/model.pth"),
                             "--data_path_and_name_and_type", "dump/raw/test/wav.scp,speech,sound",
                             "--key_file", "key", "--output_dir", "greedy", "--lang", "ja",
                             "--config", "conf/decode.yaml", "--beam_size", "1",
                             "--backend", "pytorch", "--ranking", "espnet", "--maxlenratio", "0.3",
                             "--repetition_guard", "0"],
                            cwd=recipe, capture_output=True, text=True, env=env)
    assert greedy.returncode == 0, greedy.stderr[-2000:]
    # ESPnet drops token id 0 ("!") from its output, so compare without it.
    def token_ints(path):
        return {k: [t for t in v.split() if t != "0"] for k, v in
                ((line.split(" ", 1) + [""])[:2] for line in path.read_text().splitlines())}

    ours = token_ints(recipe / "greedy/1best_recog/token_int")
    theirs = token_ints(recipe / "stock/1best_recog/token_int")
    assert set(theirs) == set(ja)
    assert {k: ours[k] for k in ja} == theirs


def test_quoted_options_split_like_a_shell(recipe):
    """``--local_data_opts`` with quotes gives the words the end-to-end run gave (stage 1 sees
    the same options and skips); unbalanced quotes are refused (test_bad_options...)."""
    quoted = ("--langs 'ja,ko' --train_per_lang \"6\" --dev_per_lang 2 --test_per_lang 2 "
              "--real_per_lang 1")
    result = run(recipe, "--stage", "1", "--stop_stage", "1", "--local_data_opts", quoted)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "data dirs already prepared (data/.stage1.done); skipping" in result.stderr


def test_a_second_run_in_the_same_folder_is_refused(recipe):
    import fcntl

    with open(recipe / "exp" / ".lock", "w") as held:  # as a running driver holds it
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        refused = run(recipe, "--stage", "5", "--stop_stage", "5")
    assert refused.returncode != 0 and "Stage" not in refused.stderr
    assert "another run is using this recipe folder" in refused.stderr
    allowed = run(recipe, "--stage", "5", "--stop_stage", "5")  # released: runs
    assert allowed.returncode == 0 and "Stage 5 done" in allowed.stderr


def test_a_changed_audio_file_is_formatted_again(recipe):
    """Stage 3's fingerprint covers the audio files that wav.scp lists, not only wav.scp."""
    wav_scp = (recipe / "data" / "test" / "wav.scp").read_text().splitlines()
    audio = Path(wav_scp[0].split(maxsplit=1)[1])
    st = audio.stat()
    os.utime(audio, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # re-recorded
    result = run(recipe, "--stage", "3", "--stop_stage", "3", "--nj", "1")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "dump/raw/test is complete; skipping" not in result.stderr
    assert "dump/raw/org/train is complete; skipping" in result.stderr


def test_a_failed_rerun_leaves_no_old_stamp(recipe):
    """The stamp goes before the stage starts: a re-run with new options that fails leaves the
    stage not done, and the next run does it again."""
    score = recipe / "exp" / "asr_train_lora" / "decode_decode" / "test"
    args = ["--stage", "11", "--stop_stage", "11", "--zero_shot", "false"]
    assert run(recipe, *args).returncode == 0 and (score / ".score.done").exists()
    reference = recipe / "dump" / "raw" / "test" / "text"
    good = reference.read_bytes()
    reference.write_bytes(b"\xff" + good)  # not UTF-8: scoring fails on the changed input
    failed = run(recipe, *args)
    assert failed.returncode != 0 and "not valid UTF-8" in failed.stderr
    assert not (score / ".score.done").exists()
    reference.write_bytes(good)
    again = run(recipe, *args)
    assert again.returncode == 0 and "decode_decode/test is scored; skipping" not in again.stderr
    assert "decode_decode/test_free is scored; skipping" in again.stderr  # the others were done
    assert (score / ".score.done").exists()
def test_unmerged_model_decodes_the_test_set_like_the_merged_one(recipe):
    """The merged model (stage 9) and the trained model with its LoRA layers unmerged give the
    same text on every test utterance (this project's decoder: CTranslate2 has only the merged
    one)."""
    exp = recipe / "exp" / "asr_train_lora"

    def decode(config, model_file, out_dir):
        out = subprocess.run([sys.executable, "-m", "espnet_lalora.bin.whisper_inference",
                              "--asr_train_config", str(config), "--asr_model_file",
                              str(model_file), "--data_path_and_name_and_type",
                              "dump/raw/test/wav.scp,speech,sound", "--utt2lang",
                              "dump/raw/test/utt2lang", "--output_dir", out_dir,
                              "--config", "conf/decode.yaml", "--backend", "pytorch",
                              "--maxlenratio", "0.3", "--repetition_guard", "0"],
                             cwd=recipe, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-2000:]
        lines = (recipe / out_dir / "1best_recog/text").read_text(encoding="utf-8").splitlines()
        return dict((line.split(" ", 1) + [""])[:2] for line in lines)

    merged = decode(exp / "export/merged/config.yaml", exp / "export/merged/model.pth", "merged")
    unmerged = decode(exp / "config.yaml", exp / "valid.acc.ave.pth", "unmerged")
    assert len(merged) == 4 and unmerged == merged


def test_adapter_only_checkpoint_loads_back_onto_the_base_model(recipe, monkeypatch):
    """export/adapter/adapter.pth (the trained parameters alone) on the base model built from the
    training config gives the merged model's outputs."""
    from espnet_lalora.espnet_plugin import ASRTask
    from espnet_lalora.export import load_trained_model, merge_check

    monkeypatch.chdir(recipe)  # the config names its token list relative to the recipe
    exp = recipe / "exp" / "asr_train_lora"
    with_adapter, _ = load_trained_model(exp / "config.yaml", exp / "export/adapter/adapter.pth")
    merged, _ = ASRTask.build_model_from_file(exp / "export/merged/config.yaml",
                                              exp / "export/merged/model.pth", "cpu")
    assert merge_check(with_adapter, merged.eval()) < 1e-4


def test_exports_hold_the_merged_weights_and_decode(recipe):
    """export/whisper/model.pt is the merged model's weights (float16) under openai-whisper's
    names, export/ct2 the same tensors under CTranslate2's; openai-whisper and faster-whisper load
    and decode them. (Token agreement is measured on a trained model with check_exports, see
    docs/methods.md: a 1-epoch model's near-tied logits flip with float16 rounding.)"""
    import torch

    from espnet_lalora.ct2_whisper import read_ct2_model, whisper_to_ct2_variables

    export = recipe / "exp" / "asr_train_lora" / "export"
    merged = torch.load(export / "merged/model.pth", map_location="cpu")
    state = torch.load(export / "whisper/model.pt", map_location="cpu")["model_state_dict"]
    for name, tensor in state.items():
        side, rest = name.split(".", 1)
        assert torch.equal(tensor, merged[f"{side}.{side}s.{rest}"].half()), name
    _, ct2 = read_ct2_model(export / "ct2/model.bin")
    for name, tensor in whisper_to_ct2_variables(state).items():
        assert torch.equal(ct2[name], tensor), name
    out = subprocess.run([sys.executable, "-m", "espnet_lalora.bin.check_exports",
                          "--asr_exp", "exp/asr_train_lora", "--data", "dump/raw/test",
                          "--max_utts", "2", "--features", "openai"],
                         cwd=recipe, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [line for line in out.stdout.splitlines() if re.search(r"\| \d+/2 \|", line)]
    assert len(rows) == 3 and "| 2/2 |" in rows[0], out.stdout


def test_a_test_set_given_after_stage_3_is_formatted_at_stage_10(recipe, tmp_path):
    """A Kaldi data dir first named at ``--stage 10``: formatted on demand, decoded, scored; a
    path with no data dir is named in the error."""
    later = tmp_path / "later_set"
    later.mkdir()
    source = recipe / "data" / "test"
    keep = sorted(read_map(source / "utt2lang"))[:2]
    for name in ("wav.scp", "text", "utt2spk", "utt2lang"):
        lines = (source / name).read_text(encoding="utf-8").splitlines()
        (later / name).write_text("".join(f"{line}\n" for line in lines
                                          if line.split()[0] in keep), encoding="utf-8")
    args = ["--stage", "10", "--stop_stage", "11", "--zero_shot", "false",
            "--inference_args", "--maxlenratio 0.3"]
    result = run(recipe, *args, "--test_sets", str(later))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "dump/raw/later_set was not formatted by stage 3" in result.stderr
    decode = recipe / "exp/asr_train_lora/decode_decode/later_set"
    hyps = (decode / "text").read_text(encoding="utf-8").splitlines()  # a hypothesis may be empty
    assert sorted(line.split()[0] for line in hyps) == keep
    assert (decode / "score_cer" / "result.txt").is_file()
    missing = run(recipe, *args, "--test_sets", str(tmp_path / "nowhere"))
    assert missing.returncode != 0
    assert f"--test_sets {tmp_path / 'nowhere'}: no data dir at" in missing.stderr


def kill_after_first_epoch(recipe, exp, *args):
    """Run the driver with ``args`` and kill it (the whole process group) once stage 8 has
    written its first epoch into ``exp``."""
    proc = subprocess.Popen(["./run.sh", "--python", sys.executable, *args], cwd=recipe,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 600
    while not (exp / "1epoch.pth").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (exp / "checkpoint.pth").exists()


def test_killed_training_resumes_from_its_checkpoint(recipe):
    """Kill stage 8 after its first epoch; the re-run continues from the checkpoint."""
    exp = recipe / "exp" / "asr_train_lora"
    shutil.rmtree(exp, ignore_errors=True)
    args = ["--stage", "8", "--stop_stage", "8",
            "--train_args", "--max_epoch 2 --batch_size 4 --num_workers 0"]
    kill_after_first_epoch(recipe, exp, *args)
    assert not (exp / ".train.done").exists()
    assert_resumed(run(recipe, *args), exp)
    assert yaml.safe_load((exp / "train_resources.yaml").read_text())["resumed"] is True


def test_a_kill_while_saving_an_epoch_is_repaired_or_explained(tmp_path):
    """Killed between ESPnet's checkpoint.pth and <N>epoch.pth: the snapshot is written again
    from the checkpoint (else the resumed run fails when it averages); a truncated checkpoint
    is refused with what to do."""
    import torch

    from espnet_lalora.bin.asr_train import repair_interrupted_run

    model = {"w": torch.arange(6.0).reshape(2, 3)}
    torch.save({"model": model, "reporter": {"epoch": 2, "stats": {}}}, tmp_path / "checkpoint.pth")
    torch.save(model, tmp_path / "1epoch.pth")
    repair_interrupted_run(tmp_path)  # the snapshot of epoch 2 was never written
    assert torch.equal(torch.load(tmp_path / "2epoch.pth")["w"], model["w"])
    data = (tmp_path / "2epoch.pth").read_bytes()
    (tmp_path / "2epoch.pth").write_bytes(data[: len(data) // 2])  # killed while writing it
    repair_interrupted_run(tmp_path)
    assert torch.equal(torch.load(tmp_path / "2epoch.pth")["w"], model["w"])
    data = (tmp_path / "checkpoint.pth").read_bytes()
    (tmp_path / "checkpoint.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(SystemExit, match="checkpoint.pth cannot be read.*Remove it"):
        repair_interrupted_run(tmp_path)
    assert (tmp_path / "1epoch.pth").exists() and (tmp_path / "2epoch.pth").exists()


def test_changed_inputs_train_again_from_scratch(recipe):
    """After a finished run, a changed learning rate under the same experiment name: the old
    run is moved aside (said in the log), every epoch is trained again, the model differs."""
    import torch

    exp = recipe / "exp" / "asr_train_lora"
    before = torch.load(exp / "valid.acc.ave.pth", map_location="cpu")
    args = ["--stage", "8", "--stop_stage", "8", "--train_args",
            "--max_epoch 1 --batch_size 4 --num_workers 0 --optim_conf lr=0.003"]
    result = run(recipe, *args)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "changed since it was trained" in result.stderr
    assert "trained to epoch 1, 1 epoch(s) in this run" in result.stderr
    aside = list((recipe / "exp" / "superseded").glob("asr_train_lora_*"))
    assert len(aside) == 1 and (aside[0] / "2epoch.pth").exists()
    after = torch.load(exp / "valid.acc.ave.pth", map_location="cpu")
    assert before.keys() == after.keys()
    assert max((before[k] - after[k]).abs().max().item() for k in before) > 1e-4


# ---- LA-LoRA: stages 7-9 on the tiny data that the end-to-end test built (it runs first).
LA = ["--asr_config", "conf/train_la_lora.yaml", "--la_args", "--steps 3",
      "--train_args", "--max_epoch 1 --batch_size 4 --num_workers 0"]


def la_config(tmp_path, budget):
    return str(config_copy("train_la_lora.yaml", tmp_path / "la.yaml", "budget: 0.1 ",
                           f"budget: {budget} "))


def test_la_lora_selects_then_trains_only_the_chosen_modules(recipe):
    result = run(recipe, "--stage", "7", "--stop_stage", "8", *LA)
    assert result.returncode == 0, result.stderr[-3000:]
    exp = recipe / "exp" / "asr_train_la_lora"
    sel = json.loads((exp / "la_selection.json").read_text())
    assert sel["num_candidates"] == 96 and sel["steps"] == 3 and sel["seed"] == 2024
    assert sel["world_size"] == 1 and 3 <= sel["samples"] <= 12
    assert sel["chosen_params"] == sum(m["params"] for m in sel["modules"] if m["chosen"])
    assert 0 < sel["share"] <= 0.1 and sel["raw_lora_params"] == 1_081_344
    assert (exp / "la_selection.png").stat().st_size > 10_000
    # stages 7 and 8 together: the pass ran at the start of the training process
    assert "the pass runs at the start of stage 8" in result.stderr
    log = (exp / "train.log").read_text(errors="replace")
    assert "LA selection pass: 3/3 batch" in log and "ETA" in log
    assert log.index("la_lora stage 7:") < log.index("trainable parameters")
    assert f"la_lora: rank 8 on {sel['num_chosen']} of 96 Linear layers" in log
    assert f"la_lora: trainable parameters {sel['chosen_params']:,} of" in log
    again = run(recipe, "--stage", "7", "--stop_stage", "8", *LA)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "la_selection.json is complete; skipping" in again.stderr
    assert "is trained; skipping" in again.stderr


def test_la_selection_on_two_processes_equals_one(recipe):
    """torch.distributed (torchrun, gloo on CPU): the batches are shared out, the statistics
    summed; same scores and selection as the one-process run above on the same data."""
    result = run(recipe, "--stage", "7", "--stop_stage", "7", "--la_nproc", "2",
                 "--asr_tag", "la_two", *LA)
    assert result.returncode == 0, result.stderr[-3000:]
    one = json.loads((recipe / "exp/asr_train_la_lora/la_selection.json").read_text())
    two = json.loads((recipe / "exp/asr_la_two/la_selection.json").read_text())
    assert (one["world_size"], two["world_size"]) == (1, 2)
    assert (two["steps"], two["samples"]) == (one["steps"], one["samples"])
    assert two["chosen"] == one["chosen"]
    for a, b in zip(one["modules"], two["modules"]):
        assert a["name"] == b["name"] and b["score"] == pytest.approx(a["score"], rel=1e-4)


def test_seed_reaches_the_stage_7_pass_and_names_the_experiment(recipe):
    """``--seed 7``: its own experiment (asr_train_la_lora_seed7), the pass under seed 7 (another
    LoRA initialization and batch order than seed 2024's: other scores); a seed that is not a
    number is refused."""
    result = run(recipe, "--stage", "7", "--stop_stage", "7", "--seed", "7", *LA)
    assert result.returncode == 0, result.stderr[-3000:]
    default = json.loads((recipe / "exp/asr_train_la_lora/la_selection.json").read_text())
    seeded = json.loads((recipe / "exp/asr_train_la_lora_seed7/la_selection.json").read_text())
    assert (default["seed"], seeded["seed"]) == (2024, 7)
    assert [m["score"] for m in seeded["modules"]] != [m["score"] for m in default["modules"]]
    bad = run(recipe, "--stage", "7", "--seed", "one", *LA)
    assert bad.returncode != 0 and "--seed must be a non-negative integer, got 'one'" in bad.stderr


def test_la_bad_selection_and_budgets_are_refused(recipe, tmp_path):
    exp = recipe / "exp" / "asr_train_la_lora"
    before = (exp / "la_selection.json").read_bytes()
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"chosen": ["decoder.decoders.blocks.11.attn.query"],
                                 "whisper_model": "small"}))
    bad = run(recipe, "--stage", "7", "--stop_stage", "8", "--la_selection", str(other), *LA)
    assert bad.returncode != 0
    assert "do not exist in this model (e.g. decoder.decoders.blocks.11.attn.query)" in bad.stderr
    assert "Stage 8" not in bad.stderr and (exp / "la_selection.json").read_bytes() == before

    reuse = run(recipe, "--stage", "7", "--stop_stage", "7", "--asr_tag", "la_reuse",
                "--prepared", str(exp / "la_selection.json"), *LA)
    assert reuse.returncode == 0 and "all in this model" in reuse.stderr, reuse.stderr[-2000:]

    for budget, message in (("0", "must be above 0"), ("1.5", "above 100%")):
        result = run(recipe, "--stage", "7", *LA, "--asr_config", la_config(tmp_path, budget))
        assert result.returncode != 0 and message in result.stderr, result.stderr[-2000:]
        assert "Stage" not in result.stderr


# ---- S2-LoRA and AdaLoRA from stage 7, on the tiny data that the end-to-end test built.
RANKED = ["--stage", "7", "--zero_shot", "false",
          "--inference_args", "--maxlenratio 0.3 --repetition_guard 0"]


def test_s2_lora_trains_merges_and_writes_its_rank_pattern(recipe):
    """``--method s2_lora`` through stages 7-12: the exact trainable count in the summary, the
    learned pattern (JSON and heat map, linked from RESULTS.md) read from the model that stage 9
    merged, and a merged model with the keys of a plain one."""
    import torch

    result = run(recipe, "--method", "s2_lora", *RANKED,
                 "--train_args", "--max_epoch 1 --batch_size 4 --num_workers 0")
    assert result.returncode == 0, result.stderr[-3000:]
    exp = recipe / "exp" / "asr_train_s2_lora"
    pattern = json.loads((exp / "export" / "rank_pattern.json").read_text())
    assert len(pattern["modules"]) == 96 and pattern["of"] == 96 * 16
    state = torch.load(exp / "valid.acc.ave.pth", map_location="cpu")
    nonzero = sum(int((v != 0).sum()) for k, v in state.items() if k.endswith(".lora_coeff"))
    assert pattern["kept"] == nonzero > 0
    assert (exp / "export" / "rank_pattern.png").stat().st_size > 10_000
    assert "![rank_pattern](export/rank_pattern.png)" in (exp / "RESULTS.md").read_text()
    summary = (recipe / "exp" / "RESULTS.md").read_text(encoding="utf-8")
    # a row per method and decoding: trainable, stored beside the base model at inference
    assert "|asr_train_s2_lora|decode_decode|s2_lora|99,840|0|9.23|0.139||" in summary
    assert "|asr_zero_shot_whisper_base|decode_decode|zero-shot|0|0|0.00|0.000||" in summary
    merged = torch.load(exp / "export" / "merged" / "model.pth", map_location="cpu")
    assert "encoder.encoders.blocks.0.attn.query.weight" in merged
    assert not any("lora" in k or "coeff" in k for k in merged)
    assert (exp / "decode_decode" / "test" / "score_cer" / "result.txt").is_file()


def test_adalora_prunes_on_schedule_and_resumes_with_its_pattern(recipe, tmp_path):
    """AdaLoRA under ESPnet's trainer: ranks are reallocated at every step of the budget
    schedule (the log's budgets are PEFT's schedule, the kept ranks follow), the final budget is
    reached; stage 8 killed after its first epoch resumes with the step count and the pattern
    of the checkpoint; stage 9 merges and reports the pattern (the S2-LoRA test decodes)."""
    import torch

    config = config_copy("train_adalora.yaml", tmp_path / "adalora.yaml", "deltaT: 10 ",
                         "deltaT: 1 ")
    config.write_text(config.read_text().replace("tfinal_share: 0.3 ", "tfinal_share: 0.6 "))
    exp = recipe / "exp" / "asr_train_adalora"
    args = ["--asr_config", str(config), "--asr_tag", "train_adalora", *RANKED,
            "--stop_stage", "9", "--train_args", "--max_epoch 2 --batch_size 3 --num_workers 0"]
    kill_after_first_epoch(recipe, exp, *args)
    assert not (exp / "2epoch.pth").exists()
    result = run(recipe, *args)
    assert result.returncode == 0, result.stderr[-3000:]
    log = (exp / "train.log").read_text(errors="replace")
    assert "The training was resumed using" in log
    assert "adalora_reg=" in log  # the orthogonality term, added to ESPnet's loss and logged
    total = int(re.search(r"adalora: (\d+) optimizer steps", log).group(1))
    per_epoch = total // 2
    first, second = (torch.load(exp / f"{e}epoch.pth", map_location="cpu") for e in (1, 2))
    assert (int(first["adalora_step"]), int(second["adalora_step"])) == (per_epoch, total)

    peft_config = peft_schedule(total)
    steps = [(int(s), int(b), int(k)) for s, b, k in
             re.findall(r"adalora: step (\d+): budget (\d+), ranks kept (\d+)", log)]
    expected = [s for s in range(total) if peft_config["tinit"] < s <= peft_config["final"]]
    assert [s for s, _, _ in steps] == expected and len(expected) >= 2
    for step, budget, kept in steps:
        assert budget == peft_config["budget"](step) and kept == budget
    assert steps[-1][1] == 8 * 96 and steps[0][1] < 12 * 96

    def zeros(state):
        return {k: (v == 0) for k, v in state.items() if k.endswith("lora_E.default")}

    assert all(torch.equal(a, b) for a, b in zip(zeros(first).values(), zeros(second).values()))
    pattern = json.loads((exp / "export" / "rank_pattern.json").read_text())
    assert (pattern["kept"], pattern["of"]) == (8 * 96, 12 * 96)
    assert len({m["rank"] for m in pattern["modules"]}) > 1  # ranks were moved between modules
    params = (exp / "export" / "params.yaml").read_text()
    assert "trainable: 1623168" in params and "rank_pattern_kept: 768" in params
    merged = torch.load(exp / "export" / "merged" / "model.pth", map_location="cpu")
    assert not any("lora" in k or "adalora" in k or "base_layer" in k for k in merged)


def peft_schedule(total):
    """PEFT's budget schedule for the test config (init_r 12, target_r 8, shares 0.1 / 0.6)."""
    from peft.tuners.adalora.layer import RankAllocator

    from espnet_lalora.methods import get_method
    from espnet_lalora.methods.adalora import schedule

    config = get_method("adalora").parse_config({"tinit_share": 0.1, "tfinal_share": 0.6})
    tinit, tfinal = schedule(config, total)
    allocator = RankAllocator.__new__(RankAllocator)
    allocator.peft_config = type("C", (), {"tinit": tinit, "tfinal": tfinal, "total_step": total,
                                           "deltaT": 1})()
    allocator.init_bgt, allocator.target_bgt = 12 * 96, 8 * 96
    return {"tinit": tinit, "final": total - tfinal,
            "budget": lambda step: allocator.budget_schedule(step)[0]}


def test_sweep_runs_records_resumes_and_reports(recipe, tmp_path):
    """bench/sweep.py through the real driver: one method, its learning rate "tuned" on a grid of
    one rate, one seed, on the tiny data (the run's own --local_data_opts replace the sweep's
    larger test sets). The record holds every utterance's errors, dev's included, as sclite
    counted them, for both decodings (the recipe's, and the first sweep's greedy one); training
    ran at the grid's rate; a second sweep finds the record and runs nothing. The method is
    ``bitfit`` (``--method bitfit``, as the sweep runs it): the biases alone train, stage 9
    exports without merging and reports the count."""
    records, report = tmp_path / "runs", tmp_path / "results.md"
    run_args = shlex.join(["--local_data_opts", TINY, "--nj", "1", "--zero_shot", "false",
                           "--train_args", "--max_epoch 1 --batch_size 4 --num_workers 0",
                           "--inference_args", "--maxlenratio 0.3"])
    cmd = [sys.executable, str(ROOT / "bench/sweep.py"), "--recipe", str(recipe), "--sizes",
           "full", "--seeds", "1", "--methods", "bitfit", "--tune_lr", "bitfit", "--lr_grid",
           "0.01", "--records", str(records), "--report", str(report), "--readme", "none",
           "--run_args", run_args]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    record = json.loads((records / "full/bitfit_lr0.01_seed1.json").read_text())
    order = json.loads((records / "full/test_sets.json").read_text())
    work = recipe / "sweep/full"
    exp = work / "exp/asr_bitfit_lr0.01_seed1"
    assert record["lr"] == 0.01 and record["decoding"]["beam_size"] == 5
    assert yaml.safe_load((exp / "config.yaml").read_text())["optim_conf"]["lr"] == 0.01
    for test in ("dev", "test", "test_free", "test_room", "test_engine"):
        assert order[test]["utts"] == sorted(read_map(work / "data" / test / "text"))
        for key, tag in (("errors", "decode_decode"), ("greedy_errors", "decode_decode_greedy_old")):
            scored = exp / tag / test / "score_cer/result.txt"
            assert sum(record[key][test]) == parse_result(scored)["count"]["Err"], (key, test)
    assert set(order["test_room"]["sentences"]) <= set(order["test"]["sentences"])
    assert record["trainable"] == 75_776 and record["train_seconds"] > 0
    assert "nothing to merge" in (work / "exp/logs/sweep_bitfit_lr0.01_seed1.log").read_text()
    params = (exp / "export" / "params.yaml").read_text()
    assert "trainable: 75776" in params and "trainable_bias_vectors: 112" in params
    assert (exp / "export" / "adapter" / "adapter.pth").stat().st_size < 1_000_000
    assert "percent_of_raw_lora: 7.00" in params  # 75,776 / 1,081,344 = 7.0076%
    assert "| bitfit | 75,776 | 0.01 (chosen on dev) | 1 |" in report.read_text()
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "all 1 planned runs are recorded" in again.stderr
    # without its record the run is made again from the driver's stamps: nothing is redone (dev
    # is a test set here and the validation set: decoding it must not rewrite what training read)
    (records / "full/bitfit_lr0.01_seed1.json").unlink()
    redo = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert redo.returncode == 0, redo.stderr[-3000:]
    log = (work / "exp/logs/sweep_bitfit_lr0.01_seed1.log").read_text()
    assert "test set dev is the validation set" in log and "is trained; skipping" in log
    assert "Stage 6 done in 0 s" in log
    assert json.loads((records / "full/bitfit_lr0.01_seed1.json").read_text())["errors"] == \
        record["errors"]
