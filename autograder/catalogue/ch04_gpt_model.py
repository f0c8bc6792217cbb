"""Wrong implementations for Chapter 4 (The GPT model): the mistakes learners make with the pieces around attention.

Each source replaces a whole solution cell of ``solutions/ch04_gpt_model/gpt_model.ipynb`` and is written the way a
learner would write it. The exercises of this chapter do not call each other, so each mistake is judged by its own
exercise's hidden tests only.
"""

from . import Catalogue

_catalogue = Catalogue()
WRONG, ALTERNATIVES = _catalogue.wrong_implementations, _catalogue.alternatives
_wrong, _right = _catalogue.wrong, _catalogue.right


# --- Exercise 1: layer_norm -----------------------------------------------------------------------------------------
EX1 = "ex1_layer_norm"

_wrong(EX1, "layer_norm_unbiased_variance", "torch.var's default divides by d - 1 (Bessel's correction)", '''
    def layer_norm(x, weight, bias, eps=1e-5):
        mean = x.mean(dim=-1, keepdim=True)
        var = x.var(dim=-1, keepdim=True)
        return weight * (x - mean) / torch.sqrt(var + eps) + bias
''')

_wrong(EX1, "layer_norm_eps_outside_sqrt", "adds eps to the standard deviation instead of the variance", '''
    def layer_norm(x, weight, bias, eps=1e-5):
        mean = x.mean(dim=-1, keepdim=True)
        std = x.std(dim=-1, keepdim=True, unbiased=False)
        return weight * (x - mean) / (std + eps) + bias
''')

_wrong(EX1, "layer_norm_first_axis", "normalises over dim=0 (the batch) instead of the last axis", '''
    def layer_norm(x, weight, bias, eps=1e-5):
        mean = x.mean(dim=0, keepdim=True)
        var = ((x - mean) ** 2).mean(dim=0, keepdim=True)
        return weight * (x - mean) / torch.sqrt(var + eps) + bias
''')

_wrong(EX1, "layer_norm_scale_shift_swapped", "multiplies by bias and adds weight", '''
    def layer_norm(x, weight, bias, eps=1e-5):
        mean = x.mean(dim=-1, keepdim=True)
        var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
        return bias * (x - mean) / torch.sqrt(var + eps) + weight
''')

_wrong(EX1, "layer_norm_no_centring", "divides by the standard deviation but never subtracts the mean", '''
    def layer_norm(x, weight, bias, eps=1e-5):
        var = x.var(dim=-1, keepdim=True, unbiased=False)
        return weight * x / torch.sqrt(var + eps) + bias
''')

_wrong(EX1, "layer_norm_eps_ignored", "hard-codes eps = 1e-5 instead of using the argument", '''
    def layer_norm(x, weight, bias, eps=1e-5):
        mean = x.mean(dim=-1, keepdim=True)
        var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
        return weight * (x - mean) / torch.sqrt(var + 1e-5) + bias
''')

_right(EX1, "layer_norm_var_mean_rsqrt", "torch.var_mean with correction=0 and rsqrt", '''
    def layer_norm(x, weight, bias, eps=1e-5):
        var, mean = torch.var_mean(x, dim=-1, keepdim=True, correction=0)
        return (x - mean) * torch.rsqrt(var + eps) * weight + bias
''')

# --- Exercise 2: rms_norm -------------------------------------------------------------------------------------------
EX2 = "ex2_rms_norm"

_wrong(EX2, "rms_norm_subtracts_mean", "centres x first, as layer norm does", '''
    def rms_norm(x, weight, eps=1e-6):
        x = x - x.mean(dim=-1, keepdim=True)
        return weight * x / torch.sqrt((x ** 2).mean(dim=-1, keepdim=True) + eps)
''')

_wrong(EX2, "rms_norm_eps_outside_sqrt", "adds eps to the root mean square instead of the mean square", '''
    def rms_norm(x, weight, eps=1e-6):
        rms = torch.sqrt((x ** 2).mean(dim=-1, keepdim=True))
        return weight * x / (rms + eps)
''')

_wrong(EX2, "rms_norm_sum_not_mean", "divides by the vector's norm (sum of squares) instead of the root mean square", '''
    def rms_norm(x, weight, eps=1e-6):
        return weight * x / torch.sqrt((x ** 2).sum(dim=-1, keepdim=True) + eps)
''')

_wrong(EX2, "rms_norm_no_sqrt", "divides by the mean square itself, forgetting the square root", '''
    def rms_norm(x, weight, eps=1e-6):
        return weight * x / ((x ** 2).mean(dim=-1, keepdim=True) + eps)
''')

_wrong(EX2, "rms_norm_uses_std", "divides by the standard deviation (x.std) instead of the root mean square", '''
    def rms_norm(x, weight, eps=1e-6):
        return weight * x / torch.sqrt(x.var(dim=-1, keepdim=True) + eps)
''')

_right(EX2, "rms_norm_vector_norm", "torch.linalg.vector_norm divided by sqrt(d)", '''
    def rms_norm(x, weight, eps=1e-6):
        d = x.shape[-1]
        mean_square = torch.linalg.vector_norm(x, dim=-1, keepdim=True) ** 2 / d
        return x / (mean_square + eps).sqrt() * weight
''')

# --- Exercise 3: gelu -----------------------------------------------------------------------------------------------
EX3 = "ex3_gelu"

_wrong(EX3, "gelu_exact_erf", "the exact GELU with erf where the tanh approximation is asked", '''
    def gelu(x):
        return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))
''')

_wrong(EX3, "gelu_missing_cube", "drops the 0.044715 x^3 term", '''
    def gelu(x):
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * x))
''')

_wrong(EX3, "gelu_wrong_coefficient", "types 0.44715 for 0.044715", '''
    def gelu(x):
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.44715 * x ** 3)))
''')

_wrong(EX3, "gelu_sqrt_misplaced", "sqrt(2) / pi instead of sqrt(2 / pi)", '''
    def gelu(x):
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0) / math.pi * (x + 0.044715 * x ** 3)))
''')

_wrong(EX3, "gelu_sigmoid_approximation", "x * sigmoid(1.702 x), the other well-known approximation", '''
    def gelu(x):
        return x * torch.sigmoid(1.702 * x)
''')

_right(EX3, "gelu_via_sigmoid_identity", "0.5 (1 + tanh(z)) written as sigmoid(2 z)", '''
    def gelu(x):
        z = (2 / math.pi) ** 0.5 * (x + 0.044715 * x.pow(3))
        return x * torch.sigmoid(2 * z)
''')

# --- Exercise 4: transformer_block ----------------------------------------------------------------------------------
EX4 = "ex4_transformer_block"

_wrong(EX4, "block_post_norm", "post-norm, as in the 2017 transformer: norm(x + sublayer(x))", '''
    def transformer_block(x, attention, feed_forward, norm1, norm2):
        x = norm1(x + attention(x))
        return norm2(x + feed_forward(x))
''')

_wrong(EX4, "block_residual_from_normalised", "adds the sub-layer's output to the normalised tensor", '''
    def transformer_block(x, attention, feed_forward, norm1, norm2):
        h = norm1(x)
        h = h + attention(h)
        out = norm2(h)
        return out + feed_forward(out)
''')

_wrong(EX4, "block_missing_second_residual", "returns feed_forward(norm2(h)) without adding h", '''
    def transformer_block(x, attention, feed_forward, norm1, norm2):
        h = x + attention(norm1(x))
        return feed_forward(norm2(h))
''')

_wrong(EX4, "block_norm1_twice", "uses norm1 before both sub-layers (a copy-paste slip)", '''
    def transformer_block(x, attention, feed_forward, norm1, norm2):
        x = x + attention(norm1(x))
        return x + feed_forward(norm1(x))
''')

_wrong(EX4, "block_parallel", "runs attention and feed-forward side by side on x (GPT-J's parallel block)", '''
    def transformer_block(x, attention, feed_forward, norm1, norm2):
        return x + attention(norm1(x)) + feed_forward(norm2(x))
''')

_right(EX4, "block_with_loop", "loops over the (norm, sub-layer) pairs", '''
    def transformer_block(x, attention, feed_forward, norm1, norm2):
        for norm, sublayer in ((norm1, attention), (norm2, feed_forward)):
            residual = x
            x = sublayer(norm(x))
            x = x + residual
        return x
''')

# --- Exercise 5: gpt_parameter_count --------------------------------------------------------------------------------
EX5 = "ex5_parameter_count"

_wrong(EX5, "count_without_biases", "counts the weight matrices of the linear layers but none of their biases", '''
    def gpt_parameter_count(vocab_size, context_length, d_model, n_layers, tie_weights=True):
        embeddings = (vocab_size + context_length) * d_model
        block = 4 * d_model + 3 * d_model * d_model + d_model * d_model + 8 * d_model * d_model
        head = 0 if tie_weights else vocab_size * d_model
        return embeddings + n_layers * block + 2 * d_model + head
''')

_wrong(EX5, "count_without_positions", "forgets the learned position embedding", '''
    def gpt_parameter_count(vocab_size, context_length, d_model, n_layers, tie_weights=True):
        block = 12 * d_model * d_model + 13 * d_model
        head = 0 if tie_weights else vocab_size * d_model
        return vocab_size * d_model + n_layers * block + 2 * d_model + head
''')

_wrong(EX5, "count_without_final_norm", "forgets the LayerNorm after the last block", '''
    def gpt_parameter_count(vocab_size, context_length, d_model, n_layers, tie_weights=True):
        block = 12 * d_model * d_model + 13 * d_model
        head = 0 if tie_weights else vocab_size * d_model
        return (vocab_size + context_length) * d_model + n_layers * block + head
''')

_wrong(EX5, "count_tied_head_twice", "adds the output head even when it is the tied token embedding", '''
    def gpt_parameter_count(vocab_size, context_length, d_model, n_layers, tie_weights=True):
        block = 12 * d_model * d_model + 13 * d_model
        return (vocab_size + context_length) * d_model + n_layers * block + 2 * d_model + vocab_size * d_model
''')

_wrong(EX5, "count_head_with_bias", "gives the untied output head a bias of vocab_size numbers", '''
    def gpt_parameter_count(vocab_size, context_length, d_model, n_layers, tie_weights=True):
        block = 12 * d_model * d_model + 13 * d_model
        head = 0 if tie_weights else vocab_size * d_model + vocab_size
        return (vocab_size + context_length) * d_model + n_layers * block + 2 * d_model + head
''')

_wrong(EX5, "count_layer_norm_scale_only", "counts d_model numbers per LayerNorm, forgetting the shift", '''
    def gpt_parameter_count(vocab_size, context_length, d_model, n_layers, tie_weights=True):
        block = 12 * d_model * d_model + 11 * d_model
        head = 0 if tie_weights else vocab_size * d_model
        return (vocab_size + context_length) * d_model + n_layers * block + d_model + head
''')

_right(EX5, "count_by_layer_shapes", "sums the sizes of a list of (weight, bias) shapes", '''
    def gpt_parameter_count(vocab_size, context_length, d_model, n_layers, tie_weights=True):
        d = d_model
        per_block = [(d,), (d,), (d, 3 * d), (3 * d,), (d, d), (d,), (d,), (d,), (d, 4 * d), (4 * d,), (4 * d, d), (d,)]
        shapes = [(vocab_size, d), (context_length, d)] + per_block * n_layers + [(d,), (d,)]
        if not tie_weights:
            shapes.append((vocab_size, d))
        total = 0
        for shape in shapes:
            size = 1
            for n in shape:
                size *= n
            total += size
        return total
''')

# --- Exercise 6: apply_rope -----------------------------------------------------------------------------------------
EX6 = "ex6_rope"

_wrong(EX6, "rope_interleaved_pairs", "rotates neighbouring pairs (x[0], x[1]), ... as in the RoPE paper", '''
    def apply_rope(x, positions=None, base=10000.0):
        T, d_head = x.shape[-2], x.shape[-1]
        if positions is None:
            positions = torch.arange(T, device=x.device)
        theta = base ** (-torch.arange(0, d_head, 2, dtype=x.dtype, device=x.device) / d_head)
        angles = positions.to(x.dtype)[:, None] * theta
        cos, sin = angles.cos(), angles.sin()
        even, odd = x[..., 0::2], x[..., 1::2]
        return torch.stack((even * cos - odd * sin, odd * cos + even * sin), dim=-1).flatten(-2)
''')

_wrong(EX6, "rope_in_place", "writes the rotated halves back into x: the caller's tensor changes", '''
    def apply_rope(x, positions=None, base=10000.0):
        T, d_head = x.shape[-2], x.shape[-1]
        half = d_head // 2
        if positions is None:
            positions = torch.arange(T, device=x.device)
        positions = torch.as_tensor(positions, device=x.device).to(x.dtype)
        theta = base ** (-torch.arange(0, d_head, 2, dtype=x.dtype, device=x.device) / d_head)
        angles = positions[:, None] * theta[None, :]
        cos, sin = angles.cos(), angles.sin()
        x1, x2 = x[..., :half].clone(), x[..., half:].clone()
        x[..., :half] = x1 * cos - x2 * sin
        x[..., half:] = x2 * cos + x1 * sin
        return x
''')

_wrong(EX6, "rope_positions_from_one", "numbers the positions 1..T by default", '''
    def apply_rope(x, positions=None, base=10000.0):
        T, d_head = x.shape[-2], x.shape[-1]
        half = d_head // 2
        if positions is None:
            positions = torch.arange(1, T + 1, device=x.device)
        theta = base ** (-torch.arange(0, d_head, 2, dtype=x.dtype, device=x.device) / d_head)
        angles = positions.to(x.dtype)[:, None] * theta
        cos, sin = angles.cos(), angles.sin()
        x1, x2 = x[..., :half], x[..., half:]
        return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)
''')

_wrong(EX6, "rope_sin_cos_swapped", "multiplies x by sin and the rotated half by cos", '''
    def apply_rope(x, positions=None, base=10000.0):
        T, d_head = x.shape[-2], x.shape[-1]
        half = d_head // 2
        if positions is None:
            positions = torch.arange(T, device=x.device)
        theta = base ** (-torch.arange(0, d_head, 2, dtype=x.dtype, device=x.device) / d_head)
        angles = positions.to(x.dtype)[:, None] * theta
        cos, sin = angles.cos(), angles.sin()
        x1, x2 = x[..., :half], x[..., half:]
        return torch.cat((x1 * sin - x2 * cos, x2 * sin + x1 * cos), dim=-1)
''')

_wrong(EX6, "rope_rotates_backwards", "rotate_half as cat(x2, -x1): every pair turns the wrong way", '''
    def apply_rope(x, positions=None, base=10000.0):
        T, d_head = x.shape[-2], x.shape[-1]
        half = d_head // 2
        if positions is None:
            positions = torch.arange(T, device=x.device)
        theta = base ** (-torch.arange(0, d_head, 2, dtype=x.dtype, device=x.device) / d_head)
        angles = positions.to(x.dtype)[:, None] * theta
        angles = torch.cat((angles, angles), dim=-1)
        rotated = torch.cat((x[..., half:], -x[..., :half]), dim=-1)
        return x * angles.cos() + rotated * angles.sin()
''')

_wrong(EX6, "rope_frequency_exponent", "theta_i = base ** (-i / d_head): forgets the factor 2", '''
    def apply_rope(x, positions=None, base=10000.0):
        T, d_head = x.shape[-2], x.shape[-1]
        half = d_head // 2
        if positions is None:
            positions = torch.arange(T, device=x.device)
        theta = base ** (-torch.arange(half, dtype=x.dtype, device=x.device) / d_head)
        angles = positions.to(x.dtype)[:, None] * theta
        cos, sin = angles.cos(), angles.sin()
        x1, x2 = x[..., :half], x[..., half:]
        return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)
''')

_wrong(EX6, "rope_ignores_positions", "always uses 0..T-1, ignoring the positions it is given", '''
    def apply_rope(x, positions=None, base=10000.0):
        T, d_head = x.shape[-2], x.shape[-1]
        half = d_head // 2
        positions = torch.arange(T, dtype=x.dtype, device=x.device)
        theta = base ** (-torch.arange(0, d_head, 2, dtype=x.dtype, device=x.device) / d_head)
        angles = positions[:, None] * theta
        cos, sin = angles.cos(), angles.sin()
        x1, x2 = x[..., :half], x[..., half:]
        return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)
''')

_right(EX6, "rope_complex_numbers", "views (first half, second half) as complex numbers and multiplies by e^(i angle)", '''
    def apply_rope(x, positions=None, base=10000.0):
        T, d_head = x.shape[-2], x.shape[-1]
        half = d_head // 2
        if positions is None:
            positions = range(T)
        positions = torch.tensor(list(positions), dtype=x.dtype, device=x.device) if not torch.is_tensor(positions) \\
            else positions.to(x.device, x.dtype)
        i = torch.arange(half, dtype=x.dtype, device=x.device)
        angles = torch.outer(positions, 1.0 / base ** (2 * i / d_head))
        z = torch.complex(x[..., :half], x[..., half:]) * torch.polar(torch.ones_like(angles), angles)
        return torch.cat((z.real, z.imag), dim=-1)
''')

# --- Exercise 7: gpt2_block_weights ---------------------------------------------------------------------------------
EX7 = "ex7_load_gpt2_block"


def _loader(attn_out: str = 'hf["attn.c_proj.weight"].T', order: str = "w_q, w_k, w_v",
            up: str = 'hf["mlp.c_fc.weight"].T', down: str = 'hf["mlp.c_proj.weight"].T',
            biases: str = "b_q, b_k, b_v = hf[\"attn.c_attn.bias\"].split(d_model)",
            norm1: str = "ln_1", norm2: str = "ln_2") -> str:
    return f'''
    def gpt2_block_weights(hf):
        d_model = hf["ln_1.weight"].shape[0]
        {order} = hf["attn.c_attn.weight"].split(d_model, dim=1)
        {biases}
        return {{
            "norm1.weight": hf["{norm1}.weight"], "norm1.bias": hf["{norm1}.bias"],
            "attn.q.weight": w_q.T, "attn.q.bias": b_q,
            "attn.k.weight": w_k.T, "attn.k.bias": b_k,
            "attn.v.weight": w_v.T, "attn.v.bias": b_v,
            "attn.out.weight": {attn_out}, "attn.out.bias": hf["attn.c_proj.bias"],
            "norm2.weight": hf["{norm2}.weight"], "norm2.bias": hf["{norm2}.bias"],
            "ff.up.weight": {up}, "ff.up.bias": hf["mlp.c_fc.bias"],
            "ff.down.weight": {down}, "ff.down.bias": hf["mlp.c_proj.bias"],
        }}
'''


_wrong(EX7, "load_attn_proj_not_transposed",
       "transposes only where the shapes force it: the square attention c_proj stays (in, out)",
       _loader(attn_out='hf["attn.c_proj.weight"]'))

_wrong(EX7, "load_qkv_wrong_order", "unpacks c_attn's column blocks as keys, queries, values",
       _loader(order="w_k, w_q, w_v"))

_wrong(EX7, "load_mlp_view_not_transpose", "reshapes the Conv1D weights of the MLP with view instead of transposing",
       _loader(up='hf["mlp.c_fc.weight"].reshape(4 * d_model, d_model)',
               down='hf["mlp.c_proj.weight"].reshape(d_model, 4 * d_model)'))

_wrong(EX7, "load_qkv_biases_zero", "fills the query/key/value biases with zeros instead of cutting c_attn.bias",
       _loader(biases="b_q = b_k = b_v = torch.zeros(d_model, dtype=hf[\"ln_1.weight\"].dtype, "
                      "device=hf[\"ln_1.weight\"].device)"))

_wrong(EX7, "load_norms_swapped", "loads ln_2 into norm1 and ln_1 into norm2", _loader(norm1="ln_2", norm2="ln_1"))

_wrong(EX7, "load_qkv_split_rows", "transposes c_attn first, then cuts it by rows with view(d_model, 3, d_model)", '''
    def gpt2_block_weights(hf):
        d_model = hf["ln_1.weight"].shape[0]
        fused = hf["attn.c_attn.weight"].T.reshape(d_model, 3, d_model)
        w_q, w_k, w_v = fused[:, 0], fused[:, 1], fused[:, 2]
        b_q, b_k, b_v = hf["attn.c_attn.bias"].split(d_model)
        return {
            "norm1.weight": hf["ln_1.weight"], "norm1.bias": hf["ln_1.bias"],
            "attn.q.weight": w_q, "attn.q.bias": b_q,
            "attn.k.weight": w_k, "attn.k.bias": b_k,
            "attn.v.weight": w_v, "attn.v.bias": b_v,
            "attn.out.weight": hf["attn.c_proj.weight"].T, "attn.out.bias": hf["attn.c_proj.bias"],
            "norm2.weight": hf["ln_2.weight"], "norm2.bias": hf["ln_2.bias"],
            "ff.up.weight": hf["mlp.c_fc.weight"].T, "ff.up.bias": hf["mlp.c_fc.bias"],
            "ff.down.weight": hf["mlp.c_proj.weight"].T, "ff.down.bias": hf["mlp.c_proj.bias"],
        }
''')

_right(EX7, "load_by_renaming_table", "a renaming table, then transposes and chunks; contiguous copies", '''
    def gpt2_block_weights(hf):
        renames = {"norm1": "ln_1", "norm2": "ln_2", "attn.out": "attn.c_proj", "ff.up": "mlp.c_fc",
                   "ff.down": "mlp.c_proj"}
        out = {}
        for ours, theirs in renames.items():
            weight = hf[theirs + ".weight"]
            out[ours + ".weight"] = weight if weight.dim() == 1 else weight.t().contiguous()
            out[ours + ".bias"] = hf[theirs + ".bias"].clone()
        weights = hf["attn.c_attn.weight"].t().chunk(3, dim=0)
        biases = hf["attn.c_attn.bias"].chunk(3)
        for name, w, b in zip("qkv", weights, biases):
            out[f"attn.{name}.weight"] = w.contiguous()
            out[f"attn.{name}.bias"] = b.clone()
        return out
''')


# --- Beyond the arithmetic: inputs, fresh results, defaults, numerics, types, repeated calls ----------------------
# Mistakes that give the right numbers on ordinary inputs, caught by the hidden tests that probe what else the specs
# promise.

_wrong(EX1, "layer_norm_one_pass_variance",
       "var = mean(x**2) - mean**2, the textbook formula: cancellation ruins it for a large offset", '''
    def layer_norm(x, weight, bias, eps=1e-5):
        mean = x.mean(dim=-1, keepdim=True)
        var = (x * x).mean(dim=-1, keepdim=True) - mean ** 2
        return weight * (x - mean) / torch.sqrt(var + eps) + bias
''')

_wrong(EX1, "layer_norm_centres_in_place", "x -= mean: the caller's x is centred too", '''
    def layer_norm(x, weight, bias, eps=1e-5):
        x -= x.mean(dim=-1, keepdim=True)
        var = (x ** 2).mean(dim=-1, keepdim=True)
        return weight * x / torch.sqrt(var + eps) + bias
''')

_wrong(EX2, "rms_norm_default_eps_from_layer_norm", "copies the signature of layer_norm: eps defaults to 1e-5", '''
    def rms_norm(x, weight, eps=1e-5):
        return weight * x / torch.sqrt((x ** 2).mean(dim=-1, keepdim=True) + eps)
''')

_wrong(EX2, "rms_norm_scales_x_in_place", "x /= rms, then weight * x: the caller's x is normalised too", '''
    def rms_norm(x, weight, eps=1e-6):
        x /= torch.sqrt((x ** 2).mean(dim=-1, keepdim=True) + eps)
        return weight * x
''')

_wrong(EX3, "gelu_tanh_from_exp", "writes tanh with exponentials: e^z overflows to inf / inf = nan for large x", '''
    def gelu(x):
        z = math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)
        tanh = (torch.exp(z) - torch.exp(-z)) / (torch.exp(z) + torch.exp(-z))
        return 0.5 * x * (1 + tanh)
''')

_wrong(EX4, "block_residual_in_place", "x += ...: the residual is added into the caller's tensor, which is returned", '''
    def transformer_block(x, attention, feed_forward, norm1, norm2):
        x += attention(norm1(x))
        x += feed_forward(norm2(x))
        return x
''')

_wrong(EX5, "count_tensor_of_shapes", "sums torch.tensor(shape).prod() over the shapes: a 0-d tensor, not an int", '''
    def gpt_parameter_count(vocab_size, context_length, d_model, n_layers, tie_weights=True):
        d = d_model
        shapes = [(vocab_size, d), (context_length, d), (d,), (d,)]  # embeddings, final LayerNorm
        block = [(d,), (d,), (d, 3 * d), (3 * d,), (d, d), (d,), (d,), (d,), (d, 4 * d), (4 * d,), (4 * d, d), (d,)]
        shapes += block * n_layers
        if not tie_weights:
            shapes.append((vocab_size, d))
        return sum(torch.tensor(shape).prod() for shape in shapes)
''')

_wrong(EX6, "rope_frequencies_cached_per_d_head",
       "caches the frequencies by d_head alone: a later call with another base reuses the first base's", '''
    _frequencies = {}


    def apply_rope(x, positions=None, base=10000.0):
        T, d_head = x.shape[-2], x.shape[-1]
        half = d_head // 2
        if d_head not in _frequencies:
            _frequencies[d_head] = base ** (-torch.arange(0, d_head, 2, dtype=torch.float64) / d_head)
        theta = _frequencies[d_head].to(x.device, x.dtype)
        if positions is None:
            positions = torch.arange(T, device=x.device)
        angles = positions.to(x.dtype)[:, None] * theta[None, :]
        cos, sin = angles.cos(), angles.sin()
        x1, x2 = x[..., :half], x[..., half:]
        return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)
''')

_wrong(EX7, "load_pops_mask_from_given_dict", "hf.pop('attn.bias') to drop the mask: the caller's dict loses a key",
       _loader().replace('d_model = hf["ln_1.weight"]',
                         'hf.pop("attn.bias", None)  # the causal mask of older checkpoints: not a weight\n'
                         '        d_model = hf["ln_1.weight"]'))

_wrong(EX7, "load_fills_module_level_dict", "fills a dict defined outside the function: every call returns that one",
       '''
    block_weights = {}


    def gpt2_block_weights(hf):
        d_model = hf["ln_1.weight"].shape[0]
        w_q, w_k, w_v = hf["attn.c_attn.weight"].split(d_model, dim=1)
        b_q, b_k, b_v = hf["attn.c_attn.bias"].split(d_model)
        for name, value in [("norm1.weight", hf["ln_1.weight"]), ("norm1.bias", hf["ln_1.bias"]),
                            ("attn.q.weight", w_q.T), ("attn.q.bias", b_q), ("attn.k.weight", w_k.T),
                            ("attn.k.bias", b_k), ("attn.v.weight", w_v.T), ("attn.v.bias", b_v),
                            ("attn.out.weight", hf["attn.c_proj.weight"].T), ("attn.out.bias", hf["attn.c_proj.bias"]),
                            ("norm2.weight", hf["ln_2.weight"]), ("norm2.bias", hf["ln_2.bias"]),
                            ("ff.up.weight", hf["mlp.c_fc.weight"].T), ("ff.up.bias", hf["mlp.c_fc.bias"]),
                            ("ff.down.weight", hf["mlp.c_proj.weight"].T), ("ff.down.bias", hf["mlp.c_proj.bias"])]:
            block_weights[name] = value
        return block_weights
''')

_right(EX6, "rope_frequencies_cached_full_key",
       "caches the frequencies keyed on everything they depend on (d_head, base, dtype, device); rotate_half form", '''
    _frequencies = {}


    def apply_rope(x, positions=None, base=10000.0):
        T, d_head = x.shape[-2], x.shape[-1]
        key = (d_head, float(base), x.dtype, x.device)
        if key not in _frequencies:
            _frequencies[key] = base ** (-torch.arange(0, d_head, 2, dtype=x.dtype, device=x.device) / d_head)
        if positions is None:
            positions = torch.arange(T, device=x.device)
        angles = positions.to(x.dtype)[:, None] * _frequencies[key]
        angles = torch.cat((angles, angles), dim=-1)
        rotated = torch.cat((-x[..., d_head // 2:], x[..., :d_head // 2]), dim=-1)
        return x * angles.cos() + rotated * angles.sin()
''')

_right(EX1, "layer_norm_two_pass_centred", "centres once, keeps the centred tensor, rsqrt of the biased variance", '''
    def layer_norm(x, weight, bias, eps=1e-5):
        centred = x - x.mean(dim=-1, keepdim=True)
        return centred * torch.rsqrt(centred.pow(2).mean(dim=-1, keepdim=True) + eps) * weight + bias
''')

# --- Training: gradients through the block ---------------------------------------------------------------------------

_wrong(EX4, "block_under_no_grad", "wraps the block in torch.no_grad(), copying the test cell: nothing can train", '''
    def transformer_block(x, attention, feed_forward, norm1, norm2):
        with torch.no_grad():
            h = x + attention(norm1(x))
            return h + feed_forward(norm2(h))
''')

_wrong(EX4, "block_adds_residual_in_place",
       "h = attention(norm1(x)); h += x: when a sub-layer hands back its input, x itself changes", '''
    def transformer_block(x, attention, feed_forward, norm1, norm2):
        h = attention(norm1(x))
        h += x
        out = feed_forward(norm2(h))
        out += h
        return out
''')

_wrong(EX4, "block_detaches_residual", "adds x.detach() as the residual, so no gradient flows along the shortcut", '''
    def transformer_block(x, attention, feed_forward, norm1, norm2):
        h = x.detach() + attention(norm1(x))
        return h + feed_forward(norm2(h))
''')

# --- Arguments changed or returned on special cases: one vector, nothing to compute, nothing to rotate ------------
_wrong(EX1, "layer_norm_one_vector_in_place",
       "for a single vector scales and shifts in place, weight.mul_(x_hat).add_(bias): the caller's weight changes", '''
    def layer_norm(x, weight, bias, eps=1e-5):
        mean = x.mean(dim=-1, keepdim=True)
        var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
        x_hat = (x - mean) / torch.sqrt(var + eps)
        if x_hat.shape == weight.shape:  # one vector: no need for another tensor
            return weight.mul_(x_hat).add_(bias)
        return weight * x_hat + bias
''')

_wrong(EX3, "gelu_empty_returns_x", "returns x itself when it is empty, as there is nothing to compute", '''
    def gelu(x):
        if x.numel() == 0:
            return x
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))
''')

_wrong(EX6, "rope_one_position_returns_x",
       "returns x itself for a single position with no positions given: position 0 rotates by 0", '''
    def apply_rope(x, positions=None, base=10000.0):
        T, d_head = x.shape[-2], x.shape[-1]
        if positions is None:
            if T == 1:
                return x  # position 0: the angle is 0, nothing turns
            positions = torch.arange(T, device=x.device)
        positions = torch.as_tensor(positions, device=x.device).to(x.dtype)
        half = d_head // 2
        theta = base ** (-torch.arange(0, d_head, 2, dtype=x.dtype, device=x.device) / d_head)
        angles = positions[:, None] * theta[None, :]
        cos, sin = angles.cos(), angles.sin()
        x1, x2 = x[..., :half], x[..., half:]
        return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)
''')

_wrong(EX2, "rms_norm_empty_returns_x", "returns x itself when it is empty: there is no vector to normalise", '''
    def rms_norm(x, weight, eps=1e-6):
        if x.numel() == 0:
            return x
        return weight * x * torch.rsqrt((x * x).mean(dim=-1, keepdim=True) + eps)
''')
