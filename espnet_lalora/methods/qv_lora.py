"""QV-LoRA: LoRA on the query and value projections of every attention, self and cross (36
Linear layers on Whisper base), the placement of Hu et al. (2021), LoRA's own default. Same count
as VO-LoRA, 12/44 = 27.27% of raw LoRA's parameters at equal rank; it adapts what attends (the
queries) instead of what leaves the attention (the outputs)."""

from espnet_lalora.methods.lora import LoRAMethod

METHODS = [LoRAMethod("qv_lora", ["query", "value"],
                      "query and value of every attention (Hu et al.'s default)")]
