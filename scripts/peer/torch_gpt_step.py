#!/usr/bin/env python3
"""The PyTorch peer of `scalelab bench` on a GPU (issue 20): the same GPT training step
(nanoGPT-style: byte vocabulary 256, pre-LayerNorm blocks, GELU MLP 4x, untied head,
AdamW lr 3e-4 and weight decay 0.1, normal(0.02) weights and zero biases, a fixed random
batch), timed as a whole step (forward, backward, optimizer) after warm-up, in PyTorch eager
or torch.compile, on CUDA or the CPU.

    python3 scripts/peer/torch_gpt_step.py --device cuda --d 256 --layers 4 --heads 4 --ctx 128 --batch 16
    python3 scripts/peer/torch_gpt_step.py --device cuda --d 768 --layers 12 --heads 12 --ctx 1024 --batch 8 --compile

Prints one line: RESULT ms=<median ms/step> tokens_per_s=... gflops=... mfu=<against --peak-tflops>
loss=<first>-><last>. FLOPs per step: 6·N·tokens + 12·L·T·d·tokens (scalelab's convention).
"""
import argparse
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("--d", type=int, default=256)
p.add_argument("--layers", type=int, default=4)
p.add_argument("--heads", type=int, default=4)
p.add_argument("--ctx", type=int, default=128)
p.add_argument("--batch", type=int, default=16)
p.add_argument("--warmup", type=int, default=5)
p.add_argument("--steps", type=int, default=20)
p.add_argument("--device", default="cuda")
p.add_argument("--threads", type=int, default=0, help="CPU threads (0: PyTorch's default)")
p.add_argument("--bf16", action="store_true", help="autocast to bf16 (f32 master weights)")
p.add_argument("--compile", action="store_true")
p.add_argument("--peak-tflops", type=float, default=67.0,
               help="the device's peak for MFU (H200 SXM: 67 fp32, 989 dense bf16)")
a = p.parse_args()
if a.threads:
    torch.set_num_threads(a.threads)
torch.manual_seed(0)
dev = torch.device(a.device)
V = 256


class Block(nn.Module):
    def __init__(s, d, h):
        super().__init__()
        s.h = h
        s.ln1, s.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        s.qkv, s.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        s.fc1, s.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(s, x):
        B, T, C = x.shape
        q, k, v = s.qkv(s.ln1(x)).split(C, dim=2)
        q, k, v = [t.view(B, T, s.h, C // s.h).transpose(1, 2) for t in (q, k, v)]
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + s.proj(y.transpose(1, 2).contiguous().view(B, T, C))
        return x + s.fc2(F.gelu(s.fc1(s.ln2(x))))


class GPT(nn.Module):
    def __init__(s, d, L, h):
        super().__init__()
        s.tok, s.pos = nn.Embedding(V, d), nn.Embedding(a.ctx, d)
        s.blocks = nn.ModuleList([Block(d, h) for _ in range(L)])
        s.lnf, s.head = nn.LayerNorm(d), nn.Linear(d, V)
        for m in s.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, 0, 0.02)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)

    def forward(s, idx):
        x = s.tok(idx) + s.pos(torch.arange(idx.shape[1], device=idx.device))
        for b in s.blocks:
            x = b(x)
        return s.head(s.lnf(x))


model = GPT(a.d, a.layers, a.heads).to(dev)
n = sum(p.numel() for p in model.parameters())
opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1)
g = torch.Generator().manual_seed(0)
x = torch.randint(0, V, (a.batch, a.ctx), generator=g).to(dev)
y = torch.randint(0, V, (a.batch, a.ctx), generator=g).to(dev)
fwd = torch.compile(model) if a.compile else model


def sync():
    if dev.type == "cuda":
        torch.cuda.synchronize()


def step():
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=a.bf16):
        logits = fwd(x)
        loss = F.cross_entropy(logits.view(-1, V).float(), y.view(-1))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss


losses, times = [], []
for i in range(a.warmup + a.steps):
    sync()
    t = time.perf_counter()
    loss = step()
    losses.append(loss.item())  # waits for the step, as scalelab's loss read does
    sync()
    if i >= a.warmup:
        times.append((time.perf_counter() - t) * 1e3)
times.sort()
ms = times[len(times) // 2]
tokens = a.batch * a.ctx
flops = 6 * n * tokens + 12 * a.layers * a.ctx * a.d * tokens
gflops = flops / (ms / 1e3) / 1e9
print(
    f"RESULT ms={ms:.2f} tokens_per_s={tokens / (ms / 1e3):.0f} gflops={gflops:.1f} "
    f"mfu={gflops / 1e3 / a.peak_tflops:.4f} params={n} loss={losses[0]:.3f}->{losses[-1]:.3f} "
    f"device={torch.cuda.get_device_name() if dev.type == 'cuda' else 'cpu'} "
    f"mode={'compile' if a.compile else 'eager'}{'+bf16' if a.bf16 else ''}"
)
