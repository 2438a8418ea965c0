"""espnet_lalora.significance: per-utterance counts from real sclite output, and intervals and
p-values that behave as they must on data whose answer is known."""

import numpy as np
import pytest

from espnet_lalora.scoring import run_sclite, write_trn
from espnet_lalora.significance import (cer, compare, holm, paired_bootstrap, sclite_utterances,
                                        cer_interval, seed_interval)


def test_counts_come_from_sclite_alignments(tmp_path):
    ref = {"u1": list("あいうえお"), "u2": list("かきく")}
    hyp = {"u1": list("あいえおか"), "u2": list("かきく")}  # u1: 1 deletion + 1 insertion
    write_trn(tmp_path / "ref.trn", ref)
    write_trn(tmp_path / "hyp.trn", hyp)
    run_sclite(tmp_path / "ref.trn", tmp_path / "hyp.trn", tmp_path / "result.txt")
    counts = sclite_utterances(tmp_path / "result.txt")
    assert counts == {"u1": (2, 5), "u2": (0, 3)}
    assert cer(counts) == pytest.approx(25.0)


def simulated(rate, runs, utts=200, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(10, 40, size=utts)
    return rng.binomial(lengths, rate, size=(runs, utts)), lengths


def test_a_method_against_itself_is_not_different():
    errors, lengths = simulated(0.05, 3)
    result = compare(errors, errors, lengths)
    assert result["diff"] == 0 and result["low"] <= 0 <= result["high"] and result["p"] > 0.5


def test_a_clear_difference_is_found_and_bracketed():
    a, lengths = simulated(0.08, 3, seed=1)
    b = np.random.default_rng(2).binomial(lengths, 0.04, size=(3, len(lengths)))
    result = compare(a, b, lengths)
    assert result["p"] < 0.01 and result["low"] > 0
    assert result["low"] < result["diff"] < result["high"]
    assert 2.5 < result["diff"] < 5.5  # about 4 points


def disagreeing_runs(lengths):
    """Three runs around simulated(0.05, ...)'s error rate that disagree with each other."""
    rng = np.random.default_rng(4)
    return np.stack([rng.binomial(lengths, r) for r in (0.01, 0.05, 0.09)])


def test_noisy_seeds_widen_the_interval():
    """Same utterances, same mean, but one method's runs disagree with each other: the seed
    resampling must show it (the utterance bootstrap alone would not)."""
    steady, lengths = simulated(0.05, 3, seed=3)
    noisy = disagreeing_runs(lengths)
    calm = compare(steady, simulated(0.05, 3, seed=5)[0], lengths)
    wild = compare(noisy, simulated(0.05, 3, seed=5)[0], lengths)
    assert wild["high"] - wild["low"] > 2 * (calm["high"] - calm["low"])


def test_seed_interval_and_cer_interval():
    mean, half = seed_interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(4.303 * 1.0 / np.sqrt(3), rel=1e-3)
    assert np.isnan(seed_interval([1.0])[1])
    errors, lengths = simulated(0.05, 2)
    low, high = cer_interval(errors, lengths)
    point = 100.0 * errors.mean(axis=0).sum() / lengths.sum()
    assert low < point < high and high - low < 3
    # runs that disagree: resampling the seeds too must widen it (the plot's error bars)
    noisy = disagreeing_runs(lengths)
    narrow, wide = cer_interval(noisy, lengths), cer_interval(noisy, lengths, seeds_too=True)
    assert wide[1] - wide[0] > 2 * (narrow[1] - narrow[0]) and wide[0] >= 0


def test_paired_bootstrap_one_sided():
    a = {f"u{i}": (0, 10) for i in range(50)}
    b = {f"u{i}": (2, 10) for i in range(50)}
    low, high, p = paired_bootstrap(a, b)
    assert low == high == -20.0 and p == 0.0


def test_holm():
    assert holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])
