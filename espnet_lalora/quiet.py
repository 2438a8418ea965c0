"""Keep harmless import-time noise of ESPnet's dependencies out of users' logs."""

import os


def quiet_espnet_imports():
    # espnet2.tasks.asr imports g2p_en, which calls nltk.download() for data it never uses in ASR;
    # offline that prints "[nltk_data] Error loading cmudict". Make it a no-op.
    try:
        import nltk

        nltk.download = lambda *args, **kwargs: False
    except ImportError:
        pass
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
