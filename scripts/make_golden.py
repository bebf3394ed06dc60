#!/usr/bin/python3
"""Writes the golden files under tests/golden/ from an independent reference.

The reference ViT is torchvision's VisionTransformer (Debian's
python3-torchvision 0.14): its own patch conv, nn.MultiheadAttention encoder
layers and LayerNorms. Its weights are renamed to timm's keys and saved as
safetensors for the C++ side to load. DeiT-III features are expressed in the
reference without touching its code:
  * LayerScale gamma is folded into the preceding linear layer
    (gamma * (W x + b) == (diag(gamma) W) x + gamma * b);
  * no_embed_class is a zero positional embedding for the CLS slot.
References are computed in float64 and stored as float32.
Losses come from torch.nn.functional (cross_entropy, kl_div).

Run: /usr/bin/python3 scripts/make_golden.py   (needs scripts/setup.sh --reference)
"""
import json
import os
import struct

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.models.vision_transformer import VisionTransformer

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "golden")
IMG, PATCH, DIM, DEPTH, HEADS, CLASSES, BATCH, KEEP = 32, 8, 48, 2, 3, 10, 4, 7


def write_safetensors(path, tensors, metadata=None):
    """Minimal safetensors writer (format: 8-byte LE length, JSON, data)."""
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name in sorted(tensors):
        arr = np.ascontiguousarray(tensors[name].detach().numpy().astype("<f4"))
        data = arr.tobytes()
        header[name] = {"dtype": "F32", "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def reference_model(gen):
    model = VisionTransformer(image_size=IMG, patch_size=PATCH, num_layers=DEPTH,
                              num_heads=HEADS, hidden_dim=DIM, mlp_dim=4 * DIM,
                              num_classes=CLASSES).double().eval()
    with torch.no_grad():
        for p in model.parameters():  # Non-trivial values everywhere, LN included.
            # Rounded to float32 so the C++ side sees exactly these weights.
            p.copy_((torch.randn(p.shape, generator=gen, dtype=torch.float64) * 0.2).float())
    return model


def to_timm(model, gammas=None, no_embed_class=False):
    """torchvision state -> timm keys. With gammas, the model's out_proj and
    fc2 are already folded; the unfolded weights go to the checkpoint."""
    sd = {"patch_embed.proj.weight": model.conv_proj.weight,
          "patch_embed.proj.bias": model.conv_proj.bias,
          "cls_token": model.class_token,
          "norm.weight": model.encoder.ln.weight, "norm.bias": model.encoder.ln.bias,
          "head.weight": model.heads.head.weight, "head.bias": model.heads.head.bias}
    pos = model.encoder.pos_embedding
    sd["pos_embed"] = pos[:, 1:] if no_embed_class else pos
    for i, layer in enumerate(model.encoder.layers):
        b = f"blocks.{i}."
        att, mlp = layer.self_attention, layer.mlp
        g1, g2 = gammas[i] if gammas else (None, None)
        unfold = (lambda t, g: t / (g[:, None] if t.dim() == 2 else g)) if gammas else (lambda t, g: t)
        sd.update({
            b + "norm1.weight": layer.ln_1.weight, b + "norm1.bias": layer.ln_1.bias,
            b + "attn.qkv.weight": att.in_proj_weight, b + "attn.qkv.bias": att.in_proj_bias,
            b + "attn.proj.weight": unfold(att.out_proj.weight, g1),
            b + "attn.proj.bias": unfold(att.out_proj.bias, g1),
            b + "norm2.weight": layer.ln_2.weight, b + "norm2.bias": layer.ln_2.bias,
            b + "mlp.fc1.weight": mlp[0].weight, b + "mlp.fc1.bias": mlp[0].bias,
            b + "mlp.fc2.weight": unfold(mlp[3].weight, g2),
            b + "mlp.fc2.bias": unfold(mlp[3].bias, g2)})
        if gammas:
            sd[b + "ls1.gamma"], sd[b + "ls2.gamma"] = g1, g2
    return {k: v.detach().float() for k, v in sd.items()}


def make_deit3(gen):
    model = reference_model(gen)
    gammas = []
    with torch.no_grad():
        model.encoder.pos_embedding[:, :1] = 0  # no_embed_class: CLS has no position.
        for layer in model.encoder.layers:
            g1 = torch.rand(DIM, generator=gen, dtype=torch.float64) + 0.5
            g2 = torch.rand(DIM, generator=gen, dtype=torch.float64) + 0.5
            layer.self_attention.out_proj.weight.mul_(g1[:, None])
            layer.self_attention.out_proj.bias.mul_(g1)
            layer.mlp[3].weight.mul_(g2[:, None])
            layer.mlp[3].bias.mul_(g2)
            gammas.append((g1, g2))
    return model, gammas


def embed(model, x):
    """Reference embedding: [B, 1+N, D] with positions added."""
    tokens = model._process_input(x)
    cls = model.class_token.expand(x.shape[0], -1, -1)
    return torch.cat([cls, tokens], 1) + model.encoder.pos_embedding


def encode(model, h):
    for layer in model.encoder.layers:
        h = layer(h)
    return model.encoder.ln(h)


def saliency(model, x):
    h = embed(model, x)
    for layer in model.encoder.layers[:-1]:
        h = layer(h)
    last = model.encoder.layers[-1]
    y = last.ln_1(h)
    _, w_all = last.self_attention(y, y, y, need_weights=True, average_attn_weights=True)
    mask = torch.zeros(y.shape[:2], dtype=torch.bool)
    mask[:, 0] = True  # Hide the CLS key: softmax over patch keys only.
    _, w_patch = last.self_attention(y, y, y, key_padding_mask=mask, need_weights=True,
                                     average_attn_weights=True)
    return w_all[:, 0, 1:], w_patch[:, 0, 1:]


def save_npy(name, t, dtype="<f4"):
    np.save(os.path.join(OUT, name), np.ascontiguousarray(t.detach().numpy().astype(dtype)))


def vit_goldens(tag, model, timm_sd, x, idx):
    write_safetensors(os.path.join(OUT, f"{tag}.safetensors"), timm_sd, {"format": "pt"})
    with torch.no_grad():
        full_tokens = encode(model, embed(model, x))
        h = embed(model, x)
        d = h.shape[-1]
        kept = torch.cat([h[:, :1], h[:, 1:].gather(1, idx[..., None].expand(-1, -1, d))], 1)
        kept_logits = model.heads(encode(model, kept)[:, 0])
        sal_all, sal_patch = saliency(model, x)
    save_npy(f"{tag}_logits.npy", model.heads(full_tokens[:, 0]))
    save_npy(f"{tag}_tokens.npy", full_tokens)
    save_npy(f"{tag}_kept_logits.npy", kept_logits)
    save_npy(f"{tag}_saliency_all.npy", sal_all)
    save_npy(f"{tag}_saliency_patch.npy", sal_patch)


def loss_goldens(gen):
    s = torch.randn(6, CLASSES, generator=gen, dtype=torch.float64) * 2
    t = torch.randn(6, CLASSES, generator=gen, dtype=torch.float64) * 2
    y = torch.randint(0, CLASSES, (6,), generator=gen)
    soft = torch.rand(6, CLASSES, generator=gen, dtype=torch.float64)
    soft = soft / soft.sum(1, keepdim=True)

    def kd(tau):
        return F.kl_div(F.log_softmax(s / tau, 1), F.softmax(t / tau, 1),
                        reduction="batchmean") * tau * tau

    ce = F.cross_entropy(s, y)
    scores = torch.rand(2, 16, generator=gen, dtype=torch.float64)
    resized = F.interpolate(scores.reshape(2, 1, 4, 4), size=(6, 6), mode="bilinear",
                            align_corners=False).reshape(2, 36)
    pos = torch.randn(1, 1 + 16, 8, generator=gen, dtype=torch.float64)
    def resize_pos(grid):
        g = pos[:, 1:].reshape(1, 4, 4, 8).permute(0, 3, 1, 2)
        g = F.interpolate(g, size=(grid, grid), mode="bicubic", align_corners=False,
                          antialias=True)
        return torch.cat([pos[:, :1], g.permute(0, 2, 3, 1).reshape(1, grid * grid, 8)], 1)
    out = {
        "student": s.tolist(), "teacher": t.tolist(), "target": y.tolist(),
        "soft_target": soft.tolist(),
        "ce": ce.item(),
        "ce_smooth_0.1": F.cross_entropy(s, y, label_smoothing=0.1).item(),
        "soft_ce": F.cross_entropy(s, soft).item(),
        "kd_tau_1": kd(1.0).item(), "kd_tau_2": kd(2.0).item(),
        "total_alpha_0.5_tau_1": (0.5 * ce + 0.5 * kd(1.0)).item(),
        "total_alpha_0.3_tau_2": (0.7 * ce + 0.3 * kd(2.0)).item(),
        "hard": F.cross_entropy(s, t.argmax(1)).item(),
        "scores_4x4": scores.tolist(), "scores_resized_6x6": resized.tolist(),
        "pos_embed_4x4": pos.tolist(), "pos_embed_6x6": resize_pos(6).tolist(),
        "pos_embed_2x2": resize_pos(2).tolist(),
    }
    with open(os.path.join(OUT, "losses.json"), "w") as f:
        json.dump(out, f, indent=1)


def main():
    os.makedirs(OUT, exist_ok=True)
    gen = torch.Generator().manual_seed(20240926)
    x = torch.randn(BATCH, 3, IMG, IMG, generator=gen, dtype=torch.float64).float().double()
    n = (IMG // PATCH) ** 2
    # Unsorted kept indices: the teacher's CLS output must not depend on order.
    idx = torch.stack([torch.randperm(n, generator=gen)[:KEEP] for _ in range(BATCH)])
    save_npy("images.npy", x)
    save_npy("kept_idx.npy", idx, dtype="<i8")

    deit = reference_model(gen)
    vit_goldens("deit", deit, to_timm(deit), x, idx)
    deit3, gammas = make_deit3(gen)
    vit_goldens("deit3", deit3, to_timm(deit3, gammas, no_embed_class=True), x, idx)
    loss_goldens(gen)
    with open(os.path.join(OUT, "README.md"), "w") as f:
        f.write("Golden files written by scripts/make_golden.py (torch %s, torchvision "
                "reference). Models: img %d, patch %d, dim %d, depth %d, heads %d, "
                "classes %d; configs in deit.yaml / deit3.yaml.\n"
                % (torch.__version__, IMG, PATCH, DIM, DEPTH, HEADS, CLASSES))


if __name__ == "__main__":
    main()
