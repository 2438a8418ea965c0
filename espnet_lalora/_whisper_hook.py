"""Patch ``whisper.load_model`` the moment openai-whisper is imported, in any process.

``import espnet_lalora`` installs this; so does the ``espnet_lalora_whisper.pth`` file that
``prepare_whisper_weights`` puts in site-packages, which is what lets stock ESPnet commands
(``python -m espnet2.bin.asr_inference``) find the offline weights with no plugin code.
Set ``ESPNET_LALORA_NO_HOOK=1`` to turn it off.
"""

import importlib.abc
import importlib.util
import os
import sys


class _WhisperImportHook(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname != "whisper":
            return None
        sys.meta_path.remove(self)  # find the real package, once
        spec = importlib.util.find_spec("whisper")
        if spec is None or spec.loader is None:
            return spec
        run_module = spec.loader.exec_module

        def exec_module(module):
            run_module(module)
            from espnet_lalora.whisper_weights import patch_whisper

            patch_whisper(module)

        spec.loader.exec_module = exec_module
        return spec


def install():
    if os.environ.get("ESPNET_LALORA_NO_HOOK"):
        return
    if "whisper" in sys.modules:
        from espnet_lalora.whisper_weights import patch_whisper

        patch_whisper(sys.modules["whisper"])
    elif not any(isinstance(f, _WhisperImportHook) for f in sys.meta_path):
        sys.meta_path.insert(0, _WhisperImportHook())
