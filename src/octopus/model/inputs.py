"""What the policy reads and writes, as tensors: the 10 views first, then the instruction, then the response.

    ex = encode(spec, tokenizer, prompt, views, response)   # one Example (ids, labels, views as uint8)
    batch = collate(spec, [ex, ...], pad_left=False)         # tensors for forward / generate

The views come first so every text token can attend to them (TRL's default vision collator puts
Idefics images after the text, where nothing attends to them). `image_attention_mask` lets each
token attend to every view placed before it, so the instruction and response see all 10 (the
Idefics processor's default lets a token see only the last image). Loss is on response tokens only.
Views are resized once per example and kept as uint8; normalisation happens in `collate`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from octopus.protocol.api import N_VIEWS

RESPONSE_MARK = "\nResponse:\n"   # between the instruction and the response, in training and at inference
IGNORE = -100
#: the system turn of chat-templated (pretrained) models: short, since every sample pays for it
SYSTEM = ("You are Octopus, a household robot's programmer. From the environment message, write Explain, Subtasks, "
          "Code (a Python function act(robot, env, camera) that calls only the robot API) and Target States.")


@dataclass(frozen=True)
class InputSpec:
    """How a model reads its inputs (saved with the checkpoint as octopus.json)."""

    image_size: int
    max_length: int
    image_mean: tuple[float, float, float]
    image_std: tuple[float, float, float]
    image_token_id: int
    fake_token_id: int
    bos_token_id: int
    eos_token_id: int
    pad_token_id: int
    prefix: str = ""               # text before the instruction (a chat model's system and user turn headers)
    suffix: str = RESPONSE_MARK    # text between the instruction and the response
    add_bos: bool = True           # a BOS token first (a chat template brings its own start instead)
    image_tokens: bool = True      # <image> markers in the text; False: none, every token attends to all 10 views


@dataclass
class Example:
    input_ids: list[int]
    labels: list[int]              # IGNORE on the prompt
    image_positions: list[int]     # index of each view's <image> token
    views: np.ndarray | None       # (10, H, W, 3) uint8 at the spec's size
    truncated: int = 0             # instruction tokens cut to fit max_length


def never_generated(spec) -> list[int]:
    """Tokens a policy must never write: the view placeholder, which the model expands into the views' features
    (a sampled one would make the response unreadable with its views)."""
    token = getattr(spec, "image_token_id", None)
    return [token] if token is not None and getattr(spec, "image_tokens", True) else []


def resize_views(views: np.ndarray, size: int) -> np.ndarray:
    """(10, S, S, 3) uint8 -> (10, size, size, 3) uint8 (bicubic, as CLIP-style processors do)."""
    views = np.asarray(views)
    if views.ndim != 4 or views.shape[0] != N_VIEWS or views.shape[-1] != 3:
        raise ValueError(f"expected {N_VIEWS} RGB views of shape (10, S, S, 3), got {views.shape}")
    if views.shape[1] == size and views.shape[2] == size:
        return np.ascontiguousarray(views, dtype=np.uint8)
    from PIL import Image
    return np.stack([np.asarray(Image.fromarray(v.astype(np.uint8)).resize((size, size), Image.BICUBIC))
                     for v in views])


def encode(spec: InputSpec, tokenizer, prompt: str, views: np.ndarray | None,
           response: str | None = None) -> Example:
    """One sample; `response=None` encodes a generation prompt (ends with the response mark)."""
    head = prefix_ids(spec, tokenizer)
    image_positions = []
    if getattr(spec, "image_tokens", True):
        for _ in range(N_VIEWS):
            head.append(spec.fake_token_id)
            image_positions.append(len(head))
            head.append(spec.image_token_id)
        head.append(spec.fake_token_id)
    ids, labels, cut = layout(spec, tokenizer, head, prompt, response)
    px = None if views is None else resize_views(views, spec.image_size)
    return Example(ids, labels, image_positions, px, cut)


def chat_format(tokenizer, system: str = SYSTEM) -> dict:
    """The spec fields (`prefix`, `suffix`, `add_bos`) that wrap an instruction in the tokenizer's chat template
    (a system turn, the user turn, then the assistant's), or the plain layout when it has none."""
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        return {"prefix": "", "suffix": RESPONSE_MARK, "add_bos": True}
    cut = "\x00INSTRUCTION\x00"
    text = tokenizer.apply_chat_template([{"role": "system", "content": system}, {"role": "user", "content": cut}],
                                         add_generation_prompt=True, tokenize=False)
    if text.count(cut) != 1:
        raise ValueError(f"{type(tokenizer).__name__}'s chat template does not place the user's message once")
    prefix, suffix = text.split(cut)
    return {"prefix": prefix, "suffix": suffix, "add_bos": False}


def prefix_ids(spec, tokenizer) -> list[int]:
    """What comes before the instruction: BOS (plain layout) or the chat template's headers."""
    head = [spec.bos_token_id] if getattr(spec, "add_bos", True) else []
    prefix = getattr(spec, "prefix", "")
    return head + (tokenizer(prefix, add_special_tokens=False)["input_ids"] if prefix else [])


def layout(spec: InputSpec, tokenizer, head: list[int], prompt: str,
           response: str | None) -> tuple[list[int], list[int], int]:
    """head + instruction + response mark (+ response + eos): ids, labels (response only), tokens cut.

    An instruction too long for `spec.max_length` loses its middle: its start (inventory, goal; the
    observed objects of a blind policy's message) and its end (error, request) are kept."""
    text = tokenizer(prompt.rstrip("\n"), add_special_tokens=False)["input_ids"]
    mark = tokenizer(getattr(spec, "suffix", RESPONSE_MARK), add_special_tokens=False)["input_ids"]
    answer = [] if response is None else tokenizer(response, add_special_tokens=False)["input_ids"] + [
        spec.eos_token_id]
    budget = spec.max_length - len(head) - len(mark) - len(answer)
    if budget < 16:  # keep at least a little of the instruction; cut the response's end instead
        keep = max(spec.max_length - len(head) - len(mark) - 16, 1)
        answer, budget = answer[:keep], spec.max_length - len(head) - len(mark) - min(len(answer), keep)
    cut = max(len(text) - budget, 0)
    if cut:
        tail = budget // 2
        text = text[:budget - tail] + text[len(text) - tail:]
    prompt_ids = head + text + mark
    return prompt_ids + answer, [IGNORE] * len(prompt_ids) + answer, cut


def pixel_tensor(spec: InputSpec, views: list[np.ndarray]) -> torch.Tensor:
    """(B, 10, 3, H, W) float32, normalised with the spec's mean and std."""
    x = torch.from_numpy(np.stack(views)).permute(0, 1, 4, 2, 3).float().div_(255.0)
    mean = torch.tensor(spec.image_mean).view(1, 1, 3, 1, 1)
    std = torch.tensor(spec.image_std).view(1, 1, 3, 1, 1)
    return x.sub_(mean).div_(std)


def collate(spec: InputSpec, examples: list[Example], pad_left: bool = False) -> dict[str, torch.Tensor]:
    """Pad a batch (right for training, left for generation) into the model's inputs."""
    if not examples:
        raise ValueError("cannot collate an empty batch")
    if any(ex.views is None for ex in examples):
        raise ValueError("every example needs its 10 views")
    batch, offsets = pad(examples, spec.pad_token_id, pad_left)
    img_mask = torch.zeros((*batch["input_ids"].shape, N_VIEWS), dtype=torch.long)
    for b, (ex, off) in enumerate(zip(examples, offsets)):
        if not ex.image_positions:  # no markers: every token attends to every view
            img_mask[b, off:off + len(ex.input_ids)] = 1
            continue
        pos = torch.arange(len(ex.input_ids)).unsqueeze(1)
        img_mask[b, off:off + len(ex.input_ids)] = (pos >= torch.tensor(ex.image_positions).unsqueeze(0)).long()
    return {**batch, "image_attention_mask": img_mask, "pixel_values": pixel_tensor(spec, [ex.views for ex in examples])}


def pad(examples: list, pad_token_id: int, pad_left: bool) -> tuple[dict[str, torch.Tensor], list[int]]:
    """input_ids / attention_mask / labels padded to the longest example, and where each one starts."""
    if not examples:
        raise ValueError("cannot collate an empty batch")
    n = max(len(ex.input_ids) for ex in examples)
    ids = torch.full((len(examples), n), pad_token_id, dtype=torch.long)
    labels = torch.full((len(examples), n), IGNORE, dtype=torch.long)
    attn = torch.zeros((len(examples), n), dtype=torch.long)
    offsets = []
    for b, ex in enumerate(examples):
        k = len(ex.input_ids)
        off = n - k if pad_left else 0
        ids[b, off:off + k] = torch.tensor(ex.input_ids)
        labels[b, off:off + k] = torch.tensor(ex.labels)
        attn[b, off:off + k] = 1
        offsets.append(off)
    return {"input_ids": ids, "attention_mask": attn, "labels": labels}, offsets
