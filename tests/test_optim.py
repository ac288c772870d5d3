"""repclass.training.optim.Adam: torch.optim.Adam's updates, bit for bit on CPU, without torch._dynamo."""
import subprocess
import sys

import pytest
import torch

from repclass.config import ModelConfig
from repclass.model.deeprc import DeepRC
from repclass.training.optim import Adam


def _losses_and_weights(make_optimizer, steps=40, seed=0):
    torch.manual_seed(seed)
    model = DeepRC(ModelConfig(n_kernels=8, kernel_size=5))
    optimizer = make_optimizer(model.parameters())
    codes = torch.randint(0, 20, (64, 14), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))
    lengths = torch.randint(5, 15, (64,), generator=torch.Generator().manual_seed(seed + 1))
    bag_index = torch.arange(64) % 4
    target = torch.tensor([[1.0], [0.0], [1.0], [0.0]])
    for _ in range(steps):
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(codes, lengths, bag_index, 4), target)
        loss.backward()
        optimizer.step()
    return model.state_dict(), optimizer


@pytest.mark.parametrize("weight_decay", [0.0, 1e-2])
def test_updates_equal_torch_adam_bit_for_bit(weight_decay):
    ours, _ = _losses_and_weights(lambda p: Adam(p, lr=1e-2, eps=1e-4, weight_decay=weight_decay))
    theirs, _ = _losses_and_weights(lambda p: torch.optim.Adam(p, lr=1e-2, eps=1e-4, weight_decay=weight_decay))
    for name in theirs:
        assert torch.equal(ours[name], theirs[name]), name


def test_state_dict_resumes_exactly(tmp_path):
    whole, _ = _losses_and_weights(lambda p: Adam(p, lr=1e-2), steps=20)
    torch.manual_seed(0)
    # 10 steps, save, load into a fresh optimizer, 10 more: the same weights as 20 at once.
    half, optimizer = _losses_and_weights(lambda p: Adam(p, lr=1e-2), steps=10)
    torch.save(optimizer.state_dict(), tmp_path / "optimizer.pt")
    saved = torch.load(tmp_path / "optimizer.pt", weights_only=True)

    def resumed(params):
        optimizer = Adam(params, lr=1e-2)
        optimizer.load_state_dict(saved)
        return optimizer

    # Continue from the half-way weights with the restored moments.
    torch.manual_seed(0)
    model = DeepRC(ModelConfig(n_kernels=8, kernel_size=5))
    model.load_state_dict(half)
    optimizer = resumed(model.parameters())
    codes = torch.randint(0, 20, (64, 14), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    lengths = torch.randint(5, 15, (64,), generator=torch.Generator().manual_seed(1))
    target = torch.tensor([[1.0], [0.0], [1.0], [0.0]])
    for _ in range(10):
        optimizer.zero_grad()
        torch.nn.functional.binary_cross_entropy_with_logits(model(codes, lengths, torch.arange(64) % 4, 4),
                                                             target).backward()
        optimizer.step()
    resumed_state = model.state_dict()
    for name in whole:
        assert torch.equal(whole[name], resumed_state[name]), name


def test_training_does_not_import_the_compiler(tmp_path):
    """The point of repclass.training.optim: a training update never imports torch._dynamo (1.9 s)."""
    code = ("import sys, torch\n"
            "from repclass.config import ModelConfig\n"
            "from repclass.model.deeprc import DeepRC\n"
            "from repclass.training.optim import Adam\n"
            "model = DeepRC(ModelConfig(n_kernels=8))\n"
            "optimizer = Adam(model.parameters())\n"
            "codes = torch.randint(0, 20, (32, 14), dtype=torch.uint8)\n"
            "for _ in range(2):\n"
            "    optimizer.zero_grad()\n"
            "    model(codes, torch.full((32,), 14), torch.arange(32) % 2, 2).sum().backward()\n"
            "    optimizer.step()\n"
            "print('torch._dynamo' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
