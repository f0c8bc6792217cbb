"""Benchmark: fine-tuning the course model (Chapter 7), measured side by side in one run.

    python -m benchmarks.finetuning [--steps 300] [--timed-steps 20]

Everything starts from the course model (``gptcourse.pretrain.course_model``, cached) and the standard library's
docstrings (``gptcourse.finetune_data``: another Python release gives other examples, so the data's fingerprint is
printed next to the results). Training is the course's ``finetune`` loop: batches of 16, seed 0, AdamW without decay.

1. **LoRA vs full fine-tuning** on the classification task (a docstring's first sentence -> its area of the library,
   at most 48 tokens). Full: every block, the final norm and the new head train (``freeze_all_but``), lr 5e-4. LoRA:
   rank-8 adapters (alpha 16) on ``qkv``, ``out_proj``, ``fc_in`` and ``fc_out``, plus the head, lr 2e-3. For each:
   the trainable parameters; the memory training adds (the bytes of every ``.grad`` and of AdamW's state after one
   step); the step time (the median of steps taken in turn by the two, so that a busy moment of the shared machine
   hits both); the test accuracy after the run; then LoRA / full. LoRA's promise is memory: the activations still
   flow back through every frozen layer, so on a model this small it need not be faster.
2. **Wall time of each fine-tuning run of Chapter 7** on this machine: the two runs above, and instruction tuning
   ("Question: What does `name` do?\\nAnswer:" -> the docstring's first sentence, full fine-tuning, lr 5e-4) with the
   held-out token F1 of its greedy answers before and after. Printed, not asserted.
"""

import argparse
import copy
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from gptcourse import finetune_data
from gptcourse.course_tokenizer import load_course_tokenizer
from gptcourse.finetune import (FinetuneConfig, GPTClassifier, answer_questions, finetune,
                                freeze_all_but, instruction_batch, padded_batch, predict, token_f1,
                                training_bytes)
from gptcourse.lora import apply_lora
from gptcourse.model import count_parameters
from gptcourse.optim import AdamW
from gptcourse.pretrain import course_model
from gptcourse.seed import set_seed

MAX_TOKENS = 48  # tokens per classification example, and new tokens per generated answer
BATCH, SEED = 16, 0
LORA_TARGETS = ("qkv", "out_proj", "fc_in", "fc_out")


class Classification:
    """The classification task, tokenized: ``batch_loss(indices)`` for ``finetune`` and ``accuracy(classifier)``."""

    def __init__(self, tokenizer, pad_id: int):
        self.train, _, self.test = finetune_data.split(finetune_data.classification_examples())
        self.pad_id = pad_id
        self.tokens = [tokenizer.encode(e.text)[:MAX_TOKENS] for e in self.train]
        self.labels = torch.tensor([finetune_data.LABELS.index(e.target) for e in self.train])
        self.test_ids, self.test_lengths = padded_batch([tokenizer.encode(e.text) for e in self.test], pad_id,
                                                        MAX_TOKENS)
        self.test_labels = torch.tensor([finetune_data.LABELS.index(e.target) for e in self.test])

    def loss_of(self, classifier: GPTClassifier):
        def batch_loss(indices: torch.Tensor) -> torch.Tensor:
            ids, lengths = padded_batch([self.tokens[i] for i in indices.tolist()], self.pad_id, MAX_TOKENS)
            return F.cross_entropy(classifier(ids, lengths), self.labels[indices])
        return batch_loss

    def accuracy(self, classifier: GPTClassifier) -> float:
        predicted = predict(classifier, self.test_ids, self.test_lengths)
        return (predicted == self.test_labels).float().mean().item()


def full_classifier(gpt) -> GPTClassifier:
    set_seed(SEED)
    classifier = GPTClassifier(copy.deepcopy(gpt), len(finetune_data.LABELS))
    freeze_all_but(classifier, len(classifier.gpt.blocks))
    return classifier


def lora_classifier(gpt) -> GPTClassifier:
    set_seed(SEED)
    classifier = GPTClassifier(copy.deepcopy(gpt), len(finetune_data.LABELS))
    apply_lora(classifier.gpt, targets=LORA_TARGETS, r=8, alpha=16)  # freezes the whole GPT, then adds adapters
    for p in classifier.head.parameters():
        p.requires_grad_(True)
    return classifier


VARIANTS = {"full": (full_classifier, 5e-4), "LoRA": (lora_classifier, 2e-3)}


def measure_steps(task: Classification, gpt, timed_steps: int, warmup: int = 2) -> dict[str, dict]:
    """Fresh copies of both variants, each with its own AdamW (as ``finetune`` builds it), taking ``finetune``'s step
    in turn: the memory after the first step, and the median time of the steps after ``warmup``."""
    runs = {}
    for name, (build, lr) in VARIANTS.items():
        model = build(gpt).train()
        trainable = [p for p in model.parameters() if p.requires_grad]
        runs[name] = dict(model=model, loss=task.loss_of(model), optimizer=AdamW(trainable, lr=lr, weight_decay=0.0),
                          generator=torch.Generator().manual_seed(SEED), times=[],
                          params=count_parameters(model, trainable_only=True))
    for step in range(warmup + timed_steps):
        for run in runs.values():
            indices = torch.randint(len(task.tokens), (BATCH,), generator=run["generator"])
            start = time.perf_counter()
            loss = run["loss"](indices)
            run["optimizer"].zero_grad(set_to_none=True)
            loss.backward()
            run["optimizer"].step()
            seconds = time.perf_counter() - start
            if step == 0:
                run["bytes"] = sum(training_bytes(run["model"], run["optimizer"]))
            if step >= warmup:
                run["times"].append(seconds)
    return {name: dict(params=run["params"], bytes=run["bytes"], step_s=statistics.median(run["times"]))
            for name, run in runs.items()}


def classification(task: Classification, gpt, steps: int, timed_steps: int) -> dict[str, float]:
    """Section 1; returns the wall time of each variant's run for section 2."""
    label, baseline = finetune_data.majority_baseline(task.train, task.test)
    print(f"1. Classification, LoRA vs full fine-tuning: {len(task.train)} training and {len(task.test)} test "
          f"sentences, {len(finetune_data.LABELS)} areas, <= {MAX_TOKENS} tokens each; {steps} steps of {BATCH}, "
          f"seed {SEED}")
    print(f"   majority baseline (always {label!r}): test accuracy {baseline:.1%}")
    measured = measure_steps(task, gpt, timed_steps)
    walls = {}
    for name, (build, lr) in VARIANTS.items():
        model = build(gpt)
        start = time.perf_counter()
        history = finetune(model, task.loss_of(model), len(task.tokens),
                           FinetuneConfig(steps=steps, batch_size=BATCH, lr=lr, seed=SEED), progress=False)
        walls[name] = time.perf_counter() - start
        measured[name] |= dict(accuracy=task.accuracy(model), final_loss=statistics.mean(history.loss[-20:]))
    full, lora = measured["full"], measured["LoRA"]
    rows = [("trainable parameters", "params", "{:,}"),
            ("gradients + AdamW state, bytes (after 1 step)", "bytes", "{:,}"),
            (f"step time, ms (median of {timed_steps}, alternating)", "step_s", None),
            ("training loss (mean of the last 20 steps)", "final_loss", "{:.3f}"),
            (f"test accuracy after {steps} steps", "accuracy", "{:.1%}")]
    print(f"   {'':48s} {'full':>12s} {'LoRA':>12s} {'LoRA/full':>10s}")
    for title, key, form in rows:
        cells = [f"{m[key] * 1e3:.1f}" if form is None else form.format(m[key]) for m in (full, lora)]
        print(f"   {title:48s} {cells[0]:>12s} {cells[1]:>12s} {lora[key] / full[key]:9.2f}x")
    print(f"   (full: every block, the final norm and the head, lr 5e-4; LoRA: r=8, alpha=16 on "
          f"{', '.join(LORA_TARGETS)}, and the head, lr 2e-3)")
    return walls


def instruction_tuning(tokenizer, eot: int, gpt, steps: int) -> tuple[float, float]:
    """The instruction-tuning run of Chapter 7: its wall time, and the time of its two evaluations."""
    train, held_out = finetune_data.instruction_examples()
    pairs = [(tokenizer.encode(finetune_data.prompt_of(e.text)), tokenizer.encode(" " + e.target) + [eot])
             for e in train]
    prompts = [tokenizer.encode(finetune_data.prompt_of(e.text)) for e in held_out]

    def held_out_f1(model) -> float:
        answers = answer_questions(model, prompts, eot, MAX_TOKENS)
        return statistics.mean(token_f1(tokenizer.decode(a), e.target) for a, e in zip(answers, held_out))

    model = copy.deepcopy(gpt)
    for p in model.parameters():
        p.requires_grad_(True)

    def batch_loss(indices: torch.Tensor) -> torch.Tensor:
        inputs, targets = instruction_batch([pairs[i] for i in indices.tolist()], eot)
        return model(inputs, targets)[1]

    start = time.perf_counter()
    before = held_out_f1(model.eval())
    eval_s = time.perf_counter() - start
    start = time.perf_counter()
    history = finetune(model, batch_loss, len(pairs), FinetuneConfig(steps=steps, batch_size=BATCH, lr=5e-4,
                                                                      seed=SEED), progress=False)
    wall = time.perf_counter() - start
    start = time.perf_counter()
    after = held_out_f1(model)
    eval_s += time.perf_counter() - start
    print(f"   instruction tuning, full ({count_parameters(model, trainable_only=True):,} parameters), "
          f"{len(pairs)} training questions, lr 5e-4: {wall:6.1f} s ({history.seconds / steps * 1e3:.1f} ms/step)")
    print(f"     held-out token F1 on {len(held_out)} questions of unseen modules (greedy, <= {MAX_TOKENS} tokens): "
          f"{before:.3f} before, {after:.3f} after; the two evaluations took {eval_s:.1f} s")
    return wall, eval_s


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300, help="training steps of each run")
    parser.add_argument("--timed-steps", type=int, default=20,
                        help="steps per variant for the step time (after 2 warm-up steps)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    gpt, _ = course_model(progress=False, device="cpu")
    tokenizer = load_course_tokenizer()
    eot = tokenizer.encode("<|endoftext|>", allowed_special="all")[0]
    task = Classification(tokenizer, eot)
    c = gpt.config
    print(f"CPU, {torch.get_num_threads()} threads, torch {torch.__version__}. The course model: {c.n_layers} layers, "
          f"d_model {c.d_model}, {count_parameters(gpt):,} parameters; data fingerprint "
          f"{finetune_data.fingerprint()}\n")
    walls = classification(task, gpt, args.steps, args.timed_steps)
    print(f"\n2. Wall time of Chapter 7's fine-tuning runs on this machine ({args.steps} steps of {BATCH} each)")
    for name, seconds in walls.items():
        print(f"   classification, {name:4s}: {seconds:6.1f} s ({seconds / args.steps * 1e3:.1f} ms/step)")
    instruction_tuning(tokenizer, eot, gpt, args.steps)
    print(f"\n(the whole benchmark: {time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
