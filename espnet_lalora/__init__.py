"""espnet-lalora: parameter-efficient Whisper fine-tuning methods for ESPnet.

Importing the package is cheap (no torch) and makes ESPnet's Whisper frontend find offline
weights; see :mod:`espnet_lalora.whisper_weights`.
"""

__version__ = "0.1.0"

from espnet_lalora import _whisper_hook

_whisper_hook.install()
