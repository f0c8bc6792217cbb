"""gptcourse.finetune: the last-token classifier, freezing, the confusion matrix and instruction batches, checked
against independent computations (each row alone, F.cross_entropy, counting by hand)."""

import math

import pytest
import torch
import torch.nn.functional as F

from gptcourse.finetune import (IGNORE_INDEX, GPTClassifier, confusion_matrix, dpo_loss, freeze_all_but,
                                instruction_batch, last_token_states, sequence_logprobs)
from gptcourse.model import GPT, GPTConfig
from gptcourse.tolerances import assert_close

CONFIG = GPTConfig(vocab_size=50, context_length=16, d_model=32, n_layers=3, n_heads=4)
PAD = 0


def test_the_classifier_reads_the_last_real_token_so_padding_changes_nothing():
    torch.manual_seed(0)
    classifier = GPTClassifier(GPT(CONFIG), n_classes=4).eval()
    rows = [torch.randint(1, 50, (n,)) for n in (3, 7, 5)]
    batch = torch.full((3, 7), PAD)
    for i, row in enumerate(rows):
        batch[i, :len(row)] = row
    with torch.no_grad():
        together = classifier(batch, torch.tensor([3, 7, 5]))
        alone = torch.cat([classifier(row[None]) for row in rows])
        first_token = classifier.head(classifier.gpt.hidden_states(batch)[:, 0])
    assert together.shape == (3, 4)
    assert_close(together, alone)
    assert (together - first_token).abs().max() > 1e-4, "reading the first token would be another classifier"
    with pytest.raises(ValueError, match="every length"):
        last_token_states(torch.zeros(2, 4, 8), torch.tensor([0, 4]))


def test_freezing_leaves_the_head_the_final_norm_and_the_last_blocks():
    classifier = GPTClassifier(GPT(CONFIG), n_classes=3)
    count = freeze_all_but(classifier, trainable_blocks=1)
    expected = sum(p.numel() for m in (classifier.head, classifier.gpt.final_norm, classifier.gpt.blocks[-1])
                   for p in m.parameters())
    assert count == expected
    F.cross_entropy(classifier(torch.randint(1, 50, (2, 6))), torch.tensor([0, 2])).backward()
    for name, p in classifier.named_parameters():
        trainable = name.startswith(("head.", "gpt.final_norm.", "gpt.blocks.2."))
        assert (p.grad is not None) == trainable == p.requires_grad, name
    assert freeze_all_but(classifier, 0) == sum(p.numel() for p in classifier.head.parameters()) + sum(
        p.numel() for p in classifier.gpt.final_norm.parameters())
    with pytest.raises(ValueError):
        freeze_all_but(classifier, 4)


def test_confusion_matrix_counts_every_pair():
    actual = torch.tensor([0, 0, 1, 2, 2, 2, 1])
    predicted = torch.tensor([0, 1, 1, 2, 0, 2, 1])
    matrix = confusion_matrix(predicted, actual, 3)
    expected = torch.zeros(3, 3, dtype=torch.long)
    for a, p in zip(actual.tolist(), predicted.tolist()):
        expected[a, p] += 1
    assert torch.equal(matrix, expected) and matrix.trace() == 5 and matrix.sum() == 7


def test_instruction_batch_masks_prompt_and_padding():
    pairs = [([5, 6, 7], [8, 9]), ([5], [10, 11, 12, 13]), ([4, 4], [3])]
    inputs, targets = instruction_batch(pairs, pad_id=PAD)
    assert inputs.tolist() == [[5, 6, 7, 8], [5, 10, 11, 12], [4, 4, PAD, PAD]]  # the longest row sets T = 5 - 1
    X = IGNORE_INDEX
    assert targets.tolist() == [[X, X, 8, 9], [10, 11, 12, 13], [X, 3, X, X]]
    # The batch's loss is the mean over the answer tokens of all rows: the same as summing each row alone.
    torch.manual_seed(1)
    model = GPT(CONFIG).eval()
    with torch.no_grad():
        batch_loss = F.cross_entropy(model(inputs).flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX)
        total, count = 0.0, 0
        for prompt, answer in pairs:
            sequence = torch.tensor(prompt + answer)
            logits = model(sequence[None, :-1])[0, len(prompt) - 1:]
            total += F.cross_entropy(logits, torch.tensor(answer), reduction="sum").item()
            count += len(answer)
    assert abs(batch_loss.item() - total / count) < 1e-5
    with pytest.raises(ValueError, match="prompt and an answer"):
        instruction_batch([([1], [])], pad_id=PAD)


def test_sequence_logprobs_sum_the_answer_tokens():
    torch.manual_seed(2)
    logits = torch.randn(2, 4, 7, dtype=torch.float64)
    targets = torch.tensor([[IGNORE_INDEX, 3, 5, IGNORE_INDEX], [1, 1, 2, 6]])
    got = sequence_logprobs(logits, targets)
    for row in range(2):
        keep = targets[row] != IGNORE_INDEX
        expected = -F.cross_entropy(logits[row][keep], targets[row][keep], reduction="sum")
        assert abs(got[row].item() - expected.item()) < 1e-6


def test_dpo_loss_is_the_closed_form():
    pc, pr = torch.tensor([-10.0, -3.0]), torch.tensor([-12.0, -2.0])
    rc, rr = torch.tensor([-11.0, -3.5]), torch.tensor([-11.0, -2.5])
    beta = 0.5
    expected = sum(math.log(1 + math.exp(-beta * ((a - c) - (b - d))))
                   for a, b, c, d in zip(pc.tolist(), pr.tolist(), rc.tolist(), rr.tolist())) / 2
    assert abs(dpo_loss(pc, pr, rc, rr, beta).item() - expected) < 1e-6
    assert abs(dpo_loss(rc, rr, rc, rr).item() - math.log(2)) < 1e-6, "policy = reference: log 2"
    chosen = pc.clone().requires_grad_(True)
    dpo_loss(chosen, pr, rc, rr, beta).backward()
    assert (chosen.grad < 0).all(), "lowering the loss raises the chosen answers' log-probabilities"
