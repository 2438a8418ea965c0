"""Randomly initialized Whisper checkpoints with the real layouts of each family at a small width
(the real weights of large-v3 are 3 GB and not installable offline): the token list, mel bins and
layer counts are the real ones, so every code path that depends on the family runs."""

from pathlib import Path

import torch

# name: (mel bins, vocabulary, encoder layers, decoder layers); width 64, 2 heads
SHAPES = {"large-v2": (80, 51865, 2, 2), "large-v3": (128, 51866, 2, 2),
          "large-v3-turbo": (128, 51866, 6, 4)}


def random_checkpoint(shape: str, path: Path, seed: int = 0, width: int = 64) -> Path:
    """An openai-whisper checkpoint ``{"dims", "model_state_dict"}`` of ``shape`` at ``path``."""
    from whisper.model import ModelDimensions, Whisper

    n_mels, n_vocab, encoder_layers, decoder_layers = SHAPES[shape]
    dims = dict(n_mels=n_mels, n_audio_ctx=1500, n_audio_state=width, n_audio_head=2,
                n_audio_layer=encoder_layers, n_vocab=n_vocab, n_text_ctx=448,
                n_text_state=width, n_text_head=2, n_text_layer=decoder_layers)
    torch.manual_seed(seed)
    model = Whisper(ModelDimensions(**dims))
    with torch.no_grad():  # openai-whisper's init leaves biases at 0, norms at 1: move them too
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0, p.shape[-1] ** -0.5)
            else:
                p.add_(torch.randn_like(p) * 0.1)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"dims": dims, "model_state_dict": model.state_dict()}, path)
    return path
