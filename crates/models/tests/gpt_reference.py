"""Reference loss for the GPT parity test (crates/models/src/gpt.rs, loss_matches_pytorch_reference).

Builds the same GPT in PyTorch (pre-LayerNorm, learned positions, causal attention, exact GELU,
LayerNorm eps 1e-5, head without bias) with the weights of scalelab's `FormulaInit(0.3)`:
element i of the k-th tensor created, in Burn's [in, out] layout, is 0.3*sin(0.37*i + 0.11*k);
norm gains are ones, biases zeros. Prints the mean cross-entropy for the untied and tied model.

    python3 -m venv /tmp/torch-venv && /tmp/torch-venv/bin/pip install torch numpy
    /tmp/torch-venv/bin/python crates/models/tests/gpt_reference.py
"""
import math
import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float32)
L, D, H, FF, T, V, B = 2, 32, 4, 128, 16, 50, 3


class Formula:
    def __init__(self):
        self.k = 0

    def normal(self, shape):  # shape in Burn's layout
        n = math.prod(shape)
        i = torch.arange(n, dtype=torch.float64)
        w = 0.3 * torch.sin(0.37 * i + 0.11 * self.k)
        self.k += 1
        return w.reshape(shape).float()

    def const(self, shape, value):
        self.k += 1
        return torch.full(shape, float(value))


def build(tie):
    f = Formula()
    p = {"wte": f.normal([V, D]), "wpe": f.normal([T, D]), "blocks": []}
    for _ in range(L):
        blk = {}
        blk["ln1"] = (f.const([D], 1), f.const([D], 0))
        blk["qkv"] = (f.normal([D, 3 * D]), f.const([3 * D], 0))
        blk["proj"] = (f.normal([D, D]), f.const([D], 0))
        blk["ln2"] = (f.const([D], 1), f.const([D], 0))
        blk["fc"] = (f.normal([D, FF]), f.const([FF], 0))
        blk["fc_proj"] = (f.normal([FF, D]), f.const([D], 0))
        p["blocks"].append(blk)
    p["ln_f"] = (f.const([D], 1), f.const([D], 0))
    p["head"] = None if tie else f.normal([D, V])
    return p


def forward(p, idx):
    b, t = idx.shape
    x = p["wte"][idx] + p["wpe"][:t]
    for blk in p["blocks"]:
        h = F.layer_norm(x, (D,), *blk["ln1"], eps=1e-5)
        qkv = h @ blk["qkv"][0] + blk["qkv"][1]  # Burn weights are [in, out]
        q, k, v = [z.view(b, t, H, D // H).transpose(1, 2) for z in qkv.split(D, dim=2)]
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        y = y.transpose(1, 2).reshape(b, t, D)
        x = x + y @ blk["proj"][0] + blk["proj"][1]
        h = F.layer_norm(x, (D,), *blk["ln2"], eps=1e-5)
        h = F.gelu(h @ blk["fc"][0] + blk["fc"][1])
        x = x + h @ blk["fc_proj"][0] + blk["fc_proj"][1]
    x = F.layer_norm(x, (D,), *p["ln_f"], eps=1e-5)
    return x @ (p["wte"].T if p["head"] is None else p["head"])


idx = torch.tensor([(i * 7 + 3) % 50 for i in range(B * T)]).view(B, T)
tgt = torch.tensor([(i * 11 + 5) % 50 for i in range(B * T)]).view(B, T)
for tie in (False, True):
    logits = forward(build(tie), idx)
    loss = F.cross_entropy(logits.view(-1, V), tgt.view(-1))
    print(f"tie={tie} loss={loss.item():.7f}")
