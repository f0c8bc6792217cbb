"""gptcourse.finetune: the last-token classifier, freezing, the confusion matrix and instruction batches, checked
against independent computations (each row alone, F.cross_entropy, counting by hand)."""

import math

import pytest
import torch
import torch.nn.functional as F

from gptcourse.finetune import (IGNORE_INDEX, FinetuneConfig, GPTClassifier, answer_questions, confusion_matrix,
                                dpo_loss, finetune, freeze_all_but, instruction_batch, last_token_states,
                                padded_batch, predict, sequence_logprobs, token_f1, training_bytes)
from gptcourse.generate import Sampling, generate
from gptcourse.model import GPT, GPTConfig
from gptcourse.lora import apply_lora
from gptcourse.optim import AdamW
from gptcourse.quantize import fake_quantize, nf4_levels
from gptcourse.tolerances import assert_close, devices_to_test

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


def test_padded_batch_and_predict_in_eval_mode_without_changing_the_mode():
    ids, lengths = padded_batch([[5, 6, 7, 8], [9], [1, 2]], pad_id=PAD, max_tokens=3)
    assert ids.tolist() == [[5, 6, 7], [9, PAD, PAD], [1, 2, PAD]] and lengths.tolist() == [3, 1, 2]
    with pytest.raises(ValueError, match="at least one token"):
        padded_batch([[1], []], pad_id=PAD, max_tokens=3)
    torch.manual_seed(3)
    classifier = GPTClassifier(GPT(GPTConfig(**{**CONFIG.__dict__, "dropout": 0.5})), n_classes=3).train()
    got = predict(classifier, ids, lengths, batch_size=2)
    assert classifier.training, "predict must give the classifier back in the mode it was in"
    with torch.no_grad():
        expected = classifier.eval()(ids, lengths).argmax(-1)
    assert torch.equal(got, expected), "in eval mode (no dropout), batches of 2 = the whole batch"


def test_token_f1_is_the_squad_word_overlap():
    assert token_f1("Return the sum.", "return THE sum") == 1.0
    assert token_f1("the cat", "a dog") == 0.0 and token_f1("", "a dog") == 0.0
    # prediction 4 words, reference 2, 2 in common ("the" once, since the reference has it once): P 1/2, R 1
    assert abs(token_f1("the the cat sat", "the cat") - 2 * 0.5 * 1 / 1.5) < 1e-12


def test_finetune_trains_only_what_requires_a_gradient_and_repeats_with_its_seed():
    def run():
        torch.manual_seed(4)
        classifier = GPTClassifier(GPT(CONFIG), n_classes=2)
        freeze_all_but(classifier, 0)
        frozen = classifier.gpt.blocks[0].ffn.fc_in.weight.clone()
        x, y = torch.randint(1, 50, (12, 6)), torch.randint(0, 2, (12,))
        calls = []

        def evaluate():
            calls.append(classifier.training)
            return float(predict(classifier, x, torch.full((12,), 6)).eq(y).float().mean())

        history = finetune(classifier, lambda idx: F.cross_entropy(classifier(x[idx]), y[idx]), len(x),
                           FinetuneConfig(steps=7, batch_size=4, lr=1e-2, eval_every=3), evaluate, progress=False)
        assert torch.equal(classifier.gpt.blocks[0].ffn.fc_in.weight, frozen) and not classifier.training
        assert history.eval_steps == [0, 3, 6, 7] and len(history.loss) == 7 and len(history.scores) == 4
        return history.loss
    assert run() == run()
    with pytest.raises(ValueError, match="no parameter requires a gradient"):
        model = GPT(CONFIG).requires_grad_(False)
        finetune(model, lambda idx: None, 1, progress=False)


def test_training_bytes_counts_the_gradients_and_adamws_two_moments():
    classifier = GPTClassifier(GPT(CONFIG), n_classes=2)
    trainable = freeze_all_but(classifier, 1)
    tensors = [p for p in classifier.parameters() if p.requires_grad]
    optimizer = AdamW(tensors, lr=1e-3)
    F.cross_entropy(classifier(torch.randint(1, 50, (2, 6))), torch.tensor([0, 1])).backward()
    optimizer.step()
    gradients, state = training_bytes(classifier, optimizer)
    assert gradients == 4 * trainable  # float32, frozen parameters have none
    assert state == 2 * 4 * trainable + 4 * len(tensors)  # exp_avg, exp_avg_sq, and a float32 step per tensor


def test_answer_questions_batches_prompts_of_equal_length_like_one_at_a_time():
    torch.manual_seed(5)
    model = GPT(CONFIG).eval()
    prompts = [[1, 2, 3], [4, 5], [6, 7, 8], [9]]
    eos = int(model(torch.tensor([[4, 5]]))[0, -1].argmax())  # the second prompt's answer ends at once
    answers = answer_questions(model, prompts, eos_id=eos, max_new_tokens=5)
    for prompt, answer in zip(prompts, answers):
        alone = generate(model, torch.tensor(prompt), Sampling(max_new_tokens=5, eos_id=eos))[len(prompt):].tolist()
        assert answer == (alone[:alone.index(eos)] if eos in alone else alone)
    assert answers[1] == []


@pytest.mark.parametrize("device", devices_to_test(), ids=str)
def test_fine_tuning_runs_where_the_model_is(device):
    torch.manual_seed(6)
    classifier = GPTClassifier(GPT(CONFIG), n_classes=3).to(device)
    apply_lora(classifier.gpt, targets=("qkv", "fc_in"), r=4, alpha=8)
    classifier.head.requires_grad_(True)
    ids, lengths = padded_batch([[1, 2, 3], [4, 5], [6]], pad_id=PAD, max_tokens=4)
    labels = torch.tensor([0, 2, 1], device=device)
    history = finetune(classifier, lambda rows: F.cross_entropy(classifier(ids[rows].to(device), lengths[rows]),
                                                                labels[rows.to(device)]),
                       3, FinetuneConfig(steps=3, batch_size=2, eval_every=3), progress=False)
    assert len(history.loss) == 3 and all(math.isfinite(v) for v in history.loss)
    predicted = predict(classifier, ids, lengths)
    assert predicted.device.type == "cpu" and predicted.shape == (3,)
    assert confusion_matrix(predicted, labels, 3).sum() == 3
    model = GPT(CONFIG).to(device).eval()
    answers = answer_questions(model, [[1, 2], [3, 4], [5]], eos_id=0, max_new_tokens=3)
    assert len(answers) == 3 and all(len(a) <= 3 for a in answers)
    weight = torch.randn(8, 64, device=device)
    assert fake_quantize(weight, nf4_levels()).device.type == device.type
