"""param_report --memory: the estimate's terms follow the size, the method and the settings."""

import subprocess
import sys
from pathlib import Path

from espnet_lalora.memory import Workload, activation_bytes, training_memory
from espnet_lalora.whisper_sizes import size_of

ROOT = Path(__file__).resolve().parents[1]


def test_terms_follow_settings():
    dims = size_of("large-v3").dims()
    plain = training_memory(dims, 1_550_000_000, 10_000_000, Workload(batch=4))
    assert plain["weights"] == 4 * 1_550_000_000 and plain["gradients+adam"] == 12 * 10_000_000
    assert activation_bytes(dims, Workload(batch=16)) == 2 * activation_bytes(dims, Workload(batch=8))
    half = activation_bytes(dims, Workload(amp=True))
    assert half < activation_bytes(dims, Workload())
    assert activation_bytes(dims, Workload(checkpointing=True)) < half / 4
    turbo = activation_bytes(size_of("turbo").dims(), Workload())
    assert turbo < activation_bytes(dims, Workload())  # 4 decoder blocks, not 32


def test_cli_prints_every_size_and_method(tmp_path):
    run = subprocess.run([sys.executable, "-m", "espnet_lalora.bin.param_report", "--memory",
                          "--asr_config", "conf/train_lora.yaml", "conf/train_vo_lora.yaml",
                          "--whisper_model", "base", "large-v3", "turbo", "--batch", "2"],
                         cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    rows = [line.split(" | ") for line in run.stdout.splitlines() if line.startswith("| train_")]
    assert [(r[1], r[2]) for r in rows] == [(m, s) for s in ("base", "large-v3", "turbo")
                                            for m in ("lora", "vo_lora")]
    weights = {r[2]: float(r[4]) for r in rows}  # GiB: 74 M, 1,550 M, 809 M parameters
    assert round(weights["base"], 2) == 0.27 and 5.7 < weights["large-v3"] < 5.9
    assert 2.9 < weights["turbo"] < 3.1
    bad = subprocess.run([sys.executable, "-m", "espnet_lalora.bin.param_report", "--memory",
                          "--conf_dir", "conf", "--batch", "0"], cwd=ROOT, capture_output=True,
                         text=True)
    assert bad.returncode != 0 and "--batch" in bad.stderr
