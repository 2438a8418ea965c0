"""The sweep's numbers from its records: the errors of a table row as a runs x utterances matrix
(a set, or the profile's out-of-domain sets pooled; one language if asked), and the comparison of
two rows. The statistics themselves are espnet_lalora.significance's."""

import numpy as np

from espnet_lalora.significance import cer_interval, compare, run_cers


def has(profile, pairs, test) -> bool:
    """Whether every run of a row decoded the set (all the out-of-domain sets for 'ood')."""
    return all(t in e for _, e in pairs for t in profile.sets_of(test))


def matrix(profile, pairs, test, order, lang=None):
    """(errors: runs x utterances, lengths, sentences) of one test set ('ood': the
    out-of-domain sets pooled), optionally one language only."""
    errors, lengths, sentences = [], [], []
    for t in profile.sets_of(test):
        keep = [i for i, l in enumerate(order[t]["langs"]) if lang is None or l == lang]
        errors.append(np.array([[e[t][i] for i in keep] for _, e in pairs]))
        lengths.append(np.array([order[t]["lengths"][i] for i in keep]))
        # the sentence of each utterance; a set recorded before sentences were: its own utterances
        sentences.append([order[t]["sentences"][i] if "sentences" in order[t] else f"{t}:{i}"
                          for i in keep])
    return np.concatenate(errors, axis=1), np.concatenate(lengths), sum(sentences, [])


def mean_cer(profile, pairs, test, order, lang=None) -> float:
    """CER %, mean over the row's runs."""
    errors, lengths, _ = matrix(profile, pairs, test, order, lang)
    return float(run_cers(errors, lengths).mean())


def mean_and_interval(profile, pairs, test, order):
    """(mean CER, low, high): the 95% interval over seeds and sentences."""
    errors, lengths, sentences = matrix(profile, pairs, test, order)
    low, high = cer_interval(errors, lengths, sentences)
    return float(run_cers(errors, lengths).mean()), low, high


def comparison(profile, rows, order, a, b, t) -> dict:
    """Row a against row b on set t: significance.compare's result, with the baseline's CER."""
    ea, lengths, sentences = matrix(profile, rows[a], t, order)
    eb, _, _ = matrix(profile, rows[b], t, order)
    return dict(compare(ea, eb, lengths, sentences), a=a, b=b, test=t,
                base=float(run_cers(eb, lengths).mean()))
