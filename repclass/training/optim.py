"""Adam, computed as torch.optim.Adam's default CPU path computes it, without torch._dynamo.

torch.optim's optimizers import torch._dynamo at their first use (the decorators that keep the
compiler out of them): 1.9 s on the 2-core VM, as long as `import torch` itself, paid by every
`repclass train` run; on an easy cohort that is a fifth of the whole run. repclass needs one
optimizer for a few thousand parameters. This one performs the same tensor operations in the
same order as torch's single-tensor Adam (L2 weight decay added to the gradient, bias-corrected
moments), so its updates are bit-for-bit torch's on CPU (tests/test_optim.py); on CUDA torch's
default is its multi-tensor variant, equal within rounding.
"""
from __future__ import annotations

from typing import Any, Iterable

import torch


class Adam:
    """Adam (Kingma & Ba, 2015) over `params`, with torch.optim.Adam's defaults and meaning."""

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        self.params = list(params)
        if not self.params:
            raise ValueError("Adam got an empty parameter list")
        self.lr, self.betas, self.eps, self.weight_decay = float(lr), (float(betas[0]), float(betas[1])), float(eps), \
            float(weight_decay)
        self.steps = [0] * len(self.params)
        self.exp_avg: list[torch.Tensor | None] = [None] * len(self.params)
        self.exp_avg_sq: list[torch.Tensor | None] = [None] * len(self.params)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for param in self.params:
            if param.grad is not None:
                if set_to_none:
                    param.grad = None
                else:
                    param.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        beta1, beta2 = self.betas
        for i, param in enumerate(self.params):
            if param.grad is None:
                continue
            grad = param.grad
            if self.exp_avg[i] is None:
                self.exp_avg[i] = torch.zeros_like(param, memory_format=torch.preserve_format)
                self.exp_avg_sq[i] = torch.zeros_like(param, memory_format=torch.preserve_format)
            exp_avg, exp_avg_sq = self.exp_avg[i], self.exp_avg_sq[i]
            self.steps[i] += 1
            step = float(self.steps[i])
            if self.weight_decay != 0:
                grad = grad.add(param, alpha=self.weight_decay)
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            step_size = self.lr / (1 - beta1 ** step)
            bias_correction2_sqrt = (1 - beta2 ** step) ** 0.5
            denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(self.eps)
            param.addcdiv_(exp_avg, denom, value=-step_size)

    def state_dict(self) -> dict[str, Any]:
        """Steps and moments per parameter (in `params` order), for a resume checkpoint."""
        return {"steps": list(self.steps), "exp_avg": list(self.exp_avg), "exp_avg_sq": list(self.exp_avg_sq),
                "lr": self.lr, "betas": list(self.betas), "eps": self.eps, "weight_decay": self.weight_decay}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if len(state["steps"]) != len(self.params):
            raise ValueError(f"optimizer state for {len(state['steps'])} parameters, the model has {len(self.params)}")
        self.steps = [int(s) for s in state["steps"]]
        self.exp_avg = [None if m is None else m.to(p.device) for m, p in zip(state["exp_avg"], self.params)]
        self.exp_avg_sq = [None if m is None else m.to(p.device) for m, p in zip(state["exp_avg_sq"], self.params)]
        self.lr, self.betas = float(state["lr"]), (float(state["betas"][0]), float(state["betas"][1]))
        self.eps, self.weight_decay = float(state["eps"]), float(state["weight_decay"])
