"""Wrong implementations for Chapter 6 (Generating text): the mistakes learners make with temperature sampling,
top-k and top-p filtering, the repetition penalty, stop strings in a stream, greedy decoding with a key/value cache
and one step of beam search.

Each source replaces a whole solution cell of ``solutions/ch06_generating/generating.ipynb`` and is written the way a
learner would write it; the other exercises keep the reference solution. ``TinyCachedLM`` (Exercise 6) is in the
setup cell, not in a solution cell: the hidden tests of Exercise 6 use a cached model of their own, which stays in
the grader's process (the learner's code calls it back), so no entry has to carry it. Mistakes that only show on a
GPU are left out: CI has no GPU to prove that the tests catch them.
"""

from . import Catalogue, template

_catalogue = Catalogue()
WRONG, ALTERNATIVES = _catalogue.wrong_implementations, _catalogue.alternatives
_wrong, _right = _catalogue.wrong, _catalogue.right


# --- Exercise 1: sample_with_temperature ------------------------------------------------------------------------
EX1 = "ex1_sample_with_temperature"

_sample = template('''
    def sample_with_temperature(logits, temperature, seed):
        {check}
        probs = {probs}
        generator = torch.Generator().manual_seed(seed)
        return {draw}
''', check='if temperature <= 0:\n        raise ValueError("temperature must be > 0; use argmax for greedy")',
    probs="torch.softmax(logits / temperature, dim=-1)",
    draw="torch.multinomial(probs, num_samples=1, generator=generator).item()")

_wrong(EX1, "temp_divides_probabilities", "softmax first, then divides the probabilities by T (multinomial "
       "renormalises them: T does nothing)", _sample(probs="torch.softmax(logits, dim=-1) / temperature"))
_wrong(EX1, "temp_power_of_probabilities", "softmax first, then probs ** (1 / T): tokens whose float32 probability "
       "underflowed to 0 never come back", _sample(probs="torch.softmax(logits, dim=-1) ** (1 / temperature)"))
_wrong(EX1, "temp_multiplies", "multiplies the logits by the temperature", _sample(
    probs="torch.softmax(logits * temperature, dim=-1)"))
_wrong(EX1, "temp_exp_by_hand", "exp(logits / T) / sum without subtracting the maximum: logits of 1000 overflow",
       _sample(probs="torch.exp(logits / temperature) / torch.exp(logits / temperature).sum()"))
_wrong(EX1, "temp_no_value_error", "no check of the temperature: T = 0 gives nan probabilities, not ValueError",
       _sample(check="pass"))
_wrong(EX1, "temp_returns_tensor", "returns the (1,)-tensor multinomial gives, not a Python int", _sample(
    draw="torch.multinomial(probs, num_samples=1, generator=generator)"))
_wrong(EX1, "temp_argmax", "takes the most likely token instead of drawing one", _sample(
    draw="int(torch.argmax(probs))"))
_wrong(EX1, "temp_global_seed", "torch.manual_seed(seed) and the global generator: reproducible, but it resets "
       "the program's random state", _sample(
           draw="torch.manual_seed(seed) and torch.multinomial(probs, num_samples=1).item()"))
_wrong(EX1, "temp_generator_kept", "one generator seeded once and kept between calls: the seed of later calls is "
       "ignored", '''
    _generator = None

    def sample_with_temperature(logits, temperature, seed):
        global _generator
        if temperature <= 0:
            raise ValueError("temperature must be > 0; use argmax for greedy")
        if _generator is None:
            _generator = torch.Generator().manual_seed(seed)
        probs = torch.softmax(logits / temperature, dim=-1)
        return torch.multinomial(probs, 1, generator=_generator).item()
''')
_wrong(EX1, "temp_in_place", "logits /= temperature divides the caller's logits", '''
    def sample_with_temperature(logits, temperature, seed):
        if temperature <= 0:
            raise ValueError("temperature must be > 0; use argmax for greedy")
        logits /= temperature
        probs = torch.softmax(logits, dim=-1)
        return torch.multinomial(probs, 1, generator=torch.Generator().manual_seed(seed)).item()
''')

_right(EX1, "temp_functional_softmax", "F.softmax over dim 0, int() of the first sample, the check written as 'not "
       "temperature > 0'", '''
    def sample_with_temperature(logits, temperature, seed):
        if not temperature > 0:
            raise ValueError(f"temperature {temperature} is not > 0: pass a positive temperature, or take argmax")
        g = torch.Generator()
        g.manual_seed(seed)
        probs = F.softmax(logits / temperature, dim=0)
        return int(torch.multinomial(probs, 1, replacement=True, generator=g)[0])
''')


# --- Exercise 2: top_k_filter -----------------------------------------------------------------------------------
EX2 = "ex2_top_k_filter"

_topk = template('''
    def top_k_filter(logits, k):
        k = {clamp}
        kth = {kth}
        return {result}
''', clamp="min(k, logits.shape[-1])", kth="torch.topk(logits, k, dim=-1).values[..., -1:]",
    result='logits.masked_fill(logits < kth, float("-inf"))')

_wrong(EX2, "topk_no_clamp", "no min(k, V): torch.topk fails when k > V", _topk(clamp="k"))
_wrong(EX2, "topk_one_too_many", "takes the (k + 1)-th value as the threshold: keeps k + 1 tokens",
       _topk(kth="torch.topk(logits, min(k + 1, logits.shape[-1]), dim=-1).values[..., -1:]"))
_wrong(EX2, "topk_global_over_batch", "one threshold for the whole batch (top-k of the flattened tensor)",
       _topk(kth="torch.topk(logits.flatten(), k).values[-1]"))
_wrong(EX2, "topk_in_place", "masked_fill_ changes the caller's logits",
       _topk(result='logits.masked_fill_(logits < kth, float("-inf"))'))
_wrong(EX2, "topk_ties_dropped", "keeps exactly the k indices of torch.topk: ties with the k-th value are lost", '''
    def top_k_filter(logits, k):
        k = min(k, logits.shape[-1])
        indices = torch.topk(logits, k, dim=-1).indices
        out = torch.full_like(logits, float("-inf"))
        return out.scatter(-1, indices, logits.gather(-1, indices))
''')
_wrong(EX2, "topk_returns_input_when_all_kept", "returns the logits tensor itself when k >= V (not a new tensor)", '''
    def top_k_filter(logits, k):
        if k >= logits.shape[-1]:
            return logits
        kth = torch.topk(logits, k, dim=-1).values[..., -1:]
        return logits.masked_fill(logits < kth, float("-inf"))
''')

_right(EX2, "topk_sorted_where", "the k-th value from a descending sort, torch.where instead of masked_fill", '''
    def top_k_filter(logits, k):
        V = logits.shape[-1]
        kth = torch.sort(logits, dim=-1, descending=True).values[..., min(k, V) - 1].unsqueeze(-1)
        return torch.where(logits >= kth, logits, torch.full_like(logits, -math.inf))
''')


# --- Exercise 3: top_p_filter -----------------------------------------------------------------------------------
EX3 = "ex3_top_p_filter"

_topp = template('''
    def top_p_filter(logits, p):
        probs = torch.softmax(logits, dim=-1)
        sorted_probs, order = {sort}
        before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
        remove_sorted = {remove}
        remove = {back}
        return {result}
''', sort="torch.sort(probs, dim=-1, descending=True, stable=True)", remove="before >= p",
    back="torch.zeros_like(remove_sorted).scatter(-1, order, remove_sorted)",
    result='logits.masked_fill(remove, float("-inf"))')

_wrong(EX3, "topp_drops_crossing_token", "removes where the sum *including* the token exceeds p: the token that "
       "reaches p is dropped", _topp(remove="torch.cumsum(sorted_probs, dim=-1) > p"))
_wrong(EX3, "topp_sorted_ascending", "sorts by increasing probability: keeps the least likely tokens",
       _topp(sort="torch.sort(probs, dim=-1, stable=True)"))
_wrong(EX3, "topp_ties_reversed", "ascending stable sort flipped: equal probabilities come higher id first",
       _topp(sort="[t.flip(-1) for t in torch.sort(probs, dim=-1, stable=True)]"))
_wrong(EX3, "topp_no_map_back", "applies the mask computed in sorted order to the tokens in their own order",
       _topp(back="remove_sorted"))
_wrong(EX3, "topp_in_place", "masked_fill_ changes the caller's logits",
       _topp(result='logits.masked_fill_(remove, float("-inf"))'))
_wrong(EX3, "topp_on_logits", "accumulates the sorted logits instead of the probabilities", '''
    def top_p_filter(logits, p):
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True, stable=True)
        before = torch.cumsum(sorted_logits, dim=-1) - sorted_logits
        remove = torch.zeros_like(before, dtype=torch.bool).scatter(-1, order, before >= p)
        return logits.masked_fill(remove, float("-inf"))
''')

_right(EX3, "topp_inverse_permutation", "shifts the cumulative sum with torch.cat and maps back with the inverse "
       "permutation (argsort of the order)", '''
    def top_p_filter(logits, p):
        probs = logits.softmax(-1)
        sorted_probs, order = probs.sort(dim=-1, descending=True, stable=True)
        cumulative = sorted_probs.cumsum(-1)
        before = torch.cat([torch.zeros_like(cumulative[..., :1]), cumulative[..., :-1]], dim=-1)
        keep_sorted = before < p
        keep = keep_sorted.gather(-1, order.argsort(dim=-1))
        return torch.where(keep, logits, torch.tensor(float("-inf"), dtype=logits.dtype))
''')


# --- Exercise 4: repetition_penalty -----------------------------------------------------------------------------
EX4 = "ex4_repetition_penalty"

_penalty = template('''
    def repetition_penalty(logits, input_ids, penalty):
        seen = logits.gather(1, input_ids)
        penalised = {penalised}
        return {result}
''', penalised="torch.where(seen < 0, seen * penalty, seen / penalty)",
    result="logits.scatter(1, input_ids, penalised)")

_wrong(EX4, "rep_always_divides", "divides every seen logit: a negative one goes up, towards 0",
       _penalty(penalised="seen / penalty"))
_wrong(EX4, "rep_sign_swapped", "multiplies the positive logits and divides the negative ones",
       _penalty(penalised="torch.where(seen > 0, seen * penalty, seen / penalty)"))
_wrong(EX4, "rep_subtracts", "subtracts the penalty from each seen logit", _penalty(penalised="seen - penalty"))
_wrong(EX4, "rep_in_place", "scatter_ writes into the caller's logits",
       _penalty(result="logits.scatter_(1, input_ids, penalised)"))
_wrong(EX4, "rep_once_per_occurrence", "penalises a token once for every time it appears", '''
    def repetition_penalty(logits, input_ids, penalty):
        out = logits.clone()
        for b in range(input_ids.shape[0]):
            for t in input_ids[b].tolist():
                out[b, t] = out[b, t] * penalty if out[b, t] < 0 else out[b, t] / penalty
        return out
''')
_wrong(EX4, "rep_all_rows_share_ids", "takes the ids of every row together: row 0's tokens are penalised in row 1",
       '''
    def repetition_penalty(logits, input_ids, penalty):
        out = logits.clone()
        seen = input_ids.flatten().unique()
        values = out[:, seen]
        out[:, seen] = torch.where(values < 0, values * penalty, values / penalty)
        return out
''')

_right(EX4, "rep_unique_per_row", "a loop over the rows with the unique ids of each", '''
    def repetition_penalty(logits, input_ids, penalty):
        out = logits.clone()
        for row, ids in zip(out, input_ids):
            ids = torch.unique(ids)
            values = row[ids]
            row[ids] = torch.where(values > 0, values / penalty, values * penalty)
        return out
''')


# --- Exercise 5: stop_stream ------------------------------------------------------------------------------------
EX5 = "ex5_stop_stream"

_stream = template('''
    def stop_stream(pieces, stops):
        held = ""
        for piece in pieces:
            held += piece
            {find}
            if found:
                if min(found) > 0:
                    yield held[:{cut}]
                return
            wait = {wait}
            {release}
        {flush}
''', find="found = [i for i in (held.find(stop) for stop in stops) if i >= 0]", cut="min(found)",
    wait="max([n for stop in stops for n in range(1, len(stop)) if held.endswith(stop[:n])], default=0)",
    release="if len(held) > wait:\n            yield held[:len(held) - wait]\n            held = held[len(held) - wait:]",
    flush="if held:\n        yield held")

_wrong(EX5, "stream_no_flush", "forgets to yield what is held back when the pieces run out", _stream(flush="pass"))
_wrong(EX5, "stream_no_holding_back", "yields the text at once: the start of a stop string is shown before the rest "
       "arrives", _stream(wait="0"))
_wrong(EX5, "stream_first_listed_stop_wins", "cuts at the first stop string of the list found, not the earliest in "
       "the text", _stream(find="found = [i for i in (held.find(stop) for stop in stops) if i >= 0][:1]"))
_wrong(EX5, "stream_includes_stop", "yields up to the end of the stop string, not its start",
       _stream(find="found = [i + len(s) for s, i in ((s, held.find(s)) for s in stops) if i >= 0]",
               cut="min(found)"))
_wrong(EX5, "stream_holds_longest_stop", "always holds back len(longest stop) - 1 characters: safe, but shows text "
       "later than it could", _stream(wait="min(len(held), max([len(s) for s in stops], default=1) - 1)"))
_wrong(EX5, "stream_empty_yields", "yields the released text even when it is empty",
       _stream(release="yield held[:len(held) - wait]\n        held = held[len(held) - wait:]"))
_wrong(EX5, "stream_each_piece_alone", "looks for the stop strings in each piece alone: one split across pieces "
       "is missed", '''
    def stop_stream(pieces, stops):
        for piece in pieces:
            found = [i for i in (piece.find(stop) for stop in stops) if i >= 0]
            if found:
                if min(found) > 0:
                    yield piece[:min(found)]
                return
            if piece:
                yield piece
''')
_wrong(EX5, "stream_buffers_everything", "collects every piece, then yields the cut text at the end: nothing is "
       "streamed", '''
    def stop_stream(pieces, stops):
        text = ""
        for piece in pieces:
            text += piece
            if any(stop in text for stop in stops):
                break
        found = [i for i in (text.find(stop) for stop in stops) if i >= 0]
        text = text[:min(found)] if found else text
        if text:
            yield text
''')

_right(EX5, "stream_shown_counter", "keeps the whole text and a count of characters shown; holds back by testing "
       "suffixes from the longest down", '''
    def stop_stream(pieces, stops):
        text, shown = "", 0
        longest = max((len(s) for s in stops), default=0)
        for piece in pieces:
            text += piece
            hits = [text.find(s, max(0, shown - len(s))) for s in stops]
            hits = [h for h in hits if h != -1]
            if hits:
                end = min(hits)
                if end > shown:
                    yield text[shown:end]
                return
            wait = 0
            for n in range(min(longest - 1, len(text) - shown), 0, -1):
                if any(s.startswith(text[-n:]) for s in stops):
                    wait = n
                    break
            if len(text) - wait > shown:
                yield text[shown:len(text) - wait]
                shown = len(text) - wait
        if len(text) > shown:
            yield text[shown:]
''')


# --- Exercise 6: greedy_with_cache ------------------------------------------------------------------------------
EX6 = "ex6_greedy_with_cache"

_greedy = template('''
    def greedy_with_cache(model, prompt_ids, max_new_tokens):
        logits, cache = model(torch.tensor([prompt_ids]))
        new_ids = []
        for step in range({steps}):
            next_id = {pick}
            new_ids.append(next_id)
            if {feed_if}:
                logits, cache = model(torch.tensor([[next_id]]), cache=cache)
        return {result}
''', steps="max_new_tokens", pick="int(logits[0, -1].argmax())", feed_if="step + 1 < max_new_tokens",
    result="new_ids")

_wrong(EX6, "cache_first_position", "takes the argmax of the first position's logits, not the last one's",
       _greedy(pick="int(logits[0, 0].argmax())"))
_wrong(EX6, "cache_one_token_short", "generates max_new_tokens - 1 tokens", _greedy(steps="max_new_tokens - 1"))
_wrong(EX6, "cache_returns_prompt_too", "returns the prompt followed by the new tokens",
       _greedy(result="list(prompt_ids) + new_ids"))
_wrong(EX6, "cache_feeds_last_token", "feeds the last new token as well: one call too many", _greedy(feed_if="True"))
_wrong(EX6, "cache_tensor_ids", "appends 0-d tensors instead of Python ints", _greedy(pick="logits[0, -1].argmax()"))
_wrong(EX6, "cache_whole_sequence_each_step", "feeds the whole sequence every step, with the cache as well", '''
    def greedy_with_cache(model, prompt_ids, max_new_tokens):
        ids = list(prompt_ids)
        cache = None
        for _ in range(max_new_tokens):
            logits, cache = model(torch.tensor([ids]), cache=cache)
            ids.append(int(logits[0, -1].argmax()))
        return ids[len(prompt_ids):]
''')
_wrong(EX6, "cache_not_used", "recomputes the whole sequence each step without the cache: right tokens, too much "
       "work", '''
    def greedy_with_cache(model, prompt_ids, max_new_tokens):
        ids = list(prompt_ids)
        for _ in range(max_new_tokens):
            logits, _ = model(torch.tensor([ids]))
            ids.append(int(logits[0, -1].argmax()))
        return ids[len(prompt_ids):]
''')
_wrong(EX6, "cache_appends_to_prompt", "appends the new tokens to the caller's prompt_ids list", '''
    def greedy_with_cache(model, prompt_ids, max_new_tokens):
        start = len(prompt_ids)
        logits, cache = model(torch.tensor([prompt_ids]))
        for step in range(max_new_tokens):
            prompt_ids.append(int(logits[0, -1].argmax()))
            if step + 1 < max_new_tokens:
                logits, cache = model(torch.tensor([prompt_ids[-1:]]), cache=cache)
        return prompt_ids[start:]
''')

_right(EX6, "cache_while_loop", "a while loop that checks the length first, argmax over the last axis with "
       ".item()", '''
    def greedy_with_cache(model, prompt_ids, max_new_tokens):
        out = []
        logits, cache = model(torch.tensor(prompt_ids, dtype=torch.long).unsqueeze(0), cache=None)
        while True:
            out.append(torch.argmax(logits[:, -1, :], dim=-1).item())
            if len(out) == max_new_tokens:
                return out
            logits, cache = model(torch.tensor([[out[-1]]]), cache=cache)
''')


# --- Exercise 7: beam_step --------------------------------------------------------------------------------------
EX7 = "ex7_beam_step"

_beam = template('''
    def beam_step(beam_scores, log_probs, num_beams):
        B, V = log_probs.shape
        candidates = ({candidates}).flatten()
        scores, flat = torch.sort(candidates, descending=True, stable=True)
        flat = flat[:num_beams]
        return scores[:num_beams], {beam}, {token}
''', candidates="beam_scores[:, None] + log_probs", beam="flat // V", token="flat % V")

_wrong(EX7, "beam_scores_forgotten", "ranks the next-token log-probabilities alone, without the beams' scores",
       _beam(candidates="log_probs + 0 * beam_scores[:, None]"))
_wrong(EX7, "beam_multiplies", "multiplies the scores (as for probabilities) instead of adding log-probabilities",
       _beam(candidates="beam_scores[:, None] * log_probs"))
_wrong(EX7, "beam_parent_by_modulo", "beam index as flat % B instead of flat // V", _beam(beam="flat % B"))
_wrong(EX7, "beam_token_by_division", "token as flat // B: mixes up the two axes", _beam(token="flat // B"))
_wrong(EX7, "beam_own_best_only", "each beam extends only its own best token", '''
    def beam_step(beam_scores, log_probs, num_beams):
        best, token = log_probs.max(dim=-1)
        scores, beam = torch.sort(beam_scores + best, descending=True, stable=True)
        return scores[:num_beams], beam[:num_beams], token[beam][:num_beams]
''')

_right(EX7, "beam_argsort_of_negated", "argsort of the negated candidates (stable), then divmod by V", '''
    def beam_step(beam_scores, log_probs, num_beams):
        V = log_probs.size(1)
        total = (log_probs + beam_scores.unsqueeze(1)).reshape(-1)
        best = torch.argsort(-total, stable=True)[:num_beams]
        return total[best], torch.div(best, V, rounding_mode="floor"), torch.remainder(best, V)
''')
