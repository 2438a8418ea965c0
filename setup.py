from setuptools import find_packages, setup

setup(
    name="espnet_lalora",
    version="0.1.0",
    description="Parameter-efficient fine-tuning of OpenAI Whisper in ESPnet: LoRA placements, "
    "layer-adaptive LA-LoRA, S2-LoRA and LoRA language experts",
    packages=find_packages(include=["espnet_lalora", "espnet_lalora.*"]),
    python_requires=">=3.9",
    # The heavy, version-sensitive dependencies (torch, espnet, openai-whisper) are installed by
    # tools/install.sh with pins that work together; see README.
    install_requires=["numpy", "PyYAML"],
    entry_points={
        "console_scripts": [
            "lalora-ct2-to-whisper=espnet_lalora.bin.ct2_to_whisper:main",
            "lalora-prepare-whisper-weights=espnet_lalora.bin.prepare_whisper_weights:main",
        ]
    },
)
