"""Error rates with their uncertainty, for comparing methods on the same test utterances.

A method's CER varies with the training seed and with which utterances happen to be in the test
set. Both are resampled here: the seeds of each method independently (two methods' runs with the
same seed share nothing that would pair them), the utterances jointly for both methods (they
are the same utterances: the comparison is paired). Everything works on per-utterance error
counts read from sclite's alignments (``score_cer/result.txt`` of stage 11).
"""

import re
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np


def sclite_utterances(result_txt: Path) -> Dict[str, Tuple[int, int]]:
    """{utterance: (errors, reference length)} from sclite's alignments (``-o all``)."""
    out, utt = {}, None
    for line in Path(result_txt).read_text(encoding="utf-8").splitlines():
        m = re.match(r"^id: \((.*)\)$", line.strip())
        if m:
            utt = m.group(1)
            continue
        m = re.match(r"^Scores: \(#C #S #D #I\)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)", line.strip())
        if m and utt is not None:
            c, s, d, i = map(int, m.groups())
            out[utt] = (s + d + i, c + s + d)
            utt = None
    return out


def cer(counts: Dict[str, Tuple[int, int]], utts=None) -> float:
    utts = list(counts) if utts is None else utts
    errors = sum(counts[u][0] for u in utts)
    length = sum(counts[u][1] for u in utts)
    return 100.0 * errors / max(length, 1)


def paired_bootstrap(a: dict, b: dict, rounds: int = 2000, seed: int = 0):
    """One run against one run: the 95% interval of CER(a) - CER(b) over the utterances
    resampled together, and the share of resamples in which a is not better (a one-sided
    p-value for "a is better")."""
    utts = sorted(set(a) & set(b))
    errors = np.array([[a[u][0] for u in utts]]), np.array([[b[u][0] for u in utts]])
    lengths = np.array([a[u][1] for u in utts])
    diffs = _resampled_differences(errors[0], errors[1], lengths, rounds, seed, seeds_too=False)
    return (float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5)),
            float(np.mean(diffs >= 0)))


def seed_interval(values: Sequence[float]) -> Tuple[float, float]:
    """Mean over seeds and the half-width of its 95% t-interval (nan with a single seed)."""
    from scipy.stats import t

    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return float(values.mean()), float("nan")
    half = t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return float(values.mean()), float(half)


def run_cers(errors: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """CER of each run (row of errors: seeds x utterances)."""
    return 100.0 * errors.sum(axis=1) / lengths.sum()


def _resampled_differences(errors_a, errors_b, lengths, rounds, seed, seeds_too=True):
    """CER(a) - CER(b) (each the mean over its runs) for `rounds` resamples of the utterances
    (shared) and, with seeds_too, of each method's runs (independently)."""
    rng = np.random.default_rng(seed)
    n = len(lengths)
    weights = rng.multinomial(n, np.full(n, 1.0 / n), size=rounds)  # rounds x utterances
    denom = weights @ lengths

    def mean_cer(errors):
        per_run = 100.0 * (weights @ errors.T) / denom[:, None]  # rounds x runs
        if not seeds_too or errors.shape[0] == 1:
            return per_run.mean(axis=1)
        pick = rng.integers(0, errors.shape[0], size=per_run.shape)
        return np.take_along_axis(per_run, pick, axis=1).mean(axis=1)

    return mean_cer(errors_a) - mean_cer(errors_b)


def compare(errors_a: np.ndarray, errors_b: np.ndarray, lengths: np.ndarray,
            rounds: int = 4000, seed: int = 0) -> Dict[str, float]:
    """Method a against method b on the same utterances (rows: runs/seeds, columns: utterances):
    the difference of their mean CERs, its 95% interval (seeds and utterances resampled), and
    the two-sided p-value of "no difference" (twice the smaller tail of the resampled
    differences around zero)."""
    diffs = _resampled_differences(errors_a, errors_b, lengths, rounds, seed)
    diff = float(run_cers(errors_a, lengths).mean() - run_cers(errors_b, lengths).mean())
    p = min(1.0, 2 * min(np.mean(diffs <= 0), np.mean(diffs >= 0)))
    return dict(diff=diff, low=float(np.percentile(diffs, 2.5)),
                high=float(np.percentile(diffs, 97.5)), p=float(p))


def cer_interval(errors: np.ndarray, lengths: np.ndarray, seeds_too: bool = False,
                 rounds: int = 4000, seed: int = 0) -> Tuple[float, float]:
    """95% bootstrap interval of the seed-averaged CER: the utterances resampled, and with
    seeds_too the runs (seeds) as well, as compare() resamples them."""
    cers = _resampled_differences(errors, np.zeros((1, errors.shape[1])), lengths, rounds, seed,
                                  seeds_too=seeds_too)
    return float(np.percentile(cers, 2.5)), float(np.percentile(cers, 97.5))


def holm(pvalues: List[float]) -> List[float]:
    """Holm-Bonferroni adjusted p-values (family-wise error over all comparisons of a table)."""
    order = np.argsort(pvalues)
    adjusted = np.empty(len(pvalues))
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, (len(pvalues) - rank) * pvalues[index])
        adjusted[index] = min(1.0, running)
    return adjusted.tolist()
