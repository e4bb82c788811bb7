"""mmbench: gradient-integration strategies for multimodal learning, benchmarked."""

from mmbench.utils.cpus import limit_spinning

limit_spinning()  # before anything loads torch's OpenMP runtime (see mmbench.utils.cpus)

from mmbench import resolvers  # noqa: E402, F401  (conf/ interpolations need them in every process)
