"""The router of the LoRA language experts: one per model (``model.lang_router``), shared by
every expert layer, saying which expert each row of the batch uses (``route``), or which weights
over the experts every row uses (``mode = "fused"``). The layer: :mod:`.expert_layer`."""

from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import nn

NO_EXPERT, FUSED = -1, -2  # route values besides an expert's index: the base model, the fusion


def language_token_ids(languages: List[str]) -> List[int]:
    import whisper.tokenizer

    tokenizer = whisper.tokenizer.get_tokenizer(True).tokenizer
    return [tokenizer.convert_tokens_to_ids(f"<|{lang}|>") for lang in languages]


class ExpertRouter(nn.Module):
    """Which expert each row of the batch uses (``route``: LongTensor, -1 = none), or which
    weights over the experts every row uses (``mode = "fused"``: ``fusion`` per module group,
    None = uniform). ``mode = "student"``: the distillation student's own LoRA."""

    def __init__(self, languages: List[str], granularity: str = "module"):
        super().__init__()
        self.languages = list(languages)
        self.granularity = granularity
        self.register_buffer("lang_tokens", torch.tensor(language_token_ids(self.languages)),
                             persistent=False)
        self.mode = "route"
        self.route = None
        self.fusion: Optional[nn.ParameterDict] = None

    @property
    def route(self) -> Optional[torch.Tensor]:
        return self._route

    @route.setter
    def route(self, value: Optional[torch.Tensor]):
        # Derived once per batch (not in each of the 96 layers): whether one expert serves the
        # whole batch, and the per-row masks of the batched inference path.
        self._route, self.single, self._masks = value, None, {}
        if value is not None and value.numel():
            first = int(value[0])
            if first >= 0 and bool((value == first).all()):
                self.single = first

    def row_mask(self, rank: int, scaling: float, dtype) -> torch.Tensor:
        """(N, E*rank): row n's weight on each expert's rank-1 components, times ``scaling``:
        one-hot for its expert, 1/E for the fusion (FUSED), zero for the base (NO_EXPERT)."""
        key = (rank, scaling, dtype)
        if key not in self._masks:
            route, n = self._route, len(self.languages)
            weights = F.one_hot(route.clamp(min=0), n).to(dtype) * (route >= 0)[:, None]
            weights[route == FUSED] = 1.0 / n
            self._masks[key] = (weights * scaling).repeat_interleave(rank, dim=1)
        return self._masks[key]

    def index(self, lang: str, what: str = "language") -> int:
        if lang not in self.languages:
            raise KeyError(f"{what} {lang!r} has no expert; the experts are "
                           f"{', '.join(self.languages)}")
        return self.languages.index(lang)

    def route_languages(self, langs: List[Optional[str]]):
        """Route row n to the expert of ``langs[n]`` (None: no expert, the base model)."""
        self.mode = "route"
        self.route = torch.tensor([NO_EXPERT if lang is None else self.index(lang)
                                   for lang in langs], device=self.lang_tokens.device)

    def route_tokens(self, first_tokens: torch.Tensor):
        """Route each row by its transcript's first token, which must be a language token of an
        expert (stage 4 writes ``<|lang|>`` first in ``text_whisper``)."""
        match = first_tokens[:, None] == self.lang_tokens[None, :]
        if not bool(match.any(1).all()):
            import whisper.tokenizer

            bad = int(first_tokens[~match.any(1)][0])
            token = whisper.tokenizer.get_tokenizer(True).decode_with_timestamps([bad])
            raise RuntimeError(
                f"lang_experts: an utterance starts with token {bad} ({token!r}), which is not the "
                f"language token of an expert ({', '.join(self.languages)}): add its language to "
                "adapter_conf.languages, or check the training data's utt2lang and text_whisper")
        self.route = match.float().argmax(1)

    def group_of(self, module_name: str) -> str:
        """The fusion weight group of a module: itself, its block (layer) or the whole model."""
        if self.granularity == "module":
            return module_name.replace(".", "_")
        if self.granularity == "layer":
            return module_name.split(".attn.")[0].split(".cross_attn.")[0].split(".mlp.")[0] \
                .replace(".", "_")
        return "all"

    def weights(self, group: str, device) -> torch.Tensor:
        if self.fusion is not None:
            return self.fusion[group]
        return torch.full((len(self.languages),), 1.0 / len(self.languages), device=device)
