"""Fast, exact Whisper decoding for ESPnet Whisper models (zero-shot, LoRA-adapted or merged).

What makes it fast, compared with ESPnet's ``BatchBeamSearch`` on a Whisper decoder:

- key/value caches: the self-attention keys and values of the prefix are kept, and the
  cross-attention keys and values of the audio are computed once per utterance;
- the hypotheses of a beam and the utterances of a batch are one tensor batch; the beams of an
  utterance share its cross-attention keys (their queries are stacked, nothing is copied);
- an utterance leaves the batch once its best finished hypothesis can no longer be beaten
  (scores only fall as a hypothesis grows), instead of running on to the length limit.

What keeps it exact: the search is ESPnet's (each step keeps the ``beam`` best (hypothesis, token)
pairs of an utterance, a hypothesis that emits end-of-text is set aside, the best set-aside score
wins; after ``maxlen = max(1, int(maxlenratio * encoder frames))`` tokens every running
hypothesis gets end-of-text appended, unscored), so the result is ESPnet's, also where the limit
cuts the search (tests/test_decoding.py); with ``beam_size=1`` and Whisper's logit filters it is
openai-whisper's greedy decoding. Two intended differences: a hypothesis that emits end-of-text
on the last step keeps one (ESPnet appends a second, ``[..., eot, eot]``; tokens and score are
the same), and ``maxlen`` is also capped by the 448-token context (ESPnet has no cap and would
run past Whisper's positional embedding); the repetition guard below is a third.

``ranking="whisper"``: openai-whisper's beam search instead (its ``BeamSearchDecoder`` and
``MaximumLikelihoodRanker``): each running hypothesis proposes its ``beam + 1`` best tokens, the
best ``beam`` candidates not ending in end-of-text go on and the end-of-text ones ranked above
them are finished (at most ``round(beam * patience)``); an utterance stops when that many have
finished, or at the length limit, where with fewer than ``beam`` finished the running ones (no
end-of-text score) fill up to ``beam``. The winner has the highest sum of log-probabilities (its
end-of-text included) / length (text tokens) or / ((5 + length) / 6) ** length_penalty. With
``whisper_filters`` and ``max_tokens`` (openai-whisper's ``sample_len``) as the only limit it is
openai-whisper's beam search token for token (tests/test_decoding.py). Its stop needs no bound:
the early exit is that stop (a longer hypothesis may rank higher after length normalization, so
"scores only fall" does not hold). Two differences, by design: an utterance's result never
depends on its batch-mates (openai-whisper, with patience < 1, fills up with the running
hypotheses of the moment the whole batch stops), and an empty hypothesis (end-of-text first,
possible only without ``whisper_filters``) has length 1 where openai-whisper divides by zero.

Repetition guard (Whisper's known failure: a phrase looping to the length limit): a hypothesis
whose last tokens are one n-gram (n <= 16) repeated in a row ``repetition_guard`` times and over at
least ``repetition_span`` tokens is ended there: with the defaults (4, 20) a 5-gram and longer after
4 repeats, a bigram after 10, a single token after 20. Short repeats are real speech ("no no no
no", laughter such as "ㅋㅋㅋㅋ", digits), and a loop of one or two tokens that runs 20 tokens
costs little; a loop the guard does not catch (longer than a 16-gram) ends at the length limit.
Off when ``repetition_guard=0``; ``repetition_span=0`` ends any n-gram at ``repetition_guard``
repeats. ESPnet has no such guard: where it fires, the result differs from ESPnet's. Whisper
ranking: it leaves the beam but does not count as finished; it is a candidate only where
openai-whisper's running hypotheses are, with fewer than ``beam`` finished at the stop (a loop is
likely and scores well once divided by its length: as a finished candidate it would often win).

Length limit: ``maxlenratio`` tokens per encoder frame (ESPnet's rule), and never past the
model's text context (448 positions, the prompt included). ``max_tokens`` adds a cap of its own:
openai-whisper's ``sample_len`` (its default is 224, half the context), for comparisons with it.
"""

from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence

import torch
import torch.nn.functional as F


@dataclass
class DecodeOptions:
    beam_size: int = 5
    maxlenratio: float = 0.5  # ESPnet's: at most this many tokens per encoder frame
    max_tokens: Optional[int] = None  # a cap on new tokens (openai-whisper's sample_len: 224)
    whisper_filters: bool = False  # openai-whisper's SuppressBlank + SuppressTokens("-1")
    repetition_guard: int = 4  # end a hypothesis repeating an n-gram this often; 0: off
    repetition_span: int = 20  # ... where the repeats cover at least this many tokens
    ranking: str = "espnet"  # "espnet" or "whisper" (openai-whisper's beam search and ranking)
    patience: float = 1.0  # whisper ranking: stop at round(beam_size * patience) finished
    length_penalty: Optional[float] = None  # whisper ranking: None = divide by the length
    early_exit: bool = True  # False: run every utterance to its length limit (tests)


@dataclass
class Result:
    tokens: List[int]  # generated tokens, without prompt and end-of-text
    score: float  # sum of log-probabilities (ESPnet's hypothesis score; also under whisper
    # ranking, which picks the result by this sum over a length penalty)
    yseq: List[int]  # prompt + tokens + end-of-text, as ESPnet's Hypothesis.yseq


def _heads(x: torch.Tensor, n_head: int) -> torch.Tensor:
    """(N, L, D) -> (N, H, L, D/H)"""
    n, length, d = x.shape
    return x.view(n, length, n_head, d // n_head).transpose(1, 2)


class CachedWhisperDecoder:
    """openai-whisper's ``TextDecoder`` (ESPnet: ``model.decoder.decoders``) run step by step with
    key/value caches. The block's own Linear modules are called, so LoRA layers work unmerged."""

    def __init__(self, text_decoder):
        self.d = text_decoder
        self.n_head = text_decoder.blocks[0].attn.n_head
        d_model = text_decoder.token_embedding.embedding_dim
        self.scale = (d_model // self.n_head) ** -0.25  # applied to q and k, as openai-whisper

    def cross_kv(self, audio: torch.Tensor):
        """Per block, cross-attention (k^T, v) for audio (B, T, D): ((B,H,dh,T), (B,H,T,dh))."""
        out = []
        for block in self.d.blocks:
            k = _heads(block.cross_attn.key(audio), self.n_head) * self.scale
            v = _heads(block.cross_attn.value(audio), self.n_head)
            out.append((k.transpose(-1, -2).contiguous(), v.contiguous()))
        return out

    def step(self, tokens, offset, cache, cross, group, audio_mask=None):
        """Logits of the last position for ``tokens`` (N, l) that follow ``offset`` cached ones.

        N = B * group: rows b*group..(b+1)*group-1 belong to utterance b of ``cross``. ``cache``
        is a list of per-block (k, v) of shape (N, H, offset, dh), or None when offset is 0.
        Returns (logits (N, V) float32, new cache)."""
        n, length = tokens.shape
        x = self.d.token_embedding(tokens) + self.d.positional_embedding[offset:offset + length]
        x = x.to(cross[0][1].dtype)
        causal = None
        if length > 1:
            causal = torch.full((length, offset + length), float("-inf"), device=x.device).triu_(
                offset + 1)
        new_cache = []
        for i, block in enumerate(self.d.blocks):
            # self-attention, with the cache
            h = block.attn_ln(x)
            q = _heads(block.attn.query(h), self.n_head) * self.scale
            k = _heads(block.attn.key(h), self.n_head) * self.scale
            v = _heads(block.attn.value(h), self.n_head)
            if cache is not None:
                k = torch.cat([cache[i][0], k], dim=2)
                v = torch.cat([cache[i][1], v], dim=2)
            new_cache.append((k, v))
            qk = q @ k.transpose(-1, -2)
            if causal is not None:
                qk = qk + causal
            w = F.softmax(qk.float(), dim=-1).to(q.dtype)
            x = x + block.attn.out((w @ v).transpose(1, 2).reshape(n, length, -1))
            # cross-attention: the group's queries stacked against the utterance's keys
            h = block.cross_attn_ln(x)
            q = _heads(block.cross_attn.query(h), self.n_head) * self.scale  # (N, H, l, dh)
            b = n // group
            q = q.view(b, group, self.n_head, length, -1).transpose(1, 2)
            q = q.reshape(b, self.n_head, group * length, -1)
            kt, cv = cross[i]
            qk = q @ kt
            if audio_mask is not None:
                qk = qk.masked_fill(~audio_mask[:, None, None, :], float("-inf"))
            w = F.softmax(qk.float(), dim=-1).to(q.dtype)
            o = (w @ cv).view(b, self.n_head, group, length, -1).transpose(1, 2)
            o = o.reshape(n, self.n_head, length, -1).transpose(1, 2).reshape(n, length, -1)
            x = x + block.cross_attn.out(o)
            x = x + block.mlp(block.mlp_ln(x))
        x = self.d.ln(x[:, -1])
        logits = (x @ self.d.token_embedding.weight.to(x.dtype).T).float()
        return logits, new_cache


def whisper_suppress_tokens(tokenizer) -> List[int]:
    """openai-whisper's default ``suppress_tokens="-1"`` set, plus its special tokens."""
    tokens = list(tokenizer.non_speech_tokens)
    tokens += [tokenizer.transcribe, tokenizer.translate, tokenizer.sot, tokenizer.sot_prev,
               tokenizer.sot_lm]
    if getattr(tokenizer, "no_speech", None) is not None:
        tokens.append(tokenizer.no_speech)
    return sorted(set(tokens))


def _repeats(seq: Sequence[int], times: int, span: int = 0, max_n: int = 16) -> bool:
    """Whether ``seq`` ends in one n-gram (n <= max_n) repeated in a row at least ``times`` times
    and over at least ``span`` tokens (a short n-gram needs ceil(span / n) repeats)."""
    for n in range(1, max_n + 1):
        need = max(times, -(-span // n))
        if len(seq) < n * need:
            continue
        tail = seq[-n:]
        if all(seq[-n * (k + 1):len(seq) - n * k] == tail for k in range(1, need)):
            return True
    return False


def cut_repetition(seq: Sequence[int], times: int, span: int = 0) -> List[int]:
    """``seq`` ended where the repetition guard would have ended it while decoding: at its
    shortest prefix that repeats (``_repeats``); unchanged when none does or ``times`` is 0. A
    decoder without the guard (CTranslate2) gets the same rule after the search."""
    if times:
        for end in range(1, len(seq) + 1):
            if _repeats(seq[:end], times, span):
                return list(seq[:end])
    return list(seq)


def _whisper_select(scores, logp, n_utts: int, beam: int, eot: int):
    """One step of openai-whisper's beam search for all utterances at once. Each row (a
    hypothesis, ``scores`` its summed log-probability) proposes its ``beam + 1`` most probable
    tokens; an utterance's candidates are ordered by summed log-probability (ties keep row order,
    then token rank: openai-whisper's stable sort over its insertion order); the best ``beam``
    that do not end in end-of-text go on, and the end-of-text ones ordered above the last of those
    are finished. Returns the kept (parent rows, tokens, scores), ``beam`` per utterance in score
    order, and per utterance the finished candidates as (score, parent row), best first."""
    group, k = logp.shape[0] // n_utts, beam + 1
    top_lp, top_tok = logp.topk(k, dim=-1)
    cand, order = (scores[:, None] + top_lp).view(n_utts, group * k).sort(
        dim=-1, descending=True, stable=True)
    tok = top_tok.view(n_utts, group * k).gather(1, order)
    parent = order // k + torch.arange(n_utts, device=logp.device)[:, None] * group
    live = tok != eot
    ahead = live.cumsum(-1) - live.long()  # candidates going on that are ordered above
    keep = live & (ahead < beam)  # exactly beam per utterance: at most `group` are end-of-text
    ends = ~live & (ahead < beam) & (cand > float("-inf"))
    finished: List[List[tuple]] = [[] for _ in range(n_utts)]
    for u, j in ends.nonzero().tolist():
        finished[u].append((float(cand[u, j]), int(parent[u, j])))
    return parent[keep], tok[keep], cand[keep], finished


def _length_penalty(length: int, alpha: Optional[float]) -> float:
    """openai-whisper's MaximumLikelihoodRanker: the length (text tokens, end-of-text not
    counted; at least 1, where openai-whisper divides by zero) or Google NMT's ((5 + l) / 6)^a."""
    return max(length, 1) if alpha is None else ((5 + length) / 6) ** alpha


class _EspnetSearch:
    """ESPnet's beam search: the ``beam`` best (hypothesis, token) pairs of an utterance go on; a
    hypothesis ending in end-of-text, at the length limit or in a loop (the guard) is set aside;
    an utterance stops when nothing running can beat its best set-aside score (scores only fall),
    and that best sum of log-probabilities wins."""

    def __init__(self, batch: int, eot: int, prompt_len: int, max_new: List[int],
                 options: DecodeOptions):
        self.beam, self.eot, self.prompt_len = options.beam_size, eot, prompt_len
        self.max_new, self.options = max_new, options
        self.ended: List[List[tuple]] = [[] for _ in range(batch)]  # (score, yseq) set aside

    def start(self, logp, prompts):
        """The first token: (parent rows, scores, sequences), ``beam`` rows per utterance."""
        top_scores, top_tokens = logp.topk(self.beam, dim=-1)  # (B, beam)
        parents = torch.arange(len(prompts), device=logp.device).repeat_interleave(self.beam)
        seqs = [list(prompts[b]) + [int(t)] for b in range(len(prompts)) for t in top_tokens[b]]
        return parents, top_scores.reshape(-1), seqs  # a score of -inf marks a free row

    def extend(self, active, scores, seqs, logp):
        vocab = logp.shape[-1]
        total = (scores[:, None] + logp).view(len(active), self.beam * vocab)
        top_scores, top_ids = total.topk(self.beam, dim=-1)
        offsets = torch.arange(len(active), device=logp.device)[:, None] * self.beam
        parents = (top_ids // vocab + offsets).reshape(-1)
        seqs = [seqs[int(p)] + [int(t)] for p, t in zip(parents, (top_ids % vocab).reshape(-1))]
        return parents, top_scores.reshape(-1), seqs

    def finish(self, active, scores, seqs, step: int):
        """Set aside what ended (end-of-text, the length limit, a loop); its row is freed."""
        o = self.options
        for pos, b in enumerate(active):
            for row in range(pos * self.beam, (pos + 1) * self.beam):
                score, seq = float(scores[row]), seqs[row]
                if score == float("-inf"):
                    continue
                if seq[-1] != self.eot:
                    # ESPnet appends end-of-text at the last position, unscored
                    if not (step >= self.max_new[b] or o.repetition_guard and _repeats(
                            seq[self.prompt_len:], o.repetition_guard, o.repetition_span)):
                        continue
                    seq = seq + [self.eot]
                self.ended[b].append((score, seq))
                scores[row] = float("-inf")

    def goes_on(self, pos: int, b: int, scores) -> bool:
        best_running = float(scores[pos * self.beam:(pos + 1) * self.beam].max())
        best_ended = max((s for s, _ in self.ended[b]), default=float("-inf"))
        return best_running != float("-inf") and (best_running > best_ended
                                                  or not self.options.early_exit)

    def best(self, b: int) -> tuple:
        return max(self.ended[b], key=lambda e: e[0])


class _WhisperSearch(_EspnetSearch):
    """openai-whisper's beam search (``BeamSearchDecoder``) and ranking
    (``MaximumLikelihoodRanker``); see the module's docstring."""

    def __init__(self, batch, eot, prompt_len, max_new, options):
        super().__init__(batch, eot, prompt_len, max_new, options)
        self.max_candidates = round(options.beam_size * options.patience)  # Python's rounding
        if self.max_candidates < 1:
            raise ValueError(f"beam_size {options.beam_size} x patience {options.patience} "
                             "rounds to no candidate")
        self.done = [False] * batch  # the utterance's search has stopped
        self.looped: List[List[tuple]] = [[] for _ in range(batch)]  # ended by the guard

    def start(self, logp, prompts):
        return self.extend(list(range(len(prompts))), torch.zeros(len(prompts),
                           device=logp.device), [list(p) for p in prompts], logp)

    def extend(self, active, scores, seqs, logp):
        """One step; its finished candidates are kept up to max_candidates."""
        parents, tokens, new_scores, finished = _whisper_select(
            scores, logp, len(active), self.beam, self.eot)
        for pos, b in enumerate(active):
            for score, row in finished[pos]:
                if len(self.ended[b]) < self.max_candidates:
                    self.ended[b].append((score, seqs[row] + [self.eot]))
        return parents, new_scores, [seqs[int(p)] + [int(t)] for p, t in zip(parents, tokens)]

    def finish(self, active, scores, seqs, step: int):
        """The stop: max_candidates finished, or the length limit; then, with fewer than
        ``beam`` finished, openai-whisper's finalize: the running ones, best first, fill up to
        beam. A looping hypothesis (the guard) leaves the beam but is not finished: in
        openai-whisper it would run on to the limit, a candidate only in that fill-up."""
        o = self.options
        for pos, b in enumerate(active):
            rows = range(pos * self.beam, (pos + 1) * self.beam)
            for row in rows:
                if (o.repetition_guard and scores[row] != float("-inf") and _repeats(
                        seqs[row][self.prompt_len:], o.repetition_guard, o.repetition_span)):
                    self.looped[b].append((float(scores[row]), seqs[row] + [self.eot]))
                    scores[row] = float("-inf")
            running = [(float(scores[r]), seqs[r] + [self.eot]) for r in rows
                       if scores[r] != float("-inf")]
            full = len(self.ended[b]) >= self.max_candidates and o.early_exit
            if full or step >= self.max_new[b] or not running:
                for candidate in sorted(running + self.looped[b], key=lambda e: -e[0]):
                    if len(self.ended[b]) >= self.beam:
                        break
                    self.ended[b].append(candidate)
                self.done[b] = True

    def goes_on(self, pos, b, scores) -> bool:
        return not self.done[b]

    def best(self, b: int) -> tuple:
        """The first best of sum / length penalty (end-of-text not counted in the length)."""
        return max(self.ended[b], key=lambda e: e[0] / _length_penalty(
            sum(t != self.eot for t in e[1][self.prompt_len:]), self.options.length_penalty))


SEARCHES = {"espnet": _EspnetSearch, "whisper": _WhisperSearch}


@dataclass
class _Rows:
    """The running hypotheses: ``beam`` rows per utterance still in the batch (``active``, batch
    indices in batch order), with their scores, token sequences and the decoder's state."""
    active: List[int]
    scores: torch.Tensor
    seqs: List[List[int]]
    cache: list
    cross: list
    audio_mask: Optional[torch.Tensor]

    def keep(self, positions: List[int], beam: int):
        """Only the utterances at these positions of ``active`` stay."""
        device = self.scores.device
        rows = torch.tensor([p * beam + j for p in positions for j in range(beam)],
                            dtype=torch.long, device=device)
        idx = torch.tensor(positions, dtype=torch.long, device=device)
        self.scores, self.seqs = self.scores[rows], [self.seqs[int(r)] for r in rows]
        self.cache = [(k[rows], v[rows]) for k, v in self.cache]
        self.cross = [(kt[idx], cv[idx]) for kt, cv in self.cross]
        if self.audio_mask is not None:
            self.audio_mask = self.audio_mask[idx]
        self.active = [self.active[p] for p in positions]


def _log_probs(options: DecodeOptions, suppress, blank, vocab: int, device):
    """log_probs(logits, first step?): log-softmax, after openai-whisper's filters if asked."""
    mask = torch.zeros(vocab, dtype=torch.bool, device=device)
    if options.whisper_filters and suppress:
        mask[suppress] = True

    def log_probs(logits, first):
        if options.whisper_filters:
            logits = logits.masked_fill(mask, float("-inf"))
            if first and blank:
                logits[:, blank] = float("-inf")
        return torch.log_softmax(logits, dim=-1)
    return log_probs


@torch.no_grad()
def beam_search(decoder: CachedWhisperDecoder, audio: torch.Tensor, audio_lengths: torch.Tensor,
                prompts: List[List[int]], eot: int, options: DecodeOptions,
                suppress: Optional[List[int]] = None, blank: Optional[List[int]] = None,
                rows_hook: Optional[Callable[[List[int], int], None]] = None) -> List[Result]:
    """Decode a batch: ``audio`` (B, T, D) encoder outputs, ``prompts`` one token list each (all
    the same length, e.g. <|startoftranscript|><|ko|><|transcribe|><|notimestamps|>).

    ``rows_hook(utterances, group)`` is called before each decoder call with the batch indices
    of the utterances in it, each ``group`` rows (language experts route each row by it)."""
    if options.ranking not in SEARCHES:
        raise ValueError(f"ranking must be 'espnet' or 'whisper', not {options.ranking!r}")
    hook = rows_hook or (lambda utterances, group: None)
    batch, beam, prompt_len = audio.shape[0], options.beam_size, len(prompts[0])
    if any(len(p) != prompt_len for p in prompts):
        raise ValueError("all prompts of a batch must have the same length")
    context = decoder.d.positional_embedding.shape[0] - prompt_len
    cap = context if options.max_tokens is None else min(options.max_tokens, context)
    max_new = [min(max(1, int(options.maxlenratio * int(t))), cap) for t in audio_lengths]
    search = SEARCHES[options.ranking](batch, eot, prompt_len, max_new, options)
    audio_mask = None
    if int(audio_lengths.min()) != audio.shape[1]:
        audio_mask = (torch.arange(audio.shape[1], device=audio.device)[None]
                      < audio_lengths[:, None])
    hook(list(range(batch)), 1)
    cross = decoder.cross_kv(audio)
    logits, cache = decoder.step(torch.tensor(prompts, device=audio.device), 0, None, cross, 1,
                                 audio_mask)
    log_probs = _log_probs(options, suppress, blank, logits.shape[-1], audio.device)
    parents, scores, seqs = search.start(log_probs(logits, True), prompts)
    rows = _Rows(list(range(batch)), scores, seqs, [(k[parents], v[parents]) for k, v in cache],
                 cross, audio_mask)
    step = 1
    search.finish(rows.active, rows.scores, rows.seqs, step)
    while True:
        going = [pos for pos, b in enumerate(rows.active) if search.goes_on(pos, b, rows.scores)]
        if len(going) != len(rows.active):
            rows.keep(going, beam)
        if not rows.active:
            break
        last = torch.tensor([[s[-1] if rows.scores[i] != float("-inf") else eot]
                             for i, s in enumerate(rows.seqs)], device=audio.device)
        hook(rows.active, beam)
        logits, cache = decoder.step(last, prompt_len + step - 1, rows.cache, rows.cross, beam,
                                     rows.audio_mask)
        parents, rows.scores, rows.seqs = search.extend(rows.active, rows.scores, rows.seqs,
                                                        log_probs(logits, False))
        rows.cache = [(k[parents], v[parents]) for k, v in cache]
        step += 1
        search.finish(rows.active, rows.scores, rows.seqs, step)
    results = []
    for b in range(batch):
        score, seq = search.best(b)
        results.append(Result(tokens=[t for t in seq[prompt_len:] if t != eot], score=score,
                              yseq=seq))
    return results
