"""Wrong implementations for Chapter 2 (Embeddings and data): the mistakes learners make with embedding tables,
sliding windows, batching, position encodings and similarity search.

Each source replaces a whole solution cell of ``solutions/ch02_embeddings/embeddings.ipynb`` and is written the way a
learner would write it; the other exercises keep the reference solution. Mistakes that only show on a GPU (a tensor
created on the CPU) are left out: CI has no GPU to prove that the hidden tests catch them.
"""


from . import Catalogue, template

_catalogue = Catalogue()
WRONG, ALTERNATIVES = _catalogue.wrong_implementations, _catalogue.alternatives
_wrong, _right = _catalogue.wrong, _catalogue.right


# --- Exercise 1: one_hot_embed ----------------------------------------------------------------------------------
EX1 = "ex1_one_hot_embed"

_wrong(EX1, "one_hot_classes_from_ids", "F.one_hot(ids) guesses the number of classes from the largest id present", '''
    def one_hot_embed(ids, weight):
        return F.one_hot(ids).to(weight.dtype) @ weight
''')

_wrong(EX1, "one_hot_always_float32", ".float() on the one-hot vectors: fails for a float64 table", '''
    def one_hot_embed(ids, weight):
        return F.one_hot(ids, num_classes=weight.shape[0]).float() @ weight
''')

_wrong(EX1, "one_hot_detached_weight", "multiplies by weight.detach(), so no gradient reaches the table", '''
    def one_hot_embed(ids, weight):
        one_hot = F.one_hot(ids, num_classes=weight.shape[0]).to(weight.dtype)
        return one_hot @ weight.detach()
''')

_wrong(EX1, "one_hot_flattened", "flattens the ids and never restores their shape: (batch*T, d_model)", '''
    def one_hot_embed(ids, weight):
        one_hot = F.one_hot(ids.reshape(-1), num_classes=weight.shape[0]).to(weight.dtype)
        return one_hot @ weight
''')

_wrong(EX1, "one_hot_classes_d_model", "num_classes=weight.shape[1], the width instead of the vocabulary size", '''
    def one_hot_embed(ids, weight):
        one_hot = F.one_hot(ids, num_classes=weight.shape[1]).to(weight.dtype)
        return one_hot @ weight
''')

_wrong(EX1, "one_hot_checks_max_id", "checks ids.max() against the vocabulary: fails on an empty tensor of ids", '''
    def one_hot_embed(ids, weight):
        if ids.max() >= weight.shape[0]:
            raise IndexError("an id is outside the embedding table")
        one_hot = F.one_hot(ids, num_classes=weight.shape[0]).to(weight.dtype)
        return one_hot @ weight
''')

_wrong(EX1, "one_hot_computes_in_float32", "multiplies in float32 and casts back: a float64 table loses precision",
       '''
    def one_hot_embed(ids, weight):
        one_hot = F.one_hot(ids, num_classes=weight.shape[0]).float()
        return (one_hot @ weight.float()).to(weight.dtype)
''')

_right(EX1, "one_hot_by_comparison", "builds the one-hot vectors by comparing ids with arange(vocab_size)", '''
    def one_hot_embed(ids, weight):
        one_hot = ids[..., None] == torch.arange(weight.shape[0], device=ids.device)
        return one_hot.to(weight.dtype) @ weight
''')

_right(EX1, "one_hot_eye_rows", "takes rows of an identity matrix as the one-hot vectors", '''
    def one_hot_embed(ids, weight):
        eye = torch.eye(weight.shape[0], dtype=weight.dtype, device=weight.device)
        return eye[ids] @ weight
''')

# --- Exercise 2: NextTokenWindows -------------------------------------------------------------------------------
EX2 = "ex2_next_token_windows"

# The reference dataset; each wrong version below changes one piece of it (the keyword argument of _windows).
_WINDOWS = '''
    class NextTokenWindows(Dataset):
        def __init__(self, ids, context_length, stride):
            self.ids = torch.as_tensor(ids, dtype=torch.long)
            if stride < 1:
                raise ValueError("stride must be at least 1")
            if {too_short}:
                raise ValueError("too few ids for one window")
            self.context_length = context_length
            self.stride = stride

        def __len__(self):
            return {length}

        def __getitem__(self, i):
            if i >= len(self):
                raise IndexError(i)
            start = {start}
            x = self.ids[start:start + self.context_length]
            y = self.ids[{y_slice}]
            return {result}
'''
_WINDOWS_OK = dict(too_short="len(self.ids) < context_length + 1",
                   length="(len(self.ids) - self.context_length - 1) // self.stride + 1",
                   start="i * self.stride", y_slice="start + 1:start + self.context_length + 1", result="x, y")


_windows = template(_WINDOWS, **_WINDOWS_OK)


_wrong(EX2, "windows_len_off_by_one", "counts windows as (n - context_length) // stride + 1: the last y is too short",
       _windows(length="(len(self.ids) - self.context_length) // self.stride + 1"))
_wrong(EX2, "windows_last_dropped", "(n - context_length - 1) // stride windows: forgets the window at start 0",
       _windows(length="(len(self.ids) - self.context_length - 1) // self.stride"))
_wrong(EX2, "windows_len_ignores_stride", "len(ids) // context_length windows, whatever the stride",
       _windows(length="len(self.ids) // self.context_length"))
_wrong(EX2, "windows_start_ignores_stride", "window i starts at i instead of i * stride", _windows(start="i"))
_wrong(EX2, "windows_targets_not_shifted", "y is the same slice as x: nothing to predict",
       _windows(y_slice="start:start + self.context_length"))
_wrong(EX2, "windows_inputs_targets_swapped", "returns (y, x)", _windows(result="y, x"))
_wrong(EX2, "windows_short_input_accepted", "checks len(ids) < context_length, so a window without a target passes",
       _windows(too_short="len(self.ids) < context_length"))
_wrong(EX2, "windows_returns_lists", "returns Python lists instead of tensors",
       _windows(result="x.tolist(), y.tolist()"))

_wrong(EX2, "windows_keeps_tensor_dtype", "converts only a list: a tensor of ids keeps its dtype (int32, say)",
       _windows().replace("torch.as_tensor(ids, dtype=torch.long)",
                          "ids if isinstance(ids, torch.Tensor) else torch.tensor(ids)"))
_wrong(EX2, "windows_stacked_pair", "returns torch.stack([x, y]), one (2, context_length) tensor, not a tuple",
       _windows(result="torch.stack([x, y])"))

_wrong(EX2, "windows_class_level_list", "windows = [] in the class body: one list shared by every dataset", '''
    class NextTokenWindows(Dataset):
        windows = []  # the (x, y) pairs

        def __init__(self, ids, context_length, stride):
            ids = torch.as_tensor(ids, dtype=torch.long)
            if stride < 1:
                raise ValueError("stride must be at least 1")
            if len(ids) < context_length + 1:
                raise ValueError("too few ids for one window")
            for start in range(0, len(ids) - context_length, stride):
                self.windows.append((ids[start:start + context_length], ids[start + 1:start + context_length + 1]))

        def __len__(self):
            return len(self.windows)

        def __getitem__(self, i):
            return self.windows[i]
''')

_wrong(EX2, "windows_no_index_error", "no IndexError past the end: dataset[len] returns empty tensors", '''
    class NextTokenWindows(Dataset):
        def __init__(self, ids, context_length, stride):
            self.ids = torch.as_tensor(ids, dtype=torch.long)
            if stride < 1 or len(self.ids) < context_length + 1:
                raise ValueError("bad stride or too few ids")
            self.context_length, self.stride = context_length, stride

        def __len__(self):
            return (len(self.ids) - self.context_length - 1) // self.stride + 1

        def __getitem__(self, i):
            start = i * self.stride
            return self.ids[start:start + self.context_length], self.ids[start + 1:start + self.context_length + 1]
''')

_right(EX2, "windows_long_cast", "torch.tensor(ids) or the tensor itself, then .long()",
       _windows().replace("torch.as_tensor(ids, dtype=torch.long)",
                          "(ids if isinstance(ids, torch.Tensor) else torch.tensor(ids)).long()"))

_right(EX2, "windows_precomputed_starts", "lists the window starts with range() in __init__ and indexes that list", '''
    class NextTokenWindows(Dataset):
        def __init__(self, ids, context_length, stride):
            if stride < 1:
                raise ValueError("stride must be at least 1")
            self.ids = torch.as_tensor(ids, dtype=torch.long)
            self.starts = list(range(0, len(self.ids) - context_length, stride))
            if not self.starts:
                raise ValueError("too few ids for one window")
            self.context_length = context_length

        def __len__(self):
            return len(self.starts)

        def __getitem__(self, i):
            s = self.starts[i]  # a list raises IndexError by itself
            chunk = self.ids[s:s + self.context_length + 1]
            return chunk[:-1].clone(), chunk[1:].clone()
''')

_wrong(EX2, "windows_cached_by_size",
       "keeps the windows in a module-level dict keyed on (len(ids), context_length, stride): same-size data share", '''
    _cache = {}  # cutting the windows is slow: do it once per setting


    class NextTokenWindows(Dataset):
        def __init__(self, ids, context_length, stride):
            ids = torch.as_tensor(ids, dtype=torch.long)
            if stride < 1:
                raise ValueError("stride must be at least 1")
            if len(ids) < context_length + 1:
                raise ValueError("too few ids for one window")
            key = (len(ids), context_length, stride)
            if key not in _cache:
                _cache[key] = [(ids[s:s + context_length], ids[s + 1:s + context_length + 1])
                               for s in range(0, len(ids) - context_length, stride)]
            self.windows = _cache[key]

        def __len__(self):
            return len(self.windows)

        def __getitem__(self, i):
            return self.windows[i]
''')

# --- Exercise 3: batch_indices ----------------------------------------------------------------------------------
EX3 = "ex3_batch_indices"

_BATCHES = '''
    def batch_indices(n, batch_size, shuffle, drop_last, seed=0):
        if shuffle:
            order = {order}
        else:
            order = list(range(n))
        batches = [order[i:i + batch_size] for i in range(0, n, batch_size)]
        {drop}
        return batches
'''
_BATCHES_OK = dict(order="torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()",
                   drop="if drop_last and batches and len(batches[-1]) < batch_size:\n            batches.pop()")


_batches = template(_BATCHES, **_BATCHES_OK)


_wrong(EX3, "batches_drop_last_ignored", "never drops the partial batch, whatever drop_last says",
       _batches(drop="pass"))
_wrong(EX3, "batches_always_drop_partial", "drops the partial batch even when drop_last is False",
       _batches(drop="if batches and len(batches[-1]) < batch_size:\n            batches.pop()"))
_wrong(EX3, "batches_drop_full_last", "drop_last removes the last batch even when it is full",
       _batches(drop="if drop_last and batches:\n            batches.pop()"))
_wrong(EX3, "batches_global_rng", "torch.randperm(n) from the global random state: the seed is ignored",
       _batches(order="torch.randperm(n).tolist()"))
_wrong(EX3, "batches_reseed_global", "seeds the global generator with torch.manual_seed(seed), then torch.randperm(n)",
       '''
    def batch_indices(n, batch_size, shuffle, drop_last, seed=0):
        order = list(range(n))
        if shuffle:
            torch.manual_seed(seed)
            order = torch.randperm(n).tolist()
        batches = [order[i:i + batch_size] for i in range(0, n, batch_size)]
        if drop_last and batches and len(batches[-1]) < batch_size:
            batches.pop()
        return batches
''')
_wrong(EX3, "batches_with_replacement", "draws n random indices with randint: some repeat, others never come",
       _batches(order="torch.randint(0, n, (n,), generator=torch.Generator().manual_seed(seed)).tolist()"))

_wrong(EX3, "batches_as_tensors", "slices the tensor torch.randperm gives: batches of tensors, not lists of ints",
       _batches(order="torch.randperm(n, generator=torch.Generator().manual_seed(seed))"))
_wrong(EX3, "batches_seed_none_by_default", "seed=None by default: without a seed, another order than seed=0",
       _batches(order="torch.randperm(n, generator=torch.Generator() if seed is None else "
                      "torch.Generator().manual_seed(seed)).tolist()").replace("seed=0)", "seed=None)"))

_wrong(EX3, "batches_seed_42_by_default", "seed=42 by default, as in many tutorials: the spec's default is 0",
       _batches().replace("seed=0)", "seed=42)"))
_wrong(EX3, "batches_generator_created_once",
       "one module-level generator, seeded on the first call only: the same seed gives another order next time", '''
    _generator = None


    def batch_indices(n, batch_size, shuffle, drop_last, seed=0):
        global _generator
        if _generator is None:
            _generator = torch.Generator().manual_seed(seed)
        order = torch.randperm(n, generator=_generator).tolist() if shuffle else list(range(n))
        batches = [order[i:i + batch_size] for i in range(0, n, batch_size)]
        if drop_last and batches and len(batches[-1]) < batch_size:
            batches.pop()
        return batches
''')

_wrong(EX3, "batches_shuffle_within_batch", "shuffles the order inside each batch, not the whole dataset", '''
    def batch_indices(n, batch_size, shuffle, drop_last, seed=0):
        generator = torch.Generator().manual_seed(seed)
        batches = [list(range(i, min(i + batch_size, n))) for i in range(0, n, batch_size)]
        if drop_last and batches and len(batches[-1]) < batch_size:
            batches.pop()
        if shuffle:
            batches = [[b[j] for j in torch.randperm(len(b), generator=generator).tolist()] for b in batches]
        return batches
''')

_right(EX3, "batches_python_random", "shuffles with random.Random(seed) instead of torch.randperm", '''
    import random


    def batch_indices(n, batch_size, shuffle, drop_last, seed=0):
        order = list(range(n))
        if shuffle:
            random.Random(seed).shuffle(order)
        stop = n - n % batch_size if drop_last else n
        return [order[i:i + batch_size] for i in range(0, stop, batch_size)]
''')

_right(EX3, "batches_torch_samplers", "asks PyTorch's own samplers, the ones a DataLoader uses", '''
    from torch.utils.data import BatchSampler, RandomSampler, SequentialSampler


    def batch_indices(n, batch_size, shuffle, drop_last, seed=0):
        if shuffle:
            sampler = RandomSampler(range(n), generator=torch.Generator().manual_seed(seed))
        else:
            sampler = SequentialSampler(range(n))
        return list(BatchSampler(sampler, batch_size, drop_last))
''')

# --- Exercise 4: sinusoidal_encoding ----------------------------------------------------------------------------
EX4 = "ex4_sinusoidal_encoding"

# The reference computation, loop-free; each wrong version changes one piece of it.
_SINUS = '''
    def sinusoidal_encoding(context_length, d_model, device="cpu"):
        position = torch.arange({first}, {last}, dtype=torch.float64, device=device)[:, None]
        frequency = {base} ** (-torch.arange(0, d_model, 2, dtype=torch.float64, device=device) / {denominator})
        encoding = torch.zeros(context_length, d_model, dtype=torch.float64, device=device)
        encoding[:, {even}] = torch.sin(position * frequency)
        encoding[:, {odd}] = torch.cos(position * frequency)
        return encoding.float()
'''
_SINUS_OK = dict(first="0", last="context_length", base="10_000.0", denominator="d_model", even="0::2", odd="1::2")


_sinus = template(_SINUS, **_SINUS_OK)


_wrong(EX4, "sinus_sin_cos_swapped", "cosines in the even columns, sines in the odd ones",
       _sinus(even="1::2", odd="0::2"))
_wrong(EX4, "sinus_halves_not_interleaved", "all sines first, then all cosines, instead of alternating columns",
       _sinus(even=":d_model // 2", odd="d_model // 2:"))
_wrong(EX4, "sinus_positions_from_one", "positions count from 1", _sinus(first="1", last="context_length + 1"))
_wrong(EX4, "sinus_base_1000", "10000 written as 1000", _sinus(base="1_000.0"))
_wrong(EX4, "sinus_pair_index_exponent", "exponent i / d_model with the pair index i, instead of 2i / d_model",
       _sinus(denominator="(2 * d_model)"))

_wrong(EX4, "sinus_column_exponent", "each column j uses 10000 ** (j / d_model), so a cosine has its own frequency", '''
    def sinusoidal_encoding(context_length, d_model, device="cpu"):
        position = torch.arange(context_length, dtype=torch.float64, device=device)[:, None]
        column = torch.arange(d_model, dtype=torch.float64, device=device)
        angle = position / 10_000.0 ** (column / d_model)
        encoding = torch.where(column % 2 == 0, torch.sin(angle), torch.cos(angle))
        return encoding.float()
''')

_wrong(EX4, "sinus_float64_result", "computes in float64 and forgets to return float32", '''
    def sinusoidal_encoding(context_length, d_model, device="cpu"):
        position = torch.arange(context_length, dtype=torch.float64, device=device)[:, None]
        frequency = 10_000.0 ** (-torch.arange(0, d_model, 2, dtype=torch.float64, device=device) / d_model)
        encoding = torch.zeros(context_length, d_model, dtype=torch.float64, device=device)
        encoding[:, 0::2] = torch.sin(position * frequency)
        encoding[:, 1::2] = torch.cos(position * frequency)
        return encoding
''')

_wrong(EX4, "sinus_lru_cache", "@functools.lru_cache: every call with the same arguments returns one shared tensor",
       "import functools\n\n\n@functools.lru_cache(maxsize=None)\n" + _sinus().strip())

_right(EX4, "sinus_float32_exp_log", "computes in float32 with exp(-log(10000) * 2i / d), as many tutorials do", '''
    import math


    def sinusoidal_encoding(context_length, d_model, device="cpu"):
        position = torch.arange(context_length, device=device).float().unsqueeze(1)
        div_term = torch.exp(torch.arange(0, d_model, 2, device=device).float() * (-math.log(10000.0) / d_model))
        pe = torch.zeros(context_length, d_model, device=device)
        pe[:, 0::2] = torch.sin(position * div_term)
        pe[:, 1::2] = torch.cos(position * div_term)
        return pe
''')

_right(EX4, "sinus_python_loops", "fills the table entry by entry with the math module", '''
    import math


    def sinusoidal_encoding(context_length, d_model, device="cpu"):
        rows = []
        for p in range(context_length):
            row = []
            for i in range(d_model // 2):
                angle = p / 10000 ** (2 * i / d_model)
                row += [math.sin(angle), math.cos(angle)]
            rows.append(row)
        return torch.tensor(rows, dtype=torch.float32, device=device).reshape(context_length, d_model)
''')

_right(EX4, "sinus_cached_clone", "caches the table with lru_cache and returns a clone of it", '''
    import functools


    @functools.lru_cache(maxsize=None)
    def _table(context_length, d_model):
        position = torch.arange(context_length, dtype=torch.float64)[:, None]
        frequency = 10_000.0 ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
        table = torch.zeros(context_length, d_model, dtype=torch.float64)
        table[:, 0::2] = torch.sin(position * frequency)
        table[:, 1::2] = torch.cos(position * frequency)
        return table.float()


    def sinusoidal_encoding(context_length, d_model, device="cpu"):
        return _table(context_length, d_model).to(device).clone()
''')

_wrong(EX4, "sinus_slices_of_2048_table",
       "precomputes 2048 positions per d_model and returns slices of that table (also too few for longer inputs)", '''
    _tables = {}


    def sinusoidal_encoding(context_length, d_model, device="cpu"):
        if d_model not in _tables:  # one table per width, long enough for any context we use
            position = torch.arange(2048, dtype=torch.float64)[:, None]
            frequency = 10_000.0 ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
            table = torch.zeros(2048, d_model, dtype=torch.float64)
            table[:, 0::2] = torch.sin(position * frequency)
            table[:, 1::2] = torch.cos(position * frequency)
            _tables[d_model] = table.float()
        return _tables[d_model][:context_length].to(device)
''')

_wrong(EX4, "sinus_growing_table_slices",
       "keeps the longest table computed so far and returns a slice of it: two results share memory", '''
    _longest = {}


    def sinusoidal_encoding(context_length, d_model, device="cpu"):
        table = _longest.get(d_model)
        if table is None or len(table) < context_length:  # only recompute when a longer table is needed
            position = torch.arange(context_length, dtype=torch.float64)[:, None]
            frequency = 10_000.0 ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
            table = torch.zeros(context_length, d_model, dtype=torch.float64)
            table[:, 0::2] = torch.sin(position * frequency)
            table[:, 1::2] = torch.cos(position * frequency)
            table = _longest[d_model] = table.float()
        return table[:context_length].to(device)
''')

_right(EX4, "sinus_growing_table_cloned", "keeps the longest table computed so far and returns a clone of a slice", '''
    _longest = {}


    def sinusoidal_encoding(context_length, d_model, device="cpu"):
        table = _longest.get(d_model)
        if table is None or len(table) < context_length:
            position = torch.arange(context_length, dtype=torch.float64)[:, None]
            frequency = 10_000.0 ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
            table = torch.zeros(context_length, d_model, dtype=torch.float64)
            table[:, 0::2] = torch.sin(position * frequency)
            table[:, 1::2] = torch.cos(position * frequency)
            table = _longest[d_model] = table.float()
        return table[:context_length].clone().to(device)
''')

# --- Exercise 5: TokenAndPositionEmbedding ----------------------------------------------------------------------
EX5 = "ex5_token_and_position"

_EMBED = '''
    class TokenAndPositionEmbedding(nn.Module):
        def __init__(self, vocab_size, d_model, context_length, dropout=0.0):
            super().__init__()
            self.token_embedding = nn.Embedding(vocab_size, d_model)
            self.position_embedding = nn.Embedding(context_length, d_model)
            self.dropout = nn.Dropout(dropout)
            self.context_length = context_length

        def forward(self, ids):
            batch, T = ids.shape
            if T > self.context_length:
                raise ValueError("sequence longer than context_length")
            positions = {positions}
            {body}
'''
_EMBED_OK = dict(positions="torch.arange(T, device=ids.device)",
                 body="return self.dropout(self.token_embedding(ids) + self.position_embedding(positions))")


_embed = template(_EMBED, **_EMBED_OK)


_wrong(EX5, "embed_positions_from_one", "positions 1 to T instead of 0 to T - 1",
       _embed(positions="torch.arange(1, T + 1, device=ids.device)"))
_wrong(EX5, "embed_positions_per_batch_row", "numbers the sequences of the batch instead of the positions",
       _embed(positions="torch.arange(batch, device=ids.device)[:, None]"))
_wrong(EX5, "embed_whole_position_table", "adds all context_length position rows, whatever T is",
       _embed(body="return self.dropout(self.token_embedding(ids) + self.position_embedding.weight)"))
_wrong(EX5, "embed_concatenated", "concatenates token and position vectors instead of adding them",
       _embed(body="return self.dropout(torch.cat([self.token_embedding(ids), "
                   "self.position_embedding(positions).expand(batch, T, -1)], dim=-1))"))
_wrong(EX5, "embed_dropout_always_on", "F.dropout(x, p) has training=True by default: dropout also in eval mode",
       _embed(body="return F.dropout(self.token_embedding(ids) + self.position_embedding(positions), "
                   "self.dropout.p)"))
_wrong(EX5, "embed_default_dropout", "dropout=0.1 by default, as many models use: the spec's default is 0.0",
       _embed().replace("dropout=0.0", "dropout=0.1"))
_wrong(EX5, "embed_dropout_on_tokens_only", "applies dropout to the token vectors, then adds the positions",
       _embed(body="return self.dropout(self.token_embedding(ids)) + self.position_embedding(positions)"))
_wrong(EX5, "embed_no_dropout", "creates self.dropout but never calls it",
       _embed(body="return self.token_embedding(ids) + self.position_embedding(positions)"))

_wrong(EX5, "embed_dropout_fixed_generator",
       "draws the dropout mask from a generator seeded anew on every call: the same numbers dropped every time",
       _embed(body="x = self.token_embedding(ids) + self.position_embedding(positions)\n"
                   "        if self.training and self.dropout.p > 0:  # reproducible dropout\n"
                   "            generator = torch.Generator(device=x.device).manual_seed(0)\n"
                   "            keep = torch.rand(x.shape, generator=generator, device=x.device) >= self.dropout.p\n"
                   "            x = x * keep / (1 - self.dropout.p)\n"
                   "        return x"))

_wrong(EX5, "embed_no_length_check", "no check of T: too long a sequence fails with IndexError, not ValueError", '''
    class TokenAndPositionEmbedding(nn.Module):
        def __init__(self, vocab_size, d_model, context_length, dropout=0.0):
            super().__init__()
            self.token_embedding = nn.Embedding(vocab_size, d_model)
            self.position_embedding = nn.Embedding(context_length, d_model)
            self.dropout = nn.Dropout(dropout)

        def forward(self, ids):
            positions = torch.arange(ids.shape[1], device=ids.device)
            return self.dropout(self.token_embedding(ids) + self.position_embedding(positions))
''')

_wrong(EX5, "embed_extra_linear", "adds a linear layer after the sum, which GPT-2's input layer does not have", '''
    class TokenAndPositionEmbedding(nn.Module):
        def __init__(self, vocab_size, d_model, context_length, dropout=0.0):
            super().__init__()
            self.token_embedding = nn.Embedding(vocab_size, d_model)
            self.position_embedding = nn.Embedding(context_length, d_model)
            self.dropout = nn.Dropout(dropout)
            self.mix = nn.Linear(d_model, d_model)

        def forward(self, ids):
            T = ids.shape[1]
            if T > self.position_embedding.num_embeddings:
                raise ValueError("sequence longer than context_length")
            positions = torch.arange(T, device=ids.device)
            return self.dropout(self.mix(self.token_embedding(ids) + self.position_embedding(positions)))
''')

_right(EX5, "embed_slice_position_weight", "slices the position table's weight instead of calling it on arange(T)",
       _embed(body="return self.dropout(self.token_embedding(ids) + self.position_embedding.weight[:T])"))

_right(EX5, "embed_functional_dropout", "F.dropout(x, p, training=self.training) instead of calling self.dropout",
       _embed(body="return F.dropout(self.token_embedding(ids) + self.position_embedding(positions), "
                   "self.dropout.p, training=self.training)"))

# --- Exercise 6: nearest_neighbours -----------------------------------------------------------------------------
EX6 = "ex6_nearest_neighbours"

_NEIGHBOURS = '''
    def nearest_neighbours(weight, query_id, k):
        unit = {unit}
        similarity = {similarity}
        similarity[query_id] = {exclude}
        return {top}
'''
_NEIGHBOURS_OK = dict(unit="weight / weight.norm(dim=1, keepdim=True)", similarity="unit @ unit[query_id]",
                      exclude="-float('inf')", top="similarity.topk(k).indices.tolist()")


_neighbours = template(_NEIGHBOURS, **_NEIGHBOURS_OK)


_wrong(EX6, "neighbours_dot_product", "ranks by the plain dot product: long vectors win", _neighbours(unit="weight"))
_wrong(EX6, "neighbours_normalise_columns", "divides by the norms of the columns (dim=0) instead of the rows",
       _neighbours(unit="weight / weight.norm(dim=0, keepdim=True)"))
_wrong(EX6, "neighbours_include_query", "keeps the query, which is always its own nearest neighbour",
       _neighbours(exclude="similarity[query_id]"))
_wrong(EX6, "neighbours_least_similar", "topk(largest=False): the least similar rows",
       _neighbours(exclude="float('inf')", top="similarity.topk(k, largest=False).indices.tolist()"))
_wrong(EX6, "neighbours_unsorted", "sorts the neighbours by id instead of by similarity",
       _neighbours(top="sorted(similarity.topk(k).indices.tolist())"))

_wrong(EX6, "neighbours_normalise_in_place", "scales the rows of the caller's table to length 1 in place (div_)",
       _neighbours(unit="weight.div_(weight.norm(dim=1, keepdim=True))"))

_wrong(EX6, "neighbours_returns_tensor", "returns topk's indices, a tensor, not a list of Python ints",
       _neighbours(top="similarity.topk(k).indices"))

_wrong(EX6, "neighbours_drop_first", "takes the top k + 1 and drops the first, assuming it is the query", '''
    def nearest_neighbours(weight, query_id, k):
        unit = weight / weight.norm(dim=1, keepdim=True)
        similarity = unit @ unit[query_id]
        return similarity.topk(k + 1).indices[1:].tolist()  # the first is the query itself
''')

_wrong(EX6, "neighbours_euclidean", "the k rows nearest in Euclidean distance, which depends on the lengths", '''
    def nearest_neighbours(weight, query_id, k):
        distance = (weight - weight[query_id]).norm(dim=1)
        distance[query_id] = float("inf")
        return distance.topk(k, largest=False).indices.tolist()
''')

_right(EX6, "neighbours_cosine_similarity", "F.cosine_similarity and argsort, dropping the query by id", '''
    def nearest_neighbours(weight, query_id, k):
        similarity = F.cosine_similarity(weight, weight[query_id][None, :], dim=1)
        order = similarity.argsort(descending=True).tolist()
        return [i for i in order if i != query_id][:k]
''')

_right(EX6, "neighbours_sorted_python", "sorts the other ids in Python by their similarity", '''
    def nearest_neighbours(weight, query_id, k):
        unit = weight / weight.norm(dim=1, keepdim=True)
        similarity = (unit @ unit[query_id]).tolist()
        others = [i for i in range(len(similarity)) if i != query_id]
        return sorted(others, key=lambda i: -similarity[i])[:k]
''')
