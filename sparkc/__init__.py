"""sparkc: a compiler from `.spark` model descriptions to Triton kernels and PyTorch modules."""

__version__ = "0.1.0"
