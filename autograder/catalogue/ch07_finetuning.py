"""Wrong implementations for Chapter 7 (Fine-tuning): the mistakes learners make with the last real token of a
padded row, a classifier's accuracy, instruction batches, the log-probability of an answer, a LoRA layer, merging
LoRA into a weight (GPT-2's transposed layout too) and the DPO loss.

Each source replaces a whole solution cell of ``solutions/ch07_finetuning/finetuning.ipynb`` and is written the way a
learner would write it; the other exercises keep the reference solution. Two cells also hold given code that the
tests build in the learner's notebook: ``TinyClassifier`` (Exercise 2) and ``pretrained_linear`` (Exercise 5), so
every entry for those cells keeps it (``_with_given``). Mistakes that only show on a GPU are left out: CI has no GPU
to prove that the tests catch them.
"""

from textwrap import dedent

from autograder.course import SOLUTIONS_DIR

from . import Catalogue, template

_catalogue = Catalogue()
WRONG, ALTERNATIVES = _catalogue.wrong_implementations, _catalogue.alternatives
_wrong, _right = _catalogue.wrong, _catalogue.right


def _given(grade_id: str) -> str:
    """The given part of a solution cell (after its last solution region), as the instructor notebook has it."""
    import nbformat

    nb = nbformat.read(SOLUTIONS_DIR / "ch07_finetuning" / "finetuning.ipynb", as_version=4)
    (source,) = [c.source for c in nb.cells if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == grade_id]
    given = source.rsplit("### END SOLUTION", 1)[1].strip()
    assert given.startswith("# Given:"), f"{grade_id}: no given code after the solution"
    return given


def _with_given(grade_id: str, source: str) -> str:
    return dedent(source).strip() + "\n\n\n" + _given(grade_id) + "\n"


# --- Exercise 1: last_token_states ------------------------------------------------------------------------------
EX1 = "ex1_last_token_states"

_last = template('''
    def last_token_states(hidden, lengths):
        T = hidden.shape[1]
        {check}
        rows = torch.arange(hidden.shape[0])
        return {pick}
''', check='if (lengths < 1).any() or (lengths > T).any():\n        raise ValueError("every length must lie in 1 .. T")',
    pick="hidden[rows, lengths - 1]")

_wrong(EX1, "last_first_token", "reads position 0, as a BERT [CLS] token: in a causal model it has seen one token",
       _last(pick="hidden[:, 0]"))
_wrong(EX1, "last_position_t_minus_1", "reads position T - 1, which is padding in every short row",
       _last(pick="hidden[:, -1]"))
_wrong(EX1, "last_mean_pooling", "averages every position, the padding's included", _last(pick="hidden.mean(dim=1)"))
_wrong(EX1, "last_off_by_one", "indexes with lengths instead of lengths - 1: one past the last real token",
       _last(pick="hidden[rows, lengths.clamp(max=T - 1)]"))
_wrong(EX1, "last_no_length_check", "no check of the lengths: a length of 0 silently reads position -1",
       _last(check="pass"))
_wrong(EX1, "last_detached", "detaches the vectors: the classifier's gradient never reaches the model",
       _last(pick="hidden[rows, lengths - 1].detach()"))
_wrong(EX1, "last_lengths_in_place", "lengths -= 1 changes the caller's tensor", '''
    def last_token_states(hidden, lengths):
        if (lengths < 1).any() or (lengths > hidden.shape[1]).any():
            raise ValueError("every length must lie in 1 .. T")
        lengths -= 1
        return hidden[torch.arange(hidden.shape[0]), lengths]
''')
_wrong(EX1, "last_checks_zero_only", "refuses a length of 0 only: a length above T raises IndexError, not ValueError",
       _last(check='if (lengths == 0).any():\n        raise ValueError("a row needs at least one token")'))

_right(EX1, "last_loop_stack", "a loop over the rows with Python ints, torch.stack of the picked rows", '''
    def last_token_states(hidden, lengths):
        picked = []
        for b, n in enumerate(lengths.tolist()):
            if not 1 <= n <= hidden.shape[1]:
                raise ValueError(f"row {b}: length {n} is not in 1 .. {hidden.shape[1]}")
            picked.append(hidden[b, n - 1])
        return torch.stack(picked)
''')
_right(EX1, "last_gather_long", "gather along the positions with int64 indices", '''
    def last_token_states(hidden, lengths):
        B, T, d = hidden.shape
        if bool((lengths <= 0).any()) or bool((lengths > T).any()):
            raise ValueError("lengths must be between 1 and T")
        index = (lengths.to(torch.int64) - 1)[:, None, None].expand(B, 1, d)
        return torch.gather(hidden, 1, index)[:, 0, :]
''')


# --- Exercise 2: accuracy ---------------------------------------------------------------------------------------
EX2 = "ex2_accuracy"

_ACC = '''
    def accuracy(model, batches):
        was_training = model.training
        {eval}
        correct, total = 0, 0
        with {context}:
            for x, y in batches:
                predicted = {predict}
                correct += {correct}
                total += len(y)
        {restore}
        {empty}
        return {result}
'''
_ACC_OK = dict(eval="model.eval()", context="torch.no_grad()", predict="model(x).argmax(dim=-1)",
               correct="int((predicted == y).sum())", restore="model.train(was_training)",
               empty='if total == 0:\n        raise ValueError("no examples")', result="correct / total")


def _acc(**change: str) -> str:
    return _with_given(EX2, dedent(_ACC).format(**{**_ACC_OK, **change}))


_wrong(EX2, "acc_no_eval_mode", "never calls model.eval(): dropout stays on while measuring", _acc(eval="pass"))
_wrong(EX2, "acc_always_train_after", "model.train() at the end: an eval-mode model comes back in training mode",
       _acc(restore="model.train()"))
_wrong(EX2, "acc_mode_not_restored", "model.eval() and never back: a training model stays in eval mode",
       _acc(restore="pass"))
_wrong(EX2, "acc_gradients_on", "no torch.no_grad(): a graph is built for every batch",
       _acc(context="torch.enable_grad()"))
_wrong(EX2, "acc_argmax_over_batch", "argmax over dim 0, the examples, instead of the classes",
       _acc(predict="model(x).argmax(dim=0)"))
_wrong(EX2, "acc_max_value", "compares the largest logit's value, not its index, with the class",
       _acc(predict="model(x).max(dim=-1).values"))
_wrong(EX2, "acc_returns_tensor", "counts with a tensor: returns a 0-d tensor, not a float",
       _acc(correct="(predicted == y).sum()"))
_wrong(EX2, "acc_zero_when_empty", "returns 0.0 when there is no example instead of raising ValueError",
       _acc(empty="if total == 0:\n        return 0.0"))
_wrong(EX2, "acc_mean_of_batch_accuracies", "averages the batch accuracies: a small batch's examples weigh more",
       _with_given(EX2, '''
    def accuracy(model, batches):
        was_training = model.training
        model.eval()
        scores = []
        with torch.no_grad():
            for x, y in batches:
                scores.append((model(x).argmax(dim=-1) == y).float().mean().item())
        model.train(was_training)
        if not scores:
            raise ValueError("no batches")
        return sum(scores) / len(scores)
'''))

_wrong(EX2, "acc_two_passes", "counts the examples in a first pass over batches: a generator is empty the second "
       "time", _with_given(EX2, '''
    def accuracy(model, batches):
        total = sum(len(y) for _, y in batches)
        if total == 0:
            raise ValueError("no examples")
        was_training = model.training
        model.eval()
        correct = 0
        with torch.no_grad():
            for x, y in batches:
                correct += int((model(x).argmax(dim=-1) == y).sum())
        model.train(was_training)
        return correct / total
'''))

_right(EX2, "acc_inference_mode", "torch.inference_mode, logits.max(dim=1).indices, .item() counts, the mode restored "
       "with an if", _with_given(EX2, '''
    def accuracy(model, batches):
        training = model.training
        model.eval()
        hits = seen = 0
        with torch.inference_mode():
            for x, y in batches:
                hits += (model(x).max(dim=1).indices == y).sum().item()
                seen += y.shape[0]
        if training:
            model.train()
        if seen == 0:
            raise ValueError("accuracy of an empty set of batches")
        return float(hits) / seen
'''))

_right(EX2, "acc_concatenated", "keeps every batch's predictions, torch.cat at the end, the mean of the hits",
       _with_given(EX2, '''
    def accuracy(model, batches):
        mode = model.training
        model.train(False)
        try:
            with torch.no_grad():
                pairs = [(torch.argmax(model(x), dim=1), y) for x, y in batches]
        finally:
            model.train(mode)
        if not pairs:
            raise ValueError("no batches")
        hits = torch.cat([p == y for p, y in pairs])
        if hits.numel() == 0:
            raise ValueError("no examples")
        return hits.double().mean().item()
'''))

# --- Exercise 3: instruction_collate ----------------------------------------------------------------------------
EX3 = "ex3_instruction_collate"

_collate = template('''
    def instruction_collate(pairs, pad_id):
        sequences = [list(prompt) + list(answer) for prompt, answer in pairs]
        T = {T}
        inputs = torch.full((len(pairs), T), pad_id, dtype={dtype})
        targets = torch.full((len(pairs), T), {target_pad}, dtype={dtype})
        for row, ((prompt, answer), sequence) in enumerate(zip(pairs, sequences)):
            n = len(sequence) - 1
            inputs[row, :n] = torch.tensor(sequence[:-1])
            start = {start}
            targets[row, start:n] = torch.tensor(sequence[start + 1:])
        return inputs, targets
''', T="max(len(s) for s in sequences) - 1", dtype="torch.long", target_pad="-100", start="len(prompt) - 1")

_wrong(EX3, "collate_padding_targets_pad_id", "pads the targets with pad_id as well: the loss learns to predict padding",
       _collate(target_pad="pad_id"))
_wrong(EX3, "collate_first_answer_token_masked", "masks len(prompt) targets: the answer's first token is never "
       "learnt", _collate(start="len(prompt)"))
_wrong(EX3, "collate_last_prompt_token_kept", "masks one target too few: the prompt's last token is learnt too",
       _collate(start="max(len(prompt) - 2, 0)"))
_wrong(EX3, "collate_one_column_too_many", "T = the longest sequence (not minus one): a column of padding only",
       _collate(T="max(len(s) for s in sequences)"))
_wrong(EX3, "collate_int32", "builds int32 tensors: embeddings and F.cross_entropy want torch.long",
       _collate(dtype="torch.int32"))
_wrong(EX3, "collate_width_from_separate_maxima", "T = longest prompt + longest answer - 1: too wide when they are "
       "in different rows", _collate(T="max(len(p) for p, _ in pairs) + max(len(a) for _, a in pairs) - 1"))
_wrong(EX3, "collate_masks_the_answer", "masks the answer and keeps the prompt's targets", '''
    def instruction_collate(pairs, pad_id):
        sequences = [list(prompt) + list(answer) for prompt, answer in pairs]
        T = max(len(s) for s in sequences) - 1
        inputs = torch.full((len(pairs), T), pad_id, dtype=torch.long)
        targets = torch.full((len(pairs), T), -100, dtype=torch.long)
        for row, ((prompt, answer), sequence) in enumerate(zip(pairs, sequences)):
            n = len(sequence) - 1
            inputs[row, :n] = torch.tensor(sequence[:-1])
            targets[row, :len(prompt) - 1] = torch.tensor(sequence[1:len(prompt)], dtype=torch.long)
        return inputs, targets
''')
_wrong(EX3, "collate_left_padding", "pads on the left, as for generation", '''
    def instruction_collate(pairs, pad_id):
        sequences = [list(prompt) + list(answer) for prompt, answer in pairs]
        T = max(len(s) for s in sequences) - 1
        inputs, targets = [], []
        for (prompt, answer), sequence in zip(pairs, sequences):
            pad = T - (len(sequence) - 1)
            inputs.append([pad_id] * pad + sequence[:-1])
            targets.append([-100] * pad + [-100] * (len(prompt) - 1) + list(answer))
        return torch.tensor(inputs), torch.tensor(targets)
''')
_wrong(EX3, "collate_no_shift", "inputs and targets both the whole sequence: each position predicts its own token",
       '''
    def instruction_collate(pairs, pad_id):
        T = max(len(p) + len(a) for p, a in pairs)
        inputs = torch.full((len(pairs), T), pad_id, dtype=torch.long)
        targets = torch.full((len(pairs), T), -100, dtype=torch.long)
        for row, (prompt, answer) in enumerate(pairs):
            sequence = list(prompt) + list(answer)
            inputs[row, :len(sequence)] = torch.tensor(sequence)
            targets[row, len(prompt):len(sequence)] = torch.tensor(list(answer))
        return inputs, targets
''')
_wrong(EX3, "collate_padding_by_value", "marks the padding where the input equals pad_id: real tokens equal to pad_id "
       "lose their targets", '''
    def instruction_collate(pairs, pad_id):
        T = max(len(p) + len(a) for p, a in pairs) - 1
        inputs = torch.full((len(pairs), T + 1), pad_id, dtype=torch.long)
        for row, (prompt, answer) in enumerate(pairs):
            sequence = list(prompt) + list(answer)
            inputs[row, :len(sequence)] = torch.tensor(sequence)
        targets = inputs[:, 1:].clone()
        targets[targets == pad_id] = -100
        for row, (prompt, answer) in enumerate(pairs):
            targets[row, :len(prompt) - 1] = -100
        return inputs[:, :-1], targets
''')
_wrong(EX3, "collate_pad_then_shift", "pads whole sequences, then drops the last column: a short row keeps its last "
       "token in the inputs where pad_id belongs", '''
    def instruction_collate(pairs, pad_id):
        longest = max(len(p) + len(a) for p, a in pairs)
        full, labels = [], []
        for prompt, answer in pairs:
            ids = torch.tensor(list(prompt) + list(answer), dtype=torch.long)
            extra = longest - len(ids)
            full.append(F.pad(ids, (0, extra), value=pad_id))
            label = F.pad(ids, (0, extra), value=-100)
            label[:len(prompt)] = -100
            labels.append(label)
        full, labels = torch.stack(full), torch.stack(labels)
        return full[:, :-1].clone(), labels[:, 1:].clone()
''')
_wrong(EX3, "collate_extends_the_prompt", "sequence = prompt; sequence += answer: the caller's prompt list grows", '''
    def instruction_collate(pairs, pad_id):
        rows = []
        for prompt, answer in pairs:
            n_prompt = len(prompt)
            sequence = prompt
            sequence += answer
            rows.append((n_prompt, sequence))
        T = max(len(s) for _, s in rows) - 1
        inputs = torch.full((len(rows), T), pad_id, dtype=torch.long)
        targets = torch.full((len(rows), T), -100, dtype=torch.long)
        for row, (n_prompt, sequence) in enumerate(rows):
            n = len(sequence) - 1
            inputs[row, :n] = torch.tensor(sequence[:-1])
            targets[row, n_prompt - 1:n] = torch.tensor(sequence[n_prompt:])
        return inputs, targets
''')

_right(EX3, "collate_python_rows", "builds each row as Python lists (mask, then pad), one torch.tensor at the end", '''
    def instruction_collate(pairs, pad_id):
        rows_in, rows_out = [], []
        for prompt, answer in pairs:
            ids = [*prompt, *answer]
            rows_in.append(ids[:-1])
            rows_out.append([-100] * (len(prompt) - 1) + ids[len(prompt):])
        width = max(len(r) for r in rows_in)
        inputs = [r + [pad_id] * (width - len(r)) for r in rows_in]
        targets = [r + [-100] * (width - len(r)) for r in rows_out]
        return torch.tensor(inputs, dtype=torch.long), torch.tensor(targets, dtype=torch.long)
''')
_right(EX3, "collate_shift_then_pad", "shifts each sequence first, then pads inputs and targets with F.pad and stacks",
       '''
    def instruction_collate(pairs, pad_id):
        T = max(len(p) + len(a) for p, a in pairs) - 1
        inputs, targets = [], []
        for prompt, answer in pairs:
            ids = torch.tensor(list(prompt) + list(answer), dtype=torch.long)
            x, y = ids[:-1], ids[1:].clone()
            y[:len(prompt) - 1] = -100
            inputs.append(F.pad(x, (0, T - len(x)), value=pad_id))
            targets.append(F.pad(y, (0, T - len(y)), value=-100))
        return torch.stack(inputs), torch.stack(targets)
''')


# --- Exercise 4: sequence_logprobs ------------------------------------------------------------------------------
EX4 = "ex4_sequence_logprobs"

_logprobs = template('''
    def sequence_logprobs(logits, targets):
        keep = targets != -100
        log_probs = {log_probs}
        picked = log_probs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        return {result}
''', log_probs="torch.log_softmax(logits, dim=-1)", result="(picked * keep).sum(dim=-1)")

_wrong(EX4, "logp_mean_not_sum", "averages over the answer's tokens instead of summing them",
       _logprobs(result="(picked * keep).sum(dim=-1) / keep.sum(dim=-1).clamp(min=1)"))
_wrong(EX4, "logp_masked_scored_as_token_0", "clamps -100 to 0 and keeps those positions in the sum",
       _logprobs(result="picked.sum(dim=-1)"))
_wrong(EX4, "logp_sum_over_batch", "one sum over the whole batch instead of one per row",
       _logprobs(result="(picked * keep).sum()"))
_wrong(EX4, "logp_log_of_softmax", "torch.log(torch.softmax(...)): a very unlikely token gives log(0) = -inf",
       _logprobs(log_probs="torch.log(torch.softmax(logits, dim=-1))"))
_wrong(EX4, "logp_logsumexp_by_hand", "logits - log(sum(exp(logits))) without the maximum: logits of 1000 overflow",
       _logprobs(log_probs="logits - torch.log(torch.exp(logits).sum(dim=-1, keepdim=True))"))
_wrong(EX4, "logp_softmax_over_positions", "log_softmax over the positions (dim 1) instead of the vocabulary",
       _logprobs(log_probs="torch.log_softmax(logits, dim=1)"))
_wrong(EX4, "logp_float32", "casts the logits to float32 (as mixed-precision code does): float64 comes back float32",
       _logprobs(log_probs="torch.log_softmax(logits.float(), dim=-1)"))
_wrong(EX4, "logp_shifts_again", "shifts the targets once more, though they are already the next tokens", '''
    def sequence_logprobs(logits, targets):
        logits, targets = logits[:, :-1], targets[:, 1:]
        keep = targets != -100
        log_probs = torch.log_softmax(logits, dim=-1)
        picked = log_probs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        return (picked * keep).sum(dim=-1)
''')
_wrong(EX4, "logp_targets_in_place", "targets[targets == -100] = 0 changes the caller's targets", '''
    def sequence_logprobs(logits, targets):
        keep = targets != -100
        targets[~keep] = 0
        log_probs = torch.log_softmax(logits, dim=-1)
        picked = log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        return (picked * keep).sum(dim=-1)
''')

_right(EX4, "logp_cross_entropy", "minus F.cross_entropy per position (reduction='none' gives 0 where ignored)", '''
    def sequence_logprobs(logits, targets):
        losses = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=-100, reduction="none")
        return -losses.sum(dim=1)
''')
_right(EX4, "logp_logsumexp_where", "the target's logit minus logsumexp, torch.where for the masked positions", '''
    def sequence_logprobs(logits, targets):
        mask = targets.ne(-100)
        safe = torch.where(mask, targets, torch.zeros_like(targets))
        chosen = torch.take_along_dim(logits, safe[..., None], dim=2)[..., 0]
        per_token = chosen - torch.logsumexp(logits, dim=2)
        return torch.where(mask, per_token, torch.zeros((), dtype=logits.dtype)).sum(1)
''')


# --- Exercise 5: LoRALinear -------------------------------------------------------------------------------------
EX5 = "ex5_lora_linear"

_LORA = '''
    class LoRALinear(nn.Module):
        def __init__(self, base, r, alpha):
            super().__init__()
            self.base = base
            self.scaling = {scaling}
            {freeze}
            self.A = nn.Parameter({A})
            self.B = nn.Parameter({B})
            {init}

        def forward(self, x):
            return {forward}
'''
_LORA_OK = dict(
    scaling="alpha / r", freeze="for p in base.parameters():\n            p.requires_grad_(False)",
    A="torch.empty(r, base.in_features, dtype=base.weight.dtype, device=base.weight.device)",
    B="torch.zeros(base.out_features, r, dtype=base.weight.dtype, device=base.weight.device)",
    init="nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))",
    forward="self.base(x) + self.scaling * (x @ self.A.T @ self.B.T)")


def _lora(**change: str) -> str:
    return _with_given(EX5, dedent(_LORA).format(**{**_LORA_OK, **change}))


_wrong(EX5, "lora_b_random", "B initialised randomly too: the layer no longer starts as the pretrained one",
       _lora(B="0.01 * torch.randn(base.out_features, r, dtype=base.weight.dtype, device=base.weight.device)"))
_wrong(EX5, "lora_scaling_alpha", "scales by alpha instead of alpha / r", _lora(scaling="alpha"))
_wrong(EX5, "lora_scaling_r_over_alpha", "scales by r / alpha", _lora(scaling="r / alpha"))
_wrong(EX5, "lora_scaling_in_a_too", "multiplies A by the scaling at the start as well: scaled twice at the start",
       _lora(init="nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))\n        self.A.data.mul_(self.scaling)"))
_wrong(EX5, "lora_base_not_frozen", "forgets to freeze base: the whole layer trains", _lora(freeze="pass"))
_wrong(EX5, "lora_a_zeros", "A starts at zero as well: with B = 0 no gradient ever reaches A or B",
       _lora(init="nn.init.zeros_(self.A)"))
_wrong(EX5, "lora_a_randn", "A from a standard normal: far larger than nn.Linear's initialisation",
       _lora(init="nn.init.normal_(self.A)"))
_wrong(EX5, "lora_a_default_kaiming", "kaiming_uniform_ with its default a = 0: bounds sqrt(6) times too wide",
       _lora(init="nn.init.kaiming_uniform_(self.A)"))
_wrong(EX5, "lora_float32_adapters", "A and B in the default dtype: a float64 layer gets float32 adapters",
       _lora(A="torch.empty(r, base.in_features)", B="torch.zeros(base.out_features, r)"))
_wrong(EX5, "lora_bias_forgotten", "computes the base path as x @ weight.T: base's bias is lost",
       _lora(forward="x @ self.base.weight.T + self.scaling * (x @ self.A.T @ self.B.T)"))
_wrong(EX5, "lora_transposed_shapes", "A stored (in, r) and B (r, out), used as x @ A @ B", _lora(
    A="torch.empty(base.in_features, r, dtype=base.weight.dtype, device=base.weight.device)",
    B="torch.zeros(r, base.out_features, dtype=base.weight.dtype, device=base.weight.device)",
    forward="self.base(x) + self.scaling * (x @ self.A @ self.B)"))

_wrong(EX5, "lora_linear_submodules", "A and B as nn.Linear layers without bias: the parameters are A.weight and "
       "B.weight, not A and B", _with_given(EX5, '''
    class LoRALinear(nn.Module):
        def __init__(self, base, r, alpha):
            super().__init__()
            self.base = base
            self.scaling = alpha / r
            for p in base.parameters():
                p.requires_grad_(False)
            like = dict(dtype=base.weight.dtype, device=base.weight.device)
            self.A = nn.Linear(base.in_features, r, bias=False, **like)
            self.B = nn.Linear(r, base.out_features, bias=False, **like)
            nn.init.kaiming_uniform_(self.A.weight, a=math.sqrt(5))
            nn.init.zeros_(self.B.weight)

        def forward(self, x):
            return self.base(x) + self.scaling * self.B(self.A(x))
'''))

_right(EX5, "lora_merged_forward", "freezes with base.requires_grad_(False), A uniform in +-1/sqrt(in) (the same "
       "distribution), forward with the merged weight in F.linear", _with_given(EX5, '''
    class LoRALinear(nn.Module):
        def __init__(self, base, r, alpha):
            super().__init__()
            self.base = base.requires_grad_(False)
            self.r, self.alpha = r, alpha
            w = base.weight
            bound = 1 / math.sqrt(base.in_features)
            self.A = nn.Parameter(torch.empty(r, w.shape[1], dtype=w.dtype, device=w.device).uniform_(-bound, bound))
            self.B = nn.Parameter(w.new_zeros(w.shape[0], r))

        def forward(self, x):
            weight = self.base.weight + (self.alpha / self.r) * (self.B @ self.A)
            return F.linear(x, weight, self.base.bias)
'''))

_right(EX5, "lora_flags_and_zeros_like", "freezes through the flags, scaling computed in forward, B from zeros_like",
       _with_given(EX5, '''
    class LoRALinear(nn.Module):
        def __init__(self, base, r, alpha):
            super().__init__()
            self.base = base
            self.base.weight.requires_grad = False
            if self.base.bias is not None:
                self.base.bias.requires_grad = False
            self.r, self.alpha = r, alpha
            self.A = nn.Parameter(base.weight.new_empty(r, base.in_features))
            nn.init.kaiming_uniform_(self.A, a=5 ** 0.5)
            self.B = nn.Parameter(torch.zeros_like(base.weight[:, :1]).repeat(1, r))

        def forward(self, x):
            return self.base(x) + (x @ self.A.t()) @ self.B.t() * (self.alpha / self.r)
'''))

# --- Exercise 6: merge_lora -------------------------------------------------------------------------------------
EX6 = "ex6_merge_lora"

_merge = template('''
    def merge_lora(weight, A, B, alpha, r, fan_in_fan_out={default}):
        delta = {delta}
        if fan_in_fan_out:
            delta = {transpose}
        return {result}
''', default="False", delta="(alpha / r) * (B @ A)", transpose="delta.T", result="weight + delta")

_wrong(EX6, "merge_no_transpose", "adds B @ A as it is to a Conv1D weight stored (in, out)",
       _merge(transpose="delta"))
_wrong(EX6, "merge_always_transposed", "A.T @ B.T, the transpose, for every layout",
       _merge(delta="(alpha / r) * (A.T @ B.T)"))
_wrong(EX6, "merge_in_place", "weight.add_(delta): the caller's weight is merged too",
       _merge(result="weight.add_(delta)"))
_wrong(EX6, "merge_no_scaling", "forgets the scaling alpha / r", _merge(delta="B @ A"))
_wrong(EX6, "merge_scaling_alpha", "scales by alpha instead of alpha / r", _merge(delta="alpha * (B @ A)"))
_wrong(EX6, "merge_default_fan_in_fan_out", "the default fan_in_fan_out=True (GPT-2's layout) instead of False",
       _merge(default="True"))
_wrong(EX6, "merge_returns_weight_when_b_zero", "returns the weight itself when B is zero (nothing to add)", '''
    def merge_lora(weight, A, B, alpha, r, fan_in_fan_out=False):
        if not B.any():
            return weight
        delta = (alpha / r) * (B @ A)
        return weight + (delta.T if fan_in_fan_out else delta)
''')

_right(EX6, "merge_addmm", "torch.addmm with alpha = alpha / r, A.T @ B.T for the (in, out) layout", '''
    def merge_lora(weight, A, B, alpha, r, fan_in_fan_out=False):
        if fan_in_fan_out:
            return torch.addmm(weight, A.t(), B.t(), alpha=alpha / r)
        return torch.addmm(weight, B, A, alpha=alpha / r)
''')

_right(EX6, "merge_transpose_twice", "for the (in, out) layout: transposes the weight, adds B @ A, transposes back", '''
    def merge_lora(weight, A, B, alpha, r, fan_in_fan_out=False):
        scale = alpha / r
        if not fan_in_fan_out:
            return weight + scale * B.matmul(A)
        return (weight.T + scale * B.matmul(A)).T
''')


# --- Exercise 7: dpo_loss ---------------------------------------------------------------------------------------
EX7 = "ex7_dpo_loss"

_dpo = template('''
    def dpo_loss(policy_chosen, policy_rejected, reference_chosen, reference_rejected, beta={default}):
        margin = {margin}
        return {loss}
''', default="0.1", margin="(policy_chosen - reference_chosen) - (policy_rejected - reference_rejected)",
    loss="-F.logsigmoid(beta * margin).mean()")

_wrong(EX7, "dpo_sign_flipped", "the rejected answer's margin minus the chosen one's: trains towards the rejected",
       _dpo(margin="(policy_rejected - reference_rejected) - (policy_chosen - reference_chosen)"))
_wrong(EX7, "dpo_reference_ignored", "the policy's log-probabilities alone, without the reference",
       _dpo(margin="policy_chosen - policy_rejected"))
_wrong(EX7, "dpo_beta_outside", "beta multiplies the loss instead of the margin inside the sigmoid",
       _dpo(loss="-beta * F.logsigmoid(margin).mean()"))
_wrong(EX7, "dpo_log_of_sigmoid", "torch.log(torch.sigmoid(...)): -inf for a margin of -1000",
       _dpo(loss="-torch.log(torch.sigmoid(beta * margin)).mean()"))
_wrong(EX7, "dpo_sum", "sums over the pairs instead of averaging", _dpo(loss="-F.logsigmoid(beta * margin).sum()"))
_wrong(EX7, "dpo_default_beta_1", "the default beta is 1, not 0.1", _dpo(default="1.0"))
_wrong(EX7, "dpo_returns_float", "returns .item(), a float: nothing to call backward on",
       _dpo(loss="-F.logsigmoid(beta * margin).mean().item()"))
_wrong(EX7, "dpo_softplus_by_hand", "log1p(exp(-z)) written out: exp(1000) overflows to inf for a margin of -1000",
       _dpo(loss="torch.log1p(torch.exp(-beta * margin)).mean()"))
_wrong(EX7, "dpo_in_place", "subtracts the reference in place: the caller's log-probabilities change", '''
    def dpo_loss(policy_chosen, policy_rejected, reference_chosen, reference_rejected, beta=0.1):
        policy_chosen -= reference_chosen
        policy_rejected -= reference_rejected
        return -F.logsigmoid(beta * (policy_chosen - policy_rejected)).mean()
''')

_right(EX7, "dpo_softplus", "softplus(-beta * margin), the margin grouped as policy gap minus reference gap", '''
    def dpo_loss(policy_chosen, policy_rejected, reference_chosen, reference_rejected, beta=0.1):
        policy_gap = policy_chosen - policy_rejected
        reference_gap = reference_chosen - reference_rejected
        return F.softplus(-beta * (policy_gap - reference_gap)).mean()
''')
_right(EX7, "dpo_bce_with_logits", "binary cross-entropy with logits against a target of 1 (the chosen one wins)", '''
    def dpo_loss(policy_chosen, policy_rejected, reference_chosen, reference_rejected, beta=0.1):
        logits = beta * ((policy_chosen - reference_chosen) - (policy_rejected - reference_rejected))
        return F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
''')
