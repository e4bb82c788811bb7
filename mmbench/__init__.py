"""mmbench: gradient-integration strategies for multimodal learning, benchmarked."""

from mmbench.utils.cpus import prefer_passive_waiting

prefer_passive_waiting()  # before anything loads torch's OpenMP runtime (see mmbench.utils.cpus)

from mmbench import resolvers  # noqa: E402, F401  (conf/ interpolations need them in every process)
