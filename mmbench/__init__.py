"""mmbench: gradient-integration strategies for multimodal learning, benchmarked."""

from mmbench import resolvers  # noqa: F401  (conf/ interpolations need them in every process)
