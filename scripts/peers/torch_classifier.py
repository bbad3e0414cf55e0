#!/usr/bin/env python3
"""PyTorch eager peer of scalelab's classifiers, for `scalelab bench --family`.

The same models as crates/models/src/{mlp,cnn,resnet,rnn,encoder}.rs:
- mlp: flatten, hidden ReLU layers, a linear head;
- cnn: per stage two same-padded 3x3 convolutions with ReLU and a 2x2 max-pool, then a ReLU
  dense layer and the head;
- resnet: a 3x3 stem convolution with batch norm and ReLU, one basic block per stage (stages
  after the first begin with a 2x2 max-pool; 1x1 convolution and batch norm on the shortcut
  when the channels change; convolutions before batch norm have no bias), global average
  pooling and the head;
- lstm / gru: a token embedding, nn.LSTM / nn.GRU layers, the head on the last state
  (PyTorch's LSTM has a second bias per gate: 4H more parameters a layer than scalelab's);
- encoder: token and learned position embeddings, pre-LayerNorm nn.TransformerEncoderLayer
  blocks (GELU, feed-forward 4d, the padding mask given), a final LayerNorm, the mean of the
  states and the head.
fp32, AdamW at lr 1e-3 on a fixed random batch (full-length sentences of random tokens for
the text families); then inference batches under torch.inference_mode() with the class
probabilities read back, as scalelab's evaluation does. Prints one JSON line: train_step_ms
and inference_ms (medians after warm-up), params.

    torch_classifier.py --family cnn --stages 32,64 --fc 128 --batch 64 --threads 2
    torch_classifier.py --family mlp --hidden 256,256 --batch 64 --threads 1
    torch_classifier.py --family lstm --embed 64 --hidden 128 --vocab 1001 --seq-len 48
"""
import argparse, json, time

import torch
import torch.nn as nn

p = argparse.ArgumentParser()
p.add_argument("--family", choices=["mlp", "cnn", "resnet", "lstm", "gru", "encoder"], required=True)
p.add_argument("--input", default="1,28,28", help="channels,height,width")
p.add_argument("--classes", type=int, default=10)
p.add_argument("--hidden", default="256,256", help="mlp: hidden widths; lstm/gru: hidden units")
p.add_argument("--stages", default="32,64", help="cnn/resnet: channels per stage")
p.add_argument("--embed", type=int, default=64, help="lstm/gru: embedding width")
p.add_argument("--layers", type=int, default=1, help="lstm/gru/encoder: layers")
p.add_argument("--width", type=int, default=64, help="encoder: model width")
p.add_argument("--heads", type=int, default=4, help="encoder: attention heads")
p.add_argument("--vocab", type=int, default=1001, help="text: vocabulary (0 is padding)")
p.add_argument("--seq-len", type=int, default=48, help="text: tokens per sentence")
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


class Resnet(nn.Module):
    def __init__(self, stages):
        super().__init__()
        conv = lambda ci, co, k: nn.Conv2d(ci, co, k, padding=k // 2, bias=False)
        self.stem = nn.Sequential(conv(c, stages[0], 3), nn.BatchNorm2d(stages[0]), nn.ReLU())
        self.blocks, ci = nn.ModuleList(), stages[0]
        for i, co in enumerate(stages):
            b = nn.Module()
            b.pool = nn.MaxPool2d(2) if i > 0 else nn.Identity()
            b.body = nn.Sequential(conv(ci, co, 3), nn.BatchNorm2d(co), nn.ReLU(), conv(co, co, 3), nn.BatchNorm2d(co))
            b.skip = nn.Sequential(conv(ci, co, 1), nn.BatchNorm2d(co)) if ci != co else nn.Identity()
            self.blocks.append(b)
            ci = co
        self.head = nn.Linear(ci, a.classes)

    def forward(self, x):
        x = self.stem(x)
        for b in self.blocks:
            x = b.pool(x)
            x = torch.relu(b.body(x) + b.skip(x))
        return self.head(x.mean((2, 3)))


class Recurrent(nn.Module):
    def __init__(self):
        super().__init__()
        hidden = int(a.hidden.split(",")[0])
        self.embedding = nn.Embedding(a.vocab, a.embed)
        cell = nn.LSTM if a.family == "lstm" else nn.GRU
        self.rnn = cell(a.embed, hidden, a.layers, batch_first=True)
        self.head = nn.Linear(hidden, a.classes)

    def forward(self, tokens):
        states, _ = self.rnn(self.embedding(tokens))
        return self.head(states[:, -1])  # every sentence is full length


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        d = a.width
        self.tokens, self.positions = nn.Embedding(a.vocab, d), nn.Embedding(a.seq_len, d)
        layer = nn.TransformerEncoderLayer(d, a.heads, 4 * d, dropout=0.0, activation="gelu", batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, a.layers, enable_nested_tensor=False)
        self.ln_f, self.head = nn.LayerNorm(d), nn.Linear(d, a.classes)

    def forward(self, tokens):
        padding = tokens == 0
        x = self.tokens(tokens) + self.positions(torch.arange(tokens.shape[1]))
        x = self.ln_f(self.blocks(x, src_key_padding_mask=padding))
        real = (~padding).unsqueeze(-1).float()
        return self.head((x * real).sum(1) / real.sum(1))


text = a.family in ("lstm", "gru", "encoder")
if a.family == "mlp":
    layers, width = [nn.Flatten()], c * h * w
    for units in (int(u) for u in a.hidden.split(",") if u):
        layers += [nn.Linear(width, units), nn.ReLU()]
        width = units
    model = nn.Sequential(*layers, nn.Linear(width, a.classes))
elif a.family == "cnn":
    layers, ch = [], c
    for s in (int(v) for v in a.stages.split(",")):
        layers += [nn.Conv2d(ch, s, 3, padding=1), nn.ReLU(), nn.Conv2d(s, s, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        ch, h, w = s, h // 2, w // 2
    model = nn.Sequential(*layers, nn.Flatten(), nn.Linear(ch * h * w, a.fc), nn.ReLU(), nn.Linear(a.fc, a.classes))
elif a.family == "resnet":
    model = Resnet([int(v) for v in a.stages.split(",")])
elif a.family == "encoder":
    model = Encoder()
else:
    model = Recurrent()


def inputs(n):
    if text:
        return torch.randint(1, a.vocab, (n, a.seq_len))
    return torch.rand(n, c, h0, w0)


h0, w0 = (int(v) for v in a.input.split(",")[1:])
opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
x = inputs(a.batch)
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
xe = inputs(a.inference_batch)
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
