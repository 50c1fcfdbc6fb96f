"""The offline tokenizer of from-scratch presets: byte-level BPE trained on the training texts.

Nothing can be downloaded here, so the `tiny` preset trains its own tokenizer on the prompts and
responses it will learn from (deterministic for the same texts), with the special tokens the
Idefics processor and model expect. Byte-level BPE round-trips any text exactly (indentation,
newlines), which the generated code depends on.

    tok = train_tokenizer(texts, vocab_size=4096)      # a transformers PreTrainedTokenizerFast

Object names are copied from the instruction: "put a cheese in the basket" -> `registry(env,
"swiss_cheese_1")`. Plain byte-level BPE gives the instruction's word as `Ġcheese` (with its space) and
the name's word as `cheese` (after `_`), two unrelated tokens, so a model has to learn the pair for every
word and cannot copy a word it never had to name. With `split_names` (the default) the normalizer puts a
space after every `_` and `"`, and the decoder takes exactly that space away again: a name's words are
the same tokens as the instruction's (`"`, `Ġswiss`, `_`, `Ġcheese`, `_`, `Ġ1`), the text round-trips
exactly (a space that was already there stays), and sequences are no longer.
"""

from __future__ import annotations

from typing import Iterable

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
IMAGE = "<image>"
FAKE = "<fake_token_around_image>"
END_OF_UTTERANCE = "<end_of_utterance>"
SPECIAL = (PAD, BOS, EOS, UNK, IMAGE, FAKE, END_OF_UTTERANCE)


#: characters after which `split_names` inserts a space (and its decoder removes one)
NAME_SEPARATORS = ("_", '"')


def train_tokenizer(texts: Iterable[str], vocab_size: int = 4096, split_names: bool = True):
    """A byte-level BPE tokenizer trained on `texts`; ids 0..6 are the special tokens in `SPECIAL` order."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    texts = list(texts)
    if not texts:
        raise ValueError("cannot train a tokenizer on no texts (is the training set empty?)")
    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    if split_names:
        tok.normalizer = normalizers.Sequence([normalizers.Replace(c, c + " ") for c in NAME_SEPARATORS])
        tok.decoder = decoders.Sequence([decoders.ByteLevel(), *(decoders.Replace(c + " ", c) for c in NAME_SEPARATORS)])
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), min_frequency=2)
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                   unk_token=UNK, extra_special_tokens={"image_token": IMAGE},
                                   additional_special_tokens=[IMAGE, FAKE, END_OF_UTTERANCE],
                                   model_max_length=1 << 20, clean_up_tokenization_spaces=False)
