"""Error rates with their uncertainty, for comparing methods on the same test sentences.

Two things make a method's CER uncertain: the training seed, and which sentences happen to be in
the test set. Both are estimated from the data and combined, each at its own degrees of freedom:

- the seed part: the spread of the per-seed CERs, over (seeds - 1) degrees of freedom. With three
  seeds that spread is itself very uncertain (t = 4.30 at 2 degrees of freedom, not the normal 1.96);
  a bootstrap over three seeds treats it as known, and is overconfident (tests/test_significance.py
  simulates it: about twice its nominal false-positive rate).
- the sentence part: the spread over sentences of the (seed-averaged) errors, a cluster-robust
  (sandwich) variance of the ratio errors / characters, with sentences (not utterances) as the
  unit: a test set that reads the same sentence in several voices or rooms holds one sentence's
  difficulty several times, and those utterances are not independent evidence.

The two variances add, and Welch-Satterthwaite gives the degrees of freedom of the sum, so a t
distribution gives intervals and p-values. Two methods' runs are not paired by seed (the same seed
gives two methods nothing in common worth pairing); their utterances are, since both decode the same
ones. The per-seed spread also holds some of the sentence-level noise, counted again in the sentence
part: the procedure errs on the careful side (the calibration test states its size and power).
Everything works on per-utterance error counts read from sclite's alignments.
"""

import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

ALPHA = 0.05


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


def run_cers(errors: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """CER of each run (row of errors: seeds x utterances)."""
    return 100.0 * np.asarray(errors).sum(axis=1) / np.sum(lengths)


def cluster_ids(sentences: Optional[Sequence]) -> Optional[np.ndarray]:
    """Utterances -> integer sentence ids (None: every utterance is its own sentence)."""
    if sentences is None:
        return None
    return np.unique(np.asarray(sentences, dtype=object).astype(str), return_inverse=True)[1]


def sentence_variance(errors: np.ndarray, lengths: np.ndarray, clusters=None):
    """(variance, degrees of freedom) of CER = 100 * sum(errors) / sum(lengths) over resampled
    sentences: the delta-method (sandwich) variance of a ratio from sentence totals, with the
    small-sample factor K / (K - 1). errors: one value per utterance (e.g. seed-averaged, or one
    method's minus another's)."""
    errors, lengths = np.asarray(errors, dtype=float), np.asarray(lengths, dtype=float)
    clusters = np.arange(len(lengths)) if clusters is None else np.asarray(clusters)
    e, n = np.bincount(clusters, errors), np.bincount(clusters, lengths)
    keep = n > 0
    e, n = e[keep], n[keep]
    k = len(n)
    if k < 2:
        return 0.0, 1.0
    ratio = e.sum() / n.sum()
    var = k / (k - 1) * np.sum((e - ratio * n) ** 2) / n.sum() ** 2
    return float(1e4 * var), float(k - 1)


def _t_summary(estimate: float, parts: List[Tuple[float, float]], alpha: float) -> dict:
    """estimate with variance components (var, df): its standard error, Welch-Satterthwaite
    degrees of freedom, (1 - alpha) t interval and two-sided p of "zero"."""
    from scipy.stats import t

    var = sum(v for v, _ in parts)
    if var <= 0:  # no spread anywhere: the difference is what it is
        return dict(se=0.0, df=float("inf"), low=estimate, high=estimate,
                    p=1.0 if estimate == 0 else 0.0)
    df = var ** 2 / sum(v ** 2 / d for v, d in parts if v > 0)
    se = float(np.sqrt(var))
    low, high = interval(estimate, se, df, alpha)
    return dict(se=se, df=float(df), low=low, high=high,
                p=float(min(1.0, 2 * t.sf(abs(estimate) / se, df))))


def interval(estimate: float, se: float, df: float, alpha: float) -> Tuple[float, float]:
    from scipy.stats import t

    half = t.ppf(1 - alpha / 2, df) * se if se > 0 else 0.0
    return float(estimate - half), float(estimate + half)


def _seed_part(cers: np.ndarray):
    return [(float(cers.var(ddof=1) / len(cers)), float(len(cers) - 1))] if len(cers) > 1 else []


def compare(errors_a: np.ndarray, errors_b: np.ndarray, lengths: np.ndarray,
            sentences: Optional[Sequence] = None, alpha: float = ALPHA) -> Dict[str, float]:
    """Method a against method b on the same utterances (rows: runs/seeds, columns: utterances;
    sentences: the sentence of each utterance, the resampling unit). The difference of their mean
    CERs (a - b), its (1 - alpha) interval, the two-sided p-value of "no difference", the degrees
    of freedom, and seeds_known: False when a side has a single run (its seed spread is then
    unknown and missing from the interval)."""
    errors_a, errors_b = np.atleast_2d(errors_a), np.atleast_2d(errors_b)
    cers_a, cers_b = run_cers(errors_a, lengths), run_cers(errors_b, lengths)
    diff = float(cers_a.mean() - cers_b.mean())
    parts = _seed_part(cers_a) + _seed_part(cers_b)
    parts.append(sentence_variance(errors_a.mean(axis=0) - errors_b.mean(axis=0), lengths,
                                   cluster_ids(sentences)))
    return dict(diff=diff, alpha=alpha, **_t_summary(diff, parts, alpha),
                seeds_known=bool(len(cers_a) > 1 and len(cers_b) > 1))


def cer_interval(errors: np.ndarray, lengths: np.ndarray, sentences: Optional[Sequence] = None,
                 alpha: float = ALPHA) -> Tuple[float, float]:
    """(1 - alpha) interval of a method's seed-averaged CER: the seed and sentence parts as in
    compare()."""
    errors = np.atleast_2d(errors)
    cers = run_cers(errors, lengths)
    parts = _seed_part(cers) + [sentence_variance(errors.mean(axis=0), lengths,
                                                  cluster_ids(sentences))]
    summary = _t_summary(float(cers.mean()), parts, alpha)
    return summary["low"], summary["high"]


def seed_interval(values: Sequence[float]) -> Tuple[float, float]:
    """Mean over seeds and the half-width of its 95% t-interval (nan with a single seed)."""
    from scipy.stats import t

    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return float(values.mean()), float("nan")
    half = t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return float(values.mean()), float(half)


def holm(pvalues: List[float]) -> List[float]:
    """Holm-Bonferroni adjusted p-values (family-wise error over all comparisons of a table)."""
    order = np.argsort(pvalues)
    adjusted = np.empty(len(pvalues))
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, (len(pvalues) - rank) * pvalues[index])
        adjusted[index] = min(1.0, running)
    return adjusted.tolist()


def adjust_family(results: List[dict], alpha: float = ALPHA) -> List[dict]:
    """One table of compare() results as one family: p_holm, Holm's adjusted p-values, and every
    interval at the level alpha / (m - r), where m is the number of comparisons and r the number
    Holm rejects. For the comparisons Holm does not reject these are its compatible
    simultaneous intervals (Strassburger and Bretz, 2008); for those it rejects, the interval
    excludes zero on the side Holm found (its far end is indicative). So an interval excludes
    zero exactly where the Holm-adjusted p is below alpha."""
    adjusted = holm([r["p"] for r in results])
    rejected = sum(p < alpha for p in adjusted)
    level = alpha / (len(results) - rejected) if rejected < len(results) else alpha
    for r, p in zip(results, adjusted):
        r["p_holm"], r["alpha"] = p, level
        r["low"], r["high"] = interval(r["diff"], r["se"], r["df"], level)
    return results
