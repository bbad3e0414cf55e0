#!/usr/bin/env python3
"""PyTorch eager peer of scalelab's image classifiers, for `scalelab bench --family`.

The same models as crates/models/src/{mlp,cnn}.rs: an MLP (flatten, hidden ReLU layers, a
linear head) and the VGG-style CNN (per stage two same-padded 3x3 convolutions with ReLU and a
2x2 max-pool, then a ReLU dense layer and the head), fp32, AdamW at lr 1e-3 on a fixed random
batch; then inference batches under torch.inference_mode() with the class probabilities read
back, as scalelab's evaluation does. Prints one JSON line: train_step_ms and inference_ms
(medians after warm-up), params.

    torch_classifier.py --family cnn --stages 32,64 --fc 128 --batch 64 --threads 2
    torch_classifier.py --family mlp --hidden 256,256 --batch 64 --threads 1
"""
import argparse, json, time

import torch
import torch.nn as nn

p = argparse.ArgumentParser()
p.add_argument("--family", choices=["mlp", "cnn"], required=True)
p.add_argument("--input", default="1,28,28", help="channels,height,width")
p.add_argument("--classes", type=int, default=10)
p.add_argument("--hidden", default="256,256", help="mlp: hidden widths")
p.add_argument("--stages", default="32,64", help="cnn: channels per stage")
p.add_argument("--fc", type=int, default=128, help="cnn: dense width")
p.add_argument("--batch", type=int, default=64)
p.add_argument("--inference-batch", type=int, default=500)
p.add_argument("--threads", type=int, default=1)
p.add_argument("--warmup", type=int, default=5)
p.add_argument("--steps", type=int, default=20)
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)
c, h, w = (int(v) for v in a.input.split(","))
if a.family == "mlp":
    layers, width = [nn.Flatten()], c * h * w
    for units in (int(u) for u in a.hidden.split(",") if u):
        layers += [nn.Linear(width, units), nn.ReLU()]
        width = units
    model = nn.Sequential(*layers, nn.Linear(width, a.classes))
else:
    layers, ch = [], c
    for s in (int(v) for v in a.stages.split(",")):
        layers += [nn.Conv2d(ch, s, 3, padding=1), nn.ReLU(), nn.Conv2d(s, s, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        ch, h, w = s, h // 2, w // 2
    model = nn.Sequential(*layers, nn.Flatten(), nn.Linear(ch * h * w, a.fc), nn.ReLU(), nn.Linear(a.fc, a.classes))
opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
x = torch.rand(a.batch, c, *(int(v) for v in a.input.split(",")[1:]))
y = torch.randint(0, a.classes, (a.batch,))


def step():
    opt.zero_grad(set_to_none=True)
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return loss.item()


def median(ts):
    ts = sorted(ts)
    return ts[len(ts) // 2]


train = []
for i in range(a.warmup + a.steps):
    t = time.perf_counter()
    step()
    if i >= a.warmup:
        train.append((time.perf_counter() - t) * 1e3)
xe = torch.rand(a.inference_batch, c, *(int(v) for v in a.input.split(",")[1:]))
model.eval()
infer = []
with torch.inference_mode():
    for i in range(a.warmup + a.steps):
        t = time.perf_counter()
        torch.softmax(model(xe), 1).numpy()
        if i >= a.warmup:
            infer.append((time.perf_counter() - t) * 1e3)
print(json.dumps({
    "family": a.family, "params": sum(q.numel() for q in model.parameters()),
    "train_step_ms": median(train), "inference_ms": median(infer),
    "batch": a.batch, "inference_batch": a.inference_batch, "threads": a.threads,
    "torch": torch.__version__,
}))
