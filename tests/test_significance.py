"""espnet_lalora.significance: per-utterance counts from real sclite output, intervals and
p-values that behave as they must on data whose answer is known, and a calibration on simulated
test sets (bench/significance_calibration.py): equal methods are called different at most at the
nominal rate, a real difference is found, and the procedure used before is shown to fail."""

import sys
from pathlib import Path

import numpy as np
import pytest

from espnet_lalora.scoring import run_sclite, write_trn
from espnet_lalora.significance import (adjust_family, cer, cer_interval, compare, holm,
                                        sclite_utterances, seed_interval, sentence_variance)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from significance_calibration import previous_compare, rejection_rate  # noqa: E402


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
    assert result["seeds_known"] and 2 <= result["df"]


def test_three_seeds_cannot_give_certainty_their_spread_does_not_support():
    """Two methods whose three seeds each are perfectly separated, but whose seeds scatter: a
    t test on three against three seeds cannot reach the p-values of a bootstrap that takes the
    seed spread as known (the earlier report printed p 0.000 for such rows)."""
    rng = np.random.default_rng(3)
    lengths = rng.integers(20, 40, size=400)
    a = np.stack([rng.binomial(lengths, r) for r in (0.050, 0.055, 0.060)])
    b = np.stack([rng.binomial(lengths, r) for r in (0.070, 0.075, 0.080)])
    ours, before = compare(a, b, lengths), previous_compare(a, b, lengths, rounds=4000)
    assert before["p"] < 0.002  # the bootstrap: "certain"
    assert 0.01 < ours["p"] < 0.05 and ours["df"] < 6  # the seeds' few degrees of freedom


def test_sentences_read_twice_are_one_unit():
    """The same errors on sentences that a second set reads again: counted as independent
    utterances the interval is too narrow; clustered by sentence it is as wide as the evidence."""
    errors, lengths = simulated(0.05, 1, utts=100, seed=6)
    twice_e, twice_n = np.tile(errors, 2), np.tile(lengths, 2)
    sentences = np.tile(np.arange(100), 2)
    once = sentence_variance(errors[0], lengths)
    as_utts = sentence_variance(twice_e[0], twice_n)
    as_sentences = sentence_variance(twice_e[0], twice_n, sentences)
    assert as_utts[0] < 0.55 * once[0]  # about half: twice the evidence, wrongly
    assert as_sentences[0] == pytest.approx(once[0], rel=1e-9) and as_sentences[1] == 99


def test_noisy_seeds_widen_the_interval():
    """Same utterances, same mean, but one method's runs disagree with each other."""
    steady, lengths = simulated(0.05, 3, seed=3)
    rng = np.random.default_rng(4)
    noisy = np.stack([rng.binomial(lengths, r) for r in (0.01, 0.05, 0.09)])
    other = simulated(0.05, 3, seed=5)[0]
    calm, wild = compare(steady, other, lengths), compare(noisy, other, lengths)
    assert wild["high"] - wild["low"] > 2 * (calm["high"] - calm["low"])
    low, high = cer_interval(noisy, lengths)
    steady_low, steady_high = cer_interval(steady, lengths)
    assert high - low > 2 * (steady_high - steady_low) and low < 5 < high


def test_single_runs_say_their_seed_spread_is_unknown():
    a, lengths = simulated(0.05, 1, seed=7)
    b, _ = simulated(0.05, 1, seed=8)
    result = compare(a, b, lengths)
    assert not result["seeds_known"] and result["df"] > 100


def test_seed_interval():
    mean, half = seed_interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(4.303 * 1.0 / np.sqrt(3), rel=1e-3)
    assert np.isnan(seed_interval([1.0])[1])


def test_holm_and_family_intervals():
    """Holm's p, and intervals at the level Holm leaves: wider than a lone 95% interval, and
    excluding zero exactly where the adjusted p is below 0.05."""
    assert holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    base, lengths = simulated(0.05, 3, seed=9)
    results, singles = [], []
    for i, rate in enumerate((0.05, 0.052, 0.055, 0.06, 0.065, 0.08, 0.1)):
        other, _ = simulated(rate, 3, seed=20 + i)
        singles.append(compare(other, base, lengths))
        results.append(compare(other, base, lengths))
    adjust_family(results)
    rejected = [r["p_holm"] < 0.05 for r in results]
    assert 0 < sum(rejected) < len(results)  # some found, some not: the interesting case
    for r, single in zip(results, singles):
        assert r["p"] == single["p"] and r["p_holm"] >= r["p"]
        assert r["low"] < single["low"] and r["high"] > single["high"]
        assert (r["low"] > 0 or r["high"] < 0) == (r["p_holm"] < 0.05)


# The calibration: 2,000 simulated draws per case (tests on fixed random seeds: deterministic).
# Monte Carlo standard error of a rate near 5% over 2,000 draws: 0.5 points.
DRAWS = 2000


@pytest.mark.parametrize("seeds,spread", [(3, 0.05), (3, 0.30), (5, 0.15)])
def test_false_positive_rate_is_at_most_nominal(seeds, spread):
    rate, se = rejection_rate(lambda a, b, n, s: compare(a, b, n, s), DRAWS, seeds, spread)
    assert rate <= 0.06, f"{rate:.3f} ± {se:.3f}"


def test_a_real_difference_is_detected():
    """30% more errors (relative), 3 seeds with a 5% spread: found in at least 80% of draws."""
    rate, se = rejection_rate(lambda a, b, n, s: compare(a, b, n, s), 1000, 3, 0.05, effect=0.3,
                              seed=1)
    assert rate >= 0.80, f"{rate:.3f} ± {se:.3f}"


def test_the_procedure_used_before_fails_the_calibration():
    """The seed-and-utterance bootstrap of the earlier report: 3 seeds with a 15% spread."""
    rate, se = rejection_rate(lambda a, b, n, s: previous_compare(a, b, n, rounds=500), 1000, 3,
                              0.15)
    assert rate > 0.08, f"{rate:.3f} ± {se:.3f}"
