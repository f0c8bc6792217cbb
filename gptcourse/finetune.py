"""Fine-tuning the course model: a classification head on the last token, and instruction batches (Chapter 7).

- **Classification.** The language-model head (``d_model -> V``) is replaced by a small one (``d_model -> C``
  classes). Which position's vector to read? In a causal model only the *last* token has seen the whole input, so
  the classifier reads the last real (non-padding) token of each row. (Chapter 4's encoder reads a [CLS] token at the
  front instead: there every position sees every other.)
- **Instruction tuning.** Each example is a prompt and an answer, joined into one sequence; the model is trained to
  predict the answer's tokens only. ``instruction_batch`` pads a batch to one length and marks every target that is
  prompt or padding with ``-100``, the label ``F.cross_entropy`` ignores.
"""

import re
import time
from collections import Counter
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from .families import IGNORE_INDEX
from .generate import Sampling, generate
from .model import GPT, count_parameters
from .optim import AdamW


def last_token_states(hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``hidden`` ``(B, T, d)``, ``lengths`` ``(B,)`` (real tokens per row, padding on the right) -> ``(B, d)``,
    each row's vector at its last real token."""
    if bool((lengths < 1).any()) or bool((lengths > hidden.shape[1]).any()):
        raise ValueError(f"every length must lie in 1..{hidden.shape[1]}, got {lengths.tolist()}")
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    return hidden[rows, lengths.to(hidden.device) - 1]


class GPTClassifier(nn.Module):
    """A pretrained GPT with its language-model head replaced by ``Linear(d_model, n_classes)``, read at the last
    real token of each row. ``forward(ids, lengths)`` -> logits ``(B, n_classes)``."""

    def __init__(self, gpt: GPT, n_classes: int):
        super().__init__()
        self.gpt = gpt
        self.head = nn.Linear(gpt.config.d_model, n_classes)
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if lengths is None:
            lengths = torch.full((ids.shape[0],), ids.shape[1], device=ids.device)
        return self.head(last_token_states(self.gpt.hidden_states(ids), lengths))


def freeze_all_but(classifier: GPTClassifier, trainable_blocks: int = 1) -> int:
    """Train only the new head, the final norm and the last ``trainable_blocks`` blocks; return how many
    parameters that is. The early blocks hold general knowledge of the language; the last ones adapt most."""
    if not 0 <= trainable_blocks <= len(classifier.gpt.blocks):
        raise ValueError(f"trainable_blocks must lie in 0..{len(classifier.gpt.blocks)}, got {trainable_blocks}")
    for p in classifier.parameters():
        p.requires_grad_(False)
    trainable = [classifier.head, classifier.gpt.final_norm]
    trainable += list(classifier.gpt.blocks)[len(classifier.gpt.blocks) - trainable_blocks:]
    for module in trainable:
        for p in module.parameters():
            p.requires_grad_(True)
    return count_parameters(classifier, trainable_only=True)


def confusion_matrix(predicted: torch.Tensor, actual: torch.Tensor, n_classes: int) -> torch.Tensor:
    """``(n_classes, n_classes)`` counts: row = the true class, column = the predicted one."""
    cells = actual.long().cpu() * n_classes + predicted.long().cpu()  # one cell per (true, predicted) pair
    return torch.bincount(cells, minlength=n_classes * n_classes).view(n_classes, n_classes)


def padded_batch(token_lists: list[list[int]], pad_id: int, max_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids, lengths)``: each list cut to its first ``max_tokens`` tokens, padded on the right with ``pad_id``."""
    rows = [list(tokens)[:max_tokens] for tokens in token_lists]
    if not rows or min(len(row) for row in rows) == 0:
        raise ValueError("every example needs at least one token")
    ids = torch.full((len(rows), max(len(row) for row in rows)), pad_id, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = torch.tensor(row)
    return ids, torch.tensor([len(row) for row in rows])


@torch.no_grad()
def predict(classifier: GPTClassifier, ids: torch.Tensor, lengths: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """The predicted class of every row, in eval mode (the mode the classifier was in is restored)."""
    was_training = classifier.training
    classifier.eval()
    device = next(classifier.parameters()).device
    predicted = []
    for i in range(0, len(ids), batch_size):
        width = int(lengths[i:i + batch_size].max())  # columns of padding alone would change nothing
        logits = classifier(ids[i:i + batch_size, :width].to(device), lengths[i:i + batch_size])
        predicted.append(logits.argmax(-1).cpu())
    classifier.train(was_training)
    return torch.cat(predicted)


def instruction_batch(pairs: list[tuple[list[int], list[int]]], pad_id: int,
                      ignore_index: int = IGNORE_INDEX) -> tuple[torch.Tensor, torch.Tensor]:
    """``(inputs, targets)``, both ``(B, T)``, for a batch of (prompt ids, answer ids).

    Each sequence is ``prompt + answer``; the inputs are all of it but the last token, the targets all of it but the
    first (the next token at every position). Targets inside the prompt and in the padding become ``ignore_index``:
    the loss is the answer's alone, and a row's length does not change how much it weighs per answer token.
    """
    if not pairs:
        raise ValueError("the batch is empty")
    sequences = [list(prompt) + list(answer) for prompt, answer in pairs]
    if any(len(answer) == 0 or len(prompt) == 0 for prompt, answer in pairs):
        raise ValueError("every example needs a prompt and an answer of at least one token")
    T = max(len(s) for s in sequences) - 1
    inputs = torch.full((len(pairs), T), pad_id, dtype=torch.long)
    targets = torch.full((len(pairs), T), ignore_index, dtype=torch.long)
    for row, ((prompt, _), sequence) in enumerate(zip(pairs, sequences)):
        n = len(sequence) - 1
        inputs[row, :n] = torch.tensor(sequence[:-1])
        targets[row, len(prompt) - 1:n] = torch.tensor(sequence[len(prompt):])  # the answer's tokens only
    return inputs, targets


def answer_questions(model: GPT, prompts: list[list[int]], eos_id: int, max_new_tokens: int = 48) -> list[list[int]]:
    """Greedy answers (token ids, without the end-of-text) to many prompts, in the prompts' order. Prompts of the
    same length go through ``generate`` as one batch: no padding is needed, and a batch costs about what one costs."""
    by_length = {}
    for i, prompt in enumerate(prompts):
        by_length.setdefault(len(prompt), []).append(i)
    answers = [None] * len(prompts)
    device = next(model.parameters()).device
    for length, rows in by_length.items():
        batch = torch.tensor([prompts[i] for i in rows], device=device)
        out = generate(model, batch, Sampling(max_new_tokens=max_new_tokens, eos_id=eos_id))[:, length:].tolist()
        for i, tokens in zip(rows, out):
            answers[i] = tokens[:tokens.index(eos_id)] if eos_id in tokens else tokens
    return answers


def token_f1(prediction: str, reference: str) -> float:
    """The overlap of two answers' words (lower case, punctuation dropped), as in the SQuAD benchmark: the harmonic
    mean of precision (the share of the prediction's words found in the reference) and recall (the share of the
    reference's words found in the prediction). 1 for the same words; 0 when they share none."""
    predicted, expected = (Counter(re.findall(r"\w+", text.lower())) for text in (prediction, reference))
    common = sum((predicted & expected).values())
    if common == 0:
        return 0.0
    precision, recall = common / sum(predicted.values()), common / sum(expected.values())
    return 2 * precision * recall / (precision + recall)


# ----------------------------------------------------------------------------------------------------------------
# The fine-tuning loop


@dataclass
class FinetuneConfig:
    steps: int = 300
    batch_size: int = 16
    lr: float = 1e-3
    eval_every: int = 50  # steps between two calls of ``evaluate``
    seed: int = 0  # the batches drawn


@dataclass
class FinetuneHistory:
    loss: list[float] = field(default_factory=list)  # every step's training loss
    eval_steps: list[int] = field(default_factory=list)  # 0 (before training), eval_every, ..., steps
    scores: list[float] = field(default_factory=list)  # what ``evaluate`` returned at those steps
    seconds: float = 0.0  # the training steps' time (evaluation not counted)


def finetune(model: nn.Module, batch_loss, n_examples: int, config: FinetuneConfig = FinetuneConfig(),
             evaluate=None, progress: bool = True) -> FinetuneHistory:
    """Train the parameters of ``model`` that require a gradient, and no other.

    Each step draws ``batch_size`` example indices (seeded) and calls ``batch_loss(indices)`` for the loss: the
    same loop serves classification and instruction tuning. AdamW without weight decay (the steps are few, and
    decay would pull the pretrained weights towards 0). ``evaluate()``, if given, returns a score; it is called
    before the first step and every ``eval_every`` steps. The model is left in eval mode.
    """
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("no parameter requires a gradient: unfreeze some (freeze_all_but, apply_lora) first")
    optimizer = AdamW(trainable, lr=config.lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(config.seed)
    history = FinetuneHistory()

    def score(step: int) -> None:
        if evaluate is not None:
            history.eval_steps.append(step)
            history.scores.append(evaluate())
            model.train()

    model.train()
    score(0)
    for step in tqdm(range(1, config.steps + 1), desc="fine-tuning", disable=not progress):
        start = time.perf_counter()
        loss = batch_loss(torch.randint(n_examples, (config.batch_size,), generator=generator))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        history.seconds += time.perf_counter() - start
        history.loss.append(loss.item())
        if step % config.eval_every == 0 or step == config.steps:
            score(step)
    model.eval()
    return history


def training_bytes(model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[int, int]:
    """What training holds besides the weights: the bytes of every gradient, and of the optimizer's state (AdamW:
    two moments per trained number). Measure after a step, once both exist."""
    gradients = sum(p.grad.nbytes for p in model.parameters() if p.grad is not None)
    state = sum(t.nbytes for s in optimizer.state.values() for t in s.values() if torch.is_tensor(t))
    return gradients, state


# ----------------------------------------------------------------------------------------------------------------
# Preference tuning: DPO (Rafailov et al. 2023)


def sequence_logprobs(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """``(B,)``: the sum of log p(target) over each row's positions whose target is not ``ignore_index`` (the
    answer's tokens, with ``instruction_batch``'s targets). ``logits`` is ``(B, T, V)``."""
    keep = targets != ignore_index
    log_probs = logits.float().log_softmax(-1).gather(-1, targets.clamp(min=0)[..., None]).squeeze(-1)
    return (log_probs * keep).sum(-1)


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, reference_chosen: torch.Tensor,
             reference_rejected: torch.Tensor, beta: float = 0.1) -> torch.Tensor:
    """Direct preference optimisation: ``-log sigmoid(beta * (chosen margin - rejected margin))``, averaged.

    Each argument is ``(B,)`` sequence log-probabilities (``sequence_logprobs``) of the preferred ("chosen") and the
    other ("rejected") answer, under the model being trained (policy) and under a frozen copy of it (reference). The
    loss raises the chosen answer's probability relative to the reference more than the rejected one's; ``beta``
    sets how far the policy may move from the reference. No reward model, no sampling: a classification loss on pairs.
    """
    margin = (policy_chosen - reference_chosen) - (policy_rejected - reference_rejected)
    return -torch.nn.functional.logsigmoid(beta * margin).mean()
