"""The network that writes the next item's index token by token.

An item is the sum of its index tokens' embeddings (one table per level), so an item
nobody has interacted with still has a vector made of tokens other items trained. A
user's history runs through SASRec's causal Transformer (`SequenceNetwork`, reused as
is); its hidden state at a position is the "what comes next" summary. The decoder then
writes the index one level at a time: at level l it reads the state plus the embeddings
of the tokens already written (and a level embedding) through a residual MLP block, and
scores level l's tokens with a linear layer of its own. Every distribution is
restricted to the tokens the trie allows after the prefix (the constrained softmax), so
an item's probability is the product over its levels and all items' probabilities add
up to one: training maximises exactly what decoding ranks by.

Why an MLP step rather than a second Transformer over the written tokens: ranking every
item exactly means one decoder step per (user, prefix) pair, about a thousand prefixes
per user on a 10k catalog; a Transformer step over the prefix cost ~10x more per pair
(170 ms per user on 2 shared cores) for an index of at most four tokens.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

from whyrec.models.sasrec import PAD, SASRecConfig, SequenceNetwork


class GenerativeNetwork(nn.Module):
    def __init__(
        self,
        sizes: list[int],
        node_counts: list[int],
        n_items: int,
        dim: int,
        heads: int,
        layers: int,
        max_len: int,
        dropout: float,
    ) -> None:
        super().__init__()
        encoder_config = SASRecConfig(
            dim=dim, heads=heads, layers=layers, max_len=max_len, dropout=dropout
        )
        # n_items=0: SequenceNetwork's own ID table is a single padding row; the item
        # vectors it reads are passed in (sums of index-token embeddings).
        self.encoder = SequenceNetwork(encoder_config, 0, None)
        self.tokens = nn.ModuleList(nn.Embedding(size, dim) for size in sizes)
        for table in self.tokens:
            nn.init.normal_(table.weight, std=dim**-0.5)
        # the tokens already written, as the decoder reads them, and the output layers:
        # separate from the item-vector tables, which serve the history encoder
        self.prefix_tokens = nn.ModuleList(nn.Embedding(size, dim) for size in sizes)
        self.heads = nn.ModuleList(nn.Linear(dim, size) for size in sizes)
        # Free vectors of each item (encoder input) and of each trie node (decoder output),
        # added to the shared token vectors. Zero at the start: an item nobody interacted
        # with never gets an input gradient, and output vectors are used only for nodes
        # with trained items below them (`trained` in log_probs), so cold items are
        # represented by their tokens alone.
        self.items = nn.Embedding(n_items, dim)
        nn.init.zeros_(self.items.weight)
        self.nodes = nn.ModuleList(nn.Embedding(count, dim) for count in node_counts)
        for table in self.nodes:
            nn.init.zeros_(table.weight)
        self.slots = nn.Embedding(len(sizes), dim)
        nn.init.normal_(self.slots.weight, std=dim**-0.5)
        self.step = nn.Sequential(
            nn.LayerNorm(dim),
            nn.Linear(dim, 2 * dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(2 * dim, dim),
        )
        self.out_norm = nn.LayerNorm(dim)
        self.dim = dim

    def item_table(self, codes: torch.Tensor) -> torch.Tensor:
        """(n_items + 1, dim) item vectors for the encoder; row 0 is padding."""
        vectors = self.items.weight + sum(
            table(codes[:, level]) for level, table in enumerate(self.tokens)
        )
        return torch.cat([torch.zeros_like(vectors[:1]), vectors])

    def states(self, sequences: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """Encoder hidden states (batch, max_len, dim) of left-padded slot sequences."""
        return self.encoder(sequences, table)

    def decode(self, state: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
        """Output (n, dim) for the level after `prefix` (n, l), given states (n, dim)."""
        x = state + self.slots.weight[prefix.shape[1]]
        for level in range(prefix.shape[1]):
            x = x + self.prefix_tokens[level](prefix[:, level])
        return self.out_norm(x + self.step(x))

    def decode_all(self, state: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Outputs (n, levels, dim) for every level of the given indices (teacher forcing)."""
        return torch.stack(
            [self.decode(state, codes[:, :level]) for level in range(codes.shape[1])], dim=1
        )

    def log_probs(
        self, output: torch.Tensor, level: int, children: torch.Tensor, trained: torch.Tensor
    ) -> torch.Tensor:
        """Constrained log-softmax over level `level`'s tokens (-inf where not allowed).

        `children` (c, K) holds each row's child node per token (-1: no such index),
        `output` is (c, dim) or (users, c, dim); `trained` marks the nodes at the next
        depth that have trained items below them.
        """
        allowed = children >= 0
        safe = children.clamp(min=0)
        table = self.nodes[level].weight
        if safe.numel() < len(table):  # a few rows (beam search): gather, then mask
            own = table[safe] * trained[safe][..., None]
        else:  # many rows (training, exhaustive scoring): mask the table once, then gather
            own = (table * trained[:, None].to(table.dtype))[safe]
        logits = self.heads[level](output) + torch.einsum("...cd,ckd->...ck", output, own)
        return functional.log_softmax(logits.masked_fill(~allowed, float("-inf")), dim=-1)


__all__ = ["PAD", "GenerativeNetwork"]
