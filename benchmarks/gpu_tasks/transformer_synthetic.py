"""A small transformer in bfloat16: token embedding, nn.TransformerEncoder (6 layers,
d_model 512, 8 heads, feed-forward 2048), a linear head; next-token loss on synthetic
tokens (sequences of 128 from a 4,096-word vocabulary).

An optimlab task script for benchmarks/gpu.py; the model's parameters are bfloat16, the
loss is computed in float32 from the bf16 logits. ``OPTIMLAB_BENCH_SMALL=1`` shrinks it
for a dry run on the CPU.
"""
import os

import torch
import torch.nn.functional as F
from torch import nn

SMALL = os.environ.get("OPTIMLAB_BENCH_SMALL") == "1"
D, LAYERS, VOCAB, SEQ = (64, 2, 256, 32) if SMALL else (512, 6, 4096, 128)
N_TRAIN = 256 if SMALL else 32 * 64


class TinyLM(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, D)
        layer = nn.TransformerEncoderLayer(D, nhead=8, dim_feedforward=4 * D, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, LAYERS, enable_nested_tensor=False)
        self.head = nn.Linear(D, VOCAB)

    def forward(self, tokens):
        causal = nn.Transformer.generate_square_subsequent_mask(tokens.shape[1], device=tokens.device,
                                                                dtype=self.embed.weight.dtype)
        return self.head(self.encoder(self.embed(tokens), mask=causal, is_causal=True))


def make_model():
    return TinyLM().to(torch.bfloat16)


def make_data():
    tokens = torch.randint(0, VOCAB, (N_TRAIN + 64, SEQ + 1))
    x, y = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()
    return x[:N_TRAIN], y[:N_TRAIN], x[N_TRAIN:], y[N_TRAIN:]


def loss_fn(output, target):
    return F.cross_entropy(output.float().reshape(-1, output.shape[-1]), target.reshape(-1))
