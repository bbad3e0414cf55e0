#!/usr/bin/env python3
"""Checks scalelab's GPT-2 checkpoints with the real `transformers` package (and PyTorch).

    python scripts/verify/hf_check.py score DIR TEXT
        Loads DIR with AutoModelForCausalLM and AutoTokenizer and prints, as JSON, the loss
        (nats per token) over TEXT in scalelab eval's windows: windows start every n_positions
        tokens, each predicts its next n_positions tokens, a last window shorter than
        n_positions + 1 tokens is dropped; the loss is the mean over every predicted token.
    python scripts/verify/hf_check.py make DIR TOKENIZER_DIR --layers L --embd D --heads H
            --positions T [--untied] [--activation gelu|gelu_new] [--seed S]
            [--dtype float32|float16|bfloat16]
        Makes a randomly initialised GPT2LMHeadModel with transformers itself (no hub) and
        saves it in DIR with the tokenizer files of TOKENIZER_DIR (vocabulary size from it).
"""
import argparse
import json
import shutil

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel


def score(args):
    model = AutoModelForCausalLM.from_pretrained(args.dir, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(args.dir)
    with open(args.text, encoding="utf-8") as f:
        text = f.read()
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    ctx = model.config.n_positions
    windows = [ids[s : s + ctx + 1] for s in range(0, len(ids), ctx) if s + ctx < len(ids)]
    total, count = 0.0, 0
    with torch.no_grad():
        for w in windows:
            x = torch.tensor([w[:-1]])
            y = torch.tensor([w[1:]])
            logits = model(x).logits
            loss = torch.nn.functional.cross_entropy(logits[0].double(), y[0], reduction="sum")
            total += loss.item()
            count += len(w) - 1
    print(json.dumps({
        "loss": total / count,
        "windows": len(windows),
        "tokens_scored": count,
        "text_tokens": len(ids),
        "first_ids": ids[:16],
        "transformers": transformers.__version__,
        "torch": torch.__version__,
    }))


def make(args):
    with open(f"{args.tokenizer_dir}/tokenizer.json", encoding="utf-8") as f:
        vocab = len(json.load(f)["model"]["vocab"])
    torch.manual_seed(args.seed)
    config = GPT2Config(
        vocab_size=vocab,
        n_positions=args.positions,
        n_embd=args.embd,
        n_layer=args.layers,
        n_head=args.heads,
        activation_function=args.activation,
        tie_word_embeddings=not args.untied,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=None,
        eos_token_id=None,
    )
    model = GPT2LMHeadModel(config)
    # Larger than GPT-2's 0.02 start, so that the model's predictions are far from uniform
    # and a wrong mapping would show in the loss.
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.3)
    if args.dtype != "float32":
        model = model.to(getattr(torch, args.dtype))
    model.save_pretrained(args.dir, safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(f"{args.tokenizer_dir}/{name}", f"{args.dir}/{name}")
    print(json.dumps({"dir": args.dir, "vocab_size": vocab, "parameters": sum(p.numel() for p in model.parameters())}))


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("score")
    s.add_argument("dir")
    s.add_argument("text")
    m = sub.add_parser("make")
    m.add_argument("dir")
    m.add_argument("tokenizer_dir")
    m.add_argument("--layers", type=int, required=True)
    m.add_argument("--embd", type=int, required=True)
    m.add_argument("--heads", type=int, required=True)
    m.add_argument("--positions", type=int, required=True)
    m.add_argument("--untied", action="store_true")
    m.add_argument("--activation", default="gelu")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    args = parser.parse_args()
    {"score": score, "make": make}[args.command](args)


if __name__ == "__main__":
    main()
