"""Wrong implementations for Chapter 5 (Pretraining): the mistakes learners make with the loss, perplexity, the
learning-rate schedule, gradient clipping, AdamW, random windows and gradient accumulation.

Each source replaces a whole solution cell of ``solutions/ch05_pretraining/pretraining.ipynb`` and is written the way
a learner would write it; the other exercises keep the reference solution. Exercise 2's cell also holds the given
``TinyLM`` that the tests of Exercises 2 and 7 build in the learner's notebook, so every entry for that cell keeps it
(``_with_tiny_lm``). Mistakes that only show on a GPU are left out: CI has no GPU to prove that the tests catch them.
"""

from textwrap import dedent

from autograder.course import SOLUTIONS_DIR

from . import Catalogue, template

_catalogue = Catalogue()
WRONG, ALTERNATIVES = _catalogue.wrong_implementations, _catalogue.alternatives
_wrong, _right = _catalogue.wrong, _catalogue.right


# --- Exercise 1: cross_entropy ----------------------------------------------------------------------------------
EX1 = "ex1_cross_entropy"

# The reference written in pieces; each wrong version changes one (the keyword arguments of _ce).
_CE = '''
    def cross_entropy(logits, targets, ignore_index=-100):
        logits = logits.reshape(-1, logits.shape[-1])
        targets = targets.reshape(-1)
        keep = {keep}
        logits, targets = logits[keep], targets[keep]
        log_probs = logits.gather(1, targets[:, None]).squeeze(1) - {logsumexp}
        return {result}
'''
_CE_OK = dict(keep="targets != ignore_index", logsumexp="torch.logsumexp(logits, dim=-1)", result="-log_probs.mean()")


_ce = template(_CE, **_CE_OK)


_wrong(EX1, "ce_no_max_subtracted", "log(sum(exp(logits))) as written: exp overflows to inf for logits of 1e4",
       _ce(logsumexp="torch.log(torch.exp(logits).sum(dim=-1))"))
_wrong(EX1, "ce_one_global_max", "subtracts the maximum of the whole tensor: rows far below it underflow to log(0)",
       _ce(logsumexp="(logits.max() + torch.log(torch.exp(logits - logits.max()).sum(dim=-1)))"))
_wrong(EX1, "ce_sum_not_mean", "adds the token losses up instead of averaging them", _ce(result="-log_probs.sum()"))
_wrong(EX1, "ce_fixed_ignore_index", "compares with -100 whatever ignore_index says", _ce(keep="targets != -100"))
_wrong(EX1, "ce_negative_targets_ignored", "treats every negative target as padding: ignore_index=3 is not honoured",
       _ce(keep="targets >= 0"))
_wrong(EX1, "ce_item_rewrapped", "returns torch.tensor(loss.item()): the value is right but no gradient flows",
       _ce(result="torch.tensor((-log_probs.mean()).item(), dtype=logits.dtype, device=logits.device)"))
_wrong(EX1, "ce_nothing_kept_is_zero", "returns 0 when every target is ignored, instead of nan (the mean of nothing)",
       _ce(result="-log_probs.sum() / max(len(log_probs), 1)"))
_wrong(EX1, "ce_always_float32", "logits.float() first: float64 logits give a float32 loss",
       _ce().replace("logits.reshape(-1, logits.shape[-1])", "logits.float().reshape(-1, logits.shape[-1])"))

_wrong(EX1, "ce_log_of_softmax", "log(softmax): a probability that underflows to 0 gives log(0) = -inf", '''
    def cross_entropy(logits, targets, ignore_index=-100):
        V = logits.shape[-1]
        probs = torch.softmax(logits.reshape(-1, V), dim=-1)
        targets = targets.reshape(-1)
        keep = targets != ignore_index
        picked = probs[keep].gather(1, targets[keep][:, None]).squeeze(1)
        return -torch.log(picked).mean()
''')

_wrong(EX1, "ce_max_over_wrong_axis", "subtracts the maximum over dim=0 (of each vocabulary entry), not of each row",
       '''
    def cross_entropy(logits, targets, ignore_index=-100):
        V = logits.shape[-1]
        logits, targets = logits.reshape(-1, V), targets.reshape(-1)
        keep = targets != ignore_index
        shifted = logits[keep] - logits[keep].max(dim=0, keepdim=True).values
        lse = torch.log(torch.exp(shifted).sum(dim=-1))
        return -(shifted.gather(1, targets[keep][:, None]).squeeze(1) - lse).mean()
''')

_wrong(EX1, "ce_padding_in_the_count", "zeroes the padded losses but divides by every position, padding included", '''
    def cross_entropy(logits, targets, ignore_index=-100):
        V = logits.shape[-1]
        logits, targets = logits.reshape(-1, V), targets.reshape(-1)
        keep = targets != ignore_index
        safe = torch.where(keep, targets, torch.zeros_like(targets))
        log_probs = logits.gather(1, safe[:, None]).squeeze(1) - torch.logsumexp(logits, dim=-1)
        return -(log_probs * keep).sum() / len(targets)
''')

_wrong(EX1, "ce_padding_zeroed_in_place", "targets[targets == ignore_index] = 0 changes the caller's targets", '''
    def cross_entropy(logits, targets, ignore_index=-100):
        V = logits.shape[-1]
        logits, targets = logits.reshape(-1, V), targets.reshape(-1)
        keep = targets != ignore_index
        targets[~keep] = 0  # any valid id, the mask drops these positions anyway
        log_probs = logits.gather(1, targets[:, None]).squeeze(1) - torch.logsumexp(logits, dim=-1)
        return -log_probs[keep].mean()
''')

_wrong(EX1, "ce_max_subtracted_in_place", "logits -= max changes the caller's logits", '''
    def cross_entropy(logits, targets, ignore_index=-100):
        V = logits.shape[-1]
        logits, targets = logits.reshape(-1, V), targets.reshape(-1)
        logits -= logits.max(dim=-1, keepdim=True).values
        keep = targets != ignore_index
        logits, targets = logits[keep], targets[keep]
        log_probs = logits.gather(1, targets[:, None]).squeeze(1) - torch.log(torch.exp(logits).sum(dim=-1))
        return -log_probs.mean()
''')

_right(EX1, "ce_log_softmax_gather", "torch.log_softmax, then the target's entry with gather", '''
    def cross_entropy(logits, targets, ignore_index=-100):
        V = logits.shape[-1]
        log_probs = torch.log_softmax(logits.reshape(-1, V), dim=-1)
        targets = targets.reshape(-1)
        keep = targets != ignore_index
        picked = log_probs[keep].gather(1, targets[keep].unsqueeze(1))
        return -picked.mean()
''')

_right(EX1, "ce_manual_max_and_weights", "writes the max trick out and averages with a 0/1 weight per position", '''
    def cross_entropy(logits, targets, ignore_index=-100):
        V = logits.shape[-1]
        logits, targets = logits.reshape(-1, V), targets.reshape(-1)
        weight = (targets != ignore_index).to(logits.dtype)
        m = logits.max(dim=-1, keepdim=True).values
        lse = m.squeeze(-1) + torch.log(torch.exp(logits - m).sum(dim=-1))
        safe = targets.clamp(0, V - 1)  # ignored positions get weight 0, so any valid id will do
        target_logit = logits.gather(1, safe[:, None]).squeeze(1)
        return ((lse - target_logit) * weight).sum() / weight.sum()
''')

_right(EX1, "ce_one_hot", "picks the target's log-probability with a one-hot product instead of gather", '''
    def cross_entropy(logits, targets, ignore_index=-100):
        V = logits.shape[-1]
        keep = targets != ignore_index
        log_probs = logits[keep] - torch.logsumexp(logits[keep], dim=-1, keepdim=True)
        one_hot = F.one_hot(targets[keep], V).to(logits.dtype)
        return -(one_hot * log_probs).sum(dim=-1).mean()
''')


# --- Exercise 2: perplexity -------------------------------------------------------------------------------------
EX2 = "ex2_perplexity"


def _given_tiny_lm() -> str:
    """The given part of Exercise 2's cell (TinyLM), as the instructor notebook has it, after the solution."""
    import nbformat

    nb = nbformat.read(SOLUTIONS_DIR / "ch05_pretraining" / "pretraining.ipynb", as_version=4)
    (source,) = [c.source for c in nb.cells if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == EX2]
    return source.split("### END SOLUTION", 1)[1].strip()


_TINY_LM = _given_tiny_lm()


def _with_tiny_lm(source: str) -> str:
    return dedent(source).strip() + "\n\n\n" + _TINY_LM + "\n"


# The reference with the loop written out; each wrong version changes one piece (the keyword arguments of _ppl).
_PPL = '''
    def perplexity(model, batches, ignore_index=-100):
        was_training = model.training
        {eval}
        total, count = 0.0, 0
        with {context}:
            for x, y in batches:
                logits = model(x)
                total += F.cross_entropy(logits.flatten(0, 1), y.flatten(), {ignore}reduction="sum").item()
                count += {count}
        {restore}
        if count == 0:
            raise ValueError("nothing to predict")
        return {result}
'''
_PPL_OK = dict(eval="model.eval()", context="torch.no_grad()", ignore="ignore_index=ignore_index, ",
               count="int((y != ignore_index).sum())", restore="model.train(was_training)",
               result="math.exp(total / count)")


def _ppl(**change: str) -> str:
    return _with_tiny_lm(dedent(_PPL).format(**{**_PPL_OK, **change}))


_wrong(EX2, "ppl_exp_of_total", "exp of the summed loss: grows with the number of tokens",
       _ppl(result="math.exp(total)"))
_wrong(EX2, "ppl_padding_counted", "counts every position, padding included", _ppl(count="y.numel()"))
_wrong(EX2, "ppl_no_eval_mode", "never calls model.eval(): dropout stays on while measuring", _ppl(eval="pass"))
_wrong(EX2, "ppl_always_train_after", "model.train() at the end: an eval-mode model comes back in training mode",
       _ppl(restore="model.train()"))
_wrong(EX2, "ppl_mode_not_restored", "model.eval() and never back: a training model stays in eval mode",
       _ppl(restore="pass"))
_wrong(EX2, "ppl_gradients_on", "no torch.no_grad(): a graph is built for every batch",
       _ppl(context="torch.enable_grad()"))
_wrong(EX2, "ppl_fixed_ignore_index", "leaves ignore_index out of F.cross_entropy, which then ignores only -100",
       _ppl(ignore=""))
_wrong(EX2, "ppl_returns_tensor", "returns torch.exp(...) of a tensor instead of a float",
       _ppl(result="torch.exp(torch.tensor(total / count))"))

_wrong(EX2, "ppl_mean_of_batch_losses", "averages the batch losses: a small batch's tokens weigh more",
       _with_tiny_lm('''
    def perplexity(model, batches, ignore_index=-100):
        was_training = model.training
        model.eval()
        losses = []
        with torch.no_grad():
            for x, y in batches:
                logits = model(x)
                losses.append(F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=ignore_index).item())
        model.train(was_training)
        if not losses:
            raise ValueError("no batches")
        return math.exp(sum(losses) / len(losses))
'''))

_wrong(EX2, "ppl_mean_of_batch_perplexities", "averages one perplexity per batch", _with_tiny_lm('''
    def perplexity(model, batches, ignore_index=-100):
        was_training = model.training
        model.eval()
        values = []
        with torch.no_grad():
            for x, y in batches:
                loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten(), ignore_index=ignore_index)
                values.append(math.exp(loss.item()))
        model.train(was_training)
        if not values:
            raise ValueError("no batches")
        return sum(values) / len(values)
'''))

_wrong(EX2, "ppl_batch_mean_times_count", "mean loss times the batch's count: a batch of padding only gives nan",
       _with_tiny_lm('''
    def perplexity(model, batches, ignore_index=-100):
        was_training = model.training
        model.eval()
        total, count = 0.0, 0
        with torch.no_grad():
            for x, y in batches:
                n = int((y != ignore_index).sum())
                loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten(), ignore_index=ignore_index)
                total += loss.item() * n
                count += n
        model.train(was_training)
        if count == 0:
            raise ValueError("nothing to predict")
        return math.exp(total / count)
'''))

_wrong(EX2, "ppl_zero_division", "no check for nothing to predict: ZeroDivisionError instead of ValueError",
       _with_tiny_lm('''
    def perplexity(model, batches, ignore_index=-100):
        was_training = model.training
        model.eval()
        total, count = 0.0, 0
        with torch.no_grad():
            for x, y in batches:
                total += F.cross_entropy(model(x).flatten(0, 1), y.flatten(), ignore_index=ignore_index,
                                         reduction="sum").item()
                count += int((y != ignore_index).sum())
        model.train(was_training)
        return math.exp(total / count)
'''))

_wrong(EX2, "ppl_counts_in_a_first_pass", "counts the tokens in a first pass over batches: an iterator is then empty",
       _with_tiny_lm('''
    def perplexity(model, batches, ignore_index=-100):
        count = sum(int((y != ignore_index).sum()) for _, y in batches)
        if count == 0:
            raise ValueError("nothing to predict")
        was_training = model.training
        model.eval()
        total = 0.0
        with torch.no_grad():
            for x, y in batches:
                total += F.cross_entropy(model(x).flatten(0, 1), y.flatten(), ignore_index=ignore_index,
                                         reduction="sum").item()
        model.train(was_training)
        return math.exp(total / count)
'''))

_right(EX2, "ppl_token_losses_concatenated", "keeps every kept token's loss (reduction='none') and takes their mean",
       _with_tiny_lm('''
    def perplexity(model, batches, ignore_index=-100):
        was_training = model.training
        model.eval()
        losses = []
        try:
            with torch.inference_mode():
                for x, y in batches:
                    token_losses = F.cross_entropy(model(x).flatten(0, 1), y.flatten(), reduction="none",
                                                   ignore_index=ignore_index)
                    losses.append(token_losses[y.flatten() != ignore_index])
        finally:
            model.train(was_training)
        if not losses or sum(len(t) for t in losses) == 0:
            raise ValueError("nothing to predict")
        return torch.cat(losses).mean().exp().item()
'''))

_right(EX2, "ppl_own_loss_times_count", "the mean of each batch (own log-softmax) times its count, batches without "
       "targets skipped", _with_tiny_lm('''
    def perplexity(model, batches, ignore_index=-100):
        mode = model.training
        model.train(False)
        total = torch.zeros((), dtype=torch.float64)
        count = 0
        with torch.no_grad():
            for x, y in batches:
                keep = y != ignore_index
                n = int(keep.sum())
                if n == 0:
                    continue
                log_probs = torch.log_softmax(model(x), dim=-1)[keep]
                total += -log_probs.gather(1, y[keep][:, None]).mean().double() * n
                count += n
        model.train(mode)
        if not count:
            raise ValueError("nothing to predict")
        return float(torch.exp(total / count))
'''))


# --- Exercise 3: warmup_cosine ----------------------------------------------------------------------------------
EX3 = "ex3_warmup_cosine"

_SCHEDULE = '''
    def warmup_cosine(step, max_lr, warmup_steps, total_steps, min_lr=0.0):
        if not 0 <= warmup_steps < total_steps:
            raise ValueError("need 0 <= warmup_steps < total_steps")
        if step < warmup_steps:
            return {warm}
        if step > total_steps:
            return {after}
        progress = {progress}
        return {decay}
'''
_SCHEDULE_OK = dict(warm="max_lr * (step + 1) / warmup_steps", after="float(min_lr)",
                    progress="(step - warmup_steps) / (total_steps - warmup_steps)",
                    decay="min_lr + (max_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))")


_schedule = template(_SCHEDULE, **_SCHEDULE_OK)


_wrong(EX3, "lr_warmup_from_zero", "warm-up max_lr * step / W: step 0 has learning rate 0",
       _schedule(warm="max_lr * step / warmup_steps"))
_wrong(EX3, "lr_warmup_over_w_plus_one", "warm-up (step + 1) / (W + 1): never reaches max_lr before the decay",
       _schedule(warm="max_lr * (step + 1) / (warmup_steps + 1)"))
_wrong(EX3, "lr_cosine_from_step_zero", "the cosine runs over all N steps from step 0, not from the end of warm-up",
       _schedule(progress="step / total_steps"))
_wrong(EX3, "lr_min_one_step_early", "divides by N - W - 1: min_lr is reached at step N - 1",
       _schedule(progress="min(1.0, (step - warmup_steps) / (total_steps - warmup_steps - 1))"))
_wrong(EX3, "lr_min_lr_left_out", "the cosine goes from max_lr to 0; min_lr only after the last step",
       _schedule(decay="max_lr * 0.5 * (1.0 + math.cos(math.pi * progress))"))
_wrong(EX3, "lr_zero_after_total", "returns 0 after total_steps instead of min_lr", _schedule(after="0.0"))
_wrong(EX3, "lr_returns_tensor", "computes the cosine with torch: returns a 0-d tensor, not a float",
       _schedule(decay="min_lr + (max_lr - min_lr) * 0.5 * (1.0 + torch.cos(torch.tensor(math.pi * progress)))"))

_wrong(EX3, "lr_cosine_goes_on", "no case for step > N: the cosine comes back up after the last step", '''
    def warmup_cosine(step, max_lr, warmup_steps, total_steps, min_lr=0.0):
        if not 0 <= warmup_steps < total_steps:
            raise ValueError("need 0 <= warmup_steps < total_steps")
        if step < warmup_steps:
            return max_lr * (step + 1) / warmup_steps
        progress = (step - warmup_steps) / (total_steps - warmup_steps)
        return min_lr + (max_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
''')

_wrong(EX3, "lr_min_lr_tenth_by_default", "min_lr defaults to max_lr / 10, as in some training scripts", '''
    def warmup_cosine(step, max_lr, warmup_steps, total_steps, min_lr=None):
        if min_lr is None:
            min_lr = max_lr / 10
        if not 0 <= warmup_steps < total_steps:
            raise ValueError("need 0 <= warmup_steps < total_steps")
        if step < warmup_steps:
            return max_lr * (step + 1) / warmup_steps
        if step > total_steps:
            return float(min_lr)
        progress = (step - warmup_steps) / (total_steps - warmup_steps)
        return min_lr + (max_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
''')

_wrong(EX3, "lr_no_check", "no ValueError for warmup_steps >= total_steps (or < 0)", '''
    def warmup_cosine(step, max_lr, warmup_steps, total_steps, min_lr=0.0):
        if step < warmup_steps:
            return max_lr * (step + 1) / warmup_steps
        if step > total_steps:
            return float(min_lr)
        progress = (step - warmup_steps) / max(total_steps - warmup_steps, 1)
        return min_lr + (max_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
''')

_wrong(EX3, "lr_warmup_factor_divides_by_w", "a warm-up factor min(1, (step + 1) / W): divides by zero when W = 0", '''
    def warmup_cosine(step, max_lr, warmup_steps, total_steps, min_lr=0.0):
        if not 0 <= warmup_steps < total_steps:
            raise ValueError("need 0 <= warmup_steps < total_steps")
        warm = min(1.0, (step + 1) / warmup_steps)
        if step < warmup_steps:
            return max_lr * warm
        progress = min(step - warmup_steps, total_steps - warmup_steps) / (total_steps - warmup_steps)
        return min_lr + (max_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
''')

_right(EX3, "lr_clamped_progress", "one decay formula, the progress clamped to 1, instead of a case for step > N", '''
    def warmup_cosine(step, max_lr, warmup_steps, total_steps, min_lr=0.0):
        if warmup_steps < 0 or warmup_steps >= total_steps:
            raise ValueError("need 0 <= warmup_steps < total_steps")
        if step < warmup_steps:
            return (step + 1) / warmup_steps * max_lr
        progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
        return (max_lr - min_lr) * (math.cos(math.pi * progress) + 1) / 2 + min_lr
''')

_right(EX3, "lr_interpolation", "interpolates between max_lr and min_lr with a cosine weight going from 1 to 0", '''
    def warmup_cosine(step, max_lr, warmup_steps, total_steps, min_lr=0.0):
        if not (0 <= warmup_steps and warmup_steps < total_steps):
            raise ValueError(f"bad schedule: {warmup_steps} warm-up steps of {total_steps}")
        if step >= total_steps:
            return float(min_lr)
        if step < warmup_steps:
            return max_lr * (step + 1) / warmup_steps
        weight = 0.5 + 0.5 * math.cos(math.pi * (step - warmup_steps) / (total_steps - warmup_steps))
        return weight * max_lr + (1 - weight) * min_lr
''')


# --- Exercise 4: clip_grad_norm ---------------------------------------------------------------------------------
EX4 = "ex4_clip_grad_norm"

_CLIP = '''
    def clip_grad_norm(grads, max_norm):
        grads = [g for g in grads if g is not None]
        if not grads:
            return 0.0
        norm = {norm}
        scale = {scale}
        if {condition}:
            for g in grads:
                {update}
        return {result}
'''
_CLIP_OK = dict(norm="torch.sqrt(sum((g.double() ** 2).sum() for g in grads))", scale="max_norm / (norm + 1e-6)",
                condition="scale < 1", update="g.mul_(scale.to(g.dtype))", result="norm.item()")


_clip = template(_CLIP, **_CLIP_OK)


_wrong(EX4, "clip_always_scales", "multiplies by max_norm / norm even when the norm is below max_norm",
       _clip(condition="True"))
_wrong(EX4, "clip_norm_after_clipping", "returns the norm after clipping (at most max_norm) instead of before",
       _clip(result="min(norm.item(), max_norm)"))
_wrong(EX4, "clip_returns_tensor", "returns the norm as a 0-d tensor", _clip(result="norm"))
_wrong(EX4, "clip_sum_of_norms", "adds up the per-tensor norms instead of taking the norm of all entries",
       _clip(norm="sum(g.double().norm() for g in grads)"))
_wrong(EX4, "clip_rms", "the root of the mean square (over all entries) instead of the root of the sum",
       _clip(norm="torch.cat([g.double().flatten() for g in grads]).pow(2).mean().sqrt()"))
_wrong(EX4, "clip_no_epsilon", "scales by max_norm / norm, without torch's 1e-6", _clip(scale="max_norm / norm"))
_wrong(EX4, "clip_rebinds_local", "g = g * scale rebinds a local name: the gradients never change",
       _clip(update="g = g * scale.to(g.dtype)"))

_wrong(EX4, "clip_per_tensor", "clips each gradient by its own norm, which changes the direction", '''
    def clip_grad_norm(grads, max_norm):
        grads = [g for g in grads if g is not None]
        if not grads:
            return 0.0
        total = torch.sqrt(sum((g.double() ** 2).sum() for g in grads))
        for g in grads:
            scale = max_norm / (g.double().norm() + 1e-6)
            if scale < 1:
                g.mul_(scale.to(g.dtype))
        return total.item()
''')

_wrong(EX4, "clip_fails_on_none", "squares every entry of the list, None included (TypeError)", '''
    def clip_grad_norm(grads, max_norm):
        if not grads:
            return 0.0
        norm = torch.sqrt(sum((g.double() ** 2).sum() for g in grads))
        scale = max_norm / (norm + 1e-6)
        if scale < 1:
            for g in grads:
                g.mul_(scale.to(g.dtype))
        return norm.item()
''')

_wrong(EX4, "clip_replaces_entries", "puts scaled copies into the list: the model's p.grad tensors stay unclipped", '''
    def clip_grad_norm(grads, max_norm):
        present = [g for g in grads if g is not None]
        if not present:
            return 0.0
        norm = torch.sqrt(sum((g.double() ** 2).sum() for g in present))
        scale = max_norm / (norm + 1e-6)
        if scale < 1:
            for i, g in enumerate(grads):
                if g is not None:
                    grads[i] = g * scale.to(g.dtype)
        return norm.item()
''')

_wrong(EX4, "clip_empty_stack", "torch.stack of no norms: a list without gradients raises instead of giving 0.0", '''
    def clip_grad_norm(grads, max_norm):
        grads = [g for g in grads if g is not None]
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        scale = max_norm / (norm + 1e-6)
        if scale < 1:
            for g in grads:
                g.mul_(scale.to(g.dtype))
        return norm.item()
''')

_right(EX4, "clip_concatenated", "the norm of all entries concatenated, and torch's always-multiply with clamp", '''
    def clip_grad_norm(grads, max_norm):
        present = [g for g in grads if g is not None]
        if len(present) == 0:
            return 0.0
        norm = torch.cat([g.flatten() for g in present]).norm()
        factor = torch.clamp(max_norm / (norm + 1e-6), max=1.0)
        for g in present:
            g.mul_(factor)
        return float(norm)
''')

_right(EX4, "clip_python_floats", "adds the squares up as Python floats and scales with a float factor", '''
    def clip_grad_norm(grads, max_norm):
        squares = 0.0
        for g in grads:
            if g is not None:
                squares += (g.double() ** 2).sum().item()
        norm = math.sqrt(squares)
        factor = max_norm / (norm + 1e-6)
        if factor < 1.0:
            for g in grads:
                if g is not None:
                    g.mul_(factor)
        return norm
''')


# --- Exercise 5: adamw_step -------------------------------------------------------------------------------------
EX5 = "ex5_adamw_step"

_ADAMW = '''
    def adamw_step(params, grads, states, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay={weight_decay}):
        {unpack}
        with torch.no_grad():
            for p, g, state in zip(params, grads, states):
                if g is None:
                    continue
                if not state:
                    state["step"] = {zero}
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t, m, v = state["step"], state["exp_avg"], state["exp_avg_sq"]
                {decay}
                m.mul_(beta1).add_({grad}, alpha=1 - beta1)
                v.mul_(beta2).addcmul_({grad}, {grad}, value=1 - beta2)
                m_hat = m / (1 - beta1 ** {t})
                v_hat = v / (1 - beta2 ** {t})
                p.sub_({update})
'''
_ADAMW_OK = dict(weight_decay="0.01", unpack="beta1, beta2 = betas", zero="0", decay="p.mul_(1 - lr * weight_decay)",
                 grad="g", t="t", update="lr * m_hat / (v_hat.sqrt() + eps)")


_adamw = template(_ADAMW, **_ADAMW_OK)


_wrong(EX5, "adamw_is_adam_with_l2", "adds weight_decay * p to the gradient (Adam + L2) instead of decaying p",
       _adamw(decay="pass", grad="(g + weight_decay * p)"))
_wrong(EX5, "adamw_decay_without_lr", "decays by p * (1 - weight_decay), leaving out the learning rate",
       _adamw(decay="p.mul_(1 - weight_decay)"))
_wrong(EX5, "adamw_decay_after_step", "decays the already updated weight, after the Adam step",
       _adamw(decay="pass", update="lr * m_hat / (v_hat.sqrt() + eps) + lr * weight_decay * (p - lr * m_hat / "
                                   "(v_hat.sqrt() + eps))"))
_wrong(EX5, "adamw_bias_correction_t_plus_one", "bias correction with t + 1: one step ahead",
       _adamw(t="(t + 1)"))
_wrong(EX5, "adamw_no_bias_correction", "divides m by sqrt(v) without the bias correction",
       _adamw(update="lr * m / (v.sqrt() + eps)"))
_wrong(EX5, "adamw_eps_inside_sqrt", "sqrt(v_hat + eps): eps inside the square root",
       _adamw(update="lr * m_hat / (v_hat + eps).sqrt()"))
_wrong(EX5, "adamw_eps_before_correction", "adds eps to sqrt(v), then bias-corrects the sum",
       _adamw(update="lr * m_hat / ((v.sqrt() + eps) / math.sqrt(1 - beta2 ** t))"))
_wrong(EX5, "adamw_betas_swapped", "unpacks betas the wrong way round", _adamw(unpack="beta2, beta1 = betas"))
_wrong(EX5, "adamw_default_decay_0_1", "weight_decay=0.1 by default (GPT training's value, not PyTorch's default)",
       _adamw(weight_decay="0.1"))
_wrong(EX5, "adamw_step_as_tensor", "keeps step as a tensor, as torch.optim does, not the int the spec asks for",
       _adamw(zero="torch.tensor(0.0)", t="t.item()"))

_wrong(EX5, "adamw_l2_into_gradient_in_place", "g.add_(p, alpha=weight_decay): Adam + L2, and the caller's gradient "
       "changes", '''
    def adamw_step(params, grads, states, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        beta1, beta2 = betas
        with torch.no_grad():
            for p, g, state in zip(params, grads, states):
                if g is None:
                    continue
                g.add_(p, alpha=weight_decay)
                if not state:
                    state.update(step=0, exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
                state["step"] += 1
                t, m, v = state["step"], state["exp_avg"], state["exp_avg_sq"]
                m.mul_(beta1).add_(g, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                p.sub_(lr * (m / (1 - beta1 ** t)) / ((v / (1 - beta2 ** t)).sqrt() + eps))
''')

_wrong(EX5, "adamw_moments_restarted", "creates m and v anew on every call: only step is kept", '''
    def adamw_step(params, grads, states, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        beta1, beta2 = betas
        with torch.no_grad():
            for p, g, state in zip(params, grads, states):
                if g is None:
                    continue
                state["step"] = state.get("step", 0) + 1
                state["exp_avg"] = torch.zeros_like(p)
                state["exp_avg_sq"] = torch.zeros_like(p)
                t, m, v = state["step"], state["exp_avg"], state["exp_avg_sq"]
                p.mul_(1 - lr * weight_decay)
                m.mul_(beta1).add_(g, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                p.sub_(lr * (m / (1 - beta1 ** t)) / ((v / (1 - beta2 ** t)).sqrt() + eps))
''')

_wrong(EX5, "adamw_moments_by_position", "keeps m and v in a dict of its own keyed by the parameter's position: two "
       "optimizers mix their moments", '''
    _moments = {}


    def adamw_step(params, grads, states, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        beta1, beta2 = betas
        with torch.no_grad():
            for i, (p, g, state) in enumerate(zip(params, grads, states)):
                if g is None:
                    continue
                if not state:
                    state["step"] = 0
                if i not in _moments or _moments[i][0].shape != p.shape:
                    _moments[i] = (torch.zeros_like(p), torch.zeros_like(p))
                m, v = _moments[i]
                state["step"] += 1
                state["exp_avg"], state["exp_avg_sq"] = m, v
                t = state["step"]
                p.mul_(1 - lr * weight_decay)
                m.mul_(beta1).add_(g, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                p.sub_(lr * (m / (1 - beta1 ** t)) / ((v / (1 - beta2 ** t)).sqrt() + eps))
''')

_wrong(EX5, "adamw_decays_without_gradient", "decays every parameter, also those without a gradient this step", '''
    def adamw_step(params, grads, states, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        beta1, beta2 = betas
        with torch.no_grad():
            for p, g, state in zip(params, grads, states):
                p.mul_(1 - lr * weight_decay)
                if g is None:
                    continue
                if not state:
                    state.update(step=0, exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
                state["step"] += 1
                t, m, v = state["step"], state["exp_avg"], state["exp_avg_sq"]
                m.mul_(beta1).add_(g, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                p.sub_(lr * (m / (1 - beta1 ** t)) / ((v / (1 - beta2 ** t)).sqrt() + eps))
''')

_wrong(EX5, "adamw_without_no_grad", "updates in place outside torch.no_grad(): fails for parameters that require "
       "grad", '''
    def adamw_step(params, grads, states, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        beta1, beta2 = betas
        for p, g, state in zip(params, grads, states):
            if g is None:
                continue
            if not state:
                state.update(step=0, exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
            state["step"] += 1
            t, m, v = state["step"], state["exp_avg"], state["exp_avg_sq"]
            p.mul_(1 - lr * weight_decay)
            m.mul_(beta1).add_(g, alpha=1 - beta1)
            v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            p.sub_(lr * (m / (1 - beta1 ** t)) / ((v / (1 - beta2 ** t)).sqrt() + eps))
''')

_wrong(EX5, "adamw_new_parameter_tensors", "params[i] = ...: new tensors in the list, the model's stay unchanged", '''
    def adamw_step(params, grads, states, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        beta1, beta2 = betas
        for i, (p, g, state) in enumerate(zip(params, grads, states)):
            if g is None:
                continue
            if not state:
                state.update(step=0, exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
            state["step"] += 1
            t = state["step"]
            m = state["exp_avg"] = beta1 * state["exp_avg"] + (1 - beta1) * g
            v = state["exp_avg_sq"] = beta2 * state["exp_avg_sq"] + (1 - beta2) * g * g
            new = p.detach() * (1 - lr * weight_decay)
            params[i] = new - lr * (m / (1 - beta1 ** t)) / ((v / (1 - beta2 ** t)).sqrt() + eps)
''')

_right(EX5, "adamw_torch_style", "PyTorch's arrangement: lerp_, a step size lr / (1 - beta1**t) and addcdiv_", '''
    def adamw_step(params, grads, states, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        beta1, beta2 = betas
        with torch.no_grad():
            for p, g, state in zip(params, grads, states):
                if g is None:
                    continue
                if len(state) == 0:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                t = state["step"]
                p.mul_(1 - lr * weight_decay)
                state["exp_avg"].lerp_(g, 1 - beta1)
                state["exp_avg_sq"].mul_(beta2).addcmul_(g, g, value=1 - beta2)
                denom = (state["exp_avg_sq"].sqrt() / math.sqrt(1 - beta2 ** t)).add_(eps)
                p.addcdiv_(state["exp_avg"], denom, value=-lr / (1 - beta1 ** t))
''')

_right(EX5, "adamw_new_state_tensors", "computes new m and v tensors, stores them in the state, and copies the new "
       "weight into p", '''
    def adamw_step(params, grads, states, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        beta1, beta2 = betas
        for p, g, state in zip(params, grads, states):
            if g is None:
                continue
            t = state.get("step", 0) + 1
            m = beta1 * state.get("exp_avg", torch.zeros_like(p)) + (1 - beta1) * g
            v = beta2 * state.get("exp_avg_sq", torch.zeros_like(p)) + (1 - beta2) * g ** 2
            state.update(step=t, exp_avg=m, exp_avg_sq=v)
            m_hat, v_hat = m / (1 - beta1 ** t), v / (1 - beta2 ** t)
            new = p.detach() * (1 - lr * weight_decay) - lr * m_hat / (torch.sqrt(v_hat) + eps)
            with torch.no_grad():
                p.copy_(new)
''')


# --- Exercise 6: get_batch --------------------------------------------------------------------------------------
EX6 = "ex6_get_batch"

_BATCH = '''
    def get_batch(ids, batch_size, context_length, seed):
        if {too_short}:
            raise ValueError("too few ids for one window")
        generator = torch.Generator().manual_seed(seed)
        starts = torch.randint(0, {high}, (batch_size,), generator=generator).tolist()
        x = torch.stack([ids[s:s + context_length] for s in starts]){cast}
        y = torch.stack([ids[{y_slice}] for s in starts]){cast}
        return {result}
'''
_BATCH_OK = dict(too_short="len(ids) < context_length + 1", high="len(ids) - context_length", cast=".long()",
                 y_slice="s + 1:s + context_length + 1", result="x, y")


_batch = template(_BATCH, **_BATCH_OK)


_wrong(EX6, "batch_last_start_excluded", "high = len(ids) - context_length - 1: the last window never comes",
       _batch(high="len(ids) - context_length - 1"))
_wrong(EX6, "batch_start_past_the_end", "high = len(ids) - context_length + 1: a window may lack its last target",
       _batch(high="len(ids) - context_length + 1"))
_wrong(EX6, "batch_targets_not_shifted", "y is the same slice as x", _batch(y_slice="s:s + context_length"))
_wrong(EX6, "batch_x_y_swapped", "returns (y, x)", _batch(result="y, x"))
_wrong(EX6, "batch_keeps_dtype", "no .long(): ids of int32 give int32 windows", _batch(cast=""))
_wrong(EX6, "batch_no_length_check", "no check of the length: torch.randint fails with RuntimeError, not ValueError",
       _batch(too_short="False"))

_wrong(EX6, "batch_global_manual_seed", "torch.manual_seed(seed), then torch.randint from the global generator", '''
    def get_batch(ids, batch_size, context_length, seed):
        if len(ids) < context_length + 1:
            raise ValueError("too few ids for one window")
        torch.manual_seed(seed)
        starts = torch.randint(0, len(ids) - context_length, (batch_size,))
        x = torch.stack([ids[s:s + context_length] for s in starts]).long()
        y = torch.stack([ids[s + 1:s + context_length + 1] for s in starts]).long()
        return x, y
''')

_wrong(EX6, "batch_python_random", "random.seed(seed) and random.randrange: other starts, and the global state changes",
       '''
    import random


    def get_batch(ids, batch_size, context_length, seed):
        if len(ids) < context_length + 1:
            raise ValueError("too few ids for one window")
        random.seed(seed)
        starts = [random.randrange(len(ids) - context_length) for _ in range(batch_size)]
        x = torch.stack([ids[s:s + context_length] for s in starts]).long()
        y = torch.stack([ids[s + 1:s + context_length + 1] for s in starts]).long()
        return x, y
''')

_wrong(EX6, "batch_generator_per_seed_kept", "keeps one generator per seed between calls: a seed gives a new batch "
       "each time", '''
    _generators = {}


    def get_batch(ids, batch_size, context_length, seed):
        if len(ids) < context_length + 1:
            raise ValueError("too few ids for one window")
        if seed not in _generators:
            _generators[seed] = torch.Generator().manual_seed(seed)
        starts = torch.randint(0, len(ids) - context_length, (batch_size,), generator=_generators[seed])
        x = torch.stack([ids[s:s + context_length] for s in starts]).long()
        y = torch.stack([ids[s + 1:s + context_length + 1] for s in starts]).long()
        return x, y
''')

_wrong(EX6, "batch_distinct_starts", "draws distinct starts with randperm (sampling without replacement)", '''
    def get_batch(ids, batch_size, context_length, seed):
        if len(ids) < context_length + 1:
            raise ValueError("too few ids for one window")
        generator = torch.Generator().manual_seed(seed)
        starts = torch.randperm(len(ids) - context_length, generator=generator)[:batch_size]
        x = torch.stack([ids[s:s + context_length] for s in starts]).long()
        y = torch.stack([ids[s + 1:s + context_length + 1] for s in starts]).long()
        return x, y
''')

_right(EX6, "batch_unfold", "all windows with unfold, then the drawn rows", '''
    def get_batch(ids, batch_size, context_length, seed):
        if ids.numel() <= context_length:
            raise ValueError("too few ids for one window")
        starts = torch.randint(0, len(ids) - context_length, (batch_size,),
                               generator=torch.Generator().manual_seed(seed))
        windows = ids.long().unfold(0, context_length + 1, 1)  # (n - context_length, context_length + 1), a view
        picked = windows[starts.to(ids.device)]  # indexing with a tensor copies
        return picked[:, :-1], picked[:, 1:]
''')

_right(EX6, "batch_python_lists", "builds the windows as Python lists and makes tensors of them", '''
    def get_batch(ids, batch_size, context_length, seed):
        n = len(ids)
        if n - context_length < 1:
            raise ValueError("too few ids for one window")
        g = torch.Generator()
        g.manual_seed(seed)
        starts = torch.randint(0, n - context_length, (batch_size,), generator=g).tolist()
        values = ids.tolist()
        x = [values[s:s + context_length] for s in starts]
        y = [values[s + 1:s + 1 + context_length] for s in starts]
        return (torch.tensor(x, dtype=torch.long, device=ids.device),
                torch.tensor(y, dtype=torch.long, device=ids.device))
''')


# --- Exercise 7: train_step -------------------------------------------------------------------------------------
EX7 = "ex7_train_step"

_STEP = '''
    def train_step(model, optimizer, micro_batches, max_norm):
        {start}
        K = len(micro_batches)
        total = 0.0
        for x, y in micro_batches:
            {zero_in_loop}loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
            {backward}
            total += loss.item()
        {update}
        return {result}
'''
# A slot of several lines carries its own indentation after each newline (4 spaces in the body, 8 in the loop).
_CLIP = "torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)"
_STEP_OK = dict(start="optimizer.zero_grad()", zero_in_loop="", backward="(loss / K).backward()",
                update=_CLIP + "\n    optimizer.step()", result="total / K")


_step = template(_STEP, **_STEP_OK)


_wrong(EX7, "step_not_divided", "backward() of each micro-batch loss undivided: K times the big batch's gradient",
       _step(backward="loss.backward()"))
_wrong(EX7, "step_returns_sum", "returns the sum of the micro-batch losses instead of their mean",
       _step(result="total"))
_wrong(EX7, "step_returns_tensor", "returns the mean as a 0-d tensor", _step(result="torch.tensor(total / K)"))

_wrong(EX7, "step_zero_grad_in_loop", "zero_grad() inside the loop: only the last micro-batch's gradient is left",
       _step(start="", zero_in_loop="optimizer.zero_grad()\n        "))

_wrong(EX7, "step_never_zero_grad", "never clears the gradients: the previous step's stay in .grad",
       _step(start=""))

_wrong(EX7, "step_clip_per_micro_batch", "clips after every micro-batch's backward instead of once",
       _step(backward="(loss / K).backward()\n        " + _CLIP, update="optimizer.step()"))

_wrong(EX7, "step_per_micro_batch", "optimizer.step() after every micro-batch: K small steps, not one",
       _step(start="", zero_in_loop="optimizer.zero_grad()\n        ",
             backward="(loss / K).backward()\n        " + _CLIP + "\n        optimizer.step()", update=""))

_wrong(EX7, "step_clip_after_step", "clips after optimizer.step(): the step has already used the full gradient",
       _step(update="optimizer.step()\n    " + _CLIP))

_wrong(EX7, "step_last_loss", "returns the last micro-batch's loss",
       _step(result="loss.item()"))

_wrong(EX7, "step_one_big_batch", "concatenates the micro-batches and runs them at once: no accumulation", '''
    def train_step(model, optimizer, micro_batches, max_norm):
        optimizer.zero_grad()
        x = torch.cat([x for x, _ in micro_batches])
        y = torch.cat([y for _, y in micro_batches])
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        optimizer.step()
        return loss.item()
''')

_wrong(EX7, "step_sets_train_mode", "calls model.train() first, whatever mode the caller chose",
       _step(start="model.train()\n    optimizer.zero_grad()"))

_wrong(EX7, "step_no_clipping", "forgets to clip the gradients",
       _step(update="optimizer.step()"))

_right(EX7, "step_one_backward", "one backward() of the mean of the K losses (more memory, the same gradient)", '''
    def train_step(model, optimizer, micro_batches, max_norm):
        optimizer.zero_grad(set_to_none=True)
        losses = [F.cross_entropy(model(x).flatten(0, 1), y.flatten()) for x, y in micro_batches]
        mean = torch.stack(losses).mean()
        mean.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        optimizer.step()
        return mean.item()
''')

_right(EX7, "step_own_pieces", "Exercise 1's cross_entropy and Exercise 4's clip_grad_norm, losses kept detached", '''
    def train_step(model, optimizer, micro_batches, max_norm):
        optimizer.zero_grad(set_to_none=False)
        losses = []
        for x, y in micro_batches:
            loss = cross_entropy(model(x), y)
            (loss / len(micro_batches)).backward()
            losses.append(loss.detach())
        clip_grad_norm([p.grad for p in model.parameters()], max_norm)
        optimizer.step()
        return torch.stack(losses).mean().item()
''')
