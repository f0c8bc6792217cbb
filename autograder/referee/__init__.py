"""The referee: tests run in the grader's process; the learner's code runs in its own kernel; they trade plain values.

Why
---
nbgrader runs a notebook's test cells in the learner's kernel, after the learner's code, so that code can decide what
a test executes and what it reports (patch ``torch.allclose``, rewrite cells before they run, read a hidden test
from the call stack). Here no test, expected value, tolerance or checking code ever enters the learner's process,
and no verdict is made there:

* the learner's cells (solutions, their own cells) run in a Jupyter kernel, sandboxed when grading;
* the course's setup cells run there too (the learner's code uses them) and also here, in the referee;
* the test cells run only here. A name a test uses that the course does not define is looked up in the learner's
  kernel: a plain value (number, string, list, dict, tuple, set, tensor, numpy array...) arrives as a copy; anything
  else (a function, a class, an object, a generator) as a stand-in whose use is a request to the kernel. The test's
  asserts, comparisons and tolerances are the referee's own.

The learner's code can see the *inputs* of the calls the tests make (it is called with them), never what the test
expects. Callables and iterators that a test passes to the learner's code stay here: the learner's code gets a
stand-in, and every use of it runs the test's own object here. See ``link.py`` for the details (in-place changes,
identity, exceptions, limits) and ``wire.py`` for the format.

Writing a test cell (for instructors)
-------------------------------------
Write it as if it called the learner's code directly; the names resolve as described above. For example, for an
exercise "write ``one_hot_embed(ids, weight)``"::

    import torch
    import torch.nn.functional as F
    from autograder.referee import learner

    ids, weight = torch.tensor([3, 0, 3]), torch.randn(4, 2)
    got = one_hot_embed(ids, weight)          # the learner's function, called in the learner's kernel
    assert torch.equal(got, F.embedding(ids, weight)), "Rows 3, 0, 3 of weight, please."   # decided here
    ### BEGIN HIDDEN TESTS
    upstream = torch.randn(3, 2)
    weight.requires_grad_(True)
    out, (grad,) = learner.gradients(one_hot_embed, ids, weight, wrt=[1], grad_output=upstream)
    assert grad is not None, "No gradient reached weight: don't detach it."
    ### END HIDDEN TESTS

Rules that follow from the design:

* What comes back is a copy. To change a learner's object, call its methods (``layer.load_state_dict(...)``,
  ``layer.eval()``): setting an attribute of a stand-in is refused, and changing a tensor read from one changes only
  the copy.
* ``learner.gradients(fn, *args, wrt=[...], grad_output=...)`` runs a backward pass in the learner's kernel (autograd
  cannot cross processes); ``learner.seed(n)`` seeds the kernel's global generators (``torch.manual_seed`` in a test
  seeds only the referee's); ``learner.rng_state()`` fingerprints them, so that a test can check that a function
  promised to leave them alone did (compare the fingerprint before and after the call); ``learner.memory(fn, ...)``
  calls ``fn`` and says where its result's tensors live, so that a test can tell a fresh tensor from a view of an
  argument (``.shares_arguments``) or of a table kept between calls (``first.overlaps(second)``), which copies
  alone cannot show.
* Compare types as well as values where the spec promises a type: a learner's value arrives as its plain base type
  (a ``float`` subclass as a ``float``), so an object "equal to everything" cannot exist here, but a test should still
  say what it expects (``isinstance``, dtype, device).
* Write messages of hidden tests so that they say what is wrong without printing the expected value: they are shown
  to the learner, who may resubmit.
* Import in the test what the test uses; the learner's modules are not looked up.

The learner's self-check (``python -m autograder.check``) runs the same referee without the sandbox, so it gives the
same verdicts as grading.
"""

from autograder.referee.link import LearnerSide

#: What a test may ask of the learner's kernel besides calling its code: ``learner.gradients``, ``learner.seed``,
#: ``learner.rng_state``, ``learner.memory``.
learner = LearnerSide()
