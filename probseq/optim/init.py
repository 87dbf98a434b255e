"""Weight initialisations for second-order and momentum training of recurrent networks.

* **sparse** (Martens 2010, §5): every unit receives exactly ``k = 15`` nonzero incoming weights,
  drawn from :math:`\\mathcal N(0, 1)`, at random positions; biases are zero. Units are the rows of a
  weight matrix ``(out, in)``; a unit with fewer than ``k`` inputs is connected to all of them.
  Used with Hessian-free optimisation, where a dense :math:`\\mathcal N(0,1)` start saturates and a
  small dense one gives tiny, uninformative gradients.
* **echo-state** (Sutskever 2013, thesis §7.3; Jaeger & Haas 2004): the hidden-to-hidden matrix is
  sparse in the same way (``k`` nonzeros per unit, :math:`\\mathcal N(0,1)`) and rescaled so that
  its spectral radius :math:`\\max_i |\\lambda_i(W_{hh})|` is 1.2: the untrained network then
  keeps information over many steps without exploding at once. Input and output weights keep the
  model's own initialisation; recurrent biases are zero.

``apply_initialisation(model, scheme, seed)`` applies a scheme to every ``nn.Linear`` and every
``nn.RNN``/``nn.GRU``/``nn.LSTM`` of a model. For gated cells the recurrent matrix stacks one
``(H, H)`` block per gate; each block is initialised (and rescaled) on its own.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from probseq.errors import UserError

__all__ = ["sparse_init_", "echo_state_init_", "spectral_radius", "apply_initialisation",
           "INIT_SCHEMES"]

INIT_SCHEMES = ("default", "sparse", "echo_state")


@torch.no_grad()
def sparse_init_(weight: Tensor, nonzeros: int = 15, *, scale: float = 1.0,
                 generator: torch.Generator | None = None) -> Tensor:
    """Fill ``weight`` ``(out, in)`` in place: ``nonzeros`` entries per row from N(0, scale^2), rest 0."""
    if weight.dim() != 2:
        raise ValueError(f"sparse_init_ needs a matrix, got shape {tuple(weight.shape)}")
    out_dim, in_dim = weight.shape
    k = min(int(nonzeros), in_dim)
    positions = torch.rand(out_dim, in_dim, generator=generator).argsort(1)[:, :k]
    values = torch.randn(out_dim, k, generator=generator, dtype=torch.float64) * scale
    dense = torch.zeros(out_dim, in_dim, dtype=torch.float64).scatter_(1, positions, values)
    weight.copy_(dense.to(weight.dtype))
    return weight


def spectral_radius(matrix: Tensor) -> float:
    """:math:`\\max_i |\\lambda_i|` of a square matrix (computed in float64)."""
    return float(torch.linalg.eigvals(matrix.detach().double()).abs().max())


@torch.no_grad()
def echo_state_init_(weight: Tensor, nonzeros: int = 15, *, radius: float = 1.2,
                     generator: torch.Generator | None = None) -> Tensor:
    """Sparse ``(H, H)`` recurrent matrix rescaled to spectral radius ``radius``, in place."""
    if weight.dim() != 2 or weight.shape[0] != weight.shape[1]:
        raise ValueError(f"echo_state_init_ needs a square matrix, got shape {tuple(weight.shape)}")
    for _ in range(10):                       # a sparse draw can be nilpotent (radius 0); redraw
        sparse_init_(weight, nonzeros, generator=generator)
        rho = spectral_radius(weight)
        if rho > 1e-8:
            weight.mul_(radius / rho)
            return weight
    raise ValueError("could not draw a recurrent matrix with a nonzero spectral radius")


def _gate_blocks(weight: Tensor) -> list[Tensor]:
    hidden = weight.shape[1]
    return list(weight.split(hidden, 0))


@torch.no_grad()
def apply_initialisation(model: nn.Module, scheme: str, *, seed: int = 0, nonzeros: int = 15,
                         radius: float = 1.2) -> int:
    """Initialise ``model``'s linear and recurrent layers by ``scheme``; returns the matrices touched.

    ``scheme`` is ``"default"`` (leave the model as built), ``"sparse"`` or ``"echo_state"``.
    """
    if scheme not in INIT_SCHEMES:
        raise UserError(f"init must be one of {', '.join(INIT_SCHEMES)}, got {scheme!r}")
    if scheme == "default":
        return 0
    gen = torch.Generator().manual_seed(int(seed))
    touched = 0
    for module in model.modules():
        if isinstance(module, nn.RNNBase):
            for name, param in module.named_parameters():
                if name.startswith("bias"):
                    param.zero_()
                elif name.startswith("weight_hh"):
                    for block in _gate_blocks(param):
                        if scheme == "echo_state":
                            echo_state_init_(block, nonzeros, radius=radius, generator=gen)
                        else:
                            sparse_init_(block, nonzeros, generator=gen)
                        touched += 1
                elif name.startswith("weight_ih") and scheme == "sparse":
                    sparse_init_(param, nonzeros, generator=gen)
                    touched += 1
        elif isinstance(module, nn.Linear) and scheme == "sparse":
            sparse_init_(module.weight, nonzeros, generator=gen)
            if module.bias is not None:
                module.bias.zero_()
            touched += 1
    if touched == 0:
        needs = "an nn.RNN, nn.GRU or nn.LSTM layer" if scheme == "echo_state" else "a linear or recurrent layer"
        raise UserError(f"init={scheme} needs {needs}; model "
                        f"{getattr(model, 'name', type(model).__name__)!r} has none")
    return touched
