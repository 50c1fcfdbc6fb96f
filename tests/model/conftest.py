"""Tiny policies built from configs (no downloads) and realistic samples to feed them."""

from __future__ import annotations

import pytest

from octopus.config import ModelParams

from tests.helpers import SIZE, TEXTS

@pytest.fixture(scope="session")
def model_params() -> ModelParams:
    return ModelParams(image_size=SIZE, max_length=256, vocab_size=400, max_new_tokens=24)


@pytest.fixture
def tiny(model_params):
    """A fresh random-init tiny Octopus policy (function scope: tests train and freeze it)."""
    from octopus.model.factory import build_model
    return build_model(model_params, TEXTS * 4, seed=0)


@pytest.fixture(scope="session")
def tiny_llava_path(tmp_path_factory):
    """A LLaVA checkpoint (CLIP vision + Llama LM, random init) saved locally: the `auto` family's input."""
    import torch
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    from octopus.model.tokenizer import train_tokenizer
    tok = train_tokenizer(TEXTS * 4, 400)
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                              image_size=SIZE, patch_size=16, projection_dim=32)
    text = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=1024,
                       pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_id=tok.convert_tokens_to_ids("<image>"),
                         vision_feature_select_strategy="default", vision_feature_layer=-1)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("llava")
    LlavaForConditionalGeneration(config).save_pretrained(path)
    images = CLIPImageProcessorPil(size={"shortest_edge": SIZE}, crop_size={"height": SIZE, "width": SIZE})
    LlavaProcessor(image_processor=images, tokenizer=tok, patch_size=16, vision_feature_select_strategy="default",
                   num_additional_image_tokens=1).save_pretrained(path)
    return path
