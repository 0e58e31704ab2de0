"""A tiny BERT cross-encoder built at test time (random weights, a 30-word vocabulary).

No cross-encoder weights ship offline, so the reranker path is tested with this: a real
sequence-classification model, saved with ``save_pretrained`` and loaded back from disk the
way an operator's model would be.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

WORDS = (
    "what do you like for fun painting mostly and some pottery the weather was awful today "
    "my car broke down again dog cat i ann bob"
).split()


def build_tiny_cross_encoder(directory: Path, *, seed: int = 0) -> Path:
    """Write the model and its tokenizer into ``directory``; return it."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *dict.fromkeys(WORDS)]
    tokenizer = BertTokenizer(vocab={word: i for i, word in enumerate(vocab)})
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
        num_labels=1,  # type: ignore[call-arg]  # a PretrainedConfig keyword
        initializer_range=0.2,  # large, so that different texts get clearly different scores
    )
    model = BertForSequenceClassification(config).eval()  # type: ignore[no-untyped-call]
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def reference_scores(directory: Path, query: str, texts: list[str]) -> np.ndarray:
    """The model's logits for (query, text) pairs, computed with transformers directly."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(
        directory, local_files_only=True
    ).eval()
    with torch.no_grad():
        enc = tokenizer([query] * len(texts), texts, return_tensors="pt", padding=True)
        return np.asarray(model(**enc).logits[:, 0].numpy())
