"""Wrong implementations for Chapter 3 (Attention): the mistakes learners make when they write attention by hand.

Each source replaces a whole solution cell of ``solutions/ch03_attention/attention.ipynb`` and is written the way a
learner would write it. The cells of the other exercises keep the reference solution, so a wrong exercise is judged by
its own hidden tests. Exercises 4 to 6 may call the functions of Exercises 1 to 3; the mistakes below mostly write
the attention out inline, the way a learner who does not reuse them would.
"""

from . import Catalogue

_catalogue = Catalogue()
WRONG, ALTERNATIVES = _catalogue.wrong_implementations, _catalogue.alternatives
_wrong, _right = _catalogue.wrong, _catalogue.right


# --- Exercise 1: scaled_dot_product_attention -------------------------------------------------------------------
EX1 = "ex1_attention"

_wrong(EX1, "attention_no_scaling", "forgets to divide the scores by sqrt(d_head)", '''
    def scaled_dot_product_attention(q, k, v, mask=None, dropout_p=0.0, training=True):
        scores = q @ k.transpose(-2, -1)
        if mask is not None:
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=-1)
        if mask is not None:
            weights = weights.masked_fill(~mask, 0.0)
        weights = F.dropout(weights, p=dropout_p, training=training)
        return weights @ v
''')

_wrong(EX1, "attention_softmax_over_queries", "softmax over dim=-2 (the queries) instead of the keys", '''
    def scaled_dot_product_attention(q, k, v, mask=None, dropout_p=0.0, training=True):
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        if mask is not None:
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=-2)
        if mask is not None:
            weights = weights.masked_fill(~mask, 0.0)
        weights = F.dropout(weights, p=dropout_p, training=training)
        return weights @ v
''')

_wrong(EX1, "attention_mask_after_softmax",
       "multiplies the weights by the mask after the softmax: rows no longer sum to 1",
       '''
    def scaled_dot_product_attention(q, k, v, mask=None, dropout_p=0.0, training=True):
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        weights = torch.softmax(scores, dim=-1)
        if mask is not None:
            weights = weights * mask
        weights = F.dropout(weights, p=dropout_p, training=training)
        return weights @ v
''')

_wrong(EX1, "attention_mask_inverted", "fills where the mask is True (torch.nn.MultiheadAttention's convention)", '''
    def scaled_dot_product_attention(q, k, v, mask=None, dropout_p=0.0, training=True):
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        if mask is not None:
            scores = scores.masked_fill(mask, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=-1)
        if mask is not None:
            weights = weights.masked_fill(mask, 0.0)
        weights = F.dropout(weights, p=dropout_p, training=training)
        return weights @ v
''')

_wrong(EX1, "attention_minus_inf_nan", "masked_fill with -inf: a query with no allowed key gets nan", '''
    def scaled_dot_product_attention(q, k, v, mask=None, dropout_p=0.0, training=True):
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        weights = F.dropout(weights, p=dropout_p, training=training)
        return weights @ v
''')

_wrong(EX1, "attention_fully_masked_uniform",
       "fills with a large negative number but never zeroes a fully blocked row: it averages all values", '''
    def scaled_dot_product_attention(q, k, v, mask=None, dropout_p=0.0, training=True):
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        if mask is not None:
            scores = scores.masked_fill(~mask, -1e9)
        weights = torch.softmax(scores, dim=-1)
        weights = F.dropout(weights, p=dropout_p, training=training)
        return weights @ v
''')

_wrong(EX1, "attention_dropout_in_eval", "calls F.dropout without training=..., so dropout stays on in evaluation", '''
    def scaled_dot_product_attention(q, k, v, mask=None, dropout_p=0.0, training=True):
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        if mask is not None:
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=-1)
        if mask is not None:
            weights = weights.masked_fill(~mask, 0.0)
        weights = F.dropout(weights, p=dropout_p)
        return weights @ v
''')

_wrong(EX1, "attention_dropout_not_rescaled", "drops weights by hand but forgets to scale the survivors by 1 / (1 - p)",
       '''
    def scaled_dot_product_attention(q, k, v, mask=None, dropout_p=0.0, training=True):
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        if mask is not None:
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=-1)
        if mask is not None:
            weights = weights.masked_fill(~mask, 0.0)
        if training and dropout_p > 0:
            weights = weights * (torch.rand_like(weights) >= dropout_p)
        return weights @ v
''')

_wrong(EX1, "attention_scales_q_in_place", "divides q by sqrt(d_head) in place: the caller's queries change", '''
    def scaled_dot_product_attention(q, k, v, mask=None, dropout_p=0.0, training=True):
        q /= math.sqrt(q.shape[-1])
        scores = q @ k.transpose(-2, -1)
        if mask is not None:
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=-1)
        if mask is not None:
            weights = weights.masked_fill(~mask, 0.0)
        return F.dropout(weights, p=dropout_p, training=training) @ v
''')

_wrong(EX1, "attention_dropout_on_output", "applies dropout to the output (weights @ v) instead of the weights", '''
    def scaled_dot_product_attention(q, k, v, mask=None, dropout_p=0.0, training=True):
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        if mask is not None:
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=-1)
        if mask is not None:
            weights = weights.masked_fill(~mask, 0.0)
        return F.dropout(weights @ v, p=dropout_p, training=training)
''')

_wrong(EX1, "attention_dropout_mask_shared", "draws one (T, S) dropout mask and shares it across the batch and heads",
       '''
    def scaled_dot_product_attention(q, k, v, mask=None, dropout_p=0.0, training=True):
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        if mask is not None:
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=-1)
        if mask is not None:
            weights = weights.masked_fill(~mask, 0.0)
        if training and dropout_p > 0:
            keep = torch.rand(weights.shape[-2:], device=weights.device) >= dropout_p
            weights = weights * keep / (1 - dropout_p)
        return weights @ v
''')

_right(EX1, "attention_einsum_nan_to_num", "einsum for the products; -inf, then nan_to_num for fully blocked rows", '''
    def scaled_dot_product_attention(q, k, v, mask=None, dropout_p=0.0, training=True):
        scores = torch.einsum("...td,...sd->...ts", q, k) / q.shape[-1] ** 0.5
        if mask is not None:
            scores = torch.where(mask, scores, float("-inf"))
        weights = torch.softmax(scores, dim=-1).nan_to_num(0.0)
        if training:
            weights = torch.nn.functional.dropout(weights, dropout_p)
        return torch.einsum("...ts,...sd->...td", weights, v)
''')

# --- Exercise 2: causal_mask and padding_mask -------------------------------------------------------------------
EX2 = "ex2_masks"
_PADDING = '''

    def padding_mask(lengths, T, device=None):
        lengths = torch.as_tensor(lengths, device=device)
        return (torch.arange(T, device=device) < lengths[:, None])[:, None, None, :]
'''
_CAUSAL = '''
    def causal_mask(T, device=None):
        return torch.ones(T, T, dtype=torch.bool, device=device).tril()

'''

_wrong(EX2, "causal_mask_is_blocked_part",
       "returns the blocked part, triu(1) (True = NOT allowed, torch's MHA way)", '''
    def causal_mask(T, device=None):
        return torch.ones(T, T, dtype=torch.bool, device=device).triu(diagonal=1)
''' + _PADDING)

_wrong(EX2, "causal_mask_strict", "tril(diagonal=-1): a position may not attend to itself", '''
    def causal_mask(T, device=None):
        return torch.ones(T, T, dtype=torch.bool, device=device).tril(diagonal=-1)
''' + _PADDING)

_wrong(EX2, "causal_mask_sees_next_token", "tril(diagonal=1): each position also sees the next token", '''
    def causal_mask(T, device=None):
        return torch.ones(T, T, dtype=torch.bool, device=device).tril(diagonal=1)
''' + _PADDING)

_wrong(EX2, "causal_mask_float", "a float 0/1 matrix instead of booleans (masked_fill and ~ need booleans)", '''
    def causal_mask(T, device=None):
        return torch.tril(torch.ones(T, T, device=device))
''' + _PADDING)

_wrong(EX2, "padding_mask_off_by_one",
       "j <= lengths[b]: the first padding position counts as a real token", _CAUSAL + '''
    def padding_mask(lengths, T, device=None):
        lengths = torch.as_tensor(lengths, device=device)
        return (torch.arange(T, device=device) <= lengths[:, None])[:, None, None, :]
''')

_wrong(EX2, "padding_mask_blocks_queries", "shape (B, 1, T, 1): blocks padded queries instead of padded keys",
       _CAUSAL + '''
    def padding_mask(lengths, T, device=None):
        lengths = torch.as_tensor(lengths, device=device)
        return (torch.arange(T, device=device) < lengths[:, None])[:, None, :, None]
''')

_wrong(EX2, "padding_mask_no_broadcast_axes", "returns (B, T): it does not broadcast over heads and queries",
       _CAUSAL + '''
    def padding_mask(lengths, T, device=None):
        return torch.stack([torch.arange(T, device=device) < n for n in lengths])
''')

_right(EX2, "masks_by_comparison", "compares position indices instead of tril; builds the padding rows in a loop", '''
    def causal_mask(T, device=None):
        i = torch.arange(T, device=device)
        return i[None, :] <= i[:, None]


    def padding_mask(lengths, T, device=None):
        rows = [[j < int(n) for j in range(T)] for n in lengths]
        return torch.tensor(rows, dtype=torch.bool, device=device).view(len(rows), 1, 1, T)
''')

# --- Exercise 3: split_heads and merge_heads --------------------------------------------------------------------
EX3 = "ex3_heads"

_wrong(EX3, "split_heads_view_without_transpose", "views (B, T, d) as (B, H, T, d_head) directly, mixing positions", '''
    def split_heads(x, n_heads):
        B, T, d_model = x.shape
        return x.view(B, n_heads, T, d_model // n_heads)


    def merge_heads(x):
        B, n_heads, T, d_head = x.shape
        return x.transpose(1, 2).contiguous().view(B, T, n_heads * d_head)
''')

_wrong(EX3, "split_heads_interleaved", "views the last axis as (d_head, n_heads): head h gets every n_heads-th number",
       '''
    def split_heads(x, n_heads):
        B, T, d_model = x.shape
        return x.view(B, T, d_model // n_heads, n_heads).permute(0, 3, 1, 2)


    def merge_heads(x):
        B, n_heads, T, d_head = x.shape
        return x.transpose(1, 2).contiguous().view(B, T, n_heads * d_head)
''')

_wrong(EX3, "merge_heads_without_transpose", "reshapes (B, H, T, d_head) to (B, T, d) without moving the heads back",
       '''
    def split_heads(x, n_heads):
        B, T, d_model = x.shape
        return x.view(B, T, n_heads, d_model // n_heads).transpose(1, 2)


    def merge_heads(x):
        B, n_heads, T, d_head = x.shape
        return x.reshape(B, T, n_heads * d_head)
''')

_wrong(EX3, "merge_heads_wrong_order",
       "permutes to (B, T, d_head, H) before joining: the numbers of the heads interleave",
       '''
    def split_heads(x, n_heads):
        B, T, d_model = x.shape
        return x.view(B, T, n_heads, d_model // n_heads).transpose(1, 2)


    def merge_heads(x):
        B, n_heads, T, d_head = x.shape
        return x.permute(0, 2, 3, 1).reshape(B, T, n_heads * d_head)
''')

_wrong(EX3, "merge_heads_view_without_contiguous", "transpose then view: fails on the non-contiguous tensor", '''
    def split_heads(x, n_heads):
        B, T, d_model = x.shape
        return x.view(B, T, n_heads, d_model // n_heads).transpose(1, 2)


    def merge_heads(x):
        B, n_heads, T, d_head = x.shape
        return x.transpose(1, 2).view(B, T, n_heads * d_head)
''')

_right(EX3, "heads_reshape_permute", "reshape and permute instead of view and transpose", '''
    def split_heads(x, n_heads):
        B, T, d_model = x.shape
        return x.reshape(B, T, n_heads, -1).permute(0, 2, 1, 3)


    def merge_heads(x):
        B, n_heads, T, d_head = x.shape
        return x.permute(0, 2, 1, 3).reshape(B, T, -1)
''')

# --- Exercise 4: causal_self_attention --------------------------------------------------------------------------
EX4 = "ex4_causal_self_attention"

_wrong(EX4, "mha_scale_by_d_model", "divides the scores by sqrt(d_model) instead of sqrt(d_head)", '''
    def causal_self_attention(x, w_qkv, b_qkv, w_out, b_out, n_heads):
        B, T, d_model = x.shape
        q, k, v = F.linear(x, w_qkv, b_qkv).chunk(3, dim=-1)
        q, k, v = (t.view(B, T, n_heads, -1).transpose(1, 2) for t in (q, k, v))
        scores = q @ k.transpose(-2, -1) / math.sqrt(d_model)
        allowed = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        weights = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)
        out = (weights @ v).transpose(1, 2).reshape(B, T, d_model)
        return F.linear(out, w_out, b_out)
''')

_wrong(EX4, "mha_split_without_transpose", "cuts q, k, v into heads with a bare view(B, H, T, d_head)", '''
    def causal_self_attention(x, w_qkv, b_qkv, w_out, b_out, n_heads):
        B, T, d_model = x.shape
        q, k, v = F.linear(x, w_qkv, b_qkv).chunk(3, dim=-1)
        q, k, v = (t.reshape(B, n_heads, T, d_model // n_heads) for t in (q, k, v))
        out = scaled_dot_product_attention(q, k, v, causal_mask(T, device=x.device))
        return F.linear(out.reshape(B, T, d_model), w_out, b_out)
''')

_wrong(EX4, "mha_merge_without_transpose",
       "merges the heads with reshape(B, T, d_model) straight from (B, H, T, d_head)",
       '''
    def causal_self_attention(x, w_qkv, b_qkv, w_out, b_out, n_heads):
        B, T, d_model = x.shape
        q, k, v = F.linear(x, w_qkv, b_qkv).chunk(3, dim=-1)
        q, k, v = (split_heads(t, n_heads) for t in (q, k, v))
        out = scaled_dot_product_attention(q, k, v, causal_mask(T, device=x.device))
        return F.linear(out.reshape(B, T, d_model), w_out, b_out)
''')

_wrong(EX4, "mha_mask_sees_next_token",
       "triu(diagonal=2) as the blocked part: each position also sees the next one", '''
    def causal_self_attention(x, w_qkv, b_qkv, w_out, b_out, n_heads):
        B, T, d_model = x.shape
        q, k, v = F.linear(x, w_qkv, b_qkv).chunk(3, dim=-1)
        q, k, v = (split_heads(t, n_heads) for t in (q, k, v))
        blocked = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(diagonal=2)
        out = scaled_dot_product_attention(q, k, v, ~blocked)
        return F.linear(merge_heads(out), w_out, b_out)
''')

_wrong(EX4, "mha_qkv_in_wrong_order", "unpacks the fused projection as k, q, v", '''
    def causal_self_attention(x, w_qkv, b_qkv, w_out, b_out, n_heads):
        k, q, v = F.linear(x, w_qkv, b_qkv).chunk(3, dim=-1)
        q, k, v = (split_heads(t, n_heads) for t in (q, k, v))
        out = scaled_dot_product_attention(q, k, v, causal_mask(x.shape[1], device=x.device))
        return F.linear(merge_heads(out), w_out, b_out)
''')

_right(EX4, "mha_one_head_at_a_time", "loops over the heads with slices and concatenates, no view/transpose", '''
    def causal_self_attention(x, w_qkv, b_qkv, w_out, b_out, n_heads):
        d_model = x.shape[-1]
        d_head = d_model // n_heads
        q, k, v = (x @ w.T + b for w, b in zip(w_qkv.split(d_model), b_qkv.split(d_model)))
        allowed = causal_mask(x.shape[1], device=x.device)
        heads = []
        for h in range(n_heads):
            part = slice(h * d_head, (h + 1) * d_head)
            heads.append(scaled_dot_product_attention(q[..., part], k[..., part], v[..., part], allowed))
        return torch.cat(heads, dim=-1) @ w_out.T + b_out
''')

# --- Exercise 5: grouped_query_attention ------------------------------------------------------------------------
EX5 = "ex5_grouped_query_attention"

_wrong(EX5, "gqa_repeat_instead_of_repeat_interleave",
       "tiles the K/V heads with repeat: query head h gets K/V head h % n_kv_heads", '''
    def grouped_query_attention(x, w_q, w_k, w_v, w_out, n_heads, n_kv_heads):
        q = split_heads(F.linear(x, w_q), n_heads)
        k = split_heads(F.linear(x, w_k), n_kv_heads)
        v = split_heads(F.linear(x, w_v), n_kv_heads)
        group = n_heads // n_kv_heads
        k, v = k.repeat(1, group, 1, 1), v.repeat(1, group, 1, 1)
        out = scaled_dot_product_attention(q, k, v, causal_mask(x.shape[1], device=x.device))
        return F.linear(merge_heads(out), w_out)
''')

_wrong(EX5, "gqa_not_causal", "forgets the causal mask", '''
    def grouped_query_attention(x, w_q, w_k, w_v, w_out, n_heads, n_kv_heads):
        q = split_heads(F.linear(x, w_q), n_heads)
        k = split_heads(F.linear(x, w_k), n_kv_heads)
        v = split_heads(F.linear(x, w_v), n_kv_heads)
        group = n_heads // n_kv_heads
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        return F.linear(merge_heads(scaled_dot_product_attention(q, k, v)), w_out)
''')

_wrong(EX5, "gqa_expand_wrong_axis",
       "expands the K/V heads on a new axis after them, then flattens: tiled, not grouped",
       '''
    def grouped_query_attention(x, w_q, w_k, w_v, w_out, n_heads, n_kv_heads):
        B, T, d_model = x.shape
        q = split_heads(F.linear(x, w_q), n_heads)
        k = split_heads(F.linear(x, w_k), n_kv_heads)
        v = split_heads(F.linear(x, w_v), n_kv_heads)
        group = n_heads // n_kv_heads
        k = k[:, None].expand(B, group, n_kv_heads, T, -1).reshape(B, n_heads, T, -1)
        v = v[:, None].expand(B, group, n_kv_heads, T, -1).reshape(B, n_heads, T, -1)
        out = scaled_dot_product_attention(q, k, v, causal_mask(T, device=x.device))
        return F.linear(merge_heads(out), w_out)
''')

_wrong(EX5, "gqa_repeat_before_split", "repeats every key/value *number* group times before cutting heads", '''
    def grouped_query_attention(x, w_q, w_k, w_v, w_out, n_heads, n_kv_heads):
        group = n_heads // n_kv_heads
        q = split_heads(F.linear(x, w_q), n_heads)
        k = split_heads(F.linear(x, w_k).repeat_interleave(group, dim=-1), n_heads)
        v = split_heads(F.linear(x, w_v).repeat_interleave(group, dim=-1), n_heads)
        out = scaled_dot_product_attention(q, k, v, causal_mask(x.shape[1], device=x.device))
        return F.linear(merge_heads(out), w_out)
''')

# --- Exercise 6: cross_attention --------------------------------------------------------------------------------
EX6 = "ex6_cross_attention"

_wrong(EX6, "cross_kv_from_queries", "takes the keys and values from x instead of memory", '''
    def cross_attention(x, memory, w_qkv, b_qkv, w_out, b_out, n_heads, memory_lengths=None):
        q, k, v = F.linear(x, w_qkv, b_qkv).chunk(3, dim=-1)
        q, k, v = (split_heads(t, n_heads) for t in (q, k, v))
        mask = None if memory_lengths is None else padding_mask(memory_lengths, x.shape[1], device=x.device)
        return F.linear(merge_heads(scaled_dot_product_attention(q, k, v, mask)), w_out, b_out)
''')

_wrong(EX6, "cross_causal", "applies a causal mask, as in self-attention", '''
    def cross_attention(x, memory, w_qkv, b_qkv, w_out, b_out, n_heads, memory_lengths=None):
        d_model = x.shape[-1]
        w_q, w_k, w_v = w_qkv.split(d_model)
        b_q, b_k, b_v = b_qkv.split(d_model)
        q = split_heads(F.linear(x, w_q, b_q), n_heads)
        k = split_heads(F.linear(memory, w_k, b_k), n_heads)
        v = split_heads(F.linear(memory, w_v, b_v), n_heads)
        T, S = x.shape[1], memory.shape[1]
        mask = torch.ones(T, S, dtype=torch.bool, device=x.device).tril()
        if memory_lengths is not None:
            mask = mask & padding_mask(memory_lengths, S, device=x.device)
        return F.linear(merge_heads(scaled_dot_product_attention(q, k, v, mask)), w_out, b_out)
''')

_wrong(EX6, "cross_ignores_memory_lengths", "never builds the padding mask: queries attend to memory's padding", '''
    def cross_attention(x, memory, w_qkv, b_qkv, w_out, b_out, n_heads, memory_lengths=None):
        d_model = x.shape[-1]
        w_q, w_k, w_v = w_qkv.split(d_model)
        b_q, b_k, b_v = b_qkv.split(d_model)
        q = split_heads(F.linear(x, w_q, b_q), n_heads)
        k = split_heads(F.linear(memory, w_k, b_k), n_heads)
        v = split_heads(F.linear(memory, w_v, b_v), n_heads)
        return F.linear(merge_heads(scaled_dot_product_attention(q, k, v)), w_out, b_out)
''')

_wrong(EX6, "cross_values_with_key_weights",
       "projects memory once with the key weights and uses it as keys and values", '''
    def cross_attention(x, memory, w_qkv, b_qkv, w_out, b_out, n_heads, memory_lengths=None):
        d_model = x.shape[-1]
        q = split_heads(F.linear(x, w_qkv[:d_model], b_qkv[:d_model]), n_heads)
        k = split_heads(F.linear(memory, w_qkv[d_model:2 * d_model], b_qkv[d_model:2 * d_model]), n_heads)
        mask = None if memory_lengths is None else padding_mask(memory_lengths, memory.shape[1], device=x.device)
        return F.linear(merge_heads(scaled_dot_product_attention(q, k, k, mask)), w_out, b_out)
''')

_right(EX6, "cross_fused_projection_of_both",
       "projects x and memory with the whole fused matrix, keeps the parts it needs",
       '''
    def cross_attention(x, memory, w_qkv, b_qkv, w_out, b_out, n_heads, memory_lengths=None):
        q, _, _ = F.linear(x, w_qkv, b_qkv).chunk(3, dim=-1)
        _, k, v = F.linear(memory, w_qkv, b_qkv).chunk(3, dim=-1)
        q, k, v = split_heads(q, n_heads), split_heads(k, n_heads), split_heads(v, n_heads)
        mask = None
        if memory_lengths is not None:
            mask = padding_mask(memory_lengths, memory.shape[1], device=x.device)
        return F.linear(merge_heads(scaled_dot_product_attention(q, k, v, mask)), w_out, b_out)
''')


# --- Beyond the arithmetic: inputs, fresh results, defaults, numerics, dtypes, randomness, repeated calls ----------
# Mistakes that give the right numbers on ordinary inputs, caught by the hidden tests that probe what else the specs
# promise.

_wrong(EX1, "attention_softmax_by_hand_overflows",
       "writes the softmax as exp / sum without subtracting the row maximum: large scores overflow to nan", '''
    def scaled_dot_product_attention(q, k, v, mask=None, dropout_p=0.0, training=True):
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        exp = torch.exp(scores)
        weights = exp / exp.sum(dim=-1, keepdim=True).clamp(min=1e-30)  # a row with nothing allowed: 0 / 1e-30 = 0
        weights = F.dropout(weights, p=dropout_p, training=training)
        return weights @ v
''')

_wrong(EX1, "attention_training_default_false", "changes the default to training=False, thinking dropout is opt-in", '''
    def scaled_dot_product_attention(q, k, v, mask=None, dropout_p=0.0, training=False):
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        if mask is not None:
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=-1)
        if mask is not None:
            weights = weights.masked_fill(~mask, 0.0)
        weights = F.dropout(weights, p=dropout_p, training=training)
        return weights @ v
''')

_wrong(EX1, "attention_dropout_mask_shared_over_heads",
       "draws one dropout mask per sequence and broadcasts it over the heads, like the padding mask", '''
    def scaled_dot_product_attention(q, k, v, mask=None, dropout_p=0.0, training=True):
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        if mask is not None:
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=-1)
        if mask is not None:
            weights = weights.masked_fill(~mask, 0.0)
        if training and dropout_p > 0:
            # one mask per sequence, shared by its heads: (B, 1, T, S)
            keep = torch.rand(*weights.shape[:-3], 1, *weights.shape[-2:], device=weights.device) >= dropout_p
            weights = weights * keep / (1 - dropout_p)
        return weights @ v
''')

_wrong(EX1, "attention_softmax_in_float64",
       "runs the softmax in float64 for stability and never casts back: float32 inputs give a float64 output", '''
    def scaled_dot_product_attention(q, k, v, mask=None, dropout_p=0.0, training=True):
        scores = (q @ k.transpose(-2, -1)).double() / math.sqrt(q.shape[-1])
        if mask is not None:
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=-1)
        if mask is not None:
            weights = weights.masked_fill(~mask, 0.0)
        weights = F.dropout(weights, p=dropout_p, training=training)
        return weights @ v.double()
''')

_wrong(EX2, "causal_mask_lru_cache", "caches the causal mask with functools.lru_cache: every caller shares one tensor", '''
    import functools


    @functools.lru_cache(maxsize=None)
    def causal_mask(T, device=None):
        return torch.ones(T, T, dtype=torch.bool, device=device).tril()
''' + _PADDING)

_wrong(EX2, "padding_mask_unsqueezes_lengths_in_place",
       "lengths.unsqueeze_(1): a lengths tensor given by the caller changes shape", _CAUSAL + '''
    def padding_mask(lengths, T, device=None):
        lengths = torch.as_tensor(lengths, device=device)
        lengths.unsqueeze_(1)  # (B, 1), to compare with the positions
        return (torch.arange(T, device=device) < lengths)[:, None, None, :]
''')

_wrong(EX3, "merge_heads_transpose_in_place", "x.transpose_(1, 2): the caller's tensor is transposed too", '''
    def split_heads(x, n_heads):
        B, T, d_model = x.shape
        return x.view(B, T, n_heads, d_model // n_heads).transpose(1, 2)


    def merge_heads(x):
        B, n_heads, T, d_head = x.shape
        x.transpose_(1, 2)  # (B, T, n_heads, d_head)
        return x.reshape(B, T, n_heads * d_head)
''')

_wrong(EX4, "mha_folds_scale_into_weights_in_place",
       "divides the query rows of w_qkv and b_qkv by sqrt(d_head) in place: the caller's weights change", '''
    def causal_self_attention(x, w_qkv, b_qkv, w_out, b_out, n_heads):
        B, T, d_model = x.shape
        d_head = d_model // n_heads
        w_qkv[:d_model] /= math.sqrt(d_head)  # fold the scale into the queries: the scores need no division
        b_qkv[:d_model] /= math.sqrt(d_head)
        q, k, v = (split_heads(t, n_heads) for t in F.linear(x, w_qkv, b_qkv).chunk(3, dim=-1))
        scores = (q @ k.transpose(-2, -1)).masked_fill(~causal_mask(T, device=x.device), float("-inf"))
        return F.linear(merge_heads(torch.softmax(scores, dim=-1) @ v), w_out, b_out)
''')

_wrong(EX4, "mha_mask_built_on_first_call",
       "builds the causal mask once, on the first call, and keeps it for every later sequence length", '''
    _mask = None


    def causal_self_attention(x, w_qkv, b_qkv, w_out, b_out, n_heads):
        global _mask
        if _mask is None:
            _mask = causal_mask(x.shape[1], device=x.device)
        q, k, v = (split_heads(t, n_heads) for t in F.linear(x, w_qkv, b_qkv).chunk(3, dim=-1))
        out = scaled_dot_product_attention(q, k, v, _mask)
        return F.linear(merge_heads(out), w_out, b_out)
''')

_right(EX1, "attention_stable_softmax_by_hand",
       "softmax by hand (row maximum subtracted), dropout with a Bernoulli mask of the weights' shape", '''
    def scaled_dot_product_attention(q, k, v, mask=None, dropout_p=0.0, training=True):
        scores = torch.einsum("...td,...sd->...ts", q, k) / q.shape[-1] ** 0.5
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        top = scores.amax(dim=-1, keepdim=True).clamp(min=torch.finfo(scores.dtype).min)  # -inf for a blocked row
        exp = torch.exp(scores - top)
        weights = exp / exp.sum(dim=-1, keepdim=True).clamp(min=torch.finfo(scores.dtype).tiny)
        if training and dropout_p > 0:
            keep = torch.rand_like(weights) >= dropout_p
            weights = weights * keep / (1 - dropout_p)
        return weights @ v
''')

_right(EX5, "gqa_query_groups_broadcast",
       "views the queries as (B, n_kv_heads, group, T, d_head) and lets each key/value head broadcast over its group",
       '''
    def grouped_query_attention(x, w_q, w_k, w_v, w_out, n_heads, n_kv_heads):
        B, T, d_model = x.shape
        d_head, group = d_model // n_heads, n_heads // n_kv_heads
        q = F.linear(x, w_q).view(B, T, n_kv_heads, group, d_head).permute(0, 2, 3, 1, 4)
        k = F.linear(x, w_k).view(B, T, n_kv_heads, 1, d_head).permute(0, 2, 3, 1, 4)  # one per group, broadcast
        v = F.linear(x, w_v).view(B, T, n_kv_heads, 1, d_head).permute(0, 2, 3, 1, 4)
        out = scaled_dot_product_attention(q, k, v, causal_mask(T, device=x.device))  # (B, n_kv, group, T, d_head)
        return F.linear(out.permute(0, 3, 1, 2, 4).reshape(B, T, d_model), w_out)
''')

# --- Large and small cases, caches and fresh masks: mistakes that only unusual inputs or repeated calls show -------

_wrong(EX1, "attention_fill_minus_1e4",
       "fills blocked scores with -1e4 and zeroes them after the softmax: below -1e4 the blocked keys take the weight",
       '''
    def scaled_dot_product_attention(q, k, v, mask=None, dropout_p=0.0, training=True):
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        if mask is not None:
            scores = scores.masked_fill(~mask, -1e4)  # exp(-1e4) is 0 anyway
        weights = torch.softmax(scores, dim=-1)
        if mask is not None:
            weights = weights.masked_fill(~mask, 0.0)  # rows with nothing allowed
        weights = F.dropout(weights, p=dropout_p, training=training)
        return weights @ v
''')

_wrong(EX2, "causal_mask_slice_of_cached_table",
       "builds one 1024 x 1024 mask once and returns slices of it: every caller shares it, and T > 1024 breaks",
       '''
    _CAUSAL = torch.ones(1024, 1024, dtype=torch.bool).tril()  # GPT-2's context, built once


    def causal_mask(T, device=None):
        return _CAUSAL[:T, :T].to(device)
''' + _PADDING)

_wrong(EX2, "padding_mask_cached_by_shape",
       "caches the padding mask under (batch size, T): another batch of the same shape gets the old lengths",
       _CAUSAL + '''
    _masks = {}


    def padding_mask(lengths, T, device=None):
        key = (len(lengths), T, str(device))
        if key not in _masks:
            lengths = torch.as_tensor(lengths, device=device)
            _masks[key] = (torch.arange(T, device=device) < lengths[:, None])[:, None, None, :]
        return _masks[key].clone()
''')

_wrong(EX4, "mha_softmax_by_hand_overflows",
       "writes the softmax as exp / sum without subtracting the row maximum: float32 scores above 88 give nan", '''
    def causal_self_attention(x, w_qkv, b_qkv, w_out, b_out, n_heads):
        B, T, d_model = x.shape
        q, k, v = (split_heads(t, n_heads) for t in F.linear(x, w_qkv, b_qkv).chunk(3, dim=-1))
        scores = q @ k.transpose(-2, -1) / math.sqrt(d_model // n_heads)
        scores = scores.masked_fill(~causal_mask(T, device=x.device), float("-inf"))
        exp = torch.exp(scores)
        out = exp / exp.sum(dim=-1, keepdim=True) @ v
        return F.linear(merge_heads(out), w_out, b_out)
''')

_wrong(EX5, "gqa_mask_skipped_for_short_sequences",
       "skips the causal mask when T <= 2, thinking one or two tokens have no future to hide", '''
    def grouped_query_attention(x, w_q, w_k, w_v, w_out, n_heads, n_kv_heads):
        T = x.shape[1]
        group = n_heads // n_kv_heads
        q = split_heads(F.linear(x, w_q), n_heads)
        k = split_heads(F.linear(x, w_k), n_kv_heads).repeat_interleave(group, dim=1)
        v = split_heads(F.linear(x, w_v), n_kv_heads).repeat_interleave(group, dim=1)
        mask = causal_mask(T, device=x.device) if T > 2 else None  # nothing much to hide in a couple of tokens
        return F.linear(merge_heads(scaled_dot_product_attention(q, k, v, mask)), w_out)
''')

_wrong(EX5, "gqa_softmax_by_hand_overflows",
       "writes the softmax as exp / sum without subtracting the row maximum: float32 scores above 88 give nan", '''
    def grouped_query_attention(x, w_q, w_k, w_v, w_out, n_heads, n_kv_heads):
        T = x.shape[1]
        group = n_heads // n_kv_heads
        q = split_heads(F.linear(x, w_q), n_heads)
        k = split_heads(F.linear(x, w_k), n_kv_heads).repeat_interleave(group, dim=1)
        v = split_heads(F.linear(x, w_v), n_kv_heads).repeat_interleave(group, dim=1)
        scores = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).masked_fill(~causal_mask(T, device=x.device),
                                                                                 float("-inf"))
        exp = scores.exp()
        return F.linear(merge_heads(exp / exp.sum(-1, keepdim=True) @ v), w_out)
''')

_wrong(EX6, "cross_padding_mask_cached_per_batch_size",
       "keeps the padding mask of the first call for each batch size: other lengths of that size reuse it", '''
    _padding = {}


    def cross_attention(x, memory, w_qkv, b_qkv, w_out, b_out, n_heads, memory_lengths=None):
        d_model = x.shape[-1]
        w_q, w_k, w_v = w_qkv.split(d_model)
        b_q, b_k, b_v = b_qkv.split(d_model)
        q = split_heads(F.linear(x, w_q, b_q), n_heads)
        k = split_heads(F.linear(memory, w_k, b_k), n_heads)
        v = split_heads(F.linear(memory, w_v, b_v), n_heads)
        mask = None
        if memory_lengths is not None:
            B = memory.shape[0]
            if B not in _padding:
                _padding[B] = padding_mask(memory_lengths, memory.shape[1], device=x.device)
            mask = _padding[B]
        return F.linear(merge_heads(scaled_dot_product_attention(q, k, v, mask)), w_out, b_out)
''')

_wrong(EX6, "cross_padding_mask_as_wide_as_longest",
       "builds the padding mask max(memory_lengths) wide: when every sequence is padded it no longer matches S", '''
    def cross_attention(x, memory, w_qkv, b_qkv, w_out, b_out, n_heads, memory_lengths=None):
        d_model = x.shape[-1]
        w_q, w_k, w_v = w_qkv.split(d_model)
        b_q, b_k, b_v = b_qkv.split(d_model)
        q = split_heads(F.linear(x, w_q, b_q), n_heads)
        k = split_heads(F.linear(memory, w_k, b_k), n_heads)
        v = split_heads(F.linear(memory, w_v, b_v), n_heads)
        mask = None
        if memory_lengths is not None:
            mask = padding_mask(memory_lengths, max(memory_lengths), device=x.device)  # the longest is not padded
        return F.linear(merge_heads(scaled_dot_product_attention(q, k, v, mask)), w_out, b_out)
''')

_wrong(EX6, "cross_lengths_truth_value",
       "tests `if memory_lengths:`: a tensor of lengths raises (its truth value is ambiguous)", '''
    def cross_attention(x, memory, w_qkv, b_qkv, w_out, b_out, n_heads, memory_lengths=None):
        d_model = x.shape[-1]
        w_q, w_k, w_v = w_qkv.split(d_model)
        b_q, b_k, b_v = b_qkv.split(d_model)
        q = split_heads(F.linear(x, w_q, b_q), n_heads)
        k = split_heads(F.linear(memory, w_k, b_k), n_heads)
        v = split_heads(F.linear(memory, w_v, b_v), n_heads)
        mask = padding_mask(memory_lengths, memory.shape[1], device=x.device) if memory_lengths else None
        return F.linear(merge_heads(scaled_dot_product_attention(q, k, v, mask)), w_out, b_out)
''')

_wrong(EX6, "cross_softmax_by_hand_overflows",
       "writes the softmax as exp / sum without subtracting the row maximum: float32 scores above 88 give nan", '''
    def cross_attention(x, memory, w_qkv, b_qkv, w_out, b_out, n_heads, memory_lengths=None):
        d_model = x.shape[-1]
        w_q, w_k, w_v = w_qkv.split(d_model)
        b_q, b_k, b_v = b_qkv.split(d_model)
        q = split_heads(F.linear(x, w_q, b_q), n_heads)
        k = split_heads(F.linear(memory, w_k, b_k), n_heads)
        v = split_heads(F.linear(memory, w_v, b_v), n_heads)
        scores = q @ k.transpose(-2, -1) / math.sqrt(d_model // n_heads)
        if memory_lengths is not None:
            scores = scores.masked_fill(~padding_mask(memory_lengths, memory.shape[1], device=x.device), -1e30)
        exp = scores.exp()
        return F.linear(merge_heads(exp / exp.sum(-1, keepdim=True) @ v), w_out, b_out)
''')

_right(EX6, "cross_lengths_compared_in_place_of_mask",
       "builds the key padding mask inline from the lengths (list or tensor) with torch.as_tensor", '''
    def cross_attention(x, memory, w_qkv, b_qkv, w_out, b_out, n_heads, memory_lengths=None):
        B, S, d_model = memory.shape
        q, k, v = (F.linear(t, w, b) for t, w, b in zip((x, memory, memory), w_qkv.chunk(3), b_qkv.chunk(3)))
        q, k, v = (split_heads(t, n_heads) for t in (q, k, v))
        mask = None
        if memory_lengths is not None:
            lengths = torch.as_tensor(memory_lengths, device=x.device).view(B, 1, 1, 1)
            mask = torch.arange(S, device=x.device) < lengths
        return F.linear(merge_heads(scaled_dot_product_attention(q, k, v, mask)), w_out, b_out)
''')

_wrong(EX2, "padding_mask_memoised",
       "memoises padding masks by (lengths, T, device): the same lengths get the same tensor back", _CAUSAL + '''
    _seen = {}


    def padding_mask(lengths, T, device=None):
        key = (tuple(int(n) for n in lengths), T, str(device))
        if key not in _seen:
            lengths = torch.as_tensor(lengths, device=device)
            _seen[key] = (torch.arange(T, device=device) < lengths[:, None])[:, None, None, :]
        return _seen[key]
''')

# --- Remembered state, fixed-size tables, rounding in place, arguments returned -----------------------------------
_wrong(EX3, "merge_heads_remembers_n_heads",
       "split_heads remembers n_heads for merge_heads: merging heads split with another count goes wrong", '''
    _last = {"n_heads": 1}


    def split_heads(x, n_heads):
        _last["n_heads"] = n_heads  # merge_heads needs it back
        B, T, d_model = x.shape
        return x.view(B, T, n_heads, d_model // n_heads).transpose(1, 2)


    def merge_heads(x):
        B, _, T, d_head = x.shape
        n_heads = _last["n_heads"]
        return x.transpose(1, 2).reshape(B, T, n_heads * d_head)
''')

_wrong(EX4, "mha_mask_table_1024",
       "slices the causal mask from a table built once for 1024 positions, GPT-2's context: longer inputs break", '''
    _MASK = torch.ones(1024, 1024, dtype=torch.bool).tril()  # GPT-2's context length


    def causal_self_attention(x, w_qkv, b_qkv, w_out, b_out, n_heads):
        T = x.shape[1]
        q, k, v = (split_heads(t, n_heads) for t in F.linear(x, w_qkv, b_qkv).chunk(3, dim=-1))
        out = scaled_dot_product_attention(q, k, v, _MASK[:T, :T].to(x.device))
        return F.linear(merge_heads(out), w_out, b_out)
''')

_wrong(EX4, "mha_folds_scale_and_restores",
       "scales the query rows of w_qkv and b_qkv in place and multiplies them back after: rounding changes them", '''
    def causal_self_attention(x, w_qkv, b_qkv, w_out, b_out, n_heads):
        B, T, d_model = x.shape
        scale = math.sqrt(d_model // n_heads)
        with torch.no_grad():
            w_qkv[:d_model] /= scale  # fold the 1/sqrt(d_head) into the queries...
            b_qkv[:d_model] /= scale
        q, k, v = (split_heads(t, n_heads) for t in F.linear(x, w_qkv, b_qkv).chunk(3, dim=-1))
        with torch.no_grad():
            w_qkv[:d_model] *= scale  # ...and put the weights back as they were
            b_qkv[:d_model] *= scale
        scores = (q @ k.transpose(-2, -1)).masked_fill(~causal_mask(T, device=x.device), float("-inf"))
        return F.linear(merge_heads(torch.softmax(scores, dim=-1) @ v), w_out, b_out)
''')

_wrong(EX1, "attention_one_key_returns_v",
       "with a single key every weight is 1, so it returns v itself: the caller's result and v are one tensor", '''
    def scaled_dot_product_attention(q, k, v, mask=None, dropout_p=0.0, training=True):
        if k.shape[-2] == 1 and q.shape[-2] == 1 and mask is None and not (training and dropout_p > 0):
            return v  # softmax over one key is 1: nothing to compute
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        if mask is not None:
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=-1)
        if mask is not None:
            weights = weights.masked_fill(~mask, 0.0)
        return F.dropout(weights, p=dropout_p, training=training) @ v
''')
