"""Generative recommendation: the next item's index is written token by token.

P5 / TIGER / LC-Rec style. Items get short indices (see `indexing`): by default an
RQ-VAE over text + collaborative vectors, uniform at the last level so no two items
share one. A causal Transformer reads the history (items as sums of their tokens' vectors)
and a small decoder generates the next index, each step restricted to the tokens a trie
of real indices allows, so everything generated is a catalog item.

Two ways to read the model out, on the same constrained probabilities:
- `generate(history, k, beam)`: beam search over the trie (what a generative
  recommender serves; the benchmark times it);
- `score(histories)`: the exact log-probability of every item's index (the exhaustive
  search), so evaluation, filters, "why not" and the faithfulness checks see every
  item, as for any other model.

Explanations come from the generation itself (HyPE): each index prefix is a cluster with
a label (`labels`), and a recommended item is explained by the history items that share
the longest prefix with its index (`generation_path_weights`), which the explainer and the
fidelity module read through `whyrec.explain.attribution`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Literal, Self

import numpy as np
import torch
from pydantic import Field

from whyrec.console import warn
from whyrec.data.dataset import Dataset
from whyrec.errors import WhyrecError
from whyrec.explain.evidence import HistoryContribution
from whyrec.explain.explanation import SharedValue
from whyrec.models.base import Histories, ModelConfig, Recommender, check_positions
from whyrec.models.generative.indexing import IndexKind, build_index, has_text
from whyrec.models.generative.labels import cluster_labels
from whyrec.models.generative.network import GenerativeNetwork
from whyrec.models.generative.trie import Trie
from whyrec.models.sasrec import PAD, SASRec, left_pad
from whyrec.torch_utils import (
    EarlyStopping,
    limit_threads,
    load_arrays_into,
    resolve_device,
    seed_everything,
    state_to_arrays,
)

PAIRS_PER_CALL = 20_000
"""(user, prefix) pairs per decoder pass when scoring every item (bounds memory)."""


class GenerativeConfig(ModelConfig):
    index: IndexKind = Field(
        "hybrid",
        description="How items get indices: hybrid (RQ-VAE over text + collaborative "
        "vectors), semantic (text only), collaborative (SVD vectors only) or sequential "
        "(order of first appearance, in base K).",
    )
    levels: int = Field(3, ge=1, le=4, description="Index levels before the collision token.")
    codebook_size: int | None = Field(
        None, ge=2, le=1024, description="Codes per level; default from the catalog size."
    )
    collaborative_dim: int = Field(64, ge=2, description="SVD rank of collaborative vectors.")
    latent: int = Field(32, ge=2, description="Width of the RQ-VAE's quantized space.")
    quantizer_epochs: int = Field(300, ge=20, description="Full-batch RQ-VAE steps.")
    dim: int = Field(64, ge=4, description="Width of token vectors and hidden states.")
    heads: int = Field(1, ge=1, description="Attention heads (must divide dim).")
    layers: int = Field(2, ge=1, description="History (encoder) self-attention blocks.")
    max_len: int = Field(50, ge=2, description="Most recent items the model reads.")
    windows: Literal["recent", "all"] = Field(
        "all", description="Train on every max_len window of a history or the latest one."
    )
    window_overlap: float = Field(
        0.5,
        ge=0,
        lt=1,
        description="With windows = all, the share of max_len consecutive windows overlap "
        "(0: disjoint). Overlap gives the items at a window's start the longer contexts "
        "they have in the history; 0.5 doubles the windows and the time per epoch.",
    )
    dropout: float = Field(0.2, ge=0, lt=1, description="Dropout in encoder and decoder.")
    epochs: int = Field(
        8,
        ge=1,
        description="Planned epochs: the learning rate decays to zero at the last one; early "
        "stopping may end sooner.",
    )
    patience: int = Field(3, ge=1, description="Epochs without validation gain before stopping.")
    validation_users: int = Field(
        1000,
        ge=1,
        description="Users whose last training item picks the epoch (their last item is held "
        "out of training either way; 300 users left the best epoch to noise).",
    )
    batch_size: int = Field(64, ge=1, description="Sequences per step.")
    lr: float = Field(
        3e-3,
        gt=0,
        description="Peak AdamW learning rate (reached after the warm-up, then decayed). A "
        "constant 1e-2 over-fitted within 3-4 epochs of all windows on ml-latest-small.",
    )
    warmup: float = Field(
        0.05,
        ge=0,
        lt=1,
        description="Share of the planned steps (epochs x batches) over which the learning "
        "rate rises linearly from zero.",
    )
    schedule: Literal["constant", "cosine", "linear"] = Field(
        "cosine",
        description="Learning rate after the warm-up: constant, or decayed to zero by the "
        "last planned epoch (cosine or linear).",
    )
    weight_decay: float = Field(
        0.05, ge=0, description="AdamW's decoupled weight decay (0: plain Adam)."
    )
    label_smoothing: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="Share of each level's target mass spread evenly over the tokens the "
        "trie allows there (smoothing inside the constrained softmax).",
    )
    item_backoff: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Share of the last index level's probability spread evenly over the "
        "items of the prefix (a uniform back-off). The last level tells the items of a "
        "cluster apart, and what it learns there is mostly how often each was seen, so "
        "rarely seen items get almost none of their cluster's mass. None: the share that "
        "maximises the likelihood of the validation users' held-out items, fitted after "
        "training; 0: off.",
    )
    beam: int = Field(20, ge=1, description="Default beam width of `generate`.")
    seed: int = Field(42, description="Seed for quantizer, initialisation and batch order.")
    device: str = Field(
        "cpu",
        pattern=r"^(cpu|auto|cuda(:\d+)?)$",
        description="Where to train, score and generate (cpu, cuda[:N], auto). A bundle "
        "trained on a GPU loads on the CPU where there is none, with a warning.",
    )


def learning_rate_schedule(
    optimizer: torch.optim.Optimizer, warmup: float, schedule: str, planned_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step multiplier of the peak rate: a linear warm-up over `warmup` of the planned
    steps, then constant or decayed to zero at the last planned step (cosine or linear).
    Early stopping may end training before the decay does."""
    warmup_steps = int(warmup * planned_steps)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup_steps) / max(1, planned_steps - warmup_steps))
        if schedule == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def uniform_backoff(log_probs: torch.Tensor, allowed: torch.Tensor, share: float) -> torch.Tensor:
    """log((1 − share)·p + share / n) per row, n being the row's allowed tokens (−inf
    elsewhere): the constrained distribution mixed with the uniform one over the same
    tokens, so it still sums to one and never gives an allowed token less than share / n."""
    uniform = torch.log(share / allowed.sum(-1, keepdim=True).to(log_probs.dtype))
    mixed = torch.logaddexp(log_probs + math.log1p(-share), uniform.expand_as(log_probs))
    return mixed.masked_fill(~allowed, float("-inf"))


def fit_backoff_share(target_log_probs: np.ndarray, allowed: np.ndarray) -> float:
    """The share s in [0, 1] maximising the mean log((1 − s)·p + s / n) of held-out targets
    (their probability p under the model and n, the tokens allowed where they are). The
    objective is concave in s, so the bounded scalar search finds its maximum."""
    from scipy.optimize import minimize_scalar

    p = np.exp(np.asarray(target_log_probs, dtype=np.float64))
    uniform = 1.0 / np.asarray(allowed, dtype=np.float64)
    if len(p) == 0:
        return 0.0

    def loss(share: float) -> float:
        return -float(np.mean(np.log((1.0 - share) * p + share * uniform + 1e-300)))

    best = minimize_scalar(loss, bounds=(0.0, 1.0), method="bounded", options={"xatol": 1e-4})
    share = float(best.x)
    return share if loss(share) < loss(0.0) else 0.0


@dataclass(frozen=True)
class Generated:
    """Items from beam search, best first, with their log-probabilities and indices."""

    positions: np.ndarray
    log_probs: np.ndarray
    codes: np.ndarray


class Generative(Recommender):
    """Generates the next item's semantic index with constrained beam search."""

    name = "generative"
    Config = GenerativeConfig
    config: GenerativeConfig

    # ----- indices ------------------------------------------------------------------------
    def _item_vectors_text(self, dataset: Dataset) -> np.ndarray | None:
        """Text vectors when the index uses text and the catalog has some, else None."""
        if self.config.index == "sequential":
            return None
        if not has_text(dataset.catalog).any():
            self.notes_.append(
                "the catalog has no item text (titles, attributes or descriptions): "
                "indices come from collaborative vectors only"
            )
            return None
        from whyrec.text.encoder import encode_items

        return encode_items(dataset.catalog)

    def _index_items(self, dataset: Dataset) -> None:
        text = self._item_vectors_text(dataset)
        index = build_index(
            dataset,
            self.config.index,
            self.config.levels,
            self.config.codebook_size,
            self.config.collaborative_dim,
            self.config.latent,
            self.config.quantizer_epochs,
            self.config.seed,
            text,
        )
        self.notes_.extend(index.notes)
        self.codes_ = index.codes
        self.sizes_ = np.asarray(index.sizes, dtype=np.int64)
        self.shared_before_collision_ = index.shared_before_collision
        self.utilisation_ = index.utilisation()

    # ----- training -----------------------------------------------------------------------
    def fit(self, dataset: Dataset) -> Self:
        limit_threads()
        generator = seed_everything(self.config.seed)
        started = time.perf_counter()
        self.n_items_ = dataset.n_items
        self.notes_: list[str] = []
        self._index_items(dataset)
        self.trained_ = dataset.item_popularity() > 0
        self.item_backoff_ = 0.0  # training and early stopping read the plain model
        for message in self.notes_:
            warn(f"generative: {message}")
        self._build_runtime()
        popularity = dataset.item_popularity()
        self.labels_ = cluster_labels(self.trie_, dataset.catalog, popularity)
        self.network_ = self._new_network()
        device = resolve_device(self.config.device)
        self._place(device)

        sequences = [h + 1 for h in dataset.histories()]  # catalog position → slot
        holdout = self.validation_sequences(sequences)
        fit_sequences = [s[:-1] if len(s) >= 3 else s for s in sequences]
        inputs, targets = self._training_windows(fit_sequences)
        inputs_t = torch.from_numpy(inputs).to(device)
        targets_t = torch.from_numpy(targets).to(device)
        codes_t = torch.from_numpy(self.codes_).to(device)
        nodes_t = torch.from_numpy(self.trie_.item_nodes).to(device)
        children_t, trained_t = self._children, self._trained
        optimizer = torch.optim.AdamW(
            self.network_.parameters(), lr=self.config.lr, weight_decay=self.config.weight_decay
        )
        batches = -(-len(inputs_t) // self.config.batch_size)
        scheduler = learning_rate_schedule(
            optimizer, self.config.warmup, self.config.schedule, self.config.epochs * batches
        )
        stopping = EarlyStopping(self.config.patience)
        self.history_: list[dict[str, float]] = []
        for epoch in range(self.config.epochs):
            self.network_.train()
            order = torch.randperm(len(inputs_t), generator=generator)
            total, steps = 0.0, 0
            for start in range(0, len(order), self.config.batch_size):
                batch = order[start : start + self.config.batch_size]
                table = self.network_.item_table(codes_t)
                hidden = self.network_.states(inputs_t[batch], table)
                slots = targets_t[batch]
                keep = slots != PAD
                items = slots[keep] - 1
                loss = self._index_loss(
                    hidden[keep], items, codes_t, nodes_t, children_t, trained_t
                )
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                scheduler.step()
                total += loss.item()
                steps += 1
            val_ndcg = self._validation_ndcg(holdout) if holdout else 0.0
            self.history_.append({"epoch": epoch + 1, "loss": total / steps, "val_ndcg": val_ndcg})
            if stopping.should_stop(self.network_, val_ndcg):
                break
        stopping.restore(self.network_)  # best weights, on the CPU, in eval mode
        self._place(device)
        self.item_backoff_ = (
            self._fitted_item_backoff(holdout)
            if self.config.item_backoff is None
            else self.config.item_backoff
        )
        self.best_epoch_ = int(np.argmax([h["val_ndcg"] for h in self.history_])) + 1
        self.fit_seconds_ = time.perf_counter() - started
        return self

    def validation_sequences(self, sequences: list[np.ndarray]) -> list[np.ndarray]:
        """The slot sequences whose last item validates (early stopping, `item_backoff`):
        up to `validation_users` of those with 3 items or more. Every such sequence's last
        item is held out of training, chosen or not."""
        holdout = [s for s in sequences if len(s) >= 3]
        if len(holdout) > self.config.validation_users:
            rng = np.random.default_rng(self.config.seed)
            chosen = rng.choice(len(holdout), self.config.validation_users, replace=False)
            holdout = [holdout[i] for i in np.sort(chosen)]
        return holdout

    def _fitted_item_backoff(self, holdout: list[np.ndarray]) -> float:
        """`item_backoff` fitted on the validation users: their held-out (last training)
        item's probability at the last level, given its prefix, decides the share."""
        if not holdout:
            return 0.0
        log_probs, allowed = self.held_out_token_log_probs(holdout)
        return fit_backoff_share(log_probs[:, -1], allowed[:, -1])

    @torch.no_grad()
    def held_out_token_log_probs(
        self, sequences: list[np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        """(n, levels) log-probability of each slot sequence's last item's token at every
        level given the item's own prefix (the decoder without back-off, the rest of the
        sequence as history), and (n, levels) the number of tokens the trie allows there."""
        targets = np.array([s[-1] - 1 for s in sequences], dtype=np.int64)
        states = self._tensor(self._hidden_of([s[:-1] for s in sequences]))
        codes = self._tensor(np.asarray(self.codes_)[targets])
        outputs = self.network_.decode_all(states, codes)
        nodes = self.trie_.item_nodes[targets]
        chosen, allowed = [], []
        for level in range(codes.shape[1]):
            rows = self._tensor(self.trie_.children[level][nodes[:, level]])
            log_probs = self.network_.log_probs(
                outputs[:, level], level, rows, self._trained[level]
            )
            chosen.append(log_probs.gather(1, codes[:, level : level + 1]).squeeze(1))
            allowed.append((rows >= 0).sum(1))
        return (
            torch.stack(chosen, 1).cpu().numpy().astype(np.float64),
            torch.stack(allowed, 1).cpu().numpy(),
        )

    def _training_windows(self, sequences: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """SASRec's (inputs, targets) windows, overlapping by `window_overlap`."""
        step = max(1, round(self.config.max_len * (1 - self.config.window_overlap)))
        return SASRec._training_windows(self, sequences, step)  # type: ignore[arg-type]

    def _new_network(self) -> GenerativeNetwork:
        if self.config.dim % self.config.heads:
            raise WhyrecError(f"generative: dim {self.config.dim} is not divisible by heads")
        return GenerativeNetwork(
            [int(s) for s in self.sizes_],
            [len(p) for p in self.trie_.prefixes[1:]],
            self.n_items_,
            self.config.dim,
            self.config.heads,
            self.config.layers,
            self.config.max_len,
            self.config.dropout,
        )

    def _index_loss(
        self,
        states: torch.Tensor,
        items: torch.Tensor,
        codes: torch.Tensor,
        nodes: torch.Tensor,
        children: list[torch.Tensor],
        trained: list[torch.Tensor],
    ) -> torch.Tensor:
        """Negative log-likelihood of the items' indices under the constrained decoder,
        with `label_smoothing` of it spread over each level's allowed tokens."""
        target = codes[items]
        outputs = self.network_.decode_all(states, target)
        smoothing = self.config.label_smoothing
        loss = states.new_zeros(())
        for level in range(target.shape[1]):
            rows = children[level][nodes[items, level]]
            log_probs = self.network_.log_probs(outputs[:, level], level, rows, trained[level])
            nll = -log_probs.gather(1, target[:, level : level + 1]).squeeze(1)
            if smoothing:
                allowed = rows >= 0
                uniform = -log_probs.masked_fill(~allowed, 0).sum(1) / allowed.sum(1)
                nll = (1 - smoothing) * nll + smoothing * uniform
            loss = loss + nll.mean()
        return loss

    def _validation_ndcg(self, holdout: list[np.ndarray], k: int = 10) -> float:
        """SASRec's validation (each user's last training item, exact full ranking)."""
        return SASRec._validation_ndcg(self, holdout, k)  # type: ignore[arg-type]

    # ----- runtime tables -----------------------------------------------------------------
    def _build_runtime(self) -> None:
        self.trie_ = Trie.build(self.codes_, [int(s) for s in self.sizes_])
        self._branching = [self.trie_.branching(d) for d in range(self.trie_.length)]
        self._children = [torch.from_numpy(c) for c in self.trie_.children]
        # per depth, the nodes with at least one trained item below them
        self._trained = [
            torch.from_numpy(mask) for mask in self.trie_.alive(np.flatnonzero(~self.trained_))
        ][1:]

    def _place(self, device: torch.device) -> None:
        """Network and trie tables on `device`, item vectors cached there."""
        self.network_.to(device)
        self._children = [c.to(device) for c in self._children]
        self._trained = [t.to(device) for t in self._trained]
        self._cache_item_vectors()

    def _device(self) -> torch.device:
        return next(self.network_.parameters()).device

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        """A numpy array as a tensor on the network's device."""
        return torch.from_numpy(array).to(self._device())

    def _serving_device(self) -> torch.device:
        """The configured device, except that a bundle asking for a GPU on a machine
        without one serves from the CPU (and says so) rather than not loading."""
        if self.config.device.startswith("cuda") and not torch.cuda.is_available():
            warn(f"generative: device {self.config.device!r} is not available; using cpu")
            return torch.device("cpu")
        return resolve_device(self.config.device)

    @torch.no_grad()
    def _cache_item_vectors(self) -> None:
        self._table = self.network_.item_table(self._tensor(np.asarray(self.codes_)))

    # ----- scoring ------------------------------------------------------------------------
    def _as_sequences(self, histories: Histories) -> list[np.ndarray]:
        return SASRec._as_sequences(self, histories)  # type: ignore[arg-type]

    @torch.no_grad()
    def _states(self, sequences: list[np.ndarray]) -> torch.Tensor:
        batch = np.stack([left_pad(s, self.config.max_len) for s in sequences])
        return self.network_.states(self._tensor(batch), self._table)[:, -1]

    def _score_slots(self, sequences: list[np.ndarray]) -> np.ndarray:
        return self.log_likelihoods(self._states(sequences))

    @torch.no_grad()
    def log_likelihoods(self, states: torch.Tensor) -> np.ndarray:
        """(users, n_items) log-probability of every item's index: the exhaustive search.

        Walks the trie depth by depth; only nodes with two or more children need the
        decoder (a single child has probability one), in chunks of nodes × users.
        """
        trie, n_users = self.trie_, len(states)
        device = states.device
        node_scores = torch.zeros(n_users, 1, device=device)
        for depth in range(trie.length):
            children = trie.children[depth]
            next_scores = torch.full(
                (n_users, int(children.max()) + 1), float("-inf"), device=device
            )
            single = np.flatnonzero(self._branching[depth] == 1)
            if len(single):
                only_child = self._tensor(children[single].max(axis=1))
                next_scores[:, only_child] = node_scores[:, self._tensor(single)]
            several = np.flatnonzero(self._branching[depth] > 1)
            step = max(1, PAIRS_PER_CALL // n_users)
            for start in range(0, len(several), step):
                nodes = several[start : start + step]
                self._expand(states, depth, nodes, node_scores, next_scores)
            node_scores = next_scores
        leaves = self._tensor(trie.item_nodes[:, trie.length])
        return node_scores[:, leaves].cpu().numpy().astype(np.float32)

    def _expand(
        self,
        states: torch.Tensor,
        depth: int,
        nodes: np.ndarray,
        node_scores: torch.Tensor,
        next_scores: torch.Tensor,
    ) -> None:
        """Children's scores = parent's score + log p(token | user, parent prefix)."""
        n_users, n_nodes = len(states), len(nodes)
        children = self.trie_.children[depth][nodes]
        prefix = self._tensor(self.trie_.prefixes[depth][nodes]).repeat(n_users, 1)
        output = self.network_.decode(states.repeat_interleave(n_nodes, dim=0), prefix)
        log_probs = self._constrained_log_probs(
            output.view(n_users, n_nodes, -1), depth, self._tensor(children)
        )
        rows, tokens = np.nonzero(children >= 0)
        rows_t, tokens_t = self._tensor(rows), self._tensor(tokens)
        next_scores[:, self._tensor(children[rows, tokens])] = (
            node_scores[:, self._tensor(nodes[rows])] + log_probs[:, rows_t, tokens_t]
        )

    def _constrained_log_probs(
        self, output: torch.Tensor, depth: int, children: torch.Tensor
    ) -> torch.Tensor:
        """The decoder's constrained log-probabilities at `depth` (what scoring and beam
        search both read), with the `item_backoff` share mixed in at the last level."""
        log_probs = self.network_.log_probs(output, depth, children, self._trained[depth])
        if depth == self.trie_.length - 1 and self.item_backoff_ > 0:
            log_probs = uniform_backoff(log_probs, children >= 0, self.item_backoff_)
        return log_probs

    def score(self, histories: Histories, items: np.ndarray | None = None) -> np.ndarray:
        sequences = self._as_sequences(histories)
        empty = np.array([len(s) == 0 for s in sequences], dtype=bool)
        scores = self.scores_from_hidden(self._hidden_of(sequences), empty)
        return scores if items is None else scores[:, np.asarray(items)]

    def hidden(self, histories: Histories) -> np.ndarray:
        """(n, dim) encoder state of each history, the vector the index decoder reads
        (zeros for an empty history): `interpret`'s probe point."""
        return self._hidden_of(self._as_sequences(histories))

    def _hidden_of(self, sequences: list[np.ndarray]) -> np.ndarray:
        out = np.zeros((len(sequences), self.config.dim), dtype=np.float32)
        filled = [i for i, s in enumerate(sequences) if len(s)]
        for start in range(0, len(filled), 64):
            rows = filled[start : start + 64]
            out[rows] = self._states([sequences[r] for r in rows]).cpu().numpy()
        return out

    def scores_from_hidden(self, vectors: np.ndarray, empty: np.ndarray) -> np.ndarray:
        """Exhaustive log-probabilities of every item's index read from given encoder
        states (-inf for rows of empty histories): `score` for an edited state."""
        scores = np.full((len(vectors), self.n_items_), -np.inf, dtype=np.float32)
        rows = np.flatnonzero(~np.asarray(empty, dtype=bool))
        for start in range(0, len(rows), 64):
            chunk = rows[start : start + 64]
            states = np.ascontiguousarray(vectors[chunk], dtype=np.float32)
            scores[chunk] = self.log_likelihoods(self._tensor(states))
        return scores

    # ----- generation ---------------------------------------------------------------------
    def check_history(self, history: np.ndarray) -> np.ndarray:
        """Distinct catalog positions, or one clear error naming what is wrong."""
        history = np.asarray(history, dtype=np.int64)
        check_positions([history], self.n_items_)
        if len(history) == 0:
            raise WhyrecError("generative: the history is empty; nothing to generate from")
        return history

    @torch.inference_mode()
    def generate(self, history: np.ndarray, k: int = 10, beam: int | None = None) -> Generated:
        """The k best unseen items by constrained beam search (beam ≥ k)."""
        history = self.check_history(history)
        width = max(k, beam or self.config.beam)
        trie = self.trie_
        state = self._states([history + 1])
        alive = trie.alive(history)
        nodes, scores = np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.float64)
        for depth in range(trie.length):
            children = trie.children[depth][nodes]
            valid = children >= 0
            open_ = valid & alive[depth + 1][np.maximum(children, 0)]
            if (valid.sum(axis=1) == 1).all():
                log_probs = np.where(valid, 0.0, -np.inf)
            else:
                prefix = self._tensor(trie.prefixes[depth][nodes])
                output = self.network_.decode(state.expand(len(nodes), -1), prefix)
                log_probs = self._constrained_log_probs(output, depth, self._tensor(children))
                log_probs = log_probs.cpu().numpy()
            total = np.where(open_, scores[:, None] + log_probs, -np.inf)
            flat = total.ravel()
            n = min(width, int(np.isfinite(flat).sum()))
            if n == 0:  # every item is in the history
                empty = np.zeros(0, dtype=np.int64)
                return Generated(empty, np.zeros(0), np.zeros((0, trie.length), np.int64))
            best = np.argpartition(-flat, n - 1)[:n] if n < len(flat) else np.arange(len(flat))
            best = best[np.isfinite(flat[best])]
            rows, tokens = np.divmod(best, total.shape[1])
            nodes, scores = children[rows, tokens], flat[best]
        order = np.lexsort((nodes, -scores))[:k]
        positions = trie.leaf_items[nodes[order]]
        return Generated(positions, scores[order], np.asarray(self.codes_)[positions])

    # ----- explanations -------------------------------------------------------------------
    def shared_prefix_depths(self, history: np.ndarray, items: np.ndarray) -> np.ndarray:
        """(len(items), len(history)): how many leading index tokens each pair shares."""
        codes = np.asarray(self.codes_)
        same = (
            codes[np.asarray(items, dtype=np.int64)][:, None, :]
            == (codes[np.asarray(history, dtype=np.int64)][None, :, :])
        )
        return np.cumprod(same, axis=2).sum(axis=2)

    def generation_path_weights(self, history: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Evidence weight of each history item for each item: the depth of the index
        prefix they share (the generation passed through the same clusters), scaled from
        1/2 for the oldest to 1 for the latest item (the encoder leans on recent items)."""
        history = np.asarray(history, dtype=np.int64)
        depths = self.shared_prefix_depths(history, items).astype(np.float64)
        recency = (1.0 + np.arange(1, len(history) + 1) / max(len(history), 1)) / 2.0
        return depths * recency[None, :]

    def path_labels(self, position: int) -> list[str]:
        """Labels of the clusters along an item's index (depth 1 .. length - 1)."""
        nodes = self.trie_.item_nodes[int(position)]
        return [str(labels[nodes[depth + 1]]) for depth, labels in enumerate(self.labels_)]

    def generation_path_values(
        self, cited: list[list[HistoryContribution]], items: np.ndarray
    ) -> list[list[SharedValue]]:
        """Per explained item, the clusters along its index that cited history items share:
        one `SharedValue` per level ("index level d", the cluster's label), weighted by the
        cited items' summed weights, naming the items that passed through it."""
        out = []
        for target, mine in zip(np.asarray(items).tolist(), cited, strict=True):
            if not mine:
                out.append([])
                continue
            sources = np.array([c.position for c in mine], dtype=np.int64)
            depths = self.shared_prefix_depths(sources, np.array([target]))[0]
            values = []
            for depth, label in enumerate(self.path_labels(target), start=1):
                sharing = [c for c, d in zip(mine, depths.tolist(), strict=True) if d >= depth]
                if sharing:
                    values.append(
                        SharedValue(
                            field=f"index level {depth}",
                            value=label,
                            weight=float(sum(c.contribution for c in sharing)),
                            liked_titles=tuple(c.title for c in sharing),
                        )
                    )
            out.append(values)
        return out

    # ----- persistence --------------------------------------------------------------------
    def state(self) -> dict[str, np.ndarray]:
        return {
            **self._index_state(),
            "item_backoff": np.array([self.item_backoff_], dtype=np.float64),
            **state_to_arrays(self.network_, "net__"),
        }

    def _index_state(self) -> dict[str, np.ndarray]:
        """The indices, their trie's inputs and cluster labels (any backbone's)."""
        arrays = {
            "codes": np.asarray(self.codes_, dtype=np.int64),
            "sizes": np.asarray(self.sizes_, dtype=np.int64),
            "notes": np.array(self.notes_, dtype=str),
            "index_stats": np.array([self.shared_before_collision_], dtype=np.int64),
            "trained": np.asarray(self.trained_, dtype=bool),
        }
        for depth, labels in enumerate(self.labels_, start=1):
            arrays[f"labels_{depth}"] = np.asarray(labels, dtype=str)
        return arrays

    def set_state(self, arrays: dict[str, np.ndarray]) -> None:
        limit_threads()
        self._set_index_state(arrays)
        # bundles saved before the back-off existed scored without it
        self.item_backoff_ = float(np.asarray(arrays.get("item_backoff", [0.0]))[0])
        self.network_ = self._new_network()
        load_arrays_into(self.network_, arrays, "net__")
        self.network_.eval()
        self._place(self._serving_device())

    def _set_index_state(self, arrays: dict[str, np.ndarray]) -> None:
        """Inverse of `_index_state`, with the trie and runtime tables rebuilt."""
        self.codes_ = np.array(arrays["codes"], dtype=np.int64)  # writable: torch reads it
        self.sizes_ = np.asarray(arrays["sizes"], dtype=np.int64)
        self.notes_ = [str(n) for n in np.asarray(arrays["notes"])]
        self.shared_before_collision_ = int(np.asarray(arrays["index_stats"])[0])
        self.trained_ = np.asarray(arrays["trained"], dtype=bool)
        self._build_runtime()
        self.labels_ = [
            np.asarray(arrays[f"labels_{depth}"]) for depth in range(1, self.trie_.length)
        ]
