"""Wrong implementations for Chapter 0 (Just enough PyTorch): the mistakes learners make with shapes and
broadcasting, gradients written by hand, training loops, and their first ``nn.Module``.

Each source replaces a whole solution cell of ``solutions/ch00_pytorch/pytorch.ipynb`` and is written the way a
learner would write it; the other exercises keep the reference solution.
"""


from . import Catalogue, template

_catalogue = Catalogue()
WRONG, ALTERNATIVES = _catalogue.wrong_implementations, _catalogue.alternatives
_wrong, _right = _catalogue.wrong, _catalogue.right


# --- Exercise 1: normalise_rows ---------------------------------------------------------------------------------
EX1 = "ex1_normalise_rows"

_wrong(EX1, "rows_mean_without_keepdim", "x - x.mean(dim=-1): shape (n,) broadcasts along the rows (wrong when square)",
       '''
    def normalise_rows(x, eps=1e-5):
        mean = x.mean(dim=-1)
        variance = ((x - mean) ** 2).mean(dim=-1)
        return (x - mean) / torch.sqrt(variance + eps)
''')

_wrong(EX1, "rows_unbiased_variance", "x.var(dim=-1) divides by d - 1 (and gives NaN for rows of one number)", '''
    def normalise_rows(x, eps=1e-5):
        mean = x.mean(dim=-1, keepdim=True)
        variance = x.var(dim=-1, keepdim=True)
        return (x - mean) / torch.sqrt(variance + eps)
''')

_wrong(EX1, "rows_eps_outside_sqrt", "divides by std + eps instead of sqrt(variance + eps)", '''
    def normalise_rows(x, eps=1e-5):
        centred = x - x.mean(dim=-1, keepdim=True)
        std = torch.sqrt((centred ** 2).mean(dim=-1, keepdim=True))
        return centred / (std + eps)
''')

_wrong(EX1, "rows_in_place", "subtracts and divides in place: x itself is changed and returned", '''
    def normalise_rows(x, eps=1e-5):
        x -= x.mean(dim=-1, keepdim=True)
        x /= torch.sqrt((x ** 2).mean(dim=-1, keepdim=True) + eps)
        return x
''')

_wrong(EX1, "rows_one_pass_variance", "variance as mean(x**2) - mean**2: no digits left for rows near 10,000", '''
    def normalise_rows(x, eps=1e-5):
        mean = x.mean(dim=-1, keepdim=True)
        variance = (x ** 2).mean(dim=-1, keepdim=True) - mean ** 2
        return (x - mean) / torch.sqrt(variance + eps)
''')

_wrong(EX1, "rows_columns_normalised", "normalises along dim=0, the columns, instead of the last axis", '''
    def normalise_rows(x, eps=1e-5):
        centred = x - x.mean(dim=0, keepdim=True)
        return centred / torch.sqrt((centred ** 2).mean(dim=0, keepdim=True) + eps)
''')

_wrong(EX1, "rows_eps_hard_coded", "ignores the eps argument and always uses 1e-5", '''
    def normalise_rows(x, eps=1e-5):
        centred = x - x.mean(dim=-1, keepdim=True)
        return centred / torch.sqrt((centred ** 2).mean(dim=-1, keepdim=True) + 1e-5)
''')

_right(EX1, "rows_var_correction_0", "torch.var with correction=0 and torch.rsqrt", '''
    def normalise_rows(x, eps=1e-5):
        variance = x.var(dim=-1, keepdim=True, correction=0)
        return (x - x.mean(dim=-1, keepdim=True)) * torch.rsqrt(variance + eps)
''')

_right(EX1, "rows_layer_norm", "F.layer_norm over the last axis, without scale and shift", '''
    def normalise_rows(x, eps=1e-5):
        return F.layer_norm(x, (x.shape[-1],), eps=eps)
''')

# --- Exercise 2: gradient_step ----------------------------------------------------------------------------------
EX2 = "ex2_gradient_step"

# The reference step; each wrong version below changes one piece of it.
_STEP = '''
    def gradient_step(w, b, x, y, lr):
        error = w * x + b - y
        grad_w = {grad_w}
        grad_b = {grad_b}
        {update}
        return {result}
'''
_STEP_OK = dict(grad_w="2 * (error * x).mean()", grad_b="2 * error.mean()",
                update="w, b = w - lr * grad_w.item(), b - lr * grad_b.item()", result="w, b")


_step = template(_STEP, **_STEP_OK)


_wrong(EX2, "step_no_factor_two", "forgets the 2 of the derivative of the square",
       _step(grad_w="(error * x).mean()", grad_b="error.mean()"))
_wrong(EX2, "step_sum_not_mean", "sums the errors over the points instead of averaging them",
       _step(grad_w="2 * (error * x).sum()", grad_b="2 * error.sum()"))
_wrong(EX2, "step_uphill", "adds the gradient: the step goes up the loss",
       _step(update="w, b = w + lr * grad_w.item(), b + lr * grad_b.item()"))
_wrong(EX2, "step_returns_tensors", "returns 0-d tensors instead of Python floats",
       _step(update="w, b = w - lr * grad_w, b - lr * grad_b"))

_wrong(EX2, "step_b_uses_new_w", "updates w first, then computes b's gradient with the new w", '''
    def gradient_step(w, b, x, y, lr):
        w = w - lr * (2 * ((w * x + b - y) * x).mean()).item()
        b = b - lr * (2 * (w * x + b - y).mean()).item()
        return w, b
''')

_right(EX2, "step_python_loop", "a loop over the points with Python floats", '''
    def gradient_step(w, b, x, y, lr):
        n = len(x)
        grad_w = grad_b = 0.0
        for xi, yi in zip(x.tolist(), y.tolist()):
            error = w * xi + b - yi
            grad_w += 2 * error * xi / n
            grad_b += 2 * error / n
        return w - lr * grad_w, b - lr * grad_b
''')

_right(EX2, "step_float_conversion", "float() instead of .item(), the formulas with @ and sum() / n", '''
    def gradient_step(w, b, x, y, lr):
        error = w * x + b - y
        n = x.shape[0]
        return float(w - lr * 2 * (error @ x) / n), float(b - lr * 2 * error.sum() / n)
''')

# --- Exercise 3: fit_linear -------------------------------------------------------------------------------------
EX3 = "ex3_fit_linear"

_FIT = '''
    def fit_linear(x, y, weight, bias, lr=0.1, steps=100):
        weight = {weight}
        bias = {bias}
        optimizer = torch.optim.SGD([weight, bias], lr=lr)
        losses = []
        for _ in range(steps):
            loss = {loss}
            {zero_grad}
            loss.backward()
            optimizer.step()
            losses.append({record})
        return losses, weight.detach(), bias.detach()
'''
_FIT_OK = dict(weight="weight.clone().requires_grad_()", bias="bias.clone().requires_grad_()",
               loss="F.mse_loss(x @ weight.T + bias, y)", zero_grad="optimizer.zero_grad()", record="loss.item()")


_fit = template(_FIT, **_FIT_OK)


_wrong(EX3, "fit_no_zero_grad", "never clears the gradients: each step uses the sum of all gradients so far",
       _fit(zero_grad="pass"))
_wrong(EX3, "fit_sum_loss", "the sum of the squared errors instead of their mean",
       _fit(loss="((x @ weight.T + bias - y) ** 2).sum()"))
_wrong(EX3, "fit_weight_in_by_out", "x @ weight: the weight read as in x out (silently wrong when square)",
       _fit(loss="F.mse_loss(x @ weight + bias, y)"))
_wrong(EX3, "fit_losses_are_tensors", "appends loss.detach(): a list of 0-d tensors, not Python floats",
       _fit(record="loss.detach()"))
_wrong(EX3, "fit_trains_the_inputs", "trains the given tensors themselves: the caller's weight and bias change",
       _fit(weight="weight.requires_grad_()", bias="bias.requires_grad_()"))

_wrong(EX3, "fit_loss_after_step", "records the loss after the update, so losses[0] is not the starting loss", '''
    def fit_linear(x, y, weight, bias, lr=0.1, steps=100):
        weight = weight.clone().requires_grad_()
        bias = bias.clone().requires_grad_()
        optimizer = torch.optim.SGD([weight, bias], lr=lr)
        losses = []
        for _ in range(steps):
            optimizer.zero_grad()
            F.mse_loss(x @ weight.T + bias, y).backward()
            optimizer.step()
            with torch.no_grad():
                losses.append(F.mse_loss(x @ weight.T + bias, y).item())
        return losses, weight.detach(), bias.detach()
''')

_wrong(EX3, "fit_nn_linear_float32", "an nn.Linear of the default dtype: float64 weights come back as float32", '''
    def fit_linear(x, y, weight, bias, lr=0.1, steps=100):
        layer = nn.Linear(weight.shape[1], weight.shape[0])
        layer.load_state_dict({"weight": weight, "bias": bias})
        optimizer = torch.optim.SGD(layer.parameters(), lr=lr)
        losses = []
        for _ in range(steps):
            loss = F.mse_loss(layer(x.float()), y.float())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        return losses, layer.weight.detach(), layer.bias.detach()
''')

_wrong(EX3, "fit_zero_steps_returns_inputs",
       "with steps=0 hands back weight.detach() and bias.detach(): views of the inputs", '''
    def fit_linear(x, y, weight, bias, lr=0.1, steps=100):
        if steps == 0:
            return [], weight.detach(), bias.detach()  # nothing to train
        weight = weight.clone().requires_grad_()
        bias = bias.clone().requires_grad_()
        optimizer = torch.optim.SGD([weight, bias], lr=lr)
        losses = []
        for _ in range(steps):
            loss = F.mse_loss(x @ weight.T + bias, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        return losses, weight.detach(), bias.detach()
''')

_right(EX3, "fit_manual_updates", "autograd for the gradients, the SGD update written out under no_grad", '''
    def fit_linear(x, y, weight, bias, lr=0.1, steps=100):
        w = weight.clone().requires_grad_(True)
        b = bias.clone().requires_grad_(True)
        losses = []
        for _ in range(steps):
            loss = ((x @ w.T + b - y) ** 2).mean()
            loss.backward()
            with torch.no_grad():
                w -= lr * w.grad
                b -= lr * b.grad
            w.grad = None
            b.grad = None
            losses.append(float(loss))
        return losses, w.detach().clone(), b.detach().clone()
''')

_right(EX3, "fit_nn_linear", "an nn.Linear of the inputs' dtype and device, loaded with the starting values", '''
    def fit_linear(x, y, weight, bias, lr=0.1, steps=100):
        d_out, d_in = weight.shape
        layer = nn.Linear(d_in, d_out, dtype=weight.dtype, device=weight.device)
        layer.load_state_dict({"weight": weight, "bias": bias})
        optimizer = torch.optim.SGD(layer.parameters(), lr=lr)
        losses = []
        for _ in range(steps):
            optimizer.zero_grad()
            loss = nn.MSELoss()(layer(x), y)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        return losses, layer.weight.detach().clone(), layer.bias.detach().clone()
''')

# --- Exercise 4: TwoLayerMLP and count_parameters ---------------------------------------------------------------
EX4 = "ex4_two_layer_mlp"

_MLP = '''
    class TwoLayerMLP(nn.Module):
        def __init__(self, d_in, d_hidden, d_out):
            super().__init__()
            self.hidden = nn.Linear(d_in, d_hidden{bias})
            self.output = nn.Linear(d_hidden, d_out{bias})

        def forward(self, x):
            return {forward}


    def count_parameters(model, trainable_only=False):
        {count}
'''
_MLP_OK = dict(bias="", forward="self.output(torch.relu(self.hidden(x)))",
               count="return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)")


_mlp = template(_MLP, **_MLP_OK)


_wrong(EX4, "mlp_no_relu", "forgets the ReLU: two linear layers make one linear map",
       _mlp(forward="self.output(self.hidden(x))"))
_wrong(EX4, "mlp_relu_on_output", "a ReLU after the output layer too: no negative outputs",
       _mlp(forward="torch.relu(self.output(torch.relu(self.hidden(x))))"))
_wrong(EX4, "mlp_no_bias", "nn.Linear(..., bias=False): the layers have no biases", _mlp(bias=", bias=False"))
_wrong(EX4, "count_tensors", "counts the parameter tensors, len(list(model.parameters())), not their numbers",
       _mlp(count="return len(list(model.parameters()))"))
_wrong(EX4, "count_always_trainable", "always skips frozen parameters, whatever trainable_only says",
       _mlp(count="return sum(p.numel() for p in model.parameters() if p.requires_grad)"))
_wrong(EX4, "count_weights_only", "counts the weight matrices and forgets the biases",
       _mlp(count="return sum(p.numel() for name, p in model.named_parameters() if name.endswith('weight') and "
                  "(p.requires_grad or not trainable_only))"))
_wrong(EX4, "count_returns_tensor", "adds the sizes up in a tensor: returns a 0-d tensor, not an int",
       _mlp(count="return torch.tensor([p.numel() for p in model.parameters() if p.requires_grad or not "
                  "trainable_only]).sum()"))

_wrong(EX4, "mlp_weight_in_by_out", "its own layer class storing the weight in x out and computing x @ W + b", '''
    class MyLinear(nn.Module):
        def __init__(self, d_in, d_out):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(d_in, d_out) / d_in ** 0.5)
            self.bias = nn.Parameter(torch.zeros(d_out))

        def forward(self, x):
            return x @ self.weight + self.bias


    class TwoLayerMLP(nn.Module):
        def __init__(self, d_in, d_hidden, d_out):
            super().__init__()
            self.hidden = MyLinear(d_in, d_hidden)
            self.output = MyLinear(d_hidden, d_out)

        def forward(self, x):
            return self.output(torch.relu(self.hidden(x)))


    def count_parameters(model, trainable_only=False):
        return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
''')

_right(EX4, "mlp_relu_module_state_dict_count", "an nn.ReLU submodule; counts with numel() over a filtered list", '''
    class TwoLayerMLP(nn.Module):
        def __init__(self, d_in, d_hidden, d_out):
            super().__init__()
            self.hidden = nn.Linear(d_in, d_hidden)
            self.act = nn.ReLU()
            self.output = nn.Linear(d_hidden, d_out)

        def forward(self, x):
            return self.output(self.act(self.hidden(x)))


    def count_parameters(model, trainable_only=False):
        params = [p for p in model.parameters() if p.requires_grad] if trainable_only else list(model.parameters())
        total = 0
        for p in params:
            total += int(torch.tensor(p.shape).prod())
        return total
''')

# --- Exercise 5: PairDataset and make_loader --------------------------------------------------------------------
EX5 = "ex5_pair_dataset"

_DATA = '''
    from torch.utils.data import DataLoader, Dataset


    class PairDataset(Dataset):
        def __init__(self, xs, ys):
            self.xs = {xs}
            self.ys = {ys}
            {check}

        def __len__(self):
            return len(self.xs)

        def __getitem__(self, i):
            if i >= len(self):
                raise IndexError(i)
            return self.xs[i], self.ys[i]


    def make_loader(dataset, batch_size, shuffle=False, seed=0, drop_last=False):
        {loader}
'''
_DATA_OK = dict(xs="torch.as_tensor(xs).to(torch.float32)", ys="torch.as_tensor(ys).to(torch.long)",
                check='if len(self.xs) != len(self.ys):\n            raise ValueError("xs and ys differ")',
                loader="return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, "
                       "generator=torch.Generator().manual_seed(seed))")


_data = template(_DATA, **_DATA_OK)


_wrong(EX5, "loader_global_seed", "torch.manual_seed(seed) instead of a generator of the loader's own",
       _data(loader="torch.manual_seed(seed)\n    return DataLoader(dataset, batch_size=batch_size, "
                    "shuffle=shuffle, drop_last=drop_last)"))
_wrong(EX5, "loader_seed_ignored", "shuffles without any seed: a different order on every run",
       _data(loader="return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last)"))
_wrong(EX5, "loader_drop_last_ignored", "never passes drop_last on: the short last batch stays",
       _data(loader="return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, "
                    "generator=torch.Generator().manual_seed(seed))"))
_wrong(EX5, "loader_one_permutation", "draws one permutation up front: every epoch has the same order",
       _data(loader="order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed)).tolist()\n"
                    "    return DataLoader(dataset, batch_size=batch_size, drop_last=drop_last,\n"
                    "                      sampler=order if shuffle else None)"))
_wrong(EX5, "dataset_labels_float", "torch.tensor(ys, dtype=torch.float32): labels as floats, not longs",
       _data(ys="torch.tensor(ys, dtype=torch.float32)"))
_wrong(EX5, "dataset_keeps_float64", "torch.as_tensor(xs) keeps float64 inputs as float64",
       _data(xs="torch.as_tensor(xs)"))
_wrong(EX5, "dataset_no_length_check", "accepts inputs and labels of different lengths",
       _data(check="pass"))

_wrong(EX5, "loader_seeds_global_too", "passes its own generator, and also calls torch.manual_seed(seed) to be safe",
       _data(loader="torch.manual_seed(seed)  # reproducible\n    return DataLoader(dataset, batch_size=batch_size, "
                    "shuffle=shuffle, drop_last=drop_last,\n                      "
                    "generator=torch.Generator().manual_seed(seed))"))

_right(EX5, "dataset_lists_random_sampler", "keeps lists, converts per item; a RandomSampler with the generator",
       '''
    from torch.utils.data import DataLoader, Dataset, RandomSampler


    class PairDataset(Dataset):
        def __init__(self, xs, ys):
            xs = xs.tolist() if isinstance(xs, torch.Tensor) else xs
            ys = ys.tolist() if isinstance(ys, torch.Tensor) else ys
            if len(xs) != len(ys):
                raise ValueError("xs and ys differ in length")
            self.pairs = list(zip(xs, ys))

        def __len__(self):
            return len(self.pairs)

        def __getitem__(self, i):
            x, y = self.pairs[i]  # a list raises IndexError by itself
            return torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.long)


    def make_loader(dataset, batch_size, shuffle=False, seed=0, drop_last=False):
        generator = torch.Generator()
        generator.manual_seed(seed)
        sampler = RandomSampler(dataset, generator=generator) if shuffle else None
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last)
''')

# --- count_parameters on any module, and loaders used side by side ----------------------------------------------
_wrong(EX4, "count_state_dict_entries", "adds up the tensors of model.state_dict(): buffers are counted as parameters",
       _mlp(count="return sum(t.numel() for t in model.state_dict().values()) if not trainable_only else "
                  "sum(p.numel() for p in model.parameters() if p.requires_grad)"))
_wrong(EX4, "count_direct_children_only",
       "walks model.children() with parameters(recurse=False): layers nested deeper are missed",
       _mlp(count="return sum(p.numel() for layer in model.children() for p in layer.parameters(recurse=False) "
                  "if p.requires_grad or not trainable_only)"))
_wrong(EX4, "count_hidden_and_output_only", "counts model.hidden and model.output, the two layers it knows of",
       _mlp(count="return sum(p.numel() for layer in (model.hidden, model.output) for p in layer.parameters() "
                  "if p.requires_grad or not trainable_only)"))

_wrong(EX5, "loader_shared_generator",
       "one module-level generator for every loader, reseeded by each make_loader: a second loader moves the first",
       '''
    from torch.utils.data import DataLoader, Dataset

    _generator = torch.Generator()  # made once, reused by every loader


    class PairDataset(Dataset):
        def __init__(self, xs, ys):
            self.xs = torch.as_tensor(xs).to(torch.float32)
            self.ys = torch.as_tensor(ys).to(torch.long)
            if len(self.xs) != len(self.ys):
                raise ValueError("xs and ys differ")

        def __len__(self):
            return len(self.xs)

        def __getitem__(self, i):
            if i >= len(self):
                raise IndexError(i)
            return self.xs[i], self.ys[i]


    def make_loader(dataset, batch_size, shuffle=False, seed=0, drop_last=False):
        _generator.manual_seed(seed)
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, generator=_generator)
''')
