"""The course's exercises and grader, along the pipeline a submission follows.

For learners and maintainers:
    ``generate``   solutions/ -> exercises/ (nbgrader's student notebooks)
    ``check``      the learner's self-check: runs a notebook the way the grader does, without the sandbox

Grading (``python -m autograder.grade``, ``python -m autograder.merge``):
    intake         ``submissions`` (folders and zips, what is wrong with them), ``workspace``
    preparing      ``course`` (nbgrader's settings, and why each default is changed), ``nbgrader_steps``
    running one    ``grade`` (jobs, shards, GPUs) -> ``worker`` (one submission, nbgrader's autograde) ->
                   ``referee`` (the tests here, the learner's code in its kernel, plain values between them) and
                   ``sandbox`` (the kernel's namespaces, root, uid and limits)
    recording      ``results`` (one JSON per submission), ``merge`` (shards into one gradebook)
    reporting      ``report`` (grades.csv, problems.csv, the summary), ``report_page`` (report.html)

Course tools: ``catalogue`` (realistic wrong answers per exercise, which the hidden tests must reject),
``classroom`` (submissions made from the course's own notebooks), ``gpu_check`` (``make gpu-check``).
"""
