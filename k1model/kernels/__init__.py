"""Native CPU kernels for the operations torch runs slowly at the model's own shapes.

Chosen by measurement (`k1 bench`, "where the step's time goes"; benchmarks/README.md): the agents'
causal self-attention (`attention.c`), GELU (`gelu.c`), layer norm (`layer_norm.c`), the block's
matrix products (`gemm.c`), the whole agent block forward and backward in one call each (`block.c`, one
autograd node in `block.py`), and the LM head's cross-entropy (`cross_entropy.c`). On CPUs with AVX-512 the
products, attention, GELU and the cross-entropy run 16 lanes wide (`wide.h`, switched in `wide.c`), with the
same bits as the AVX2 paths (`vector_isa()` says which ran; $K1_NATIVE_AVX2=1 forces AVX2).
`train.attention: native` (and `auto` on a CPU that can build them) uses them. The C files are built
into one library with the machine's C compiler on first use (`build.py`, `library.py`) and checked
against torch's own kernels in tests/test_kernels.py.
"""
from k1model.kernels.attention import native_attention, unsupported
from k1model.kernels.block import native_block
from k1model.kernels.build import KernelUnavailable
from k1model.kernels.cross_entropy import native_cross_entropy
from k1model.kernels.layer_norm import native_layer_norm
from k1model.kernels.library import unavailable, vector_isa

__all__ = ["KernelUnavailable", "native_attention", "native_block", "native_cross_entropy",
           "native_layer_norm", "unavailable", "unsupported", "vector_isa"]
