"""A few training steps of a tiny causal self-attention layer through flashsci's flash-attn interface.

    pip install bindings/python torch
    FLASHSCI_LIBRARY=<prefix>/lib/libflashsci.so python3 examples/python/train_step.py

The import below is the only change from code written for FlashAttention-2; CPU tensors run
on the library's CPU backend (CUDA tensors would run on the GPU, on torch's current stream).
"""
import torch

from flashsci.flash_attn_interface import flash_attn_func  # was: from flash_attn import flash_attn_func


class SelfAttention(torch.nn.Module):
    def __init__(self, dim, heads, kv_heads):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, dim // heads
        self.q = torch.nn.Linear(dim, dim, bias=False)
        self.kv = torch.nn.Linear(dim, 2 * kv_heads * self.head_dim, bias=False)  # GQA: fewer kv heads
        self.o = torch.nn.Linear(dim, dim, bias=False)

    def forward(self, x):
        batch, seqlen, _ = x.shape
        q = self.q(x).view(batch, seqlen, self.heads, self.head_dim)
        k, v = self.kv(x).view(batch, seqlen, 2, self.kv_heads, self.head_dim).unbind(dim=2)
        out = flash_attn_func(q, k, v, causal=True)  # [batch, seqlen, heads, head_dim]
        return self.o(out.reshape(batch, seqlen, -1))


torch.manual_seed(0)
layer = SelfAttention(dim=128, heads=4, kv_heads=2)
x = torch.randn(4, 96, 128)
target = torch.randn(4, 96, 128)
optimizer = torch.optim.Adam(layer.parameters(), lr=3e-3)

losses = []
for step in range(20):
    optimizer.zero_grad()
    loss = torch.nn.functional.mse_loss(layer(x), target)
    loss.backward()  # through flashsci_backward
    optimizer.step()
    losses.append(loss.item())
    if step % 5 == 0:
        print(f"step {step:2d}  loss {loss.item():.4f}")
print(f"loss {losses[0]:.4f} -> {losses[-1]:.4f}")
assert losses[-1] < losses[0], "the loss should decrease"
