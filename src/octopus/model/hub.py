"""Where a model's weights come from: a local directory, the local hub cache, or the hub, decided fast.

Every family resolves `model.name_or_path` (or a preset's hub id) here before `from_pretrained`:

    source = resolve("codellama/CodeLlama-7b-hf")   # a local dir, a cached snapshot's dir, or the hub id
    model = AutoModelForCausalLM.from_pretrained(source)

Without it, a machine without the weights and without a network waits ~140 s on the hub client's
retries before it fails. Here the decision takes at most `REACH_TIMEOUT` seconds:
1. a local directory is used as is;
2. a complete snapshot in the hub cache is used by its path (no network at all);
3. with HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE set, a cache miss fails at once;
4. otherwise the hub endpoint (HF_ENDPOINT or https://huggingface.co) gets one short HEAD: no answer
   fails at once, an answer (any status) lets `from_pretrained` download as usual.
Each failure is a `ModelError` that says to point `model.name_or_path` at a local copy.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from octopus.model.factory import ModelError

REACH_TIMEOUT = 2.0  # seconds for the hub to answer one HEAD, name resolution included
OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
_TRUE = {"1", "ON", "YES", "TRUE"}


def hub_error(name: str, err: Exception, field: str = "model.name_or_path") -> ModelError:
    """The one message for weights that cannot be had: what failed, and how to use a local copy instead."""
    var = offline_var()
    forced = f"{var}={_env_true(var) or '1'} is set; " if var else ""
    return ModelError(f"cannot load {name!r}: {type(err).__name__}: {str(err).splitlines()[0][:300]}. "
                      f"{forced}download the weights where the hub is reachable (huggingface-cli download ...) "
                      f"and set {field} to the local directory")


def offline_var() -> str | None:
    """The variable forcing offline mode, if any; read now, as the hub client reads it only once at import."""
    from huggingface_hub import constants
    var = next((v for v in OFFLINE_VARS if _env_true(v)), None)
    return var or ("HF_HUB_OFFLINE" if constants.HF_HUB_OFFLINE else None)


def _env_true(var: str) -> str:
    """The variable's value when it reads as true (1, on, yes, true), else ''."""
    value = os.environ.get(var, "").strip()
    return value if value.upper() in _TRUE else ""


def endpoint() -> str:
    """The hub endpoint a download would use (HF_ENDPOINT, read now, or the default)."""
    from huggingface_hub import constants
    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def reachable(url: str, timeout: float = REACH_TIMEOUT) -> bool:
    """Whether `url` answers one HEAD (any status) within `timeout` s.

    It goes through the hub's own HTTP client (so proxies apply) in a thread, since the client's
    timeout does not bound name resolution.
    """
    answered: list[bool] = []

    def probe() -> None:
        from huggingface_hub import get_session
        try:
            get_session().head(url, timeout=timeout)
            answered.append(True)
        except Exception:  # noqa: BLE001 - any failure to get an answer means unreachable
            answered.append(False)

    thread = threading.Thread(target=probe, name="octopus-hub-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(answered and answered[0])


def cached_snapshot(name: str) -> Path | None:
    """The directory of `name`'s complete snapshot in the local hub cache, or None (no network used)."""
    from huggingface_hub import snapshot_download
    try:
        path = Path(snapshot_download(name, local_files_only=True))
    except (OSError, ValueError):  # not cached, or the cached listing shows it incomplete
        return None
    return path if complete(path) else None


def complete(path: Path) -> bool:
    """Whether a snapshot has its config, some weights and every shard its index names (a cut download may not)."""
    weights = [*path.glob("*.safetensors"), *path.glob("*.bin")]
    try:
        maps = [json.loads(index.read_text())["weight_map"] for index in path.glob("*.index.json")]
        shards = {shard for weight_map in maps for shard in weight_map.values()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False
    return (path / "config.json").is_file() and bool(weights) and all((path / s).is_file() for s in shards)


def resolve(name: str, field: str = "model.name_or_path") -> str:
    """What `from_pretrained` should load for `name` (a local dir or a hub id), or a `ModelError` within seconds.

    A local directory comes back unchanged, a cached snapshot as its directory, a hub id only when
    the hub answers; see the module docstring for the order.
    """
    if Path(name).expanduser().is_dir():
        return name
    _check_repo_id(name)
    snapshot = cached_snapshot(name)
    if snapshot is not None:
        return str(snapshot)
    if offline_var():
        raise hub_error(name, OSError(f"not in the local hub cache ({_cache_dir()}) and offline mode is on"), field)
    url = endpoint()
    if not reachable(url, REACH_TIMEOUT):
        raise hub_error(name, ConnectionError(f"{url} did not answer within {REACH_TIMEOUT:g} s and {name!r} "
                                              f"is not in the local hub cache ({_cache_dir()})"), field)
    return name


def _check_repo_id(name: str) -> None:
    """A name that is no hub id must have been meant as a local directory: say that it is not one."""
    from huggingface_hub.utils import validate_repo_id
    try:
        validate_repo_id(name)
    except ValueError:
        raise ModelError(f"model.name_or_path {name!r}: no such directory, and not a hub id (org/name)") from None


def _cache_dir() -> str:
    from huggingface_hub import constants
    return str(constants.HF_HUB_CACHE)
