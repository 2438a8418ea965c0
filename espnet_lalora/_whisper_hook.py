"""Patch ``whisper.load_model`` the moment openai-whisper is imported, in any process.

``import espnet_lalora`` installs this; so does the ``espnet_lalora_whisper_hook.pth`` file that
``prepare_whisper_weights`` puts in site-packages, which is what lets stock ESPnet commands
(``python -m espnet2.bin.asr_inference``) find the offline weights with no plugin code.
Set ``ESPNET_LALORA_NO_HOOK=1`` to turn it off; ``python -m
espnet_lalora.bin.prepare_whisper_weights --remove_hook`` removes the .pth file.

Since this runs in every program of the environment it must never get in the way: a top-level
``whisper`` that is not openai-whisper (a user's own whisper.py) is left untouched, and a failure
to patch is a warning, not a broken ``import whisper``.
"""

import importlib.abc
import os
import sys


def is_openai_whisper(module) -> bool:
    """openai-whisper is a package with a model table and ``load_model``; what we wrap."""
    return (hasattr(module, "__path__") and isinstance(getattr(module, "_MODELS", None), dict)
            and callable(getattr(module, "load_model", None)))


def _patch(module):
    if module.__name__ != "whisper" or not is_openai_whisper(module):
        return
    try:
        from espnet_lalora.whisper_sizes import extend_whisper
        from espnet_lalora.whisper_weights import patch_whisper

        extend_whisper(module)
        patch_whisper(module)
    except Exception as e:  # never break `import whisper` for a program that did not ask for us
        import warnings

        warnings.warn(f"espnet_lalora could not patch whisper.load_model ({e!r}); offline "
                      "Whisper weights are unavailable. Set ESPNET_LALORA_NO_HOOK=1 or run "
                      "`python -m espnet_lalora.bin.prepare_whisper_weights --remove_hook`.")


class _WhisperImportHook(importlib.abc.MetaPathFinder):
    """Stays in ``sys.meta_path`` for good: every spec of ``whisper`` it hands out, whether to
    ``import whisper``, ``importlib.util.find_spec`` or ``importlib.reload``, patches on load."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "whisper" or self not in sys.meta_path:
            return None
        # Ask only the finders after this one: those before it have already said no, and asking
        # the whole meta path again would come back here.
        for finder in sys.meta_path[sys.meta_path.index(self) + 1 :]:
            find = getattr(finder, "find_spec", None)
            spec = find(fullname, path, target) if find else None
            if spec is not None:
                break
        else:
            return None
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        # The path finder makes a fresh loader per spec, so wrapping its method touches nothing
        # else; a loader shared between modules only gains a no-op for them (see _patch).
        run_module = spec.loader.exec_module

        def exec_module(module):
            run_module(module)
            _patch(module)

        spec.loader.exec_module = exec_module
        return spec


def install():
    if os.environ.get("ESPNET_LALORA_NO_HOOK"):
        return
    if "whisper" in sys.modules:
        _patch(sys.modules["whisper"])
    if not any(isinstance(f, _WhisperImportHook) for f in sys.meta_path):
        sys.meta_path.insert(0, _WhisperImportHook())
